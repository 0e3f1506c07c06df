//! Combining values by key inside one partition: the map-side combine and
//! the reduce-side merge of `combine_by_key` and everything built on it.

use crate::node::BoxIter;
use crate::shuffled::Key;
use crate::spill::{Growth, SpillingMap};
use crate::task::throw;
use ember_core::Data;
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

    /// Combines values by key (the map side), spilling sorted runs to
    /// disk when execution memory runs out.
    pub fn combine_values<K: Key, V: Data, C: Data>(
        &self,
        records: BoxIter<(K, V)>,
    ) -> BoxIter<(K, C)>
    where
        F1: Fn(&E, V) -> C,
        F2: Fn(&E, C, V) -> C,
        F3: Fn(&E, C, C) -> C,
        E: Send + Sync + Clone + 'static,
    {
        let (create, merge, merge_c) = (
            self.create.get(),
            self.merge_value.get(),
            self.merge_combiners.get(),
        );
        let mut map = SpillingMap::new(Growth::PerKey);
        for (k, v) in records {
            map.insert(
                k,
                v,
                |v| create(&self.env, v),
                |c, v| merge(&self.env, c, v),
            )
            .unwrap_or_else(|e| throw(e));
        }
        let env = self.env.clone();
        map.finish(move |a, b| merge_c(&env, a, b))
            .unwrap_or_else(|e| throw(e))
    }

    /// Merges combiners by key (the reduce side), spilling like
    /// [`Combiner::combine_values`].
    pub fn merge_combiners<K: Key, C: Data>(&self, records: BoxIter<(K, C)>) -> BoxIter<(K, C)>
    where
        F3: Fn(&E, C, C) -> C,
        E: Send + Sync + Clone + 'static,
    {
        let merge = self.merge_combiners.get();
        let mut map = SpillingMap::new(Growth::PerKey);
        for (k, c) in records {
            map.insert(k, c, |c| c, |a, c| merge(&self.env, a, c))
                .unwrap_or_else(|e| throw(e));
        }
        let env = self.env.clone();
        map.finish(move |a, b| merge(&env, a, b))
            .unwrap_or_else(|e| throw(e))
    }
}

/// Groups values by key, keeping arrival order within a key; spills
/// sorted runs when execution memory runs out. Each key's values are one
/// vector in the end (the caller asked for a collection).
pub fn group_values<K: Key, V: Data>(records: BoxIter<(K, V)>) -> BoxIter<(K, Vec<V>)> {
    let mut map = SpillingMap::new(Growth::PerValue);
    for (k, v) in records {
        map.insert(
            k,
            v,
            |v| vec![v],
            |mut vs: Vec<V>, v| {
                vs.push(v);
                vs
            },
        )
        .unwrap_or_else(|e| throw(e));
    }
    map.finish(|mut a: Vec<V>, mut b: Vec<V>| {
        a.append(&mut b);
        a
    })
    .unwrap_or_else(|e| throw(e))
}
