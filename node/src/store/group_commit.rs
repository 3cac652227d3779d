//! Group commit: many writes made durable by one `fsync` of the write-ahead log.
//!
//! With [`Durability::Sync`](ringkv_storage::Durability::Sync) a write may be acknowledged
//! only once it is on disk. Syncing the log once per write costs a blocking-pool thread,
//! two thread hand-offs and a disk flush for every write; writes that arrive while one
//! flush runs can all share the next one instead. So a writer applies its change in memory
//! ([`ringkv_storage::Engine::update_in_memory`]), takes a ticket, and waits until a flush that started
//! after its ticket was issued has finished. One thread per node does the flushing: at
//! most one flush runs at a time, and a writer waits for at most the flush in progress
//! plus the one that covers it. There is no queue: waiting writers are counted by one
//! number, and their count is bounded by the node's concurrent requests.
//!
//! A failed flush is final. Every ticket from the first one it should have covered on
//! fails, as RocksDB itself refuses further writes after a log sync error; the node has
//! to be restarted, and a write that failed this way was not acknowledged.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use ringkv_storage::EngineError;
use tokio::sync::watch;

/// Why a write could not be made durable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncError {
    /// Syncing the log failed; the write is not durable and the node must be restarted.
    #[error("cannot sync the write-ahead log: {0}")]
    Failed(String),
    /// The syncer thread is gone.
    #[error("the log sync thread stopped")]
    Stopped,
}

/// The log syncer of one engine. Dropping it syncs what is pending and stops the thread.
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
}

/// Tickets handed out, and whether the owner is gone.
struct Pending {
    issued: u64,
    stop: bool,
}

#[derive(Clone, Debug, Default)]
struct Progress {
    /// Every ticket up to this one is durable.
    synced_through: u64,
    /// Set when a flush failed: tickets from this one on failed, with the reason.
    failed_from: Option<(u64, Arc<str>)>,
    /// Flushes done, and tickets they covered (for metrics and tests).
    flushes: u64,
}

impl Progress {
    fn settles(&self, ticket: u64) -> bool {
        self.synced_through >= ticket || self.failed_from.as_ref().is_some_and(|(from, _)| ticket >= *from)
    }
}

impl GroupCommit {
    /// Starts the syncer thread; `sync` makes every write already in the log durable
    /// (`Engine::sync_wal`).
    pub fn start(sync: impl Fn() -> Result<(), EngineError> + Send + 'static) -> std::io::Result<GroupCommit> {
        let (progress, _) = watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending { issued: 0, stop: false }),
            wake: Condvar::new(),
            progress,
        });
        let thread = std::thread::Builder::new().name("ringkv-wal-sync".to_owned()).spawn({
            let shared = Arc::clone(&shared);
            move || sync_loop(&sync, &shared)
        })?;
        Ok(GroupCommit {
            shared,
            thread: Some(thread),
        })
    }

    /// Waits until every write this engine finished before the call is durable.
    pub async fn durable(&self) -> Result<(), SyncError> {
        let ticket = {
            let mut pending = self.shared.lock();
            pending.issued += 1;
            pending.issued
        };
        self.shared.wake.notify_one();
        let mut progress = self.shared.progress.subscribe();
        let settled = progress
            .wait_for(|p| p.settles(ticket))
            .await
            .map_err(|_| SyncError::Stopped)?;
        if settled.synced_through >= ticket {
            return Ok(());
        }
        let reason = settled
            .failed_from
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |(_, reason)| reason.to_string());
        Err(SyncError::Failed(reason))
    }

    /// Flushes done so far.
    #[cfg(test)]
    pub fn flushes(&self) -> u64 {
        self.shared.progress.borrow().flushes
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Nothing panics while holding this lock; a poisoned one still has valid counters.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn sync_loop(sync: &dyn Fn() -> Result<(), EngineError>, shared: &Shared) {
    let mut synced = 0u64;
    loop {
        let target = {
            let mut pending = shared.lock();
            while pending.issued == synced && !pending.stop {
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if pending.issued == synced {
                return; // stopped with nothing pending
            }
            pending.issued
        };
        debug_assert!(target > synced, "a flush covers at least one new ticket");
        // Every ticket up to `target` was issued after its write reached the log, so this
        // flush, which starts now, covers all of them.
        match sync() {
            Ok(()) => {
                synced = target;
                shared.progress.send_modify(|p| {
                    p.synced_through = target;
                    p.flushes += 1;
                });
            }
            Err(error) => {
                tracing::error!(%error, "syncing the write-ahead log failed; writes from now on fail");
                let reason: Arc<str> = Arc::from(error.to_string());
                shared
                    .progress
                    .send_modify(|p| p.failed_from = Some((synced + 1, reason)));
                return;
            }
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // The thread ends after at most one more flush; `sync` (and the engine it holds)
            // is released then.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    /// A log whose sync counts calls, can be held shut, and can fail.
    #[derive(Default)]
    struct FakeLog {
        syncs: AtomicU64,
        fail: AtomicBool,
        gate: Mutex<()>,
    }

    impl FakeLog {
        fn sync(&self) -> Result<(), EngineError> {
            let _open = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(EngineError::Io("disk gone".to_owned()));
            }
            Ok(())
        }

        fn syncs(&self) -> u64 {
            self.syncs.load(Ordering::SeqCst)
        }
    }

    fn start(log: &Arc<FakeLog>) -> GroupCommit {
        let log = Arc::clone(log);
        GroupCommit::start(move || log.sync()).expect("the syncer thread starts")
    }

    // Holding the log shut across awaits is the point: the syncer thread, not a task,
    // waits on the gate, and the test's tasks never take it.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn a_write_waits_for_a_flush_and_concurrent_writes_share_flushes() {
        let log = Arc::new(FakeLog::default());
        let commit = Arc::new(start(&log));
        commit.durable().await.expect("durable");
        assert_eq!(log.syncs(), 1);

        // Hold the log shut while one flush is in progress and 50 writers pile up.
        let held = log.gate.lock().expect("gate");
        let first = tokio::spawn({
            let commit = Arc::clone(&commit);
            async move { commit.durable().await }
        });
        wait_until(|| commit.shared.lock().issued == 2).await;
        let writers: Vec<_> = (0..50)
            .map(|_| {
                let commit = Arc::clone(&commit);
                tokio::spawn(async move { commit.durable().await })
            })
            .collect();
        wait_until(|| commit.shared.lock().issued == 52).await;
        assert!(!first.is_finished(), "acknowledged before its flush finished");
        drop(held);
        first.await.expect("task").expect("durable");
        for writer in writers {
            writer.await.expect("task").expect("durable");
        }
        // The first flush, the held one, and at most one more for the 50 behind it.
        assert!(
            log.syncs() <= 3,
            "51 writes behind one flush took {} flushes",
            log.syncs()
        );
        assert_eq!(commit.flushes(), log.syncs());
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_writes_and_every_later_one() {
        let log = Arc::new(FakeLog::default());
        let commit = start(&log);
        commit.durable().await.expect("durable");
        log.fail.store(true, Ordering::SeqCst);
        let error = commit.durable().await.expect_err("the flush failed");
        assert!(error.to_string().contains("disk gone"), "{error}");
        log.fail.store(false, Ordering::SeqCst);
        assert!(commit.durable().await.is_err(), "a failed log stays failed");
    }

    #[test]
    fn dropping_an_idle_syncer_flushes_nothing_and_releases_the_log() {
        let log = Arc::new(FakeLog::default());
        drop(start(&log));
        assert_eq!(log.syncs(), 0);
        assert_eq!(Arc::strong_count(&log), 1, "the thread released the log");
    }

    async fn wait_until(mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "condition not met within 10 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
