//! `ringkv put | get | delete | status`: the SDK from the shell.
//!
//! `get` prints one `value:` line per sibling and a `context:` line; that context is what
//! `put --context` and `delete --context` accept. Without `--context`, `put` and `delete`
//! first read the key and use the context of that read, so they replace what is visible
//! now; `--blind` writes with an empty context instead (a new sibling beside the others).

use std::io::Write as _;
use std::time::Duration;

use clap::Args;
use ringkv_client::{Client, Consistency, Context, ReadOptions, ReadResult, WriteOptions};

use super::{exit, CommandResult, Failure};

#[derive(Debug, Args)]
pub struct Connection {
    /// Node(s) to talk to, HOST:PORT, comma-separated (the client fails over between them).
    #[arg(
        long,
        env = "RINGKV_ENDPOINT",
        default_value = "127.0.0.1:7101",
        value_delimiter = ','
    )]
    endpoint: Vec<String>,
    /// Request timeout, e.g. 2s or 500ms.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

impl Connection {
    fn client(&self) -> Result<Client, Failure> {
        Ok(Client::builder()
            .endpoints(self.endpoint.iter().cloned())
            .request_timeout(self.timeout)
            .build()?)
    }
}

fn consistency(count: Option<u32>) -> Option<Consistency> {
    count.map(Consistency::Count)
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key.
    key: String,
    /// Replicas that must answer (default: the node's R).
    #[arg(short = 'r', long = "r")]
    r: Option<u32>,
    /// Also print each sibling's dot, timestamp and expiry.
    #[arg(long)]
    details: bool,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key.
    key: String,
    /// The value.
    value: String,
    /// Context from a previous get: replace exactly what it has seen.
    #[arg(long, conflicts_with = "blind")]
    context: Option<String>,
    /// Write with an empty context: concurrent with everything stored.
    #[arg(long)]
    blind: bool,
    /// Expire the value after this long, e.g. 30s or 5m.
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,
    /// Replicas that must store the write (default: the node's W).
    #[arg(short = 'w', long = "w")]
    w: Option<u32>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The key.
    key: String,
    /// Context from a previous get: delete exactly what it has seen.
    #[arg(long)]
    context: Option<String>,
    /// Replicas that must store the delete (default: the node's W).
    #[arg(short = 'w', long = "w")]
    w: Option<u32>,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct LeaveArgs {
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Id of the dead node to take out of the ring.
    node_id: String,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    connection: Connection,
}

fn print_read(read: &ReadResult, details: bool) {
    let mut out = std::io::stdout().lock();
    for sibling in &read.siblings {
        let _ = writeln!(out, "value: {}", String::from_utf8_lossy(&sibling.value));
        if details {
            let expiry = sibling
                .expires_at_ms
                .map(|ms| format!(" expires_at_ms={ms}"))
                .unwrap_or_default();
            let _ = writeln!(out, "  dot={} hlc={}{expiry}", sibling.dot, sibling.hlc);
        }
    }
    let _ = writeln!(out, "context: {}", read.context.to_base64());
}

async fn context_for_write(client: &Client, key: &str, given: Option<&str>, blind: bool) -> Result<Context, Failure> {
    if blind {
        return Ok(Context::empty());
    }
    match given {
        Some(text) => Ok(Context::from_base64(text)?),
        None => Ok(client.get(key.to_owned()).await?.context),
    }
}

pub async fn get(args: GetArgs) -> CommandResult {
    let client = args.connection.client()?;
    let options = ReadOptions {
        consistency: consistency(args.r),
        ..ReadOptions::default()
    };
    let read = client.get_with(args.key.clone(), options).await?;
    print_read(&read, args.details);
    if read.is_empty() {
        eprintln!("not found: {}", args.key);
        return Ok(exit::NOT_FOUND);
    }
    if read.siblings.len() > 1 {
        eprintln!(
            "{} concurrent siblings: put with this context to resolve them",
            read.siblings.len()
        );
    }
    Ok(exit::OK)
}

pub async fn put(args: PutArgs) -> CommandResult {
    let client = args.connection.client()?;
    let context = context_for_write(&client, &args.key, args.context.as_deref(), args.blind).await?;
    let options = WriteOptions {
        consistency: consistency(args.w),
        ttl: args.ttl,
        ..WriteOptions::default()
    };
    let after = client.put_with(args.key, args.value, &context, options).await?;
    println!("ok\ncontext: {}", after.to_base64());
    Ok(exit::OK)
}

pub async fn delete(args: DeleteArgs) -> CommandResult {
    let client = args.connection.client()?;
    let context = context_for_write(&client, &args.key, args.context.as_deref(), false).await?;
    let options = WriteOptions {
        consistency: consistency(args.w),
        ..WriteOptions::default()
    };
    client.delete_with(args.key, &context, options).await?;
    println!("ok");
    Ok(exit::OK)
}

pub async fn status(args: StatusArgs) -> CommandResult {
    let client = args.connection.client()?;
    let status = client.status().await?;
    println!(
        "node {} of cluster {:?}: N={} replicas, key limit {} B, value limit {} B",
        status.node_id, status.cluster_name, status.replicas, status.key_bytes_max, status.value_bytes_max
    );
    println!(
        "{:<12} {:<22} {:<8} {:<6} {:>14} {:>6} {:>10} {:>8} {:>10}",
        "MEMBER", "ADDRESS", "STATE", "ALIVE", "GENERATION", "VNODES", "OWNERSHIP", "HINTS", "TRANSFERS"
    );
    for m in &status.members {
        println!(
            "{:<12} {:<22} {:<8} {:<6} {:>14} {:>6} {:>9.1}% {:>8} {:>10}",
            m.id,
            m.address,
            m.state,
            if m.alive { "yes" } else { "NO" },
            m.generation,
            m.vnodes,
            m.ownership_share * 100.0,
            m.hints_pending,
            m.transfers_pending
        );
    }
    Ok(exit::OK)
}

pub async fn leave(args: LeaveArgs) -> CommandResult {
    if args.connection.endpoint.len() != 1 {
        return Err(Failure::invalid(anyhow::anyhow!(
            "leave takes exactly one --endpoint: the node that should leave"
        )));
    }
    let node = args.connection.client()?.leave().await?;
    println!("{node} is leaving: it hands its data to the new owners, then stops");
    Ok(exit::OK)
}

pub async fn remove(args: RemoveArgs) -> CommandResult {
    args.connection.client()?.remove_node(&args.node_id).await?;
    println!("{} removed: the other nodes re-replicate its data", args.node_id);
    Ok(exit::OK)
}
