//! `ringkv-container`: the namespace lab that runs a ringkv cluster in isolated network,
//! PID, mount and UTS namespaces under cgroup limits, cuts and heals its network, and
//! measures what clients saw (see `docs/lab.md`).
//!
//! Where to start: [`lab::Lab::up`] builds a lab from [`lab::LabConfig`]; [`lab::down`]
//! removes one. [`experiment::run`] runs a [`spec::Spec`] against fresh labs and writes a
//! report. The binary `ringkv-lab` (also reached as `ringkv lab`) is a thin CLI over these.
//!
//! Module map: names and addresses (`layout`), kernel objects (`netns`, `cgroup`,
//! `sandbox`, `client_netns`), the lab itself (`lab`, `lab_state`, `partition`,
//! `node_program`), and experiments (`spec`, `workload`, `convergence`, `etcd`,
//! `experiment`, `summary`, `report`, `plot`).

pub mod cgroup;
pub mod client_netns;
pub mod convergence;
pub mod etcd;
pub mod experiment;
pub mod lab;
pub mod lab_state;
pub mod layout;
pub mod netns;
pub mod node_program;
pub mod partition;
pub mod plot;
pub mod report;
pub mod sandbox;
pub mod spec;
pub mod summary;
pub mod workload;
