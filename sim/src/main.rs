//! `ringkv-sim`: run one seed, or explore many.
//!
//! ```text
//! cargo run -p ringkv-sim -- run --seed 42            # one seed, its log on failure
//! cargo run -p ringkv-sim -- explore --seeds 200      # seeds 0..200, a summary
//! cargo run -p ringkv-sim -- explore --seeds 50 --bug merge-drops-sibling
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ringkv_sim::checker::ViolationKind;
use ringkv_sim::harness::{run_seed, RunOptions, RunReport};
use ringkv_sim::Bug;

/// Deterministic simulation of whole ringkv clusters: faults from a seed, checkers over
/// what clients saw. Every failure prints the one command that replays it.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one seed; print its plan, its figures, any violation, and (with --log or on
    /// failure) its event log.
    Run {
        /// The seed: it fixes cluster size, workload, latencies and faults.
        #[arg(long)]
        seed: u64,
        /// Switch on a deliberate bug (ack-before-quorum, merge-drops-sibling,
        /// put-ignores-context) to see the checkers catch it.
        #[arg(long, value_parser = parse_bug)]
        bug: Option<Bug>,
        /// Print the event log even when the run passes.
        #[arg(long)]
        log: bool,
    },
    /// Run many seeds with a progress bar and summarise violations by kind.
    Explore {
        /// How many seeds.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Switch on a deliberate bug (see `run --help`).
        #[arg(long, value_parser = parse_bug)]
        bug: Option<Bug>,
    },
}

fn parse_bug(name: &str) -> Result<Bug, String> {
    Bug::ALL.into_iter().find(|b| b.name() == name).ok_or_else(|| {
        let names: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
        format!("unknown bug {name:?}; one of: {}", names.join(", "))
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error,ringkv_sim=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringkv-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !ringkv_sim::entropy::is_intercepted() {
        bail!("OS randomness is not intercepted in this executable, so runs would not repeat (see sim/build.rs)");
    }
    match cli.command {
        Command::Run { seed, bug, log } => {
            let started = Instant::now();
            let report = run_seed(seed, RunOptions { bug });
            let wall = started.elapsed();
            print_plan(&report);
            if log || !report.violations.is_empty() {
                for line in report.log.lines() {
                    println!("{line}");
                }
            }
            println!(
                "seed {seed}: {} ops, {:.1} simulated s in {:.1} wall s ({:.1}x), log hash {:016x}{}",
                report.ops.len(),
                report.simulated.as_secs_f64(),
                wall.as_secs_f64(),
                report.simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                report.log.hash(),
                report
                    .converged_after
                    .map(|c| format!(", converged {} ms after the workload", c.as_millis()))
                    .unwrap_or_default()
            );
            if report.violations.is_empty() {
                println!("no violation");
                return Ok(ExitCode::SUCCESS);
            }
            for v in &report.violations {
                println!("VIOLATION {v}");
            }
            println!("replay: {}", report.replay_command(bug));
            Ok(ExitCode::from(1))
        }
        Command::Explore { seeds, first, bug } => explore(first, seeds, bug),
    }
}

fn print_plan(report: &RunReport) {
    let plan = &report.plan;
    println!(
        "plan: {} nodes (N={}), {} clients x {} ops on {} keys, latency {:?}..{:?}, {} faults",
        plan.nodes,
        plan.replicas,
        plan.clients,
        plan.ops_per_client,
        plan.keys,
        plan.latency.0,
        plan.latency.1,
        plan.faults.len()
    );
    for f in &plan.faults {
        println!(
            "  {:>6} ms .. {:>6} ms  {}",
            f.at.as_millis(),
            f.until.as_millis(),
            f.fault
        );
    }
}

fn explore(first: u64, seeds: u64, bug: Option<Bug>) -> anyhow::Result<ExitCode> {
    let last = first.checked_add(seeds).context("seed range overflows u64")?;
    let bar = indicatif::ProgressBar::new(seeds);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {elapsed_precise}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let mut by_kind: BTreeMap<ViolationKind, (usize, u64)> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut simulated = 0.0;
    for seed in first..last {
        let report = run_seed(seed, RunOptions { bug });
        simulated += report.simulated.as_secs_f64();
        if !report.violations.is_empty() {
            for v in &report.violations {
                let entry = by_kind.entry(v.kind).or_insert((0, seed));
                entry.0 += 1;
            }
            failed.push((seed, report.replay_command(bug), report.violations[0].to_string()));
            bar.set_message(format!("{} failing", failed.len()));
        }
        bar.inc(1);
    }
    bar.finish();
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{seeds} seeds in {wall:.1} s ({:.1} seeds/min, {:.1} simulated s per wall s)",
        seeds as f64 * 60.0 / wall.max(1e-9),
        simulated / wall.max(1e-9)
    );
    if failed.is_empty() {
        println!("no violation");
        return Ok(ExitCode::SUCCESS);
    }
    println!("violations by kind (count, first seed):");
    for kind in ViolationKind::ALL {
        if let Some((count, seed)) = by_kind.get(&kind) {
            println!("  {kind:<18} {count:>5}  seed {seed}");
        }
    }
    println!("failing seeds ({}):", failed.len());
    for (_, command, first_violation) in failed.iter().take(20) {
        println!("  {command}    # {first_violation}");
    }
    Ok(ExitCode::from(1))
}
