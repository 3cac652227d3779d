//! `ringkv-sim`: run one seed, or explore many.
//!
//! ```text
//! cargo run -p ringkv-sim -- run --seed 42            # one seed, its log on failure
//! cargo run -p ringkv-sim -- explore --seeds 200      # seeds 0..200, a summary
//! cargo run -p ringkv-sim -- explore --seeds 50 --bug merge-drops-sibling
//! cargo run --release -p ringkv-sim -- explore --fresh --seeds 10000   # the long run
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ringkv_sim::checker::ViolationKind;
use ringkv_sim::harness::{run_seed, RunOptions, RunReport};
use ringkv_sim::plan::ClientKind;
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
        /// Switch on a deliberate bug to see the checkers catch it (`ringkv-sim bugs`
        /// lists them).
        #[arg(long, value_parser = parse_bug)]
        bug: Option<Bug>,
        /// Print the event log even when the run passes.
        #[arg(long)]
        log: bool,
    },
    /// Run many seeds in parallel worker processes with a progress bar, and summarise
    /// violations by kind, telling apart the known ones (sim/seeds/known-violations.txt).
    Explore {
        /// How many seeds.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Start at a seed drawn from the clock instead (printed, so a failure replays).
        #[arg(long, conflicts_with = "first")]
        fresh: bool,
        /// Worker processes (one simulation at a time each); default: one per core.
        #[arg(long)]
        jobs: Option<usize>,
        /// Switch on a deliberate bug (see `ringkv-sim bugs`).
        #[arg(long, value_parser = parse_bug)]
        bug: Option<Bug>,
        /// Write every failing seed (its kinds and the known finding it is attributed
        /// to, or "new") to this file.
        #[arg(long)]
        failures: Option<std::path::PathBuf>,
    },
    /// List the deliberate bugs `--bug` can switch on.
    Bugs,
    /// Runs the seeds read from stdin, one per line, and prints one result line per seed
    /// (`explore`'s worker processes).
    #[command(hide = true)]
    Worker {
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
        Command::Explore {
            seeds,
            first,
            fresh,
            jobs,
            bug,
            failures,
        } => {
            let first = if fresh {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                // Fresh seeds live far above the fixed ones the tests use.
                (now % (1 << 40)) + (1 << 32)
            } else {
                first
            };
            let jobs = jobs
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .clamp(1, JOBS_MAX);
            explore(first, seeds, jobs, bug, failures)
        }
        Command::Bugs => {
            for bug in Bug::ALL {
                println!("{:<30} {}", bug.name(), bug.describe());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { bug } => {
            let stdout = std::io::stdout();
            for line in std::io::stdin().lock().lines() {
                let seed: u64 = line?.trim().parse().context("a worker reads one seed per line")?;
                let report = run_seed(seed, RunOptions { bug });
                let kinds: Vec<String> = report.violations.iter().map(|v| v.kind.to_string()).collect();
                let first_violation = report.violations.first().map(|v| v.to_string()).unwrap_or_default();
                let mut out = stdout.lock();
                writeln!(
                    out,
                    "{seed}\t{}\t{}\t{}",
                    report.simulated.as_millis(),
                    kinds.join(","),
                    first_violation.replace(['\t', '\n'], " ")
                )?;
                out.flush()?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Worker processes `explore` runs at most.
const JOBS_MAX: usize = 64;

fn print_plan(report: &RunReport) {
    let plan = &report.plan;
    let sdk = plan.clients.iter().filter(|c| **c == ClientKind::Sdk).count();
    println!(
        "plan: {} nodes (+{} joining later, N={}), {} clients ({sdk} through the SDK) x {} ops on {} keys, \
         latency {:?}..{:?}, {:?} durability (write-back every {:?}), TTL on {}/1000 puts, clock skew up to {} ms, anti-entropy {}, {} faults",
        plan.nodes,
        plan.spares,
        plan.replicas,
        plan.clients.len(),
        plan.ops_per_client,
        plan.keys,
        plan.latency.0,
        plan.latency.1,
        plan.durability,
        plan.write_back,
        plan.ttl_per_mille,
        plan.skew_bound_ms(report.simulated),
        if plan.anti_entropy { "on" } else { "off" },
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

/// Feeds seeds from `queue` to one worker process at a time, sending each result; a
/// worker that dies mid-seed (a panic while unwinding aborts the process) is reported as
/// a simulation error on that seed, and a new worker takes the rest.
fn drive_worker(
    exe: &std::path::Path,
    queue: &std::sync::Mutex<std::ops::Range<u64>>,
    results: &std::sync::mpsc::Sender<SeedResult>,
    bug: Option<Bug>,
) -> anyhow::Result<()> {
    let next = || queue.lock().unwrap_or_else(|p| p.into_inner()).next();
    let mut seed = next();
    while let Some(current) = seed {
        let mut command = std::process::Command::new(exe);
        command
            .arg("worker")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if let Some(bug) = bug {
            command.args(["--bug", bug.name()]);
        }
        let mut child = command.spawn().context("cannot start a worker process")?;
        let mut stdin = child.stdin.take().context("worker has no stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("worker has no stdout")?).lines();
        let mut at = current;
        loop {
            writeln!(stdin, "{at}")?;
            stdin.flush()?;
            match lines.next().and_then(Result::ok).and_then(|l| parse_worker_line(&l)) {
                Some(result) => {
                    if results.send(result).is_err() {
                        return Ok(());
                    }
                }
                None => {
                    let _ = child.wait();
                    let died = SeedResult {
                        seed: at,
                        simulated_ms: 0,
                        kinds: vec![ViolationKind::SimulationError],
                        first_violation: format!("simulation-error: the run of seed {at} aborted the process"),
                    };
                    let _ = results.send(died);
                    seed = next();
                    break;
                }
            }
            match next() {
                Some(following) => at = following,
                None => {
                    drop(stdin);
                    let _ = child.wait();
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// One seed's result as a worker reported it.
struct SeedResult {
    seed: u64,
    simulated_ms: u64,
    kinds: Vec<ViolationKind>,
    first_violation: String,
}

fn parse_worker_line(line: &str) -> Option<SeedResult> {
    let mut fields = line.splitn(4, '\t');
    let seed = fields.next()?.parse().ok()?;
    let simulated_ms = fields.next()?.parse().ok()?;
    let kinds = fields
        .next()?
        .split(',')
        .filter(|k| !k.is_empty())
        .map(ViolationKind::from_name)
        .collect::<Option<Vec<_>>>()?;
    let first_violation = fields.next().unwrap_or("").to_owned();
    Some(SeedResult {
        seed,
        simulated_ms,
        kinds,
        first_violation,
    })
}

fn kinds_text(kinds: &[ViolationKind]) -> String {
    let mut names: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
    names.sort();
    names.dedup();
    names.join(",")
}

fn explore(
    first: u64,
    seeds: u64,
    jobs: usize,
    bug: Option<Bug>,
    failures: Option<std::path::PathBuf>,
) -> anyhow::Result<ExitCode> {
    first.checked_add(seeds).context("seed range overflows u64")?;
    println!("seeds {first}..{} on {jobs} worker processes", first + seeds);
    let bar = indicatif::ProgressBar::new(seeds);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {elapsed_precise}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let exe = std::env::current_exe().context("cannot find this executable to start workers")?;
    let jobs = jobs.min(usize::try_from(seeds).unwrap_or(usize::MAX)).max(1);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(first..first + seeds));
    let (tx, rx) = std::sync::mpsc::channel::<SeedResult>();
    let mut drivers = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let (exe, queue, tx) = (exe.clone(), std::sync::Arc::clone(&queue), tx.clone());
        drivers.push(std::thread::spawn(move || drive_worker(&exe, &queue, &tx, bug)));
    }
    drop(tx);
    let known = ringkv_sim::seed_lists::known_violations();
    let mut by_kind: BTreeMap<ViolationKind, (usize, u64)> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut known_seen = 0usize;
    let mut attributed: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut all_failures = Vec::new();
    let mut simulated_ms = 0u64;
    let mut done = 0u64;
    for result in rx {
        done += 1;
        simulated_ms = simulated_ms.saturating_add(result.simulated_ms);
        if !result.kinds.is_empty() {
            let plan = ringkv_sim::plan::Plan::from_seed(result.seed);
            let finding = ringkv_sim::seed_lists::known_finding(&plan, &result.kinds);
            all_failures.push(format!(
                "{}\t{}\t{}\t{}",
                result.seed,
                kinds_text(&result.kinds),
                finding.unwrap_or("new"),
                result.first_violation
            ));
            if ringkv_sim::seed_lists::all_known(result.seed, &result.kinds) {
                known_seen += 1;
            } else if let Some(finding) = finding {
                *attributed.entry(finding).or_default() += 1;
            } else {
                let mut kinds = result.kinds.clone();
                kinds.sort();
                kinds.dedup();
                for kind in kinds {
                    let entry = by_kind.entry(kind).or_insert((0, result.seed));
                    entry.0 += 1;
                }
                failed.push(result);
                bar.set_message(format!("{} failing", failed.len()));
            }
        }
        bar.inc(1);
    }
    bar.finish();
    let mut workers_ok = true;
    for driver in drivers {
        workers_ok &= driver.join().map(|r| r.is_ok()).unwrap_or(false);
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{done} seeds in {wall:.1} s ({:.1} seeds/min, {:.1} simulated s per wall s)",
        done as f64 * 60.0 / wall.max(1e-9),
        simulated_ms as f64 / 1000.0 / wall.max(1e-9)
    );
    if let Some(path) = &failures {
        all_failures.sort();
        std::fs::write(path, all_failures.join("\n") + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!(
            "every failing seed, with the finding it is attributed to: {}",
            path.display()
        );
    }
    for (finding, count) in &attributed {
        println!("{count} seeds show known finding {finding}");
    }
    if known_seen > 0 {
        println!(
            "{known_seen} seeds broke only what the known-violation list expects of them ({} listed)",
            known.len()
        );
    }
    if !workers_ok || done < seeds {
        println!("a worker process failed: {done} of {seeds} seeds reported");
        return Ok(ExitCode::from(1));
    }
    if failed.is_empty() {
        println!("no new violation (every failing seed shows a known finding)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("violations by kind (seeds, first seed):");
    for kind in ViolationKind::ALL {
        if let Some((count, seed)) = by_kind.get(&kind) {
            println!("  {kind:<18} {count:>5}  seed {seed}");
        }
    }
    failed.sort_by_key(|r| r.seed);
    println!("failing seeds ({}):", failed.len());
    for result in failed.iter().take(30) {
        let bug = bug.map(|b| format!(" --bug {}", b.name())).unwrap_or_default();
        println!(
            "  cargo run -p ringkv-sim -- run --seed {}{bug}    # {}",
            result.seed, result.first_violation
        );
    }
    Ok(ExitCode::from(1))
}
