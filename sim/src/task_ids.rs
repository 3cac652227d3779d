//! Tokio's task ids, put in the same place at the start of every run.
//!
//! Tokio numbers tasks from one process-wide counter, and a runtime files its tasks in
//! a few lists chosen by id (4 for a current-thread runtime, by `id % 4`). When turmoil
//! crashes a host it drops the host's runtime, which drops the tasks list by list; each
//! dropped TCP stream sends a FIN or RST, and turmoil draws each message's latency from
//! the seed's RNG in the order they are sent. So the task ids modulo 4 decide when the
//! peers learn of a crash, and a run started after other tasks existed in the process (a
//! second run, or one beside another test) could replay differently from the same seed
//! in a fresh process. Seen: seed 3 run twice in one process, a read failing after 5 ms
//! in the first run and 4 ms in the second, with the in-flight limit of 1 in the replica
//! batcher; spawning 4 or 8 tasks before the run gave the fresh process's log, spawning
//! 1, 2, 3 or 37 gave the second run's.
//!
//! [`exclusive`] holds a process-wide lock for the whole run, so no other simulation
//! spawns tasks meanwhile, and spawns empty tasks until the next id is 1 modulo
//! [`ALIGN`], like a fresh process's first task. Tasks that something other than a
//! simulation spawns in the same process during a run still break the replay.

use std::sync::{Mutex, MutexGuard};

/// Task ids are brought to 1 modulo this; a multiple of every list count tokio uses for
/// a current-thread runtime.
pub const ALIGN: u64 = 64;

static RUNS: Mutex<()> = Mutex::new(());

/// Held for the duration of one simulated run.
#[derive(Debug)]
pub struct Exclusive {
    _runs: MutexGuard<'static, ()>,
}

/// Waits until no other simulation runs in this process, then aligns the task ids.
pub fn exclusive() -> std::io::Result<Exclusive> {
    let runs = RUNS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // On a thread of its own: the runtime built here must not touch the hash-map keys
    // or RNGs of the caller, which may be a seeded simulation thread.
    std::thread::spawn(align)
        .join()
        .map_err(|_| std::io::Error::other("aligning tokio's task ids panicked"))??;
    Ok(Exclusive { _runs: runs })
}

fn align() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async {
        for _ in 0..ALIGN {
            let task = tokio::spawn(async {});
            let id: u64 = task
                .id()
                .to_string()
                .parse()
                .map_err(|e| std::io::Error::other(format!("tokio task id is not a number: {e}")))?;
            task.await.map_err(std::io::Error::other)?;
            if id.is_multiple_of(ALIGN) {
                return Ok(());
            }
        }
        Err(std::io::Error::other(format!(
            "no task id divisible by {ALIGN} in {ALIGN} spawns: another thread spawns tasks"
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_exclusive_the_next_task_id_is_one_past_a_multiple_of_align() {
        let _run = exclusive().expect("aligned");
        let next = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            runtime.block_on(async { tokio::spawn(async {}).id().to_string() })
        })
        .join()
        .expect("thread");
        assert_eq!(next.parse::<u64>().expect("numeric id") % ALIGN, 1);
    }
}
