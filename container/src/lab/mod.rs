//! The lab itself: a cluster of ringkv nodes (or etcd members) in namespaces the lab
//! created, with names and addresses derived from the lab's name, whose network can be
//! partitioned and healed and whose nodes can be killed and started again; and `down`,
//! which removes a lab by its names alone.
//!
//! It is not the kernel plumbing (running `ip`, writing cgroup files, entering namespaces:
//! `kernel/`), and it measures nothing (`experiment/` does): the CLI and the experiment
//! driver both use it the same way, and it uses nothing from `experiment/`.
//!
//! Start reading at `control` ([`control::Lab::up`], then [`control::down`]). `layout`
//! names every object a lab creates, `lab_state` is the file that lets separate commands
//! find a running lab, `partition` parses and checks groups like `1,2/3,4,5`, and
//! `node_program` is what each node runs and when the cluster counts as ready; `etcd` is
//! the small etcd client that readiness check (and the experiment's workload) speak.

pub mod control;
pub(crate) mod etcd;
pub mod lab_state;
pub mod layout;
pub mod node_program;
pub mod partition;
