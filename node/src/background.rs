//! The node's bounded pool of background work.
//!
//! Some work a request starts outlives the request: the copies of a write still out when
//! W answered, the read repair after a read that found replicas disagreeing. It runs in
//! tasks of its own, at most [`BACKGROUND_TASKS_MAX`] at once per node; a request that
//! would start one more waits for room, so a node whose replicas are slow pushes back on
//! its clients instead of piling up tasks and memory.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
        self.room().await.spawn(work);
    }

    /// Waits until one more task fits; the room is held until it is used or dropped.
    pub async fn room(&self) -> Room {
        match Arc::clone(&self.permits).acquire_owned().await {
            Ok(permit) => Room { _permit: Some(permit) },
            Err(_) => Room { _permit: None }, // never closed
        }
    }

    /// Runs `work` in a task of its own without waiting here: the task waits for room
    /// itself. For `Drop`, which cannot wait; a dropped request is the only caller, so
    /// the tasks that wait this way are as many as the requests dropped while their
    /// writes' copies were out.
    pub fn spawn_detached(&self, work: impl Future<Output = ()> + Send + 'static) {
        let permits = Arc::clone(&self.permits);
        tokio::spawn(async move {
            let Ok(permit) = permits.acquire_owned().await else {
                return; // never closed
            };
            work.await;
            drop(permit);
        });
    }
}

/// Room for one task in the pool, from [`Background::room`].
pub(crate) struct Room {
    /// Held, never read: the room is given back when it drops.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Room {
    /// Runs `work` in a task of its own, in this room.
    pub fn spawn(self, work: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(async move {
            work.await;
            drop(self);
        });
    }
}
