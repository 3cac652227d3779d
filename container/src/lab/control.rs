//! The namespace lab: `up`, `partition`, `heal`, `kill`, `start`, `status` and `down`.
//!
//! `up` builds, for a lab named L with nodes 1..=k:
//! - a hub namespace `ringkv-L-hub` holding the bridge `br0`;
//! - per node a namespace `ringkv-L-n<i>` whose `eth0` (10.77.0.i/24) is a veth pair
//!   with the hub port `n<i>` on `br0`, and whose `client0` (10.78.i.2/30) is a veth pair
//!   with `to-n<i>` (10.78.i.1/30) in the client namespace `ringkv-L-client`;
//! - per node a cgroup `ringkv-lab/L/n<i>` with the memory and CPU limits;
//! - per node a shim (`kernel/sandbox.rs`) that starts the node in fresh PID, mount and
//!   UTS namespaces inside all of the above.
//!
//! A partition moves hub ports onto further bridges (`br1`, ...); healing moves them back.
//! Every input is checked before anything is created, and a failure half-way through
//! removes whatever was built (`down`), so a failed `up` leaves nothing behind. `down`
//! works from names alone and may run any number of times. Start reading at [`Lab::up`].

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::kernel::cgroup::{self, CgroupError, CgroupVersion, Limits, NodeGroup};
use crate::kernel::client_netns::{block_on_in_netns, NetnsEnterError};
use crate::kernel::netns::{self, IpError};
use crate::lab::lab_state::{self, LabState, StateError};
use crate::lab::layout::{self, LabName, LabNameError, NODES_MAX};
use crate::lab::node_program::{NodeProgram, NotReady};
use crate::lab::partition::{Partition, PartitionError};

/// How long `down` waits for killed processes to exit and cgroups to empty.
pub(crate) const DOWN_WAIT: Duration = Duration::from_secs(10);
/// How long `kill` waits for a node to exit.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long `start` waits for a node's shim to report the node's pid.
const SPAWN_WAIT: Duration = Duration::from_secs(10);
/// The longest a caller may wait for a cluster to become ready.
pub(crate) const READY_TIMEOUT_MAX: Duration = Duration::from_secs(300);
/// The most bytes of a node log quoted in an error.
const LOG_TAIL_BYTES: usize = 2000;

/// What `up` builds.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// The lab's name (prefix of everything it creates).
    pub name: LabName,
    /// How many nodes, 1..=NODES_MAX.
    pub nodes: u8,
    /// Per-node memory and CPU limits.
    pub limits: Limits,
    /// What each node runs.
    pub program: NodeProgram,
    /// Where labs keep their state and node data.
    pub state_root: PathBuf,
    /// The `ringkv-lab` binary (its hidden `exec-node` step starts the nodes).
    pub lab_exe: PathBuf,
    /// How long to wait for the cluster to serve requests.
    pub ready_timeout: Duration,
}

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Namespaces and cgroups need root.
    #[error("the lab needs root (it creates network namespaces and cgroups); run it as root")]
    NotRoot,
    /// An `ip` command failed (or `ip` is missing).
    #[error(transparent)]
    Ip(#[from] IpError),
    /// A limit could not be applied.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The state file.
    #[error(transparent)]
    State(#[from] StateError),
    /// A partition that does not fit the lab.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// A bad lab name.
    #[error(transparent)]
    Name(#[from] LabNameError),
    /// The client namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsEnterError),
    /// The cluster did not become ready.
    #[error("{error}\n{log}")]
    NotReady {
        /// What was awaited.
        error: NotReady,
        /// The end of a node log.
        log: String,
    },
    /// A lab of this name already exists.
    #[error("lab {name:?} already exists ({evidence}); run `ringkv lab down --name {name}` first")]
    Exists {
        /// The name.
        name: String,
        /// What was found.
        evidence: String,
    },
    /// Node count out of range.
    #[error("--nodes {nodes} is outside 1..={NODES_MAX}")]
    NodeCount {
        /// What was asked for.
        nodes: u8,
    },
    /// A node index out of range.
    #[error("node {index} does not exist: the lab has nodes 1..={nodes}")]
    NoSuchNode {
        /// The index given.
        index: u8,
        /// How many nodes the lab has.
        nodes: u8,
    },
    /// A binary the lab needs is missing.
    #[error("{what} not found at {path}")]
    MissingBinary {
        /// Which program.
        what: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A node's shim or program exited early.
    #[error("node {index} did not start: {reason}\n--- {log_path} (end) ---\n{log}")]
    NodeFailed {
        /// The node.
        index: u8,
        /// What was seen.
        reason: String,
        /// Its log file.
        log_path: String,
        /// The end of its log.
        log: String,
    },
    /// A node is already running (`start`) or already stopped (`kill`).
    #[error("node {index} is {state}")]
    NodeState {
        /// The node.
        index: u8,
        /// `already running` or `not running`.
        state: &'static str,
    },
    /// A file operation.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// `down` left something behind.
    #[error("lab {name:?} was not fully removed: {left}")]
    Leftovers {
        /// The name.
        name: String,
        /// What is still there.
        left: String,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// Checks what every lab command needs: root, and `ip` on PATH.
pub(crate) fn preflight() -> Result<(), LabError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(LabError::NotRoot);
    }
    if netns::find_ip().is_none() {
        return Err(LabError::Ip(IpError::Missing));
    }
    Ok(())
}

/// One node as `status` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeStatus {
    /// 1-based index.
    pub index: u8,
    /// Its network namespace.
    pub netns: String,
    /// Where clients in the client namespace reach it.
    pub endpoint: SocketAddr,
    /// The node process's host pid, when it runs.
    pub pid: Option<i32>,
    /// Which side of the partition (0 = main bridge).
    pub side: usize,
    /// Memory charged to its cgroup.
    pub memory_bytes: Option<u64>,
}

/// A lab that is up.
pub struct Lab {
    root: PathBuf,
    lab_exe: PathBuf,
    state: LabState,
    // Shims spawned by this process, reaped when they exit so they never linger as zombies.
    shims: Vec<Child>,
}

impl Lab {
    /// Builds and starts a lab; on any failure removes what was built and returns the error.
    pub fn up(config: LabConfig) -> Result<Lab, LabError> {
        preflight()?;
        if config.nodes == 0 || config.nodes > NODES_MAX {
            return Err(LabError::NodeCount { nodes: config.nodes });
        }
        cgroup::check_limits(&config.limits)?;
        for (what, path) in [
            (format!("{} binary", config.program.kind()), config.program.binary()),
            ("ringkv-lab binary".to_owned(), config.lab_exe.as_path()),
        ] {
            if !path.is_file() {
                return Err(LabError::MissingBinary {
                    what,
                    path: path.to_owned(),
                });
            }
        }
        let has_limits = config.limits.memory_bytes.is_some() || config.limits.cpus.is_some();
        let cgroup_version = if has_limits { Some(cgroup::detect()?) } else { None };
        let name = config.name.as_str();
        let existing = netns::list_netns(&config.name.netns_prefix());
        if !existing.is_empty() {
            return Err(LabError::Exists {
                name: name.to_owned(),
                evidence: format!("namespaces {}", existing.join(", ")),
            });
        }
        let lab_dir = lab_state::lab_dir(&config.state_root, name);
        if lab_dir.exists() {
            return Err(LabError::Exists {
                name: name.to_owned(),
                evidence: format!("directory {}", lab_dir.display()),
            });
        }
        match Lab::build(&config, cgroup_version) {
            Ok(lab) => Ok(lab),
            Err(error) => {
                // Leave nothing behind; the original error is what the caller needs.
                if let Err(cleanup) = down(&config.state_root, &config.name) {
                    eprintln!("ringkv-lab: cleaning up after a failed `up` also failed: {cleanup}");
                }
                Err(error)
            }
        }
    }

    fn build(config: &LabConfig, cgroup_version: Option<CgroupVersion>) -> Result<Lab, LabError> {
        let name = &config.name;
        let root = &config.state_root;
        std::fs::create_dir_all(lab_state::lab_dir(root, name.as_str())).map_err(io_error(format!(
            "creating {}",
            lab_state::lab_dir(root, name.as_str()).display()
        )))?;
        let hub = name.hub_netns();
        let client = name.client_netns();
        netns::add_netns(&hub)?;
        netns::ensure_bridge(&hub, layout::BRIDGE_MAIN)?;
        netns::add_netns(&client)?;
        let mut groups = Vec::new();
        for index in 1..=config.nodes {
            let node = name.node_netns(index);
            netns::add_netns(&node)?;
            netns::add_veth(&hub, &layout::hub_port(index), &node, layout::NODE_BRIDGE_IF)?;
            netns::attach(&hub, &layout::hub_port(index), layout::BRIDGE_MAIN)?;
            netns::address_up(
                &node,
                layout::NODE_BRIDGE_IF,
                &format!("{}/24", layout::bridge_ip(index)),
            )?;
            netns::add_veth(&client, &layout::client_port(index), &node, layout::NODE_CLIENT_IF)?;
            netns::address_up(
                &client,
                &layout::client_port(index),
                &format!("{}/30", layout::client_link_ip(index)),
            )?;
            netns::address_up(
                &node,
                layout::NODE_CLIENT_IF,
                &format!("{}/30", layout::node_link_ip(index)),
            )?;
            let group = match cgroup_version {
                Some(version) => cgroup::create(version, &name.cgroup_dir(), &format!("n{index}"), &config.limits)?,
                None => NodeGroup { dirs: Vec::new() },
            };
            groups.push(group);
            let data = lab_state::node_dir(root, name.as_str(), index).join("data");
            std::fs::create_dir_all(&data).map_err(io_error(format!("creating {}", data.display())))?;
        }
        let state = LabState {
            name: name.as_str().to_owned(),
            nodes: config.nodes,
            program: config.program.clone(),
            limits: config.limits,
            cgroup_version,
            groups,
            partition: None,
        };
        lab_state::save(root, &state)?;
        let mut lab = Lab {
            root: root.clone(),
            lab_exe: config.lab_exe.clone(),
            state,
            shims: Vec::new(),
        };
        for index in 1..=config.nodes {
            lab.spawn(index)?;
        }
        lab.wait_ready(config.ready_timeout)?;
        Ok(lab)
    }

    /// Opens a lab that is up, from its state file.
    pub fn open(state_root: &Path, name: &LabName, lab_exe: &Path) -> Result<Lab, LabError> {
        preflight()?;
        let state = lab_state::load(state_root, name.as_str())?;
        Ok(Lab {
            root: state_root.to_owned(),
            lab_exe: lab_exe.to_owned(),
            state,
            shims: Vec::new(),
        })
    }

    /// The recorded state.
    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// The lab's name.
    pub(crate) fn name(&self) -> LabName {
        // The state was written from a valid LabName.
        LabName::new(&self.state.name).unwrap_or_else(|_| unreachable!("state holds a checked name"))
    }

    /// The namespace clients run in.
    pub fn client_netns(&self) -> String {
        self.name().client_netns()
    }

    /// Where a client reaches node `index`.
    pub(crate) fn endpoint(&self, index: u8) -> SocketAddr {
        layout::node_client_address(index, self.state.program.client_port())
    }

    fn check_index(&self, index: u8) -> Result<(), LabError> {
        if index == 0 || index > self.state.nodes {
            return Err(LabError::NoSuchNode {
                index,
                nodes: self.state.nodes,
            });
        }
        Ok(())
    }

    fn log_path(&self, index: u8) -> PathBuf {
        lab_state::node_dir(&self.root, &self.state.name, index).join("node.log")
    }

    fn pid_path(&self, index: u8) -> PathBuf {
        lab_state::node_dir(&self.root, &self.state.name, index).join("pid")
    }

    /// The node's pid if it is running.
    pub(crate) fn node_pid(&self, index: u8) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_path(index))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_running(pid).then_some(pid)
    }

    fn reap(&mut self) {
        self.shims.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
    }

    fn spawn(&mut self, index: u8) -> Result<(), LabError> {
        self.reap();
        let dir = lab_state::node_dir(&self.root, &self.state.name, index);
        let pid_path = self.pid_path(index);
        let _ = std::fs::remove_file(&pid_path);
        let log_path = self.log_path(index);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(format!("opening {}", log_path.display())))?;
        let log_err = log.try_clone().map_err(io_error("duplicating the log file"))?;
        let argv = self.state.program.argv(index, self.state.nodes, &dir.join("data"));
        let mut command = Command::new(&self.lab_exe);
        command
            .arg("exec-node")
            .arg("--netns")
            .arg(self.name().node_netns(index))
            .arg("--hostname")
            .arg(layout::hostname(index))
            .arg("--pid-file")
            .arg(&pid_path)
            .arg("--workdir")
            .arg(&dir);
        for procs in self.state.groups[usize::from(index) - 1].procs_files() {
            command.arg("--cgroup-procs").arg(procs);
        }
        command
            .arg("--")
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C at the terminal that ran `up` must not kill
            // the cluster.
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(io_error(format!("starting the shim of node {index}")))?;
        let deadline = Instant::now() + SPAWN_WAIT;
        loop {
            if self.node_pid(index).is_some() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(self.node_failed(index, format!("its shim exited with {status}")));
            }
            if Instant::now() > deadline {
                return Err(self.node_failed(index, format!("no pid after {SPAWN_WAIT:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shims.push(child);
        Ok(())
    }

    fn node_failed(&self, index: u8, reason: String) -> LabError {
        let log_path = self.log_path(index);
        LabError::NodeFailed {
            index,
            reason,
            log_path: log_path.display().to_string(),
            log: log_tail(&log_path),
        }
    }

    /// Waits until every running node serves requests.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), LabError> {
        let timeout = timeout.min(READY_TIMEOUT_MAX);
        let up: Vec<u8> = (1..=self.state.nodes).filter(|&i| self.node_pid(i).is_some()).collect();
        let program = self.state.program.clone();
        let nodes = self.state.nodes;
        let first_up = up.first().copied();
        let result = block_on_in_netns(&self.client_netns(), move || async move {
            program.wait_ready(&up, nodes, timeout).await
        })?;
        result.map_err(|error| LabError::NotReady {
            log: first_up
                .map(|i| format!("--- node {i} log (end) ---\n{}", log_tail(&self.log_path(i))))
                .unwrap_or_default(),
            error,
        })
    }

    /// Cuts the bridge: each group of `partition` onto its own bridge. Replaces any
    /// earlier partition.
    pub fn partition(&mut self, partition: Partition) -> Result<(), LabError> {
        // Re-check against this lab: the partition may have been made for another size.
        let partition = Partition::new(partition.groups().to_vec(), self.state.nodes)?;
        let hub = self.name().hub_netns();
        self.move_all_to_main()?;
        for (position, group) in partition.groups().iter().enumerate() {
            let bridge = format!("br{}", position + 1);
            netns::ensure_bridge(&hub, &bridge)?;
            for &index in group {
                netns::attach(&hub, &layout::hub_port(index), &bridge)?;
            }
        }
        self.state.partition = Some(partition);
        lab_state::save(&self.root, &self.state)?;
        Ok(())
    }

    /// Puts every node back on the main bridge.
    pub fn heal(&mut self) -> Result<(), LabError> {
        self.move_all_to_main()?;
        self.state.partition = None;
        lab_state::save(&self.root, &self.state)?;
        Ok(())
    }

    fn move_all_to_main(&self) -> Result<(), LabError> {
        let hub = self.name().hub_netns();
        for index in 1..=self.state.nodes {
            netns::attach(&hub, &layout::hub_port(index), layout::BRIDGE_MAIN)?;
        }
        for bridge in netns::bridges(&hub) {
            if bridge != layout::BRIDGE_MAIN {
                netns::delete_link(&hub, &bridge)?;
            }
        }
        Ok(())
    }

    /// SIGKILLs node `index` (a crash: no clean shutdown) and waits for it to exit.
    pub fn kill(&mut self, index: u8) -> Result<(), LabError> {
        self.check_index(index)?;
        let Some(pid) = self.node_pid(index) else {
            return Err(LabError::NodeState {
                index,
                state: "not running",
            });
        };
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let deadline = Instant::now() + KILL_WAIT;
        while is_running(pid) {
            if Instant::now() > deadline {
                return Err(LabError::Leftovers {
                    name: self.state.name.clone(),
                    left: format!("node {index} (pid {pid}) still runs {KILL_WAIT:?} after SIGKILL"),
                });
            }
            self.reap();
            std::thread::sleep(Duration::from_millis(20));
        }
        self.reap();
        Ok(())
    }

    /// Starts a killed node again with its data (does not wait for it to be ready).
    pub fn start(&mut self, index: u8) -> Result<(), LabError> {
        self.check_index(index)?;
        if self.node_pid(index).is_some() {
            return Err(LabError::NodeState {
                index,
                state: "already running",
            });
        }
        self.spawn(index)
    }

    /// Every node's state.
    pub fn status(&self) -> Vec<NodeStatus> {
        (1..=self.state.nodes)
            .map(|index| NodeStatus {
                index,
                netns: self.name().node_netns(index),
                endpoint: self.endpoint(index),
                pid: self.node_pid(index),
                side: self.state.partition.as_ref().map_or(0, |p| p.side_of(index)),
                memory_bytes: cgroup::memory_usage_bytes(&self.state.groups[usize::from(index) - 1]),
            })
            .collect()
    }
}

/// Whether `pid` is a live process (not a zombie).
pub(crate) fn is_running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the field after the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(LOG_TAIL_BYTES);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// What `down` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DownReport {
    /// Processes killed.
    pub processes: usize,
    /// Network namespaces deleted.
    pub namespaces: Vec<String>,
    /// Cgroup trees removed.
    pub cgroups: Vec<PathBuf>,
    /// Whether the state directory was removed.
    pub state_dir: bool,
}

impl DownReport {
    /// Whether there was anything to remove.
    pub fn is_empty(&self) -> bool {
        self.processes == 0 && self.namespaces.is_empty() && self.cgroups.is_empty() && !self.state_dir
    }
}

/// Removes everything lab `name` created, found by name (the state file is not needed):
/// kills every process in its namespaces and cgroups, deletes the namespaces (which takes
/// the veth pairs and bridges with them), removes the cgroups and the state directory.
/// Safe to run twice, or after a crash.
pub fn down(state_root: &Path, name: &LabName) -> Result<DownReport, LabError> {
    preflight()?;
    let mut report = DownReport::default();
    let namespaces = netns::list_netns(&name.netns_prefix());
    let cgroup_dirs: Vec<PathBuf> = [CgroupVersion::V2, CgroupVersion::V1]
        .into_iter()
        .flat_map(|v| cgroup::lab_dirs(v, &name.cgroup_dir()))
        .filter(|d| d.is_dir())
        .collect();
    let mut pids: Vec<i32> = namespaces.iter().flat_map(|ns| netns::netns_pids(ns)).collect();
    for dir in &cgroup_dirs {
        collect_cgroup_pids(dir, &mut pids);
    }
    pids.sort_unstable();
    pids.dedup();
    let me = std::process::id() as i32;
    pids.retain(|&p| p != me);
    for &pid in &pids {
        if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            report.processes += 1;
        }
    }
    let deadline = Instant::now() + DOWN_WAIT;
    while pids.iter().any(|&p| is_running(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut left = Vec::new();
    for ns in &namespaces {
        match netns::delete_netns(ns) {
            Ok(()) => report.namespaces.push(ns.clone()),
            Err(e) => left.push(format!("namespace {ns} ({e})")),
        }
    }
    for dir in &cgroup_dirs {
        match cgroup::remove_tree(dir, DOWN_WAIT) {
            Ok(()) => report.cgroups.push(dir.clone()),
            Err(e) => left.push(e.to_string()),
        }
        // The shared `ringkv-lab` parent goes too once no lab uses it; busy is fine.
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    let dir = lab_state::lab_dir(state_root, name.as_str());
    if dir.exists() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => report.state_dir = true,
            Err(e) => left.push(format!("{} ({e})", dir.display())),
        }
    }
    if left.is_empty() {
        Ok(report)
    } else {
        Err(LabError::Leftovers {
            name: name.as_str().to_owned(),
            left: left.join("; "),
        })
    }
}

fn collect_cgroup_pids(dir: &Path, pids: &mut Vec<i32>) {
    pids.extend(cgroup::pids(dir));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                collect_cgroup_pids(&entry.path(), pids);
            }
        }
    }
}
