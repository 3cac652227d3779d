//! `ringkv-lab`: the partition lab (also reached as `ringkv lab ...`).
//!
//! A thin CLI over `ringkv_container`: it parses flags, calls the library and prints.
//! The hidden `exec-node`/`exec-init` steps start a node inside its namespaces and must run
//! before any thread exists, so they are dispatched before anything else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ringkv_container::experiment::driver::{self, ExperimentConfig};
use ringkv_container::experiment::spec::Spec;
use ringkv_container::kernel::cgroup::{self, Limits};
use ringkv_container::kernel::sandbox::{self, NodeLaunch};
use ringkv_container::lab::control::{self, Lab, LabConfig};
use ringkv_container::lab::lab_state::STATE_ROOT_DEFAULT;
use ringkv_container::lab::layout::LabName;
use ringkv_container::lab::node_program::NodeProgram;
use ringkv_container::lab::partition::Partition;

const AFTER_HELP: &str = "\
Examples (as root; needs `ip` from iproute2 and nothing else):
  ringkv lab up --nodes 5 --memory 256M --cpus 0.5   five nodes, each in its own namespaces
  ringkv lab partition 1,2/3,4,5                     nodes 1-2 cannot reach 3-5
  ringkv lab exec -- ringkv put k v --endpoint 10.78.1.2:7100
                                                     a client command beside the nodes
  ringkv lab heal                                    everybody on one bridge again
  ringkv lab kill 5 ; ringkv lab start 5             crash node 5, restart it with its data
  ringkv lab status                                  nodes, pids, sides, memory
  ringkv lab experiment container/experiments/partition-2-3.toml --out report/
  ringkv lab down                                    remove everything (safe to repeat)

Node i is reached at 10.78.i.2 (client port 7100) from the client namespace; see docs/lab.md.";

/// The namespace lab: a ringkv cluster in network, PID, mount and UTS namespaces under
/// cgroup limits, whose network can be partitioned and healed, and experiments on it.
#[derive(Debug, Parser)]
#[command(name = "ringkv-lab", bin_name = "ringkv lab", version, after_help = AFTER_HELP)]
struct Cli {
    /// Lab name (1-12 of a-z, 0-9): the prefix of every namespace and cgroup it creates,
    /// so several labs can coexist.
    #[arg(long, global = true, default_value = "lab", env = "RINGKV_LAB_NAME")]
    name: String,
    /// Where labs keep their state file, node data and logs.
    #[arg(long, global = true, default_value = STATE_ROOT_DEFAULT, env = "RINGKV_LAB_STATE_ROOT")]
    state_root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the namespaces, bridge, veth pairs and cgroups, and start the nodes.
    Up(UpArgs),
    /// Remove everything the lab created; safe to run twice or after a crash.
    Down,
    /// Show each node: namespace, client endpoint, pid, side of the partition, memory.
    Status,
    /// Split the network: groups of node numbers separated by '/', e.g. 1,2/3,4,5.
    /// Unlisted nodes stay together on the main bridge.
    Partition {
        /// Groups like 1,2/3,4,5.
        groups: String,
    },
    /// Put every node back on one bridge.
    Heal,
    /// Crash node N (SIGKILL: no clean shutdown).
    Kill {
        /// Node number, 1-based.
        node: u8,
    },
    /// Start a killed node N again, with its data.
    Start {
        /// Node number, 1-based.
        node: u8,
    },
    /// Run a command in the lab's client namespace, where every node is reachable.
    Exec {
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run an experiment spec (TOML) on fresh labs and write DIR/report.md with plots.
    Experiment(ExperimentArgs),
    #[command(hide = true)]
    ExecNode(ExecNodeArgs),
    #[command(hide = true)]
    ExecInit {
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        argv: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// How many nodes (1-16).
    #[arg(long, default_value_t = 3)]
    nodes: u8,
    /// Memory limit per node, e.g. 256M or 1G.
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit per node in CPUs, e.g. 0.5.
    #[arg(long)]
    cpus: Option<f64>,
    /// Replicas per key (N) [default: 3, or the node count when smaller].
    #[arg(long)]
    replicas: Option<u8>,
    /// The `ringkv` binary [default: next to this one].
    #[arg(long)]
    ringkv: Option<PathBuf>,
    /// Run etcd members (from PATH) instead of ringkv nodes: the CP reference.
    #[arg(long, conflicts_with_all = ["replicas", "ringkv"])]
    etcd: bool,
    /// How long to wait for every node to see every other alive.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,
}

#[derive(Debug, clap::Args)]
struct ExperimentArgs {
    /// The experiment spec (see container/experiments/ and docs/lab.md).
    spec: PathBuf,
    /// Directory for report.md and the plots (created; existing files are replaced).
    #[arg(long)]
    out: PathBuf,
    /// The `ringkv` binary [default: next to this one].
    #[arg(long)]
    ringkv: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ExecNodeArgs {
    #[arg(long)]
    netns: String,
    #[arg(long)]
    hostname: String,
    #[arg(long)]
    pid_file: PathBuf,
    #[arg(long)]
    workdir: PathBuf,
    #[arg(long)]
    cgroup_procs: Vec<PathBuf>,
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    argv: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ringkv lab: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating ringkv-lab")?;
    Ok(exe.with_file_name(name))
}

fn ringkv_binary(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(path) => Ok(path),
        None => sibling_binary("ringkv"),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // These two run inside a node's namespaces, single-threaded; nothing else first.
    let cli = match cli.command {
        Command::ExecNode(args) => {
            let launch = NodeLaunch {
                netns: args.netns,
                hostname: args.hostname,
                cgroup_procs: args.cgroup_procs,
                pid_file: args.pid_file,
                workdir: args.workdir,
                argv: args.argv,
            };
            let exe = std::env::current_exe().context("locating ringkv-lab")?;
            let code = sandbox::run_shim(&launch, &exe)?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)));
        }
        Command::ExecInit { argv } => return Err(sandbox::run_init(&argv).into()),
        _ => cli,
    };
    let name = LabName::new(&cli.name)?;
    let lab_exe = std::env::current_exe().context("locating ringkv-lab")?;
    match cli.command {
        Command::Up(args) => {
            let limits = Limits {
                memory_bytes: args.memory.as_deref().map(cgroup::parse_memory).transpose()?,
                cpus: args.cpus,
            };
            let replicas = args.replicas.unwrap_or(3.min(args.nodes));
            anyhow::ensure!(
                replicas >= 1 && replicas <= args.nodes,
                "--replicas {replicas} is outside 1..={} (the node count)",
                args.nodes
            );
            let program = if args.etcd {
                let binary = ringkv_container::kernel::netns::find_program("etcd")
                    .context("--etcd: no `etcd` on PATH (bash scripts/install-peers.sh installs it)")?;
                NodeProgram::Etcd { binary }
            } else {
                NodeProgram::Ringkv {
                    binary: ringkv_binary(args.ringkv)?,
                    replicas,
                }
            };
            let config = LabConfig {
                name: name.clone(),
                nodes: args.nodes,
                limits,
                program,
                state_root: cli.state_root,
                lab_exe,
                ready_timeout: args.ready_timeout,
            };
            let lab = Lab::up(config)?;
            println!("lab {name} is up");
            print_status(&lab);
        }
        Command::Down => {
            let report = control::down(&cli.state_root, &name)?;
            if report.is_empty() {
                println!("lab {name}: nothing to remove");
            } else {
                println!(
                    "lab {name} removed: {} processes killed, {} namespaces, {} cgroup trees, state dir {}",
                    report.processes,
                    report.namespaces.len(),
                    report.cgroups.len(),
                    if report.state_dir { "removed" } else { "absent" }
                );
            }
        }
        Command::Status => {
            let lab = Lab::open(&cli.state_root, &name, &lab_exe)?;
            print_status(&lab);
        }
        Command::Partition { groups } => {
            let mut lab = Lab::open(&cli.state_root, &name, &lab_exe)?;
            let partition = Partition::parse(&groups, lab.state().nodes)?;
            lab.partition(partition.clone())?;
            println!("partitioned: {partition} (unlisted nodes stay on the main bridge)");
        }
        Command::Heal => {
            let mut lab = Lab::open(&cli.state_root, &name, &lab_exe)?;
            lab.heal()?;
            println!("healed: every node is on the main bridge");
        }
        Command::Kill { node } => {
            let mut lab = Lab::open(&cli.state_root, &name, &lab_exe)?;
            lab.kill(node)?;
            println!("node {node} killed");
        }
        Command::Start { node } => {
            let mut lab = Lab::open(&cli.state_root, &name, &lab_exe)?;
            lab.start(node)?;
            lab.wait_ready(Duration::from_secs(60))?;
            println!("node {node} started");
        }
        Command::Exec { command } => {
            let lab = Lab::open(&cli.state_root, &name, &lab_exe)?;
            let ip = ringkv_container::kernel::netns::find_ip().context("`ip` not found")?;
            let status = std::process::Command::new(ip)
                .args(["netns", "exec", &lab.client_netns()])
                .args(&command)
                .status()
                .with_context(|| format!("running {}", command.join(" ")))?;
            return Ok(ExitCode::from(
                status.code().and_then(|c| u8::try_from(c).ok()).unwrap_or(4),
            ));
        }
        Command::Experiment(args) => {
            // Read and validate the spec before touching the system.
            let text = std::fs::read_to_string(&args.spec)
                .with_context(|| format!("reading the spec {}", args.spec.display()))?;
            let spec = Spec::parse(&text).with_context(|| format!("spec {}", args.spec.display()))?;
            let config = ExperimentConfig {
                spec,
                spec_path: args.spec.clone(),
                out: args.out.clone(),
                ringkv: ringkv_binary(args.ringkv)?,
                lab_exe,
                state_root: cli.state_root,
                lab_name: name,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let runs = driver::run(&config)?;
            println!("{} runs; report: {}", runs.len(), args.out.join("report.md").display());
        }
        Command::ExecNode(_) | Command::ExecInit { .. } => unreachable!("dispatched above"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(lab: &Lab) {
    let state = lab.state();
    let partition = state
        .partition
        .as_ref()
        .map_or_else(|| "none".to_owned(), |p| p.to_string());
    println!(
        "lab {}: {} nodes running {}, partition: {partition}, client namespace: {}",
        state.name,
        state.nodes,
        state.program.kind(),
        lab.client_netns()
    );
    println!(
        "{:<5} {:<18} {:<18} {:<9} {:<5} memory",
        "node", "namespace", "endpoint", "pid", "side"
    );
    for node in lab.status() {
        println!(
            "{:<5} {:<18} {:<18} {:<9} {:<5} {}",
            format!("n{}", node.index),
            node.netns,
            node.endpoint,
            node.pid.map_or_else(|| "down".to_owned(), |p| p.to_string()),
            node.side,
            node.memory_bytes
                .map_or_else(|| "-".to_owned(), |b| format!("{} MiB", b >> 20)),
        );
    }
}
