//! Running an experiment: for each N/R/W setting of the sweep, a fresh lab, the workload,
//! the fault schedule and the convergence probes; then the same schedule against etcd when
//! it is installed; then the report.
//!
//! Every run starts from an empty cluster (a fresh `lab up`) so runs do not inherit each
//! other's data, and is torn down by a guard whatever happens. The driver runs on a thread
//! inside the lab's client namespace (`kernel/client_netns.rs`); the fault schedule runs in
//! the same runtime as the clients, so fault times and sample times share one clock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use crate::experiment::convergence::{self, Probes};
use crate::experiment::report::markdown::{self, ReportError};
use crate::experiment::report::summary::{RunResult, System};
use crate::experiment::spec::{Fault, FaultAction, Spec};
use crate::experiment::workload::{self, Sample, Shared, Target};
use crate::kernel::client_netns::{block_on_in_netns, NetnsEnterError};
use crate::lab::control::{self, Lab, LabConfig, LabError};
use crate::lab::layout::{self, LabName};
use crate::lab::node_program::NodeProgram;
use crate::lab::partition::Partition;

/// How long a fresh lab may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long after a partition the probe keys are written: long enough for failure
/// detectors on both sides to have noticed the cut.
const PROBE_DELAY: Duration = Duration::from_secs(3);
/// How long after the lab is ready the workload starts.
const WARM_UP: Duration = Duration::from_millis(500);

/// What to run and where.
#[derive(Clone, Debug)]
pub struct ExperimentConfig {
    /// The validated spec.
    pub spec: Spec,
    /// The spec's file name, for the report.
    pub spec_path: PathBuf,
    /// Where report.md and the plots go.
    pub out: PathBuf,
    /// The `ringkv` binary.
    pub ringkv: PathBuf,
    /// The `ringkv-lab` binary.
    pub lab_exe: PathBuf,
    /// Where labs keep state.
    pub state_root: PathBuf,
    /// The name of the labs the runs create (one at a time).
    pub lab_name: LabName,
    /// Whether to draw a progress bar.
    pub progress: bool,
}

/// An experiment that could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The lab.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The client namespace.
    #[error(transparent)]
    Netns(#[from] NetnsEnterError),
    /// Writing the report.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A binary is missing.
    #[error("{what} not found at {path}")]
    Missing {
        /// Which.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The output directory.
    #[error("output directory {path}: {source}")]
    Out {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Runs the experiment and writes the report; returns the results.
pub fn run(config: &ExperimentConfig) -> Result<Vec<RunResult>, ExperimentError> {
    control::preflight()?;
    if !config.ringkv.is_file() {
        return Err(ExperimentError::Missing {
            what: "the ringkv binary",
            path: config.ringkv.clone(),
        });
    }
    let spec = &config.spec;
    let etcd = spec
        .etcd_members
        .and_then(|_| crate::kernel::netns::find_program("etcd"));
    let total = spec.total_run_seconds(etcd.is_some());
    let bar = if config.progress {
        let bar = ProgressBar::new(total);
        let style =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} s of workload  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut results = Vec::new();
    let mut done_seconds = 0;
    for quorum in &spec.sweep {
        bar.set_message(format!("ringkv {} (starting the lab)", quorum.label()));
        let program = NodeProgram::Ringkv {
            binary: config.ringkv.clone(),
            replicas: quorum.n,
        };
        let result = run_one(config, spec.nodes, program, System::Ringkv(*quorum), &bar, done_seconds)?;
        results.push(result);
        done_seconds += spec.duration.as_secs();
    }
    let mut etcd_note = None;
    match (spec.etcd_members, etcd) {
        (Some(members), Some(binary)) => {
            bar.set_message(format!("etcd, {members} members (starting the lab)"));
            let program = NodeProgram::Etcd { binary };
            results.push(run_one(
                config,
                members,
                program,
                System::Etcd { members },
                &bar,
                done_seconds,
            )?);
        }
        (Some(_), None) => {
            etcd_note = Some(
                "etcd is not installed here (no `etcd` on PATH), so there is no CP reference in this report; \
                 `bash scripts/install-peers.sh` installs Debian's etcd-server."
                    .to_owned(),
            );
        }
        (None, _) => {}
    }
    bar.finish_with_message("writing the report");
    // Created only now, so a run that fails early leaves nothing behind.
    std::fs::create_dir_all(&config.out).map_err(|source| ExperimentError::Out {
        path: config.out.clone(),
        source,
    })?;
    markdown::write(&config.out, &config.spec_path, spec, &results, etcd_note.as_deref())?;
    Ok(results)
}

/// Removes the run's lab when dropped, whatever happened.
struct DownGuard {
    root: PathBuf,
    name: LabName,
}

impl Drop for DownGuard {
    fn drop(&mut self) {
        if let Err(error) = control::down(&self.root, &self.name) {
            eprintln!("ringkv-lab: removing lab {} after a run: {error}", self.name);
        }
    }
}

fn run_one(
    config: &ExperimentConfig,
    nodes: u8,
    program: NodeProgram,
    system: System,
    bar: &ProgressBar,
    done_seconds: u64,
) -> Result<RunResult, ExperimentError> {
    let spec = &config.spec;
    let lab_config = LabConfig {
        name: config.lab_name.clone(),
        nodes,
        limits: spec.limits,
        program: program.clone(),
        state_root: config.state_root.clone(),
        lab_exe: config.lab_exe.clone(),
        ready_timeout: READY_TIMEOUT,
    };
    let lab = Lab::up(lab_config)?;
    let _guard = DownGuard {
        root: config.state_root.clone(),
        name: config.lab_name.clone(),
    };
    bar.set_message(system.label());
    let (faults, mut notes) = faults_for(&spec.faults, nodes);
    let client_netns = lab.client_netns();
    let drive = Drive {
        lab,
        system: system.clone(),
        nodes,
        client_port: program.client_port(),
        workload: spec.workload.clone(),
        duration: spec.duration,
        converge_timeout: spec.converge_timeout,
        faults,
        bar: bar.clone(),
        done_seconds,
    };
    let outcome = block_on_in_netns(&client_netns, move || drive.run())?;
    notes.extend(outcome.notes);
    Ok(RunResult {
        system,
        nodes,
        samples: outcome.samples,
        faults: outcome.faults,
        convergence: outcome.convergence,
        probes_acked: outcome.probes_acked,
        notes,
    })
}

/// The schedule for a lab of `nodes` nodes: partitions restricted to its nodes, kills and
/// starts of nodes it does not have dropped (with a note).
fn faults_for(faults: &[Fault], nodes: u8) -> (Vec<Fault>, Vec<String>) {
    let mut kept = Vec::new();
    let mut notes = Vec::new();
    for fault in faults {
        let action = match &fault.action {
            FaultAction::Partition(p) => match p.restricted(nodes) {
                Some(restricted) => {
                    if restricted != *p {
                        notes.push(format!("partition {p} applied as {restricted} on {nodes} nodes"));
                    }
                    Some(FaultAction::Partition(restricted))
                }
                None => {
                    notes.push(format!("partition {p} cuts nothing among {nodes} nodes: skipped"));
                    None
                }
            },
            FaultAction::Kill(i) | FaultAction::Start(i) if *i > nodes => {
                notes.push(format!("{} skipped: only {nodes} nodes", fault.action.label()));
                None
            }
            other => Some(other.clone()),
        };
        if let Some(action) = action {
            kept.push(Fault { at: fault.at, action });
        }
    }
    (kept, notes)
}

struct Drive {
    lab: Lab,
    system: System,
    nodes: u8,
    client_port: u16,
    workload: crate::experiment::spec::Workload,
    duration: Duration,
    converge_timeout: Duration,
    faults: Vec<Fault>,
    bar: ProgressBar,
    done_seconds: u64,
}

struct Outcome {
    samples: Vec<Sample>,
    faults: Vec<(f64, FaultAction)>,
    convergence: Vec<Option<f64>>,
    probes_acked: Vec<usize>,
    notes: Vec<String>,
}

impl Drive {
    async fn run(self) -> Outcome {
        let Drive {
            mut lab,
            system,
            nodes,
            client_port,
            workload,
            duration,
            converge_timeout,
            faults,
            bar,
            done_seconds,
        } = self;
        let shared = Shared::new(workload.keys, nodes);
        let start = Instant::now() + WARM_UP;
        let end = start + duration;
        let target = match &system {
            System::Ringkv(q) => Target::Ringkv { r: q.r, w: q.w },
            System::Etcd { .. } => Target::Etcd,
        };
        let mut clients = Vec::new();
        for id in 0..workload.clients {
            let node = u8::try_from(id % u32::from(nodes)).unwrap_or(0) + 1;
            let endpoint = layout::node_client_address(node, client_port);
            clients.push(tokio::spawn(workload::run_client(
                id,
                node,
                endpoint,
                target.clone(),
                workload.clone(),
                Arc::clone(&shared),
                start,
                end,
            )));
        }
        let ticker = {
            let bar = bar.clone();
            tokio::spawn(async move {
                loop {
                    let elapsed = Instant::now().saturating_duration_since(start).min(duration).as_secs();
                    bar.set_position(done_seconds + elapsed);
                    if Instant::now() >= end {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };
        let replicas = match &system {
            System::Ringkv(q) => Some(q.n),
            System::Etcd { .. } => None,
        };
        let mut applied = Vec::new();
        let mut notes = Vec::new();
        let mut probe_tasks: Vec<tokio::task::JoinHandle<Probes>> = Vec::new();
        let mut convergence_tasks = Vec::new();
        for (position, fault) in faults.iter().enumerate() {
            tokio::time::sleep_until(start + fault.at).await;
            let at = Instant::now().duration_since(start).as_secs_f64();
            let result = match &fault.action {
                FaultAction::Partition(partition) => {
                    let result = tokio::task::block_in_place(|| lab.partition(partition.clone()));
                    if result.is_ok() && replicas.is_some() {
                        let writers = probe_writers(&lab, partition, nodes, client_port);
                        let count = workload.probe_keys;
                        probe_tasks.push(tokio::spawn(async move {
                            tokio::time::sleep(PROBE_DELAY).await;
                            convergence::write_probes(position, count, &writers).await
                        }));
                    }
                    result
                }
                FaultAction::Heal => {
                    let result = tokio::task::block_in_place(|| lab.heal());
                    let healed_at = Instant::now();
                    if let (Ok(()), Some(n), Some(probes)) = (&result, replicas, probe_tasks.pop()) {
                        let live: Vec<SocketAddr> = (1..=nodes)
                            .filter(|&i| !shared.down[usize::from(i)].load(Ordering::Relaxed))
                            .map(|i| layout::node_client_address(i, client_port))
                            .collect();
                        let deadline = healed_at + converge_timeout;
                        convergence_tasks.push(tokio::spawn(async move {
                            let probes = probes.await.unwrap_or_default();
                            let acked = probes.acked();
                            let time = convergence::time_to_converge(&live, n, &probes, healed_at, deadline).await;
                            (time.map(|d| d.as_secs_f64()), acked)
                        }));
                    }
                    result
                }
                FaultAction::Kill(index) => {
                    shared.down[usize::from(*index)].store(true, Ordering::Relaxed);
                    tokio::task::block_in_place(|| lab.kill(*index))
                }
                FaultAction::Start(index) => {
                    let result = tokio::task::block_in_place(|| lab.start(*index));
                    shared.down[usize::from(*index)].store(false, Ordering::Relaxed);
                    result
                }
            };
            if let Err(error) = result {
                notes.push(format!("{} at {at:.1} s failed: {error}", fault.action.label()));
            }
            applied.push((at, fault.action.clone()));
        }
        let mut samples = Vec::new();
        for client in clients {
            if let Ok(mut client_samples) = client.await {
                samples.append(&mut client_samples);
            } else {
                notes.push("a client task failed; its samples are missing".to_owned());
            }
        }
        samples.sort_by_key(|s| s.t_ms);
        let _ = ticker.await;
        let mut convergence = Vec::new();
        let mut probes_acked = Vec::new();
        for task in convergence_tasks {
            match task.await {
                Ok((time, acked)) => {
                    convergence.push(time);
                    probes_acked.push(acked);
                }
                Err(_) => notes.push("a convergence check failed".to_owned()),
            }
        }
        drop(lab);
        Outcome {
            samples,
            faults: applied,
            convergence,
            probes_acked,
            notes,
        }
    }
}

/// One live node per side of `partition` to write the probe keys through.
fn probe_writers(lab: &Lab, partition: &Partition, nodes: u8, client_port: u16) -> Vec<(usize, SocketAddr)> {
    let sides = partition.groups().len() + 1;
    (0..sides)
        .filter_map(|side| {
            (1..=nodes)
                .find(|&i| partition.side_of(i) == side && lab.node_pid(i).is_some())
                .map(|i| (side, layout::node_client_address(i, client_port)))
        })
        .collect()
}
