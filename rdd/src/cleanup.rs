//! Spark's ContextCleaner, the RDD side: a [`CleanupGuard`] lives inside
//! whatever holds a shuffle, a persisted RDD or a broadcast on the driver,
//! and when the last handle to it is dropped the guard tells the driver,
//! which removes the files, blocks and copies asynchronously.

use crate::runner::JobRunner;
use ember_core::{BroadcastId, RddId, ShuffleId};
use std::sync::{Arc, Mutex, Weak};

/// What can be cleaned up once nothing refers to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cleanup {
    /// A shuffle's map outputs on every executor and the scheduler's
    /// record of its stage.
    Shuffle(ShuffleId),
    /// A persisted RDD's cached blocks on every executor.
    Rdd(RddId),
    /// A broadcast value's copies on the driver and every executor.
    Broadcast(BroadcastId),
}

/// Reports its [`Cleanup`] to the driver when dropped, unless disarmed.
/// It holds the driver weakly, so it keeps nothing alive.
pub struct CleanupGuard {
    what: Mutex<Option<Cleanup>>,
    runner: Weak<dyn JobRunner>,
}

impl CleanupGuard {
    /// A guard reporting `what` to `runner`.
    pub fn new(what: Cleanup, runner: &Arc<dyn JobRunner>) -> Self {
        CleanupGuard {
            what: Mutex::new(Some(what)),
            runner: Arc::downgrade(runner),
        }
    }

    /// Reports nothing when dropped (the thing was cleaned up explicitly).
    pub fn disarm(&self) {
        self.what.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl std::fmt::Debug for CleanupGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CleanupGuard")
            .field(&*self.what.lock().unwrap_or_else(|p| p.into_inner()))
            .finish()
    }
}

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let what = self
            .what
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let (Some(what), Some(runner)) = (what, self.runner.upgrade()) {
            // Only queues the work: a drop may happen anywhere, even on a
            // thread that holds the scheduler.
            runner.cleanup(what);
        }
    }
}
