//! Operations on RDDs of `(key, value)` pairs: per-key aggregation,
//! partitioning, sorting and joins.

use crate::aggregate::{group_values, Combiner};
use crate::node::BoxIter;
use crate::rdd::{Rdd, UserFn};
use crate::shuffled::{Key, ShuffleDependency, ShuffledNode};
use crate::task::TaskContext;
use crate::transforms::Env;
use ember_core::{Data, Partitioner, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// A key's values from both sides of a co-group.
pub type CoGrouped<K, V, W> = (K, (Vec<V>, Vec<W>));

/// A full outer join's pair: either side may be missing.
pub type OuterPair<K, V, W> = (K, (Option<V>, Option<W>));

/// Which side of a co-group a value came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Side<V, W> {
    /// From the left RDD.
    Left(V),
    /// From the right RDD.
    Right(W),
}

impl<K: Key, V: Data> Rdd<(K, V)> {
    /// `f` applied to every value.
    pub fn map_values<U: Data, F: Fn(V) -> U + UserFn>(&self, f: F) -> Rdd<(K, U)> {
        self.map_partitions(move |it: BoxIter<(K, V)>| it.map(move |(k, v)| (k, f(v))))
    }

    /// `f(env, value)` for every value; `env` is shipped with the task.
    pub fn map_values_with<U: Data, E: Env, F: Fn(&E, V) -> U + UserFn>(
        &self,
        env: E,
        f: F,
    ) -> Rdd<(K, U)> {
        self.map_partitions_with_env(
            env,
            move |env: &Arc<E>, _: usize, it: BoxIter<(K, V)>| -> BoxIter<(K, U)> {
                let env = env.clone();
                Box::new(it.map(move |(k, v)| (k, f(&env, v))))
            },
        )
    }

    /// Every value of `f(value)`, each paired with its key.
    pub fn flat_map_values<U: Data, I, F>(&self, f: F) -> Rdd<(K, U)>
    where
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
        F: Fn(V) -> I + UserFn,
    {
        self.map_partitions(move |it: BoxIter<(K, V)>| {
            it.flat_map(move |(k, v)| f(v).into_iter().map(move |u| (k.clone(), u)))
        })
    }

    /// The keys.
    pub fn keys(&self) -> Rdd<K> {
        self.map(|(k, _): (K, V)| k)
    }

    /// The values.
    pub fn values(&self) -> Rdd<V> {
        self.map(|(_, v): (K, V)| v)
    }

    /// The pairs moved to the partitions `partitioner` names (a shuffle).
    pub fn partition_by(&self, partitioner: Partitioner<K>) -> Rdd<(K, V)> {
        let dep = ShuffleDependency::new(&self.runner, self.node.clone(), partitioner);
        let node = ShuffledNode::new(self.runner.new_rdd_id(), dep);
        self.wrap(Arc::new(node))
    }

    fn default_partitions(&self) -> usize {
        self.runner.default_parallelism().max(1)
    }

    /// Spark's `combineByKey` with an environment: values combined per key
    /// on the map side (`create`, `merge_value`), shuffled into
    /// `partitions` hash partitions, and merged (`merge_combiners`).
    pub fn combine_by_key_with<C: Data, E: Env + Clone, F1, F2, F3>(
        &self,
        env: E,
        create: F1,
        merge_value: F2,
        merge_combiners: F3,
        partitions: usize,
    ) -> Rdd<(K, C)>
    where
        F1: Fn(&E, V) -> C + UserFn,
        F2: Fn(&E, C, V) -> C + UserFn,
        F3: Fn(&E, C, C) -> C + UserFn,
    {
        let map_side = Combiner::new(env.clone(), create, merge_value, merge_combiners);
        let reduce_side = Combiner::new(env, create, merge_value, merge_combiners);
        self.map_partitions_with_env(
            map_side,
            |c: &Arc<Combiner<E, F1, F2, F3>>, _: usize, it: BoxIter<(K, V)>| c.combine_values(it),
        )
        .partition_by(Partitioner::Hash(partitions.max(1)))
        .map_partitions_with_env(
            reduce_side,
            |c: &Arc<Combiner<E, F1, F2, F3>>, _: usize, it: BoxIter<(K, C)>| c.merge_combiners(it),
        )
    }

    /// Spark's `combineByKey`, into the default number of partitions.
    pub fn combine_by_key<C: Data, F1, F2, F3>(
        &self,
        create: F1,
        merge_value: F2,
        merge_combiners: F3,
    ) -> Rdd<(K, C)>
    where
        F1: Fn(V) -> C + UserFn,
        F2: Fn(C, V) -> C + UserFn,
        F3: Fn(C, C) -> C + UserFn,
    {
        self.combine_by_key_with(
            (),
            move |_: &(), v: V| create(v),
            move |_: &(), c: C, v: V| merge_value(c, v),
            move |_: &(), a: C, b: C| merge_combiners(a, b),
            self.default_partitions(),
        )
    }

    /// Values of each key combined with `f` (combined on the map side
    /// first).
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let words = ctx.parallelize(vec!["a", "b", "a"].into_iter().map(String::from).collect(), 2)?;
    /// let mut counts = words.map(|w| (w, 1u64)).reduce_by_key(|a, b| a + b).collect()?;
    /// counts.sort();
    /// assert_eq!(counts, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn reduce_by_key<F: Fn(V, V) -> V + UserFn>(&self, f: F) -> Rdd<(K, V)> {
        self.reduce_by_key_into(f, self.default_partitions())
    }

    /// Values of each key combined with `f(env, a, b)`, into the default
    /// number of partitions; `env` is shipped with the tasks of both sides
    /// of the shuffle.
    pub fn reduce_by_key_with<E: Env + Clone, F: Fn(&E, V, V) -> V + UserFn>(
        &self,
        env: E,
        f: F,
    ) -> Rdd<(K, V)> {
        self.combine_by_key_with(
            env,
            |_: &E, v: V| v,
            move |e: &E, a: V, b: V| f(e, a, b),
            move |e: &E, a: V, b: V| f(e, a, b),
            self.default_partitions(),
        )
    }

    /// `reduce_by_key` into `partitions` partitions.
    pub fn reduce_by_key_into<F: Fn(V, V) -> V + UserFn>(
        &self,
        f: F,
        partitions: usize,
    ) -> Rdd<(K, V)> {
        self.combine_by_key_with(
            (),
            |_: &(), v: V| v,
            move |_: &(), a: V, b: V| f(a, b),
            move |_: &(), a: V, b: V| f(a, b),
            partitions,
        )
    }

    /// Values of each key folded from `zero` with `f` (`zero` may be used
    /// once per key and partition, as in Spark).
    pub fn fold_by_key<F: Fn(V, V) -> V + UserFn>(&self, zero: V, f: F) -> Rdd<(K, V)> {
        self.combine_by_key_with(
            zero,
            move |z: &V, v: V| f(z.clone(), v),
            move |_: &V, a: V, b: V| f(a, b),
            move |_: &V, a: V, b: V| f(a, b),
            self.default_partitions(),
        )
    }

    /// Values of each key aggregated from `zero` with `seq`, partial
    /// results combined with `comb`.
    pub fn aggregate_by_key<U: Data, S, C>(&self, zero: U, seq: S, comb: C) -> Rdd<(K, U)>
    where
        S: Fn(U, V) -> U + UserFn,
        C: Fn(U, U) -> U + UserFn,
    {
        self.combine_by_key_with(
            zero,
            move |z: &U, v: V| seq(z.clone(), v),
            move |_: &U, u: U, v: V| seq(u, v),
            move |_: &U, a: U, b: U| comb(a, b),
            self.default_partitions(),
        )
    }

    /// All values of each key (no map-side combine, as in Spark).
    pub fn group_by_key(&self) -> Rdd<(K, Vec<V>)> {
        self.group_by_key_into(self.default_partitions())
    }

    /// `group_by_key` into `partitions` partitions.
    pub fn group_by_key_into(&self, partitions: usize) -> Rdd<(K, Vec<V>)> {
        self.partition_by(Partitioner::Hash(partitions.max(1)))
            .map_partitions(|it: BoxIter<(K, V)>| group_values(it))
    }

    /// `f(key, values)` once per key, where `values` streams the key's
    /// values in arrival order instead of collecting them: each
    /// partition is sorted by key with spilling and the groups are read
    /// off the merged runs, so a key with more values than fit in memory
    /// works (Spark's `mapGroups` on a grouped Dataset). Values `f` does
    /// not read are skipped. Keys come out in ascending order within
    /// each of the default number of hash partitions.
    pub fn map_groups<U: Data, F>(&self, f: F) -> Rdd<(K, U)>
    where
        F: Fn(&K, &mut dyn Iterator<Item = V>) -> U + UserFn,
    {
        self.map_groups_into(f, self.default_partitions())
    }

    /// `map_groups` into `partitions` hash partitions.
    pub fn map_groups_into<U: Data, F>(&self, f: F, partitions: usize) -> Rdd<(K, U)>
    where
        F: Fn(&K, &mut dyn Iterator<Item = V>) -> U + UserFn,
    {
        self.partition_by(Partitioner::Hash(partitions.max(1)))
            .map_partitions(move |it: BoxIter<(K, V)>| {
                let sorted =
                    crate::spill::sort_records(it, true).unwrap_or_else(|e| crate::task::throw(e));
                crate::spill::Groups::new(sorted, f)
            })
    }

    /// Pairs sorted by key into `partitions` range partitions (a sampling
    /// job chooses the ranges first, as Spark does).
    pub fn sort_by_key(&self, ascending: bool, partitions: usize) -> Result<Rdd<(K, V)>> {
        let partitions = partitions.max(1);
        let per_partition = (20 * partitions)
            .div_ceil(self.num_partitions().max(1))
            .max(20);
        let samples = self.run_job(
            per_partition,
            |n: &Arc<usize>, tc: &TaskContext, it: BoxIter<(K, V)>| {
                let mut keys: Vec<K> = it.map(|(k, _)| k).collect();
                let mut rng = rand::rngs::StdRng::seed_from_u64(tc.partition as u64);
                keys.shuffle(&mut rng);
                keys.truncate(**n);
                keys
            },
            (0..self.num_partitions()).collect(),
        )?;
        let sample: Vec<K> = samples.into_iter().flatten().collect();
        let partitioner = Partitioner::range_from_sample(sample, partitions, ascending);
        Ok(self.partition_by(partitioner).map_partitions_with_env(
            ascending,
            |asc: &Arc<bool>, _: usize, it: BoxIter<(K, V)>| -> BoxIter<(K, V)> {
                crate::spill::sort_records(it, **asc).unwrap_or_else(|e| crate::task::throw(e))
            },
        ))
    }

    /// For each key, its values here and its values in `other`.
    pub fn cogroup<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<CoGrouped<K, V, W>> {
        self.cogroup_into(other, self.num_partitions().max(other.num_partitions()))
    }

    /// `cogroup` into `partitions` hash partitions.
    pub(crate) fn cogroup_into<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitions: usize,
    ) -> Rdd<CoGrouped<K, V, W>> {
        let left = self.map_values(|v: V| Side::<V, W>::Left(v));
        let right = other.map_values(|w: W| Side::<V, W>::Right(w));
        left.union(&right)
            .group_by_key_into(partitions.max(1))
            .map_values(|sides: Vec<Side<V, W>>| {
                let (mut vs, mut ws) = (Vec::new(), Vec::new());
                for s in sides {
                    match s {
                        Side::Left(v) => vs.push(v),
                        Side::Right(w) => ws.push(w),
                    }
                }
                (vs, ws)
            })
    }

    /// Pairs of values with equal keys.
    pub fn join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (V, W))> {
        self.cogroup(other)
            .flat_map_values(|(vs, ws): (Vec<V>, Vec<W>)| {
                vs.into_iter()
                    .flat_map(move |v| ws.clone().into_iter().map(move |w| (v.clone(), w)))
                    .collect::<Vec<_>>()
            })
    }

    /// Every pair here with the matching values of `other`, or `None`.
    pub fn left_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (V, Option<W>))> {
        self.cogroup(other)
            .flat_map_values(|(vs, ws): (Vec<V>, Vec<W>)| {
                let ws: Vec<Option<W>> = if ws.is_empty() {
                    vec![None]
                } else {
                    ws.into_iter().map(Some).collect()
                };
                vs.into_iter()
                    .flat_map(move |v| ws.clone().into_iter().map(move |w| (v.clone(), w)))
                    .collect::<Vec<_>>()
            })
    }

    /// Every pair of `other` with the matching values here, or `None`.
    pub fn right_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (Option<V>, W))> {
        self.cogroup(other)
            .flat_map_values(|(vs, ws): (Vec<V>, Vec<W>)| {
                let vs: Vec<Option<V>> = if vs.is_empty() {
                    vec![None]
                } else {
                    vs.into_iter().map(Some).collect()
                };
                vs.into_iter()
                    .flat_map(move |v| ws.clone().into_iter().map(move |w| (v.clone(), w)))
                    .collect::<Vec<_>>()
            })
    }

    /// Every key of either side, with the matching values or `None`.
    pub fn full_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<OuterPair<K, V, W>> {
        self.cogroup(other)
            .flat_map_values(|(vs, ws): (Vec<V>, Vec<W>)| {
                let vs: Vec<Option<V>> = if vs.is_empty() {
                    vec![None]
                } else {
                    vs.into_iter().map(Some).collect()
                };
                let ws: Vec<Option<W>> = if ws.is_empty() {
                    vec![None]
                } else {
                    ws.into_iter().map(Some).collect()
                };
                vs.into_iter()
                    .flat_map(move |v| ws.clone().into_iter().map(move |w| (v.clone(), w)))
                    .collect::<Vec<_>>()
            })
    }

    // ---- actions on pairs ----

    /// Number of pairs of each key.
    pub fn count_by_key(&self) -> Result<HashMap<K, u64>> {
        self.map_values(|_: V| 1u64).count_by_key_sum()
    }

    /// The pairs as a map (a later value of a key replaces an earlier one).
    pub fn collect_as_map(&self) -> Result<HashMap<K, V>> {
        Ok(self.collect()?.into_iter().collect())
    }

    /// The values of `key`.
    pub fn lookup(&self, key: K) -> Result<Vec<V>> {
        self.filter_with(key, |k: &K, (x, _): &(K, V)| x == k)
            .values()
            .collect()
    }
}

impl<K: Key> Rdd<(K, u64)> {
    /// Sums of the counts of each key, collected.
    pub(crate) fn count_by_key_sum(&self) -> Result<HashMap<K, u64>> {
        self.reduce_by_key(|a: u64, b: u64| a + b).collect_as_map()
    }
}
