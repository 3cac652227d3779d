//! Crash test: a child process writes with fsync on and acknowledges each write on
//! stdout; the parent SIGKILLs it mid-load, reopens the database and checks that every
//! acknowledged write is there. Three rounds on the same database, each killed at a
//! different point, so recovery of an already-recovered database is covered too.
//!
//! The child is this same test binary, started with `RINGKV_CRASH_CHILD=<dir>`.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringkv_storage::{ActorId, Durability, Engine, Hlc, Limits, RocksEngine, VersionVector, Write};

const CHILD_ENV: &str = "RINGKV_CRASH_CHILD";
const ROUNDS: u64 = 3;
const WRITES_PER_ROUND_MAX: u64 = 100_000;
const ROUND_DEADLINE: Duration = Duration::from_secs(60);

fn value_for(round: u64, i: u64) -> Bytes {
    Bytes::from(format!("round {round} write {i} {}", "x".repeat(64)))
}

fn child(dir: &str, round: u64) -> anyhow::Result<()> {
    let engine = RocksEngine::open(std::path::Path::new(dir))?;
    let limits = Limits::default();
    let mut out = std::io::stdout().lock();
    for i in 0..WRITES_PER_ROUND_MAX {
        let key = limits.key(format!("r{round}-k{i}"))?;
        let value = value_for(round, i);
        engine.update(&key, Durability::Sync, &mut |s| {
            s.put(
                ActorId::new(1),
                &VersionVector::new(),
                Write {
                    value: Some(value.clone()),
                    hlc: Hlc::new(i, 0),
                    expires_at_ms: None,
                },
            );
        })?;
        // The write is on disk; only now may the parent count it as acknowledged.
        writeln!(out, "{i}")?;
        out.flush()?;
    }
    Ok(())
}

fn parent() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    for round in 0..ROUNDS {
        let kill_after = 200 + round * 350;
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .env("RINGKV_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("child has no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut acked: Vec<u64> = Vec::new();
        let started = Instant::now();
        while (acked.len() as u64) < kill_after {
            anyhow::ensure!(
                started.elapsed() < ROUND_DEADLINE,
                "child acknowledged only {} writes in {ROUND_DEADLINE:?}",
                acked.len()
            );
            match lines.next() {
                Some(line) => acked.push(line?.trim().parse()?),
                None => anyhow::bail!("child exited after {} acks without being killed", acked.len()),
            }
        }
        child.kill()?; // SIGKILL on Unix
        let status = child.wait()?;
        anyhow::ensure!(!status.success(), "child was supposed to die by SIGKILL");
        // Acks already in the pipe were sent after their fsync: they count too.
        for line in lines {
            if let Ok(n) = line?.trim().parse() {
                acked.push(n);
            }
        }
        let engine = RocksEngine::open(dir.path())?;
        let limits = Limits::default();
        for &i in &acked {
            let key = limits.key(format!("r{round}-k{i}"))?;
            let state = engine
                .get(&key)?
                .ok_or_else(|| anyhow::anyhow!("acknowledged write r{round}-k{i} is missing"))?;
            let got = state.visible(0).next().and_then(|s| s.value().cloned());
            anyhow::ensure!(
                got == Some(value_for(round, i)),
                "acknowledged write r{round}-k{i} has the wrong value"
            );
        }
        println!(
            "crash round {round}: killed after {} acknowledged fsynced writes, all {} found after reopen",
            kill_after,
            acked.len()
        );
    }
    Ok(())
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let round = std::env::var("RINGKV_CRASH_ROUND")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if let Err(e) = child(&dir, round) {
            eprintln!("crash child: {e:#}");
            std::process::exit(2);
        }
        return;
    }
    match parent() {
        Ok(()) => println!(
            "test crash_acknowledged_writes_survive_sigkill ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored"
        ),
        Err(e) => {
            eprintln!("crash test failed: {e:#}");
            std::process::exit(1);
        }
    }
}
