//! The simulation's own guarantees: a seed replays byte for byte, clean seeds pass every
//! checker, and each injected bug is caught within a bounded number of seeds.
//!
//! The seed sets are fixed so CI is repeatable; `ringkv-sim explore` runs more.

use ringkv_sim::checker::ViolationKind;
use ringkv_sim::harness::{run_seed, RunOptions, RunReport};
use ringkv_sim::Bug;

/// Seeds every clean run must pass (and that the bug hunts start from).
const CLEAN_SEEDS: std::ops::Range<u64> = 0..12;
/// Seeds a bug hunt may use before the bug counts as missed.
const HUNT_SEEDS_MAX: u64 = 12;

fn report_line(report: &RunReport) -> String {
    format!(
        "seed {}: {} nodes, {} faults, {} ops, {:.1} simulated s, converged after {:?}, log {:016x}",
        report.plan.seed,
        report.plan.nodes,
        report.plan.faults.len(),
        report.ops.len(),
        report.simulated.as_secs_f64(),
        report.converged_after,
        report.log.hash()
    )
}

fn fail_with(report: &RunReport, bug: Option<Bug>) -> ! {
    for line in report.log.lines() {
        eprintln!("{line}");
    }
    for v in &report.violations {
        eprintln!("VIOLATION {v}");
    }
    panic!(
        "seed {} broke a property; replay with: {}",
        report.plan.seed,
        report.replay_command(bug)
    );
}

#[test]
fn os_randomness_is_intercepted() {
    assert!(
        ringkv_sim::entropy::is_intercepted(),
        "getrandom is not replaced in the test executable (sim/build.rs exports it)"
    );
}

#[test]
fn the_same_seed_gives_a_byte_identical_log() {
    let seed = 3;
    let first = run_seed(seed, RunOptions::default());
    let second = run_seed(seed, RunOptions::default());
    println!("{}", report_line(&first));
    assert!(first.ops.len() > 50, "the workload ran: {}", report_line(&first));
    if first.log.lines() != second.log.lines() {
        let diverged = first
            .log
            .lines()
            .iter()
            .zip(second.log.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(first.log.lines().len().min(second.log.lines().len()));
        panic!(
            "seed {seed} diverged at line {diverged}:\n  first:  {:?}\n  second: {:?}",
            first.log.lines().get(diverged),
            second.log.lines().get(diverged)
        );
    }
    assert_eq!(first.log.hash(), second.log.hash());
    let other = run_seed(seed + 1, RunOptions::default());
    assert_ne!(first.log.hash(), other.log.hash(), "different seeds, different runs");
}

#[test]
fn clean_seeds_break_no_property() {
    let started = std::time::Instant::now();
    let mut simulated = 0.0;
    for seed in CLEAN_SEEDS {
        let report = run_seed(seed, RunOptions::default());
        println!("{}", report_line(&report));
        simulated += report.simulated.as_secs_f64();
        if !report.violations.is_empty() {
            fail_with(&report, None);
        }
        assert!(report.converged_after.is_some(), "seed {seed} converged");
        let acked = report.ops.iter().filter(|op| op.ok()).count();
        assert!(
            acked > report.ops.len() / 3,
            "seed {seed}: most operations succeed ({acked})"
        );
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{} seeds in {wall:.1} s: {:.1} simulated s per wall s, {:.1} seeds per minute",
        CLEAN_SEEDS.end - CLEAN_SEEDS.start,
        simulated / wall,
        (CLEAN_SEEDS.end - CLEAN_SEEDS.start) as f64 * 60.0 / wall
    );
}

fn hunt(bug: Bug, expected: &[ViolationKind]) {
    for seed in 0..HUNT_SEEDS_MAX {
        let report = run_seed(seed, RunOptions { bug: Some(bug) });
        let kinds: Vec<ViolationKind> = report.violations.iter().map(|v| v.kind).collect();
        if kinds.iter().any(|k| expected.contains(k)) {
            println!(
                "{} caught at seed {seed} ({} seeds tried): {}",
                bug.name(),
                seed + 1,
                report.violations[0]
            );
            return;
        }
        assert!(
            kinds.iter().all(|k| *k != ViolationKind::SimulationError),
            "seed {seed} with {}: the simulation itself failed: {:?}",
            bug.name(),
            report.violations
        );
    }
    panic!(
        "{} was not caught in {HUNT_SEEDS_MAX} seeds (expected one of {expected:?})",
        bug.name()
    );
}

#[test]
fn acknowledging_before_the_quorum_is_caught() {
    hunt(Bug::AckBeforeQuorum, &[ViolationKind::StaleRead]);
}

#[test]
fn a_merge_that_drops_a_sibling_is_caught() {
    hunt(
        Bug::MergeDropsSibling,
        &[ViolationKind::LostWrite, ViolationKind::StaleRead],
    );
}

#[test]
fn a_write_that_ignores_its_context_is_caught() {
    hunt(
        Bug::PutIgnoresContext,
        &[ViolationKind::Resurrection, ViolationKind::StaleRead],
    );
}
