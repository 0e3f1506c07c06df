//! The driver's record of where every map output lives.

use ember_core::{ExecutorId, ShuffleId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Where one map task's output is and how big each segment is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapStatus {
    /// The executor holding the files.
    pub executor: ExecutorId,
    /// Its block server address (`None` for the driver's own executor).
    pub address: Option<String>,
    /// Bytes of each reduce partition's segment.
    pub sizes: Vec<u64>,
}

/// Map outputs of every shuffle, on the driver.
#[derive(Default, Debug)]
pub struct MapOutputTracker {
    outputs: HashMap<ShuffleId, Vec<Option<MapStatus>>>,
}

impl MapOutputTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes room for a shuffle of `num_maps` map tasks (keeps what is
    /// already registered).
    pub fn register_shuffle(&mut self, shuffle: ShuffleId, num_maps: usize) {
        self.outputs
            .entry(shuffle)
            .or_insert_with(|| vec![None; num_maps]);
    }

    /// Records the output of map task `map`.
    pub fn register_map_output(&mut self, shuffle: ShuffleId, map: usize, status: MapStatus) {
        if let Some(slot) = self.outputs.get_mut(&shuffle).and_then(|v| v.get_mut(map)) {
            *slot = Some(status);
        }
    }

    /// Forgets map output `map` of `shuffle`.
    pub fn unregister_map_output(&mut self, shuffle: ShuffleId, map: usize) {
        if let Some(slot) = self.outputs.get_mut(&shuffle).and_then(|v| v.get_mut(map)) {
            *slot = None;
        }
    }

    /// Forgets every output of `shuffle` held by `executor`; returns how
    /// many.
    pub fn remove_shuffle_outputs_on(
        &mut self,
        shuffle: ShuffleId,
        executor: &ExecutorId,
    ) -> usize {
        let mut n = 0;
        for s in self.outputs.get_mut(&shuffle).into_iter().flatten() {
            if s.as_ref().is_some_and(|st| &st.executor == executor) {
                *s = None;
                n += 1;
            }
        }
        n
    }

    /// Forgets every output held by `executor`; returns how many.
    pub fn remove_outputs_on(&mut self, executor: &ExecutorId) -> usize {
        let mut n = 0;
        for slots in self.outputs.values_mut() {
            for s in slots.iter_mut() {
                if s.as_ref().is_some_and(|st| &st.executor == executor) {
                    *s = None;
                    n += 1;
                }
            }
        }
        n
    }

    /// Map partitions of `shuffle` whose output is missing.
    pub fn missing(&self, shuffle: ShuffleId) -> Vec<usize> {
        match self.outputs.get(&shuffle) {
            None => Vec::new(),
            Some(v) => v
                .iter()
                .enumerate()
                .filter(|(_, s)| s.is_none())
                .map(|(i, _)| i)
                .collect(),
        }
    }

    /// Whether every map output of `shuffle` is available.
    pub fn is_complete(&self, shuffle: ShuffleId) -> bool {
        self.outputs
            .get(&shuffle)
            .is_some_and(|v| v.iter().all(Option::is_some))
    }

    /// The statuses of a complete shuffle, in map order.
    pub fn statuses(&self, shuffle: ShuffleId) -> Option<Vec<MapStatus>> {
        self.outputs.get(&shuffle)?.iter().cloned().collect()
    }

    /// Forgets a shuffle entirely.
    pub fn remove_shuffle(&mut self, shuffle: ShuffleId) {
        self.outputs.remove(&shuffle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: &str) -> MapStatus {
        MapStatus {
            executor: ExecutorId(e.into()),
            address: None,
            sizes: vec![1],
        }
    }

    #[test]
    fn losing_an_executor_makes_its_outputs_missing() {
        let mut t = MapOutputTracker::new();
        t.register_shuffle(ShuffleId(0), 3);
        assert_eq!(t.missing(ShuffleId(0)), vec![0, 1, 2]);
        t.register_map_output(ShuffleId(0), 0, status("a"));
        t.register_map_output(ShuffleId(0), 1, status("b"));
        t.register_map_output(ShuffleId(0), 2, status("a"));
        assert!(t.is_complete(ShuffleId(0)));
        assert_eq!(t.remove_outputs_on(&ExecutorId("a".into())), 2);
        assert_eq!(t.missing(ShuffleId(0)), vec![0, 2]);
        assert!(t.statuses(ShuffleId(0)).is_none());
    }
}
