//! Peer server processes (redis-server, etcd) started by the benchmark on loopback.
//!
//! [`ChildGuard`] owns a started process and kills it when dropped, so a peer never
//! outlives the run, whether it ends normally, with an error or by Ctrl-C (which drops
//! the run's future). This module does not know any peer's flags; `target` does.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

/// How long a peer may take to answer its first request after it was started.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A child process that is killed (and reaped) when this guard is dropped.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl ChildGuard {
    /// Starts `command` with stdout and stderr going to `log_path`.
    pub fn spawn(name: &str, mut command: Command, log_path: &Path) -> anyhow::Result<ChildGuard> {
        let log = std::fs::File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(ChildGuard {
            name: name.to_owned(),
            child,
            log_path: log_path.to_owned(),
        })
    }

    /// An error if the process has exited, with the end of its log.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("{} exited with {status}; its log ends:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// The last lines of the process's log, for error messages.
    pub fn log_tail(&self) -> String {
        const TAIL_LINES: usize = 20;
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SIGKILL: the peer's data lives in a temporary directory removed next, so there is
        // nothing to flush, and a killed process cannot hang the benchmark on its way out.
        if let Err(error) = self.child.kill() {
            if error.kind() != std::io::ErrorKind::InvalidInput {
                eprintln!("ringkv-bench: could not kill {}: {error}", self.name);
            }
        }
        let _ = self.child.wait();
    }
}

/// Finds `program` on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback_address() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?)
}
