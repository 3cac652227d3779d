//! Starting one node inside its namespaces: the hidden `ringkv-lab exec-node` and
//! `exec-init` steps.
//!
//! `exec-node` is a small supervisor ("shim") that `lab up` and `lab start` spawn detached
//! for each node. It joins the node's cgroup(s) and network namespace, unshares mount, UTS
//! and PID namespaces, makes its mounts private, sets the node's host name, and spawns
//! `exec-init`, the first process of the new PID namespace (PID 1). `exec-init` mounts a
//! private `/proc` for that namespace and replaces itself with the node program, so the
//! node itself is PID 1 and killing it empties the namespace. The shim writes the node's
//! host pid to a file and waits for it, so the lab can kill exactly that process later.
//!
//! All of this goes through `nix`'s safe wrappers (the workspace denies `unsafe`), which is
//! why the step is a separate process: `unshare(CLONE_NEWNS)` needs a single-threaded
//! caller, and only a fresh process is sure to be one.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// What the shim needs to start one node.
#[derive(Debug, Clone)]
pub struct NodeLaunch {
    /// The node's network namespace (a name under /run/netns).
    pub netns: String,
    /// The host name inside the node's UTS namespace.
    pub hostname: String,
    /// `cgroup.procs` files to join before anything else starts.
    pub cgroup_procs: Vec<PathBuf>,
    /// Where the node's host pid is written once it runs.
    pub pid_file: PathBuf,
    /// The node's working directory.
    pub workdir: PathBuf,
    /// The program and its arguments.
    pub argv: Vec<String>,
}

/// A step of entering the namespaces failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A system call failed.
    #[error("{step}: {source}")]
    Sys {
        /// What was being done.
        step: String,
        /// The errno.
        source: nix::Error,
    },
    /// A file operation failed.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// No program was given.
    #[error("no program to run")]
    NoProgram,
}

fn sys(step: impl Into<String>) -> impl FnOnce(nix::Error) -> SandboxError {
    let step = step.into();
    move |source| SandboxError::Sys { step, source }
}

fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> SandboxError {
    let step = step.into();
    move |source| SandboxError::Io { step, source }
}

/// The shim: enters the namespaces, spawns `exec-init` (PID 1 of the new PID namespace)
/// through `self_exe`, records its pid and waits for it. Returns the node's exit code
/// (128 + signal when it was killed).
pub fn run_shim(launch: &NodeLaunch, self_exe: &Path) -> Result<i32, SandboxError> {
    if launch.argv.is_empty() {
        return Err(SandboxError::NoProgram);
    }
    // Join the cgroups first, so everything started from here on is limited.
    let me = std::process::id().to_string();
    for procs in &launch.cgroup_procs {
        std::fs::write(procs, &me).map_err(io(format!("joining cgroup {}", procs.display())))?;
    }
    let netns_path = Path::new(crate::kernel::netns::NETNS_DIR).join(&launch.netns);
    let netns = File::open(&netns_path).map_err(io(format!("opening {}", netns_path.display())))?;
    setns(&netns, CloneFlags::CLONE_NEWNET).map_err(sys(format!("entering network namespace {}", launch.netns)))?;
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWPID)
        .map_err(sys("unsharing mount, UTS and PID namespaces"))?;
    // Private propagation: the /proc mounted below must not show up in the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("making mounts private"))?;
    nix::unistd::sethostname(&launch.hostname).map_err(sys("setting the host name"))?;
    let mut child = Command::new(self_exe)
        .arg("exec-init")
        .arg("--")
        .args(&launch.argv)
        .current_dir(&launch.workdir)
        .spawn()
        .map_err(io(format!("starting {}", launch.argv[0])))?;
    let mut pid_file = File::create(&launch.pid_file).map_err(io(format!("writing {}", launch.pid_file.display())))?;
    writeln!(pid_file, "{}", child.id()).map_err(io("writing the pid file"))?;
    drop(pid_file);
    let status = child.wait().map_err(io("waiting for the node"))?;
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// PID 1 of a node's PID namespace: mounts that namespace's `/proc`, then becomes the node
/// program. Returns only on failure.
pub fn run_init(argv: &[String]) -> SandboxError {
    let Some((program, args)) = argv.split_first() else {
        return SandboxError::NoProgram;
    };
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(source) = mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>) {
        return SandboxError::Sys {
            step: "mounting /proc for the node's PID namespace".to_owned(),
            source,
        };
    }
    let error = Command::new(program).args(args).exec();
    SandboxError::Io {
        step: format!("executing {program}"),
        source: error,
    }
}
