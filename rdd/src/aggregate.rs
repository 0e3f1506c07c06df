//! Combining values by key inside one partition: the map-side combine and
//! the reduce-side merge of `combine_by_key` and everything built on it.

use crate::node::BoxIter;
use crate::shuffled::Key;
use ember_core::Shipped;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// A hash map whose iteration order depends only on its insertions, so
/// every mode and run yields records in the same order.
pub type StableMap<K, V> = HashMap<K, V, BuildHasherDefault<std::hash::DefaultHasher>>;

/// The three functions of `combine_by_key` and the value they share,
/// shipped to executors as one environment.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "E: Serialize",
    deserialize = "E: DeserializeOwned, F1: Copy + Send + Sync + 'static, F2: Copy + Send + Sync + 'static, F3: Copy + Send + Sync + 'static"
))]
pub struct Combiner<E, F1, F2, F3> {
    env: E,
    create: Shipped<F1>,
    merge_value: Shipped<F2>,
    merge_combiners: Shipped<F3>,
}

impl<E, F1, F2, F3> Combiner<E, F1, F2, F3>
where
    F1: Copy + Send + Sync + 'static,
    F2: Copy + Send + Sync + 'static,
    F3: Copy + Send + Sync + 'static,
{
    /// Bundles the functions with their environment.
    pub fn new(env: E, create: F1, merge_value: F2, merge_combiners: F3) -> Self {
        Combiner {
            env,
            create: Shipped::new(create),
            merge_value: Shipped::new(merge_value),
            merge_combiners: Shipped::new(merge_combiners),
        }
    }

    /// Combines values by key (the map side).
    pub fn combine_values<K: Key, V, C: 'static>(&self, records: BoxIter<(K, V)>) -> BoxIter<(K, C)>
    where
        F1: Fn(&E, V) -> C,
        F2: Fn(&E, C, V) -> C,
    {
        let (create, merge) = (self.create.get(), self.merge_value.get());
        let mut map: StableMap<K, Option<C>> = StableMap::default();
        for (k, v) in records {
            match map.get_mut(&k) {
                Some(slot) => {
                    let c = slot.take().expect("combiner present between merges");
                    *slot = Some(merge(&self.env, c, v));
                }
                None => {
                    map.insert(k, Some(create(&self.env, v)));
                }
            }
        }
        Box::new(map.into_iter().filter_map(|(k, c)| c.map(|c| (k, c))))
    }

    /// Merges combiners by key (the reduce side).
    pub fn merge_combiners<K: Key, C: 'static>(&self, records: BoxIter<(K, C)>) -> BoxIter<(K, C)>
    where
        F3: Fn(&E, C, C) -> C,
    {
        let merge = self.merge_combiners.get();
        let mut map: StableMap<K, Option<C>> = StableMap::default();
        for (k, c) in records {
            match map.get_mut(&k) {
                Some(slot) => {
                    let a = slot.take().expect("combiner present between merges");
                    *slot = Some(merge(&self.env, a, c));
                }
                None => {
                    map.insert(k, Some(c));
                }
            }
        }
        Box::new(map.into_iter().filter_map(|(k, c)| c.map(|c| (k, c))))
    }
}

/// Groups values by key, keeping arrival order within a key.
pub fn group_values<K: Key, V: 'static>(records: BoxIter<(K, V)>) -> BoxIter<(K, Vec<V>)> {
    let mut map: StableMap<K, Vec<V>> = StableMap::default();
    for (k, v) in records {
        map.entry(k).or_default().push(v);
    }
    Box::new(map.into_iter())
}
