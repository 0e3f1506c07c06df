//! Accumulators: values tasks add to and the driver reads. A task's
//! updates travel back with its result and are merged only when the
//! scheduler accepts that task as the first success for its partition, so
//! retried and recomputed tasks count once.

use dashmap::DashMap;
use ember_core::{codec, AccumulatorId, Data, Result};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

/// A value that can be accumulated: a zero and an associative merge.
pub trait AccumValue: Data {
    /// The neutral value.
    fn zero() -> Self;
    /// Adds `other` into `self`.
    fn merge(&mut self, other: Self);
}

macro_rules! numeric_accum {
    ($($t:ty),*) => {$(
        impl AccumValue for $t {
            fn zero() -> Self { 0 as $t }
            fn merge(&mut self, other: Self) { *self += other; }
        }
    )*};
}
numeric_accum!(i32, i64, u32, u64, usize, f32, f64);

impl<T: Data> AccumValue for Vec<T> {
    fn zero() -> Self {
        Vec::new()
    }
    fn merge(&mut self, mut other: Self) {
        self.append(&mut other);
    }
}

/// A shared variable that tasks add to and the driver reads.
#[derive(Clone, Serialize, Deserialize)]
pub struct Accumulator<T> {
    id: AccumulatorId,
    #[serde(skip)]
    driver_value: Option<Arc<Mutex<T>>>,
}

type MergeFn = Box<dyn Fn(&[u8]) -> Result<()> + Send + Sync>;

/// Driver-side merge functions of live accumulators, by id.
static REGISTRY: LazyLock<DashMap<AccumulatorId, MergeFn>> = LazyLock::new(DashMap::new);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

trait Update: Any {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn encode(&self) -> Result<Vec<u8>>;
}

impl<T: AccumValue> Update for T {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn encode(&self) -> Result<Vec<u8>> {
        codec::encode(self)
    }
}

thread_local! {
    /// Updates of the task running on this thread (`None` outside tasks).
    static TASK_UPDATES: RefCell<Option<HashMap<AccumulatorId, Box<dyn Update>>>> = const { RefCell::new(None) };
}

impl<T: AccumValue> Accumulator<T> {
    /// A new accumulator starting at `initial`, registered with the driver.
    pub fn new(initial: T) -> Self {
        let id = AccumulatorId(NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let value = Arc::new(Mutex::new(initial));
        let weak: Weak<Mutex<T>> = Arc::downgrade(&value);
        let merge: MergeFn = Box::new(move |bytes: &[u8]| {
            let update: T = codec::decode(bytes, "accumulator update")?;
            if let Some(v) = weak.upgrade() {
                v.lock().unwrap_or_else(|p| p.into_inner()).merge(update);
            }
            Ok(())
        });
        REGISTRY.insert(id, merge);
        Accumulator {
            id,
            driver_value: Some(value),
        }
    }

    /// Adds `v`: inside a task, to the task's updates; on the driver,
    /// directly.
    pub fn add(&self, v: T) {
        let mut v = Some(v);
        TASK_UPDATES.with(|u| {
            if let Some(map) = u.borrow_mut().as_mut() {
                let slot = map.entry(self.id).or_insert_with(|| Box::new(T::zero()));
                if let Some(acc) = slot.as_any_mut().downcast_mut::<T>() {
                    acc.merge(v.take().expect("value present"));
                }
            }
        });
        if let (Some(v), Some(d)) = (v, &self.driver_value) {
            d.lock().unwrap_or_else(|p| p.into_inner()).merge(v);
        }
    }

    /// The current value on the driver (the zero value inside a task).
    pub fn value(&self) -> T {
        match &self.driver_value {
            Some(d) => d.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            None => T::zero(),
        }
    }

    /// This accumulator's id.
    pub fn id(&self) -> AccumulatorId {
        self.id
    }
}

/// Starts collecting updates for a task on this thread.
pub(crate) fn begin_task() {
    TASK_UPDATES.with(|u| *u.borrow_mut() = Some(HashMap::new()));
}

/// Stops collecting and returns the task's encoded updates.
pub(crate) fn end_task() -> Vec<(AccumulatorId, Vec<u8>)> {
    let map = TASK_UPDATES
        .with(|u| u.borrow_mut().take())
        .unwrap_or_default();
    map.into_iter()
        .filter_map(|(id, u)| u.encode().ok().map(|b| (id, b)))
        .collect()
}

/// Merges a successful task's updates into the driver's values.
pub fn apply_updates(updates: &[(AccumulatorId, Vec<u8>)]) -> Result<()> {
    for (id, bytes) in updates {
        if let Some(merge) = REGISTRY.get(id) {
            merge(bytes)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_updates_reach_the_driver_only_when_applied() {
        let acc = Accumulator::new(0i64);
        begin_task();
        acc.add(5);
        acc.add(2);
        let updates = end_task();
        assert_eq!(acc.value(), 0, "not applied yet");
        apply_updates(&updates).unwrap();
        assert_eq!(acc.value(), 7);
        acc.add(1);
        assert_eq!(acc.value(), 8, "driver-side adds apply directly");
    }
}
