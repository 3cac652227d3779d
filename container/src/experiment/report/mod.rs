//! The report of one experiment: `report.md` and its PNG plots, from the runs' results.
//!
//! It runs nothing and touches no lab, namespace or network: it reads finished runs and
//! writes files into the output directory. The result types it reads (`RunResult`,
//! `System`) live in `summary`, beside the figures computed from them, so the report never
//! depends on the driver that produced them.
//!
//! Start reading at `markdown::write`, which computes `summary`'s figures and per-second
//! series for every run, has `plot` draw them, and writes the markdown that links them.
//!
//! The folder is private to the crate; `RunResult`, `ReportError` and `PlotError` are
//! `pub` only because the public `driver::run` returns them (in its result and its error).

pub(crate) mod markdown;
pub(crate) mod plot;
pub(crate) mod summary;
