//! Running client code inside the lab's `client` network namespace.
//!
//! The lab's addresses exist only in namespaces it created, so whoever talks to the nodes
//! (the experiment driver, readiness checks, the lab test) must be in the client namespace.
//! Network namespaces are per thread: [`run_in_netns`] starts a fresh thread, moves it into
//! the namespace with `setns`, and runs the closure there. A Tokio runtime built inside the
//! closure spawns its workers from that thread, so they inherit the namespace too; the
//! caller's own threads stay where they were.

use std::fs::File;
use std::path::Path;

use nix::sched::{setns, CloneFlags};

/// Entering the namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsEnterError {
    /// The namespace file could not be opened (the lab is not up?).
    #[error("opening network namespace {name}: {source} (is the lab up?)")]
    Open {
        /// The namespace name.
        name: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// `setns` failed.
    #[error("entering network namespace {name}: {source}")]
    Setns {
        /// The namespace name.
        name: String,
        /// The errno.
        source: nix::Error,
    },
    /// The thread could not start or panicked.
    #[error("the thread in network namespace {name} {what}")]
    Thread {
        /// The namespace name.
        name: String,
        /// What happened.
        what: &'static str,
    },
}

/// Runs `work` on a new thread inside network namespace `name` and returns its result.
pub(crate) fn run_in_netns<T, F>(name: &str, work: F) -> Result<T, NetnsEnterError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = Path::new(crate::kernel::netns::NETNS_DIR).join(name);
    let file = File::open(&path).map_err(|source| NetnsEnterError::Open {
        name: name.to_owned(),
        source,
    })?;
    let owned = name.to_owned();
    let handle = std::thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || -> Result<T, NetnsEnterError> {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsEnterError::Setns { name: owned, source })?;
            Ok(work())
        })
        .map_err(|_| NetnsEnterError::Thread {
            name: name.to_owned(),
            what: "could not be started",
        })?;
    handle.join().map_err(|_| NetnsEnterError::Thread {
        name: name.to_owned(),
        what: "panicked",
    })?
}

/// Runs the future made by `make` on a multi-threaded Tokio runtime inside network
/// namespace `name`.
pub fn block_on_in_netns<T, Fut, F>(name: &str, make: F) -> Result<T, NetnsEnterError>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T>,
    F: FnOnce() -> Fut + Send + 'static,
{
    let owned = name.to_owned();
    run_in_netns(name, move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|_| NetnsEnterError::Thread {
                name: owned,
                what: "could not build a Tokio runtime",
            })?;
        Ok(runtime.block_on(make()))
    })?
}
