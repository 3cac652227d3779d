//! Memory and CPU limits for lab nodes through cgroups, v2 or v1, whichever the host has.
//!
//! v2 (a unified hierarchy, `/sys/fs/cgroup/cgroup.controllers` exists): one group per node
//! at `/sys/fs/cgroup/ringkv-lab/<lab>/<node>` with `memory.max` and `cpu.max`; the
//! controllers are enabled in each parent's `cgroup.subtree_control`.
//! v1 (one hierarchy per controller): the same relative path under `/sys/fs/cgroup/memory`
//! (`memory.limit_in_bytes`) and `/sys/fs/cgroup/cpu` (`cpu.cfs_quota_us`).
//!
//! Every limit is read back after it is written; a host that silently ignores or rounds a
//! limit away is an error before any node starts. A node's process joins its groups itself
//! (see `sandbox.rs`) by writing its pid to the `cgroup.procs` files listed here.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The smallest memory limit a node may get: below it a node cannot start.
pub(crate) const MEMORY_BYTES_MIN: u64 = 32 << 20;
/// The CFS period the lab uses; quotas are fractions of it.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;
/// The smallest CPU share a node may get (the kernel's minimum quota is 1 ms).
pub(crate) const CPUS_MIN: f64 = 0.01;
const ROOT: &str = "/sys/fs/cgroup";

/// The limits one node runs under.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit in CPUs (0.5 = half of one core).
    pub cpus: Option<f64>,
}

/// Which cgroup interface the host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum CgroupVersion {
    /// The unified hierarchy.
    V2,
    /// One hierarchy per controller.
    V1,
}

/// A limit that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Neither a v2 hierarchy nor v1 memory and cpu hierarchies are mounted.
    #[error("no usable cgroup hierarchy: neither {ROOT}/cgroup.controllers (v2) nor {ROOT}/memory and {ROOT}/cpu (v1) exist")]
    NoHierarchy,
    /// A controller the limits need is not available.
    #[error("cgroup controller {controller} is not available on this host ({detail})")]
    NoController {
        /// `memory` or `cpu`.
        controller: &'static str,
        /// What was looked at.
        detail: String,
    },
    /// A requested limit is outside what the lab or the host allows.
    #[error("{0}")]
    OutOfRange(String),
    /// Writing or reading a cgroup file failed.
    #[error("cgroup file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The kernel accepted a limit but reads back something else.
    #[error("cgroup file {path} reads back {got:?} after writing {wrote:?}: the host did not apply the limit")]
    NotApplied {
        /// The file.
        path: PathBuf,
        /// What was written.
        wrote: String,
        /// What was read back.
        got: String,
    },
    /// A group still had processes after the deadline.
    #[error("cgroup {path} still has processes after {waited:?}")]
    Busy {
        /// The group directory.
        path: PathBuf,
        /// How long `remove` waited.
        waited: Duration,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Detects the host's cgroup interface.
pub(crate) fn detect() -> Result<CgroupVersion, CgroupError> {
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        Ok(CgroupVersion::V2)
    } else if Path::new(ROOT).join("memory").is_dir() || Path::new(ROOT).join("cpu").is_dir() {
        Ok(CgroupVersion::V1)
    } else {
        Err(CgroupError::NoHierarchy)
    }
}

/// Checks limits against the lab's bounds and the host's resources, touching nothing.
pub(crate) fn check_limits(limits: &Limits) -> Result<(), CgroupError> {
    if let Some(bytes) = limits.memory_bytes {
        if bytes < MEMORY_BYTES_MIN {
            return Err(CgroupError::OutOfRange(format!(
                "memory limit {bytes} bytes is below the lab's minimum of {MEMORY_BYTES_MIN} (32 MiB)"
            )));
        }
        if let Some(total) = host_memory_bytes() {
            if bytes > total {
                return Err(CgroupError::OutOfRange(format!(
                    "memory limit {bytes} bytes is more than the host's {total} bytes"
                )));
            }
        }
    }
    if let Some(cpus) = limits.cpus {
        let host = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        if !(cpus.is_finite() && cpus >= CPUS_MIN && cpus <= host) {
            return Err(CgroupError::OutOfRange(format!(
                "cpu limit {cpus} is outside {CPUS_MIN}..={host} (this host has {host} CPUs)"
            )));
        }
    }
    Ok(())
}

fn host_memory_bytes() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// One node's cgroup(s): the directories created and the `cgroup.procs` files to join.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeGroup {
    /// The group directories (one for v2, one per controller for v1).
    pub(crate) dirs: Vec<PathBuf>,
}

impl NodeGroup {
    /// The files a process writes its pid to in order to join the group(s).
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }
}

/// The hierarchy roots a lab's groups live under (for `down` to sweep).
pub(crate) fn lab_dirs(version: CgroupVersion, lab_dir: &str) -> Vec<PathBuf> {
    match version {
        CgroupVersion::V2 => vec![Path::new(ROOT).join(lab_dir)],
        CgroupVersion::V1 => ["memory", "cpu"]
            .iter()
            .map(|c| Path::new(ROOT).join(c).join(lab_dir))
            .collect(),
    }
}

/// Creates node `node`'s group(s) under `lab_dir` with `limits`, and verifies them.
pub(crate) fn create(
    version: CgroupVersion,
    lab_dir: &str,
    node: &str,
    limits: &Limits,
) -> Result<NodeGroup, CgroupError> {
    check_limits(limits)?;
    match version {
        CgroupVersion::V2 => create_v2(lab_dir, node, limits),
        CgroupVersion::V1 => create_v1(lab_dir, node, limits),
    }
}

fn create_v2(lab_dir: &str, node: &str, limits: &Limits) -> Result<NodeGroup, CgroupError> {
    let root = Path::new(ROOT);
    let controllers =
        fs::read_to_string(root.join("cgroup.controllers")).map_err(io(&root.join("cgroup.controllers")))?;
    let mut wanted = Vec::new();
    if limits.memory_bytes.is_some() {
        wanted.push("memory");
    }
    if limits.cpus.is_some() {
        wanted.push("cpu");
    }
    for controller in &wanted {
        if !controllers.split_whitespace().any(|c| c == *controller) {
            return Err(CgroupError::NoController {
                controller,
                detail: format!("{}/cgroup.controllers lists {:?}", ROOT, controllers.trim()),
            });
        }
    }
    // Enable the controllers down the path: root → ringkv-lab → <lab>.
    let mut dir = root.to_path_buf();
    let node_dir = root.join(lab_dir).join(node);
    fs::create_dir_all(&node_dir).map_err(io(&node_dir))?;
    for part in Path::new(lab_dir).components() {
        let control = dir.join("cgroup.subtree_control");
        for controller in &wanted {
            let current = fs::read_to_string(&control).map_err(io(&control))?;
            if !current.split_whitespace().any(|c| c == *controller) {
                fs::write(&control, format!("+{controller}")).map_err(io(&control))?;
            }
        }
        dir = dir.join(part);
    }
    let control = dir.join("cgroup.subtree_control");
    for controller in &wanted {
        fs::write(&control, format!("+{controller}")).map_err(io(&control))?;
    }
    if let Some(bytes) = limits.memory_bytes {
        write_verified(&node_dir.join("memory.max"), &bytes.to_string(), |got| {
            got.trim()
                .parse::<u64>()
                .ok()
                .map(|g| g == page_floor(bytes))
                .unwrap_or(false)
        })?;
    }
    if let Some(cpus) = limits.cpus {
        let quota = cpu_quota_us(cpus);
        let text = format!("{quota} {CPU_PERIOD_US}");
        write_verified(&node_dir.join("cpu.max"), &text, |got| got.trim() == text)?;
    }
    Ok(NodeGroup { dirs: vec![node_dir] })
}

fn create_v1(lab_dir: &str, node: &str, limits: &Limits) -> Result<NodeGroup, CgroupError> {
    let mut dirs = Vec::new();
    if let Some(bytes) = limits.memory_bytes {
        let dir = v1_group("memory", "memory.limit_in_bytes", lab_dir, node)?;
        write_verified(&dir.join("memory.limit_in_bytes"), &bytes.to_string(), |got| {
            got.trim()
                .parse::<u64>()
                .ok()
                .map(|g| g == page_floor(bytes))
                .unwrap_or(false)
        })?;
        dirs.push(dir);
    }
    if let Some(cpus) = limits.cpus {
        let dir = v1_group("cpu", "cpu.cfs_quota_us", lab_dir, node)?;
        let period = CPU_PERIOD_US.to_string();
        write_verified(&dir.join("cpu.cfs_period_us"), &period, |got| got.trim() == period)?;
        let quota = cpu_quota_us(cpus).to_string();
        write_verified(&dir.join("cpu.cfs_quota_us"), &quota, |got| got.trim() == quota)?;
        dirs.push(dir);
    }
    Ok(NodeGroup { dirs })
}

/// Creates the node's group under a v1 controller's hierarchy, after checking the
/// controller is mounted (it has `probe_file`).
fn v1_group(controller: &'static str, probe_file: &str, lab_dir: &str, node: &str) -> Result<PathBuf, CgroupError> {
    let hierarchy = Path::new(ROOT).join(controller);
    if !hierarchy.join(probe_file).exists() {
        return Err(CgroupError::NoController {
            controller,
            detail: format!("{} has no {probe_file}", hierarchy.display()),
        });
    }
    let dir = hierarchy.join(lab_dir).join(node);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

fn cpu_quota_us(cpus: f64) -> u64 {
    // check_limits bounds cpus to CPUS_MIN..=host CPUs, so this is at least 1000 µs.
    (cpus * CPU_PERIOD_US as f64).round() as u64
}

fn page_floor(bytes: u64) -> u64 {
    bytes / 4096 * 4096
}

fn write_verified(path: &Path, value: &str, accept: impl Fn(&str) -> bool) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io(path))?;
    let got = fs::read_to_string(path).map_err(io(path))?;
    if accept(&got) {
        Ok(())
    } else {
        Err(CgroupError::NotApplied {
            path: path.to_owned(),
            wrote: value.to_owned(),
            got: got.trim().to_owned(),
        })
    }
}

/// The pids in a group directory.
pub(crate) fn pids(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Memory in use by a group, in bytes, if the host reports it.
pub(crate) fn memory_usage_bytes(group: &NodeGroup) -> Option<u64> {
    group.dirs.iter().find_map(|dir| {
        ["memory.current", "memory.usage_in_bytes"]
            .iter()
            .find_map(|f| fs::read_to_string(dir.join(f)).ok())
            .and_then(|t| t.trim().parse().ok())
    })
}

/// Removes a lab's group tree (children first), waiting up to `wait` for processes to
/// leave. A missing tree is not an error.
pub(crate) fn remove_tree(dir: &Path, wait: Duration) -> Result<(), CgroupError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let children: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    for child in children {
        remove_tree(&child, wait)?;
    }
    // rmdir of a cgroup fails with EBUSY while killed processes are still exiting.
    let deadline = Instant::now() + wait;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => {
                return Err(CgroupError::Busy {
                    path: dir.to_owned(),
                    waited: wait,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        let check = |memory_bytes, cpus, ok: bool| {
            let limits = Limits { memory_bytes, cpus };
            assert_eq!(check_limits(&limits).is_ok(), ok, "{limits:?}");
        };
        check(Some(256 << 20), Some(0.5), true);
        check(None, None, true);
        check(Some(1 << 20), None, false);
        check(Some(u64::MAX), None, false);
        check(None, Some(0.0), false);
        check(None, Some(f64::NAN), false);
        check(None, Some(10_000.0), false);
        assert_eq!(cpu_quota_us(0.5), 50_000);
    }
}

/// Parses a memory size: bytes, or a number with K, M or G (binary units, optional
/// `i`/`B`), e.g. `256M`, `1G`, `512MiB`.
pub fn parse_memory(text: &str) -> Result<u64, CgroupError> {
    let bad = || CgroupError::OutOfRange(format!("memory {text:?} is not a size like 256M, 1G or 268435456"));
    let trimmed = text.trim();
    let trimmed = trimmed.strip_suffix('B').unwrap_or(trimmed);
    let trimmed = trimmed.strip_suffix('i').unwrap_or(trimmed);
    let (number, shift) = match trimmed.char_indices().last() {
        Some((i, 'K' | 'k')) => (&trimmed[..i], 10),
        Some((i, 'M' | 'm')) => (&trimmed[..i], 20),
        Some((i, 'G' | 'g')) => (&trimmed[..i], 30),
        _ => (trimmed, 0),
    };
    let value: u64 = number.trim().parse().map_err(|_| bad())?;
    value.checked_mul(1u64 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod parse_tests {
    use super::parse_memory;

    #[test]
    fn sizes() {
        assert_eq!(parse_memory("256M").ok(), Some(256 << 20));
        assert_eq!(parse_memory("1G").ok(), Some(1 << 30));
        assert_eq!(parse_memory("512MiB").ok(), Some(512 << 20));
        assert_eq!(parse_memory("4096").ok(), Some(4096));
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("99999999999G").is_err());
    }
}
