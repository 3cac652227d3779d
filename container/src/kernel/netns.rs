//! Network namespaces, veth pairs and bridges, through the `ip` command (iproute2).
//!
//! The lab needs root and `ip` and nothing else, so every network change is one `ip`
//! invocation; `ip -n NS` enters a named namespace (`/run/netns/NS`) for one command,
//! whatever namespace the caller is in. This module knows how to run `ip` and report its
//! failure; which objects the lab builds is `lab/control.rs`'s business.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Where `ip netns` keeps its named namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// An `ip` invocation that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum IpError {
    /// `ip` is not installed or not on PATH.
    #[error("the `ip` command (iproute2) was not found on PATH: install iproute2")]
    Missing,
    /// `ip` ran and failed.
    #[error("`ip {args}` failed: {stderr}")]
    Failed {
        /// The arguments, space-separated.
        args: String,
        /// What `ip` printed on stderr.
        stderr: String,
    },
    /// `ip` could not be started.
    #[error("running `ip {args}`: {source}")]
    Spawn {
        /// The arguments, space-separated.
        args: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// The path of `ip`, if it is on PATH.
pub fn find_ip() -> Option<PathBuf> {
    find_program("ip")
}

/// The path of `program` on PATH.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Runs `ip ARGS` and returns its stdout.
pub(crate) fn ip(args: &[&str]) -> Result<String, IpError> {
    let program = find_ip().ok_or(IpError::Missing)?;
    let joined = args.join(" ");
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| IpError::Spawn {
            args: joined.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(IpError::Failed {
            args: joined,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Runs `ip -n NS ARGS`.
pub(crate) fn ip_in(netns: &str, args: &[&str]) -> Result<String, IpError> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    ip(&full)
}

/// Creates a named network namespace with its loopback up.
pub(crate) fn add_netns(name: &str) -> Result<(), IpError> {
    ip(&["netns", "add", name])?;
    ip_in(name, &["link", "set", "lo", "up"])?;
    Ok(())
}

/// Deletes a named namespace; a missing one is not an error (so `down` can run twice).
pub(crate) fn delete_netns(name: &str) -> Result<(), IpError> {
    if !netns_exists(name) {
        return Ok(());
    }
    ip(&["netns", "delete", name]).map(|_| ())
}

/// Whether the named namespace exists.
pub(crate) fn netns_exists(name: &str) -> bool {
    PathBuf::from(NETNS_DIR).join(name).exists()
}

/// Named namespaces whose name starts with `prefix`, sorted.
pub fn list_netns(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Process ids living in the named namespace (`ip netns pids`).
pub(crate) fn netns_pids(name: &str) -> Vec<i32> {
    match ip(&["netns", "pids", name]) {
        Ok(text) => text.lines().filter_map(|l| l.trim().parse().ok()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Creates a veth pair: `name` in `netns`, its peer `peer` in `peer_netns`.
pub(crate) fn add_veth(netns: &str, name: &str, peer_netns: &str, peer: &str) -> Result<(), IpError> {
    ip_in(
        netns,
        &[
            "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_netns,
        ],
    )
    .map(|_| ())
}

/// Gives `interface` in `netns` the address `cidr` and brings it up.
pub(crate) fn address_up(netns: &str, interface: &str, cidr: &str) -> Result<(), IpError> {
    ip_in(netns, &["addr", "add", cidr, "dev", interface])?;
    ip_in(netns, &["link", "set", interface, "up"])?;
    Ok(())
}

/// Creates bridge `name` in `netns` (if missing) and brings it up.
pub(crate) fn ensure_bridge(netns: &str, name: &str) -> Result<(), IpError> {
    let exists = ip_in(netns, &["link", "show", name]).is_ok();
    if !exists {
        ip_in(netns, &["link", "add", name, "type", "bridge"])?;
    }
    ip_in(netns, &["link", "set", name, "up"])?;
    Ok(())
}

/// Deletes bridge `name` in `netns` if it exists.
pub(crate) fn delete_link(netns: &str, name: &str) -> Result<(), IpError> {
    if ip_in(netns, &["link", "show", name]).is_err() {
        return Ok(());
    }
    ip_in(netns, &["link", "delete", name]).map(|_| ())
}

/// Attaches `port` (in `netns`) to `bridge` and brings it up.
pub(crate) fn attach(netns: &str, port: &str, bridge: &str) -> Result<(), IpError> {
    ip_in(netns, &["link", "set", port, "master", bridge])?;
    ip_in(netns, &["link", "set", port, "up"])?;
    Ok(())
}

/// Bridges in `netns` whose name starts with `br`.
pub(crate) fn bridges(netns: &str) -> Vec<String> {
    let Ok(text) = ip_in(netns, &["-o", "link", "show", "type", "bridge"]) else {
        return Vec::new();
    };
    // Lines look like `5: br1: <BROADCAST,...> mtu 1500 ...`.
    text.lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .filter(|name| name.starts_with("br"))
        .collect()
}
