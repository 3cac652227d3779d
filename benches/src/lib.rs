//! `ringkv-bench`: measures ringkv as users would compare it, side by side with
//! redis-server and etcd in the same run on the same machine.
//!
//! [`run::run`] is the YCSB-style load generator behind `ringkv-bench run`; [`target`]
//! starts and reaches the systems under test; [`zipfian`] is YCSB's key chooser;
//! [`process`] owns the peer processes. The binary (`src/main.rs`) only parses flags and
//! prints. Figures come from here, never from timed tests.

/// etcd's v3 KV gRPC API, the subset in `proto/etcd_kv.proto` (package `etcdserverpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod etcd_proto {
    tonic::include_proto!("etcdserverpb");
}
pub mod process;
pub mod run;
pub mod target;
pub mod zipfian;

pub use run::{run, Distribution, Limit, Report, RunConfig, Workload};
pub use target::TargetKind;
