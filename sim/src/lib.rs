//! `ringkv-sim`: whole ringkv clusters in a deterministic simulation.
//!
//! The real node code — coordinator, replicas, gossip, hints, anti-entropy, tombstone GC —
//! runs on [turmoil](https://docs.rs/turmoil) hosts: gRPC over turmoil's TCP, gossip over
//! its UDP ([`network`]), tokio time driven by turmoil's clock, and every byte of OS
//! randomness drawn from the seed ([`entropy`]). A seed fixes the cluster, the workload
//! and the faults ([`plan`]); [`harness`] runs it and records what clients saw
//! ([`history`]); [`checker`] judges the history and the final replicas. The same seed
//! gives the same event log, byte for byte.
//!
//! ```no_run
//! use ringkv_sim::harness::{run_seed, RunOptions};
//!
//! let report = run_seed(42, RunOptions::default());
//! for violation in &report.violations {
//!     eprintln!("{violation}");
//! }
//! println!("replay: {}", report.replay_command(None));
//! ```
//!
//! How to write a scenario and replay a seed: `docs/simulation.md`.

pub mod checker;
pub mod disk;
pub mod entropy;
pub mod harness;
pub mod history;
pub mod network;
mod operator;
pub mod plan;
pub mod ring_watch;
pub mod scenario;
pub mod seed_lists;
pub mod task_ids;

pub use ringkv_storage::injected_bug::Bug;
