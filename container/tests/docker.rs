//! The container image on a real Docker engine: build it, run a 3-node cluster from it,
//! cut one node off the network, and check that writes continue through hinted hand-off
//! and that the hints reach the node once it is back.
//!
//! This is the one test that exercises what `cargo test` elsewhere cannot: the static
//! binary in a `FROM scratch` image (`container/image/Dockerfile`, built by
//! `scripts/build-image.sh`), real network interfaces going away (`docker network
//! disconnect`), and the SDK talking to containers from the host (over the bridge: the
//! host routes to the containers' IPs, so no ports are published and parallel runs never
//! fight over host ports).
//!
//! Why 3 nodes are enough to see hints: with N = 3 every node replicates every key, so
//! when n3 is cut off there is no fallback node to stand in for it. The coordinator then
//! keeps the hint itself (`Coordinator::store_copy_or_hint`, "no stand-in took it"): the
//! write is acknowledged with W = 2 (coordinator + the other live replica) and the copy for
//! n3 waits in the coordinator's hint store until `handoff_loop` sees n3 alive again.
//!
//! Where Docker is missing (no CLI, no daemon), each test prints
//! `skipped: docker not available: <reason>` and returns. Everything a run creates is
//! labelled with the test's process id and removed by a drop guard, panics included;
//! resources left by a run that was killed outright (SIGKILL skips destructors) are
//! removed by the next run, which finds them by label and a dead owner pid.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringkv_client::{Client, Consistency, Context, ReadOptions, WriteOptions};

const IMAGE: &str = "ringkv:dev";
/// Label on every container and network this test creates; its value is the owner's pid.
const OWNER_LABEL: &str = "ringkv.test.docker.pid";
const CLIENT_PORT: u16 = 7101;
const ADMIN_PORT: u16 = 7201;
const GOSSIP_PORT: u16 = 7301;
/// Keys written while n3 is cut off; each must leave one hint for n3.
const PARTITION_KEYS: usize = 20;
/// Upper bound for any one wait on the cluster (start, failure detection, hand-off).
const WAIT_MAX: Duration = Duration::from_secs(60);
/// Subnets tried before giving up when other networks on the host overlap.
const SUBNET_ATTEMPTS_MAX: u32 = 32;

#[test]
fn compose_file_is_valid() {
    if docker_or_skip().is_none() {
        return;
    }
    let compose = repo_root().join("container/image/compose.yaml");
    let Some(mut command) = compose_command() else {
        skip("neither `docker compose` nor `docker-compose` runs");
        return;
    };
    let out = command
        .arg("-f")
        .arg(&compose)
        .arg("config")
        .output()
        .expect("run compose config");
    assert!(
        out.status.success(),
        "compose config rejected {}: {}",
        compose.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The issue asks for 5 nodes, each with limits and its own volume.
    for i in 1..=5 {
        assert!(
            text.contains(&format!("n{i}-data:/data")),
            "n{i} has no named volume:\n{text}"
        );
    }
    assert_eq!(
        text.matches("mem_limit:").count(),
        5,
        "every node needs a memory limit:\n{text}"
    );
    assert_eq!(
        text.matches("cpus:").count(),
        5,
        "every node needs a CPU limit:\n{text}"
    );
    assert_eq!(text.matches(&format!("image: {IMAGE}")).count(), 5, "{text}");
}

#[test]
fn writes_continue_through_hints_while_a_container_is_disconnected() {
    let Some(version) = docker_or_skip() else { return };
    println!("docker engine {version}");
    remove_stale_resources();
    build_image();

    let mut lab = Lab::create();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let [n1, n2, n3] = [lab.address(1), lab.address(2), lab.address(3)];

    lab.start_node(1, None);
    lab.start_node(2, Some(n1));
    lab.start_node(3, Some(n1));
    runtime.block_on(wait_for_members(
        &[n1, n2, n3],
        &["n1", "n2", "n3"],
        &["n1", "n2", "n3"],
    ));

    let client = runtime.block_on(async {
        Client::builder()
            .endpoints([n1, n2, n3].map(|a| a.to_string()))
            .request_timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    });

    // All three up: a write and a read through the SDK from the host.
    runtime.block_on(async {
        client
            .put("before", "all-up", &Context::empty())
            .await
            .expect("put while all up");
        let read = client.get("before").await.expect("get while all up");
        assert_eq!(read.value().map(|v| v.as_ref()), Some(&b"all-up"[..]));
    });

    // Cut n3 off; the others must notice before the writes, so that every write below
    // takes the hint path at once rather than after a replica timeout.
    lab.disconnect(3);
    runtime.block_on(wait_for_members(&[n1, n2], &["n1", "n2", "n3"], &["n1", "n2"]));
    let delivered_before = lab.hints_delivered(&[1, 2]);

    let write_quorum = WriteOptions {
        consistency: Some(Consistency::Quorum),
        ..WriteOptions::default()
    };
    runtime.block_on(async {
        for i in 0..PARTITION_KEYS {
            client
                .put_with(format!("k{i}"), format!("v{i}"), &Context::empty(), write_quorum)
                .await
                .unwrap_or_else(|e| panic!("put k{i} with n3 disconnected: {e}"));
        }
        for i in 0..PARTITION_KEYS {
            let read = client.get(format!("k{i}")).await.expect("get with n3 disconnected");
            assert_eq!(read.value().map(|v| v.to_vec()), Some(format!("v{i}").into_bytes()));
        }
    });
    let held = runtime.block_on(hints_for(&[n1, n2], "n3"));
    println!("with n3 disconnected: {PARTITION_KEYS} writes acknowledged, {held} hints held for n3");
    assert!(
        held >= PARTITION_KEYS as u64,
        "every write while n3 was away should leave a hint for it, found {held}"
    );

    // Back on the network with the same IP: the hints must be handed to n3 and deleted.
    lab.reconnect(3);
    runtime.block_on(wait_for_members(
        &[n1, n2, n3],
        &["n1", "n2", "n3"],
        &["n1", "n2", "n3"],
    ));
    runtime.block_on(wait_until("hints for n3 are delivered", || async {
        hints_for(&[n1, n2], "n3").await == 0
    }));
    let delivered = lab.hints_delivered(&[1, 2]) - delivered_before;
    println!("after reconnecting n3: {delivered} hints delivered, none pending");
    assert!(
        delivered >= PARTITION_KEYS as u64,
        "ringkv_hints_delivered_total grew by {delivered}, expected at least {PARTITION_KEYS}"
    );

    // Proof that n3 itself now stores the writes: cut the other two off and read from n3
    // with R = 1, which n3 answers from its own store.
    lab.disconnect(1);
    lab.disconnect(2);
    runtime.block_on(async {
        let alone = Client::builder()
            .endpoints([n3.to_string()])
            .request_timeout(Duration::from_secs(5))
            .build()
            .expect("client for n3");
        let one = ReadOptions {
            consistency: Some(Consistency::One),
            ..ReadOptions::default()
        };
        for i in 0..PARTITION_KEYS {
            let read = alone.get_with(format!("k{i}"), one).await.expect("get from n3 alone");
            assert_eq!(
                read.value().map(|v| v.to_vec()),
                Some(format!("v{i}").into_bytes()),
                "n3 lacks k{i} after hand-off"
            );
        }
    });
    drop(lab);
}

/// Skips the test with a line saying what is missing; under `CI=true` a missing
/// prerequisite fails the test instead, so CI never passes by skipping.
fn skip(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("docker not available: {reason} (CI=true: a missing prerequisite is a failure)");
    }
    println!("skipped: docker not available: {reason}");
}

/// The Docker engine's version when the CLI and daemon answer; skips (see [`skip`]) and
/// returns `None` when they do not.
fn docker_or_skip() -> Option<String> {
    match Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
    {
        Err(e) => {
            skip(&format!("cannot run the docker CLI: {e}"));
            None
        }
        Ok(out) if !out.status.success() => {
            let reason = String::from_utf8_lossy(&out.stderr);
            skip(reason.trim());
            None
        }
        Ok(out) => Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
    }
}

/// `docker compose` when the plugin is installed, else `docker-compose` (v1).
fn compose_command() -> Option<Command> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("docker", &["compose", "version"]) {
        let mut command = Command::new("docker");
        command.arg("compose");
        Some(command)
    } else if works("docker-compose", &["version"]) {
        Some(Command::new("docker-compose"))
    } else {
        None
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("container/ has a parent")
        .to_path_buf()
}

/// Runs `scripts/build-image.sh`: seconds on a warm machine, a full static build (RocksDB
/// included) on a cold one, so that `.ci/run` alone suffices anywhere.
fn build_image() {
    let started = Instant::now();
    let script = repo_root().join("scripts/build-image.sh");
    let status = Command::new("bash")
        .arg(&script)
        .env("RINGKV_IMAGE", IMAGE)
        .status()
        .expect("run scripts/build-image.sh");
    assert!(status.success(), "{} failed: {status}", script.display());
    println!("image {IMAGE} ready in {:.1}s", started.elapsed().as_secs_f64());
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

/// Runs `docker args` and panics with its stderr when it fails.
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes containers and networks of earlier runs whose owning process is gone.
fn remove_stale_resources() {
    let owner_alive = |pid: &str| {
        pid.parse::<u32>()
            .is_ok_and(|p| PathBuf::from(format!("/proc/{p}")).exists())
    };
    let filter = format!("label={OWNER_LABEL}");
    let format = format!("{{{{.ID}}}} {{{{.Label \"{OWNER_LABEL}\"}}}}");
    let containers = docker_ok(&["ps", "-a", "--filter", &filter, "--format", &format]);
    for line in containers.lines() {
        if let Some((id, pid)) = line.split_once(' ') {
            if !owner_alive(pid) {
                println!("removing container {id} left by dead test process {pid}");
                let _ = docker(&["rm", "-f", "-v", id]);
            }
        }
    }
    let networks = docker_ok(&["network", "ls", "--filter", &filter, "--format", &format]);
    for line in networks.lines() {
        if let Some((id, pid)) = line.split_once(' ') {
            if !owner_alive(pid) {
                println!("removing network {id} left by dead test process {pid}");
                let _ = docker(&["network", "rm", id]);
            }
        }
    }
}

/// One run's containers and network; removes them all on drop, even when a test panics.
struct Lab {
    project: String,
    network: String,
    /// First three octets of the run's /24, e.g. "10.213.7".
    prefix: String,
    containers: Vec<String>,
}

impl Lab {
    /// Creates the run's network on a free /24 (nodes need fixed IPs: their addresses are
    /// IP:port socket addresses, and a reconnected node must come back on the same one).
    fn create() -> Lab {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        let project = format!("ringkv-test-{}-{nanos:x}", std::process::id());
        let owner = format!("{OWNER_LABEL}={}", std::process::id());
        let mut last_error = String::new();
        for attempt in 0..SUBNET_ATTEMPTS_MAX {
            let octet = (nanos / 1000 + attempt * 37) % 250 + 2;
            let prefix = format!("10.213.{octet}");
            let subnet = format!("{prefix}.0/24");
            let out = docker(&["network", "create", "--label", &owner, "--subnet", &subnet, &project]);
            if out.status.success() {
                println!("network {project} on {subnet}");
                return Lab {
                    network: project.clone(),
                    project,
                    prefix,
                    containers: Vec::new(),
                };
            }
            last_error = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        }
        panic!("no free subnet after {SUBNET_ATTEMPTS_MAX} attempts: {last_error}");
    }

    fn ip(&self, node: u8) -> String {
        format!("{}.{}", self.prefix, 10 + node)
    }

    fn address(&self, node: u8) -> SocketAddr {
        format!("{}:{CLIENT_PORT}", self.ip(node))
            .parse()
            .expect("socket address")
    }

    fn container(&self, node: u8) -> String {
        format!("{}-n{node}", self.project)
    }

    /// Starts node `n<node>` with the same limits as `compose.yaml`, joining `seed`.
    fn start_node(&mut self, node: u8, seed: Option<SocketAddr>) {
        let ip = self.ip(node);
        let name = self.container(node);
        let owner = format!("{OWNER_LABEL}={}", std::process::id());
        let id = format!("n{node}");
        let listen = format!("{ip}:{CLIENT_PORT}");
        let gossip = format!("{ip}:{GOSSIP_PORT}");
        let admin = format!("{ip}:{ADMIN_PORT}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &owner,
            "--network",
            &self.network,
            "--ip",
            &ip,
            "--memory",
            "512m",
            "--cpus",
            "1",
            "--env",
            "RUST_LOG=info",
            IMAGE,
            "node",
            "--id",
            &id,
            "--listen",
            &listen,
            "--gossip",
            &gossip,
            "--admin",
            &admin,
            "--data-dir",
            "/data",
        ];
        let seed = seed.map(|s| s.to_string());
        if let Some(seed) = &seed {
            args.extend(["--seeds", seed.as_str()]);
        }
        // Register before running: a half-started container is still removed on drop.
        self.containers.push(name.clone());
        docker_ok(&args);
    }

    fn disconnect(&self, node: u8) {
        docker_ok(&["network", "disconnect", &self.network, &self.container(node)]);
    }

    fn reconnect(&self, node: u8) {
        docker_ok(&[
            "network",
            "connect",
            "--ip",
            &self.ip(node),
            &self.network,
            &self.container(node),
        ]);
    }

    /// Sum of `ringkv_hints_delivered_total` over the given nodes' admin ports.
    fn hints_delivered(&self, nodes: &[u8]) -> u64 {
        nodes
            .iter()
            .map(|&node| {
                let admin: SocketAddr = format!("{}:{ADMIN_PORT}", self.ip(node))
                    .parse()
                    .expect("admin address");
                metric(&http_get(admin, "/metrics"), "ringkv_hints_delivered_total")
            })
            .sum()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in &self.containers {
                let out = docker(&["logs", "--tail", "40", name]);
                eprintln!(
                    "--- last log lines of {name}:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        for name in &self.containers {
            let _ = docker(&["rm", "-f", "-v", name]);
        }
        let out = docker(&["network", "rm", &self.network]);
        if !out.status.success() {
            eprintln!(
                "could not remove network {}: {}",
                self.network,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

/// A plain HTTP/1.0 GET (the admin port speaks HTTP/1.1 and closes after 1.0 requests).
fn http_get(address: SocketAddr, path: &str) -> String {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&address, timeout).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream.set_read_timeout(Some(timeout)).expect("read timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    assert!(response.starts_with("HTTP/1."), "not HTTP from {address}: {response:?}");
    response
}

/// The value of an unlabelled counter or gauge in Prometheus text, 0 when absent.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.trim().parse::<f64>().expect("metric value") as u64)
        .next()
        .unwrap_or(0)
}

/// Hints the given nodes hold for `target`, from each node's `status`.
async fn hints_for(nodes: &[SocketAddr], target: &str) -> u64 {
    let mut total = 0;
    for node in nodes {
        let status = single(*node)
            .status()
            .await
            .unwrap_or_else(|e| panic!("status of {node}: {e}"));
        total += status
            .members
            .iter()
            .filter(|m| m.id == target)
            .map(|m| m.hints_pending)
            .sum::<u64>();
    }
    total
}

fn single(node: SocketAddr) -> Client {
    Client::builder()
        .endpoints([node.to_string()])
        .request_timeout(Duration::from_secs(2))
        .retries(0)
        .build()
        .expect("single-endpoint client")
}

/// Waits until every node in `asking` lists exactly `members`, all `up`, with exactly
/// `alive` judged alive.
async fn wait_for_members(asking: &[SocketAddr], members: &[&str], alive: &[&str]) {
    let what = format!("{asking:?} to see members {members:?} with {alive:?} alive");
    wait_until(&what, || async {
        for node in asking {
            let Ok(status) = single(*node).status().await else {
                return false;
            };
            let mut seen: Vec<&str> = status.members.iter().map(|m| m.id.as_str()).collect();
            let mut live: Vec<&str> = status
                .members
                .iter()
                .filter(|m| m.alive)
                .map(|m| m.id.as_str())
                .collect();
            seen.sort_unstable();
            live.sort_unstable();
            if seen != members || live != alive || status.members.iter().any(|m| m.state != "up") {
                return false;
            }
        }
        true
    })
    .await;
}

/// Polls `condition` every 200 ms until it holds; panics after [`WAIT_MAX`].
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < WAIT_MAX,
            "timed out after {WAIT_MAX:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{what}: {:.1}s", started.elapsed().as_secs_f64());
}
