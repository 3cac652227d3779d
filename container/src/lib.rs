//! `ringkv-container`: the namespace lab that runs a ringkv cluster in isolated network,
//! PID, mount and UTS namespaces under cgroup limits, cuts and heals its network, and
//! measures what clients saw (see `docs/lab.md`).
//!
//! Where to start: [`lab::control::Lab::up`] builds a lab from
//! [`lab::control::LabConfig`]; [`lab::control::down`] removes one.
//! [`experiment::driver::run`] runs an [`experiment::spec::Spec`] against fresh labs and
//! writes a report. The binary `ringkv-lab` (also reached as `ringkv lab`) is a thin CLI
//! over these.
//!
//! Module map, one folder per part; each part uses only the parts listed before it:
//! - [`kernel`]: kernel objects, one kind per module, named by the caller: `netns`
//!   (namespaces, veth pairs and bridges through `ip`), `cgroup` (v1/v2 limits), `sandbox`
//!   (the hidden `exec-node` shim that starts a node inside its namespaces) and
//!   `client_netns` (client code on a thread inside a namespace).
//! - [`lab`]: the lab itself: `layout` (every name and address), `control` (`Lab` and
//!   `down`), `lab_state` (the state file), `partition`, `node_program` (ringkv or etcd
//!   command lines and readiness) and `etcd` (the small etcd client).
//! - [`experiment`]: `spec` (the TOML file), `driver` (a fresh lab per N/R/W setting and
//!   the fault schedule), `workload` (the clients), `convergence` (probe keys), and
//!   `report/` (`summary` of the runs, `markdown` for `report.md`, `plot` for the PNGs).
//!
//! Only what the `ringkv-lab` binary and the tests in `container/tests/` use is `pub`, with
//! the types those items take and return; everything else is `pub(crate)`.

pub mod experiment;
pub mod kernel;
pub mod lab;
