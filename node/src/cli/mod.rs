//! Command-line parsing and dispatch for the `ringkv` binary.

mod client_commands;
mod dev;
mod node_command;

use clap::{Parser, Subcommand};

/// Exit codes of the `ringkv` binary.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// `get`: the key does not exist (never written, deleted or expired).
    pub const NOT_FOUND: u8 = 1;
    /// Bad input: arguments, configuration, key or value limits, malformed context.
    pub const INVALID: u8 = 2;
    /// The cluster could not answer: quorum not met, timeout, no endpoint reachable.
    pub const UNAVAILABLE: u8 = 3;
    /// Anything else.
    pub const OTHER: u8 = 4;
}

const AFTER_HELP: &str = "\
Examples:
  ringkv dev --nodes 3                 start a local 3-node cluster (RocksDB under ./ringkv-data)
  ringkv put greeting hello            write through 127.0.0.1:7101 (or $RINGKV_ENDPOINT)
  ringkv get greeting                  read: prints every sibling and the context
  ringkv put greeting hi --context C   replace exactly what context C has seen
  ringkv status                        members, liveness, ownership, pending hints
  ringkv node --id n1 --gossip 127.0.0.1:7301
                                       first node of a gossip cluster (can grow and shrink)
  ringkv node --id n2 --listen 127.0.0.1:7102 --seeds 127.0.0.1:7101
                                       join it through any running member
  ringkv leave --endpoint 127.0.0.1:7102   that node hands its data over and stops
  ringkv remove n2                     take a dead node out of the ring

Exit codes: 0 ok, 1 not found, 2 invalid input, 3 unavailable or timed out, 4 other error.";

/// ringkv: a Dynamo-style, eventually consistent key-value store.
#[derive(Debug, Parser)]
#[command(name = "ringkv", version, about = "ringkv: a Dynamo-style, eventually consistent key-value store", after_help = AFTER_HELP)]
pub struct Cli {
    /// Log more (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node of a cluster.
    Node(node_command::NodeArgs),
    /// Start a local cluster of several nodes on 127.0.0.1 in this process.
    Dev(dev::DevArgs),
    /// Write a value (by default replacing what a read of the key returns).
    Put(client_commands::PutArgs),
    /// Read a key: every sibling and the causal context.
    Get(client_commands::GetArgs),
    /// Delete a key (by default what a read of the key returns).
    Delete(client_commands::DeleteArgs),
    /// Show the cluster as one node sees it.
    Status(client_commands::StatusArgs),
    /// Ask the node at --endpoint to leave: it hands its data over, then stops.
    Leave(client_commands::LeaveArgs),
    /// Remove a dead node from the ring; the others re-replicate its data.
    Remove(client_commands::RemoveArgs),
    /// The partition lab: nodes in their own namespaces, partitions, experiments
    /// (runs `ringkv-lab`; see `ringkv lab --help`).
    #[command(disable_help_flag = true)]
    Lab(LabArgs),
}

/// Everything after `ringkv lab`, handed unchanged to the `ringkv-lab` binary.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Replaces this process with `ringkv-lab` from the directory of the current executable
/// (git-style), so the lab's exit code and signals pass straight through.
fn run_lab(args: LabArgs) -> CommandResult {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().map_err(Failure::other)?;
    let lab = exe.with_file_name("ringkv-lab");
    if !lab.is_file() {
        return Err(Failure::other(anyhow::anyhow!(
            "`ringkv lab` needs the ringkv-lab binary next to ringkv, at {}; build it with \
             `cargo build --workspace` (package ringkv-container)",
            lab.display()
        )));
    }
    let error = std::process::Command::new(&lab).args(&args.args).exec();
    Err(Failure::other(anyhow::anyhow!("running {}: {error}", lab.display())))
}

/// Sets up logging to stderr.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command and returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    let result = match cli.command {
        Command::Node(args) => node_command::run(args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Put(args) => client_commands::put(args).await,
        Command::Get(args) => client_commands::get(args).await,
        Command::Delete(args) => client_commands::delete(args).await,
        Command::Status(args) => client_commands::status(args).await,
        Command::Leave(args) => client_commands::leave(args).await,
        Command::Remove(args) => client_commands::remove(args).await,
        Command::Lab(args) => run_lab(args),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {:#}", failure.error);
            failure.code
        }
    }
}

/// An error with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn invalid(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: exit::INVALID,
            error: error.into(),
        }
    }

    pub fn other(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: exit::OTHER,
            error: error.into(),
        }
    }
}

impl From<ringkv_client::ClientError> for Failure {
    fn from(error: ringkv_client::ClientError) -> Failure {
        use ringkv_client::ClientError as E;
        let code = match &error {
            E::InvalidArgument(_) | E::InvalidContext(_) | E::InvalidEndpoint { .. } => exit::INVALID,
            E::Unavailable { .. } | E::Timeout { .. } => exit::UNAVAILABLE,
            _ => exit::OTHER,
        };
        Failure {
            code,
            error: error.into(),
        }
    }
}

impl From<ringkv_node::StartError> for Failure {
    fn from(error: ringkv_node::StartError) -> Failure {
        let code = match &error {
            ringkv_node::StartError::Config(_) | ringkv_node::StartError::Ring(_) => exit::INVALID,
            _ => exit::OTHER,
        };
        Failure {
            code,
            error: error.into(),
        }
    }
}

pub type CommandResult = Result<u8, Failure>;
