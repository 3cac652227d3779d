//! The node's bounded pool of background work.
//!
//! Some work a request starts outlives the request: the copies of a write still out when
//! W answered, the read repair after a read that found replicas disagreeing. It runs in
//! tasks of its own, at most [`BACKGROUND_TASKS_MAX`] at once per node; a request that
//! would start one more waits for room, so a node whose replicas are slow pushes back on
//! its clients instead of piling up tasks and memory.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

/// Background tasks (a write's late copies, a read's repair) a node runs at once.
pub(crate) const BACKGROUND_TASKS_MAX: usize = 4096;

/// The node's bounded pool of background work: finishes of quorum calls.
#[derive(Clone)]
pub(crate) struct Background {
    permits: Arc<Semaphore>,
}

impl Background {
    /// Room for [`BACKGROUND_TASKS_MAX`] at once.
    pub fn new() -> Background {
        Background {
            permits: Arc::new(Semaphore::new(BACKGROUND_TASKS_MAX)),
        }
    }

    /// Runs `work` in a task of its own once there is room; waits for room first, so a
    /// node flooded with slow replicas pushes back on its clients instead of piling up
    /// tasks.
    pub async fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            return; // never closed
        };
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
    }
}
