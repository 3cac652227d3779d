//! Experiments: a spec (cluster, workload, fault schedule, N/R/W sweep) run against fresh
//! labs, what every client saw recorded, and a report with plots.
//!
//! It does not build, change or remove labs itself: every lab operation goes through
//! `lab::control`, and every name and address comes from `lab::layout`. The reporting half
//! (`report/`) does not touch labs at all: it turns finished runs into files.
//!
//! Start reading at `driver` ([`driver::run`]): `spec` has validated everything before it
//! starts; each run drives `workload`'s clients and `convergence`'s probe keys while it
//! applies the fault schedule, and hands its `RunResult` to `report`.

pub mod convergence;
pub mod driver;
pub(crate) mod report;
pub mod spec;
pub(crate) mod workload;
