//! The state file of a running lab: what `up` built, so that `status`, `partition`,
//! `kill`, `start` and `down` work from separate invocations.
//!
//! It lives at `<state-root>/<lab>/state.json` (default state root `/var/lib/ringkv-lab`)
//! next to each node's directory (`n<i>/data`, `n<i>/node.log`, `n<i>/pid`). It is a
//! convenience, never the only record: `down` also finds the lab's kernel objects by their
//! name prefix, so a lost or corrupt state file never strands a namespace or a cgroup.

use std::path::{Path, PathBuf};

use crate::kernel::cgroup::{CgroupVersion, Limits, NodeGroup};
use crate::lab::node_program::NodeProgram;
use crate::lab::partition::Partition;

/// The default directory under which each lab keeps its state.
pub const STATE_ROOT_DEFAULT: &str = "/var/lib/ringkv-lab";
const STATE_FILE: &str = "state.json";
/// The largest state file read back.
const STATE_BYTES_MAX: u64 = 1 << 20;

/// Everything `up` recorded about a lab.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabState {
    /// The lab's name.
    pub name: String,
    /// How many nodes it has.
    pub nodes: u8,
    /// What each node runs.
    pub program: NodeProgram,
    /// The limits every node runs under.
    pub(crate) limits: Limits,
    /// The cgroup interface used, when there are limits.
    pub(crate) cgroup_version: Option<CgroupVersion>,
    /// Each node's cgroup(s), index 0 = node 1.
    pub(crate) groups: Vec<NodeGroup>,
    /// The current partition, if any.
    pub partition: Option<Partition>,
}

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No state file: the lab is not up (or was started with another --state-root).
    #[error("lab {name:?} is not up: no {path} (see `ringkv lab status`, or `ringkv lab up`)")]
    NotUp {
        /// The lab name.
        name: String,
        /// The file looked for.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("state file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// The directory of lab `name` under `root`.
pub(crate) fn lab_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// Node `index`'s directory.
pub(crate) fn node_dir(root: &Path, name: &str, index: u8) -> PathBuf {
    lab_dir(root, name).join(format!("n{index}"))
}

/// Loads lab `name`'s state.
pub(crate) fn load(root: &Path, name: &str) -> Result<LabState, StateError> {
    let path = lab_dir(root, name).join(STATE_FILE);
    let file_error = |message: String| StateError::File {
        path: path.clone(),
        message,
    };
    let metadata = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::NotUp {
                name: name.to_owned(),
                path,
            })
        }
        Err(e) => return Err(file_error(e.to_string())),
    };
    if metadata.len() > STATE_BYTES_MAX {
        return Err(file_error(format!(
            "{} bytes, the limit is {STATE_BYTES_MAX}",
            metadata.len()
        )));
    }
    let text = std::fs::read(&path).map_err(|e| file_error(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| file_error(format!("not a lab state: {e}")))
}

/// Writes lab state atomically (write a temporary file, then rename).
pub(crate) fn save(root: &Path, state: &LabState) -> Result<(), StateError> {
    let dir = lab_dir(root, &state.name);
    let path = dir.join(STATE_FILE);
    let file_error = |message: String| StateError::File {
        path: path.clone(),
        message,
    };
    let text = serde_json::to_vec_pretty(state).map_err(|e| file_error(e.to_string()))?;
    let temporary = dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(&temporary, text).map_err(|e| file_error(e.to_string()))?;
    std::fs::rename(&temporary, &path).map_err(|e| file_error(e.to_string()))
}
