//! Broadcast variables: a read-only value shipped to each executor once
//! and shared by all its tasks.

use crate::cleanup::{Cleanup, CleanupGuard};
use crate::runner::JobRunner;
use dashmap::DashMap;
use ember_core::{codec, BroadcastId, Data, EmberError, Result};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

/// A handle to a broadcast value; it serializes as its id only. On the
/// driver, the handles made by `Context::broadcast` share a guard: when the
/// last of them is dropped, every copy of the value is removed.
#[derive(Serialize, Deserialize)]
pub struct Broadcast<T> {
    id: BroadcastId,
    #[serde(skip)]
    _value: PhantomData<fn() -> T>,
    #[serde(skip)]
    cleanup: Option<Arc<CleanupGuard>>,
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        Broadcast {
            id: self.id,
            _value: PhantomData,
            cleanup: self.cleanup.clone(),
        }
    }
}

type Source = Box<dyn Fn(BroadcastId) -> Result<Vec<u8>> + Send + Sync>;

/// Values of this process, by id: the driver's own, and those an executor
/// has fetched.
static VALUES: LazyLock<DashMap<BroadcastId, Arc<dyn Any + Send + Sync>>> =
    LazyLock::new(DashMap::new);
/// How an executor process fetches a value it does not have.
static SOURCE: OnceLock<Source> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl<T: Data> Broadcast<T> {
    /// Registers `value` in this (driver) process; returns the handle and
    /// the bytes to serve to executors.
    pub fn create(value: T) -> Result<(Self, Vec<u8>)> {
        let id = BroadcastId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let bytes = codec::encode(&value)?;
        VALUES.insert(id, Arc::new(value));
        Ok((
            Broadcast {
                id,
                _value: PhantomData,
                cleanup: None,
            },
            bytes,
        ))
    }

    /// The same handle, whose copies are removed once it and its clones
    /// are dropped.
    pub fn with_cleanup(mut self, runner: &Arc<dyn JobRunner>) -> Self {
        self.cleanup = Some(Arc::new(CleanupGuard::new(
            Cleanup::Broadcast(self.id),
            runner,
        )));
        self
    }

    /// The value, fetched from the driver the first time this process
    /// needs it.
    pub fn value(&self) -> Arc<T> {
        self.try_value().unwrap_or_else(|e| crate::task::throw(e))
    }

    /// The value, or why it could not be had.
    pub fn try_value(&self) -> Result<Arc<T>> {
        if let Some(v) = VALUES.get(&self.id) {
            return v
                .value()
                .clone()
                .downcast::<T>()
                .map_err(|_| self.wrong_type());
        }
        let source = SOURCE.get().ok_or_else(|| {
            EmberError::Other(format!("{} is not known to this process", self.id))
        })?;
        let value: Arc<T> = Arc::new(codec::decode(&source(self.id)?, "broadcast value")?);
        VALUES.insert(self.id, value.clone());
        Ok(value)
    }

    /// Frees this process's copy (the driver's copy frees the value).
    pub fn destroy(self) {
        forget(self.id);
    }

    /// The id.
    pub fn id(&self) -> BroadcastId {
        self.id
    }

    fn wrong_type(&self) -> EmberError {
        EmberError::Other(format!(
            "{} does not hold a {}",
            self.id,
            std::any::type_name::<T>()
        ))
    }
}

/// Drops this process's copy of broadcast `id`, if it has one.
pub fn forget(id: BroadcastId) {
    VALUES.remove(&id);
}

/// Installs how this executor process fetches broadcast values (once).
pub fn set_source(source: impl Fn(BroadcastId) -> Result<Vec<u8>> + Send + Sync + 'static) {
    let _ = SOURCE.set(Box::new(source));
}
