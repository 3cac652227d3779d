//! The kernel objects a lab is made of, one kind per module: network namespaces, veth
//! pairs and bridges through the `ip` command (`netns`), memory and CPU limits through
//! cgroups v2 or v1 (`cgroup`), the hidden `exec-node`/`exec-init` steps that start a node
//! inside its namespaces as PID 1 (`sandbox`), and client code run on a thread inside a
//! network namespace (`client_netns`).
//!
//! These modules create, enter, read back and delete objects whose names the caller gives
//! them; they choose no name, address or node count (that is `lab::layout`) and do not
//! decide which objects a lab consists of (that is `lab::control`). Nothing here depends
//! on the rest of the crate; only `sandbox` and `client_netns` use `netns` (for
//! `NETNS_DIR`).
//!
//! Start reading at `netns` (every network change is one `ip` invocation), then `sandbox`
//! (how a node ends up in its own PID, mount and UTS namespaces without `unsafe`).

pub mod cgroup;
pub mod client_netns;
pub mod netns;
pub mod sandbox;
