//! Operations on RDDs of `(key, value)` pairs: per-key aggregation,
//! partitioning, sorting and joins.
//!
//! Each operation that groups by key works towards a partitioner: given
//! (`*_with_partitioner`), a hash partitioner of a given size (`*_into`),
//! or the input's own partitioner, else a hash partitioner (Spark's
//! `defaultPartitioner`). An input already placed by that partitioner is
//! read where it is (a narrow dependency, no shuffle); the result keeps
//! the partitioner, so a later operation by key needs no shuffle either.

use crate::aggregate::{group_values, Combiner};
use crate::node::BoxIter;
use crate::rdd::{Rdd, UserFn};
use crate::shuffled::{Key, ShuffleDependency, ShuffledNode};
use crate::task::TaskContext;
use crate::transforms::Env;
use crate::zip::ZipPartitionsNode;
use ember_core::partitioner::{DynPartitioner, Typed};
use ember_core::{Data, EmberError, KeyPartitioner, Partitioner, Result};
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
    /// `f` applied to every value (the partitioner is kept).
    pub fn map_values<U: Data, F: Fn(V) -> U + UserFn>(&self, f: F) -> Rdd<(K, U)> {
        self.map_partitions(move |it: BoxIter<(K, V)>| it.map(move |(k, v)| (k, f(v))))
            .with_partitioner(self.partitioner.clone())
    }

    /// `f(env, value)` for every value; `env` is shipped with the task
    /// (the partitioner is kept).
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
        .with_partitioner(self.partitioner.clone())
    }

    /// Every value of `f(value)`, each paired with its key (the
    /// partitioner is kept).
    pub fn flat_map_values<U: Data, I, F>(&self, f: F) -> Rdd<(K, U)>
    where
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
        F: Fn(V) -> I + UserFn,
    {
        self.map_partitions(move |it: BoxIter<(K, V)>| {
            it.flat_map(move |(k, v)| f(v).into_iter().map(move |u| (k.clone(), u)))
        })
        .with_partitioner(self.partitioner.clone())
    }

    /// `f` over each partition, whose records keep their keys (Spark's
    /// `mapPartitions` with `preservesPartitioning`): the partitioner is
    /// kept, so `f` must not put out a key that belongs in another
    /// partition.
    pub fn map_partitions_preserving<U: Data, I, F>(&self, f: F) -> Rdd<(K, U)>
    where
        I: IntoIterator<Item = (K, U)> + 'static,
        I::IntoIter: 'static,
        F: Fn(BoxIter<(K, V)>) -> I + UserFn,
    {
        self.map_partitions(f)
            .with_partitioner(self.partitioner.clone())
    }

    /// The keys.
    pub fn keys(&self) -> Rdd<K> {
        self.map(|(k, _): (K, V)| k)
    }

    /// The values.
    pub fn values(&self) -> Rdd<V> {
        self.map(|(_, v): (K, V)| v)
    }

    /// The pairs moved to the partitions `partitioner` names (a shuffle),
    /// or this RDD itself when it is already partitioned that way.
    /// `partitioner` is a [`Partitioner`] or the user's own
    /// [`KeyPartitioner`].
    pub fn partition_by<P: KeyPartitioner<K>>(&self, partitioner: P) -> Rdd<(K, V)> {
        self.partition_by_dyn(Typed::erase(partitioner))
    }

    pub(crate) fn partition_by_dyn(&self, partitioner: Arc<dyn DynPartitioner<K>>) -> Rdd<(K, V)> {
        if self.is_partitioned_by(partitioner.as_ref()) {
            return self.clone();
        }
        let dep = ShuffleDependency::new(&self.runner, self.node.clone(), partitioner);
        let placed = dep.partitioner();
        let node = ShuffledNode::new(self.runner.new_rdd_id(), dep);
        self.wrap(Arc::new(node)).with_partitioner(Some(placed))
    }

    /// This RDD's partitioner, for its key type.
    fn key_partitioner(&self) -> Option<Arc<dyn DynPartitioner<K>>> {
        self.partitioner.as_ref()?.for_keys::<K>()
    }

    fn is_partitioned_by(&self, partitioner: &dyn DynPartitioner<K>) -> bool {
        self.partitioner
            .as_ref()
            .is_some_and(|p| p.matches(partitioner))
    }

    fn default_partitions(&self) -> usize {
        self.runner.default_parallelism().max(1)
    }

    /// What a per-key operation on this RDD alone partitions by: its own
    /// partitioner, else a hash into the default parallelism.
    fn default_partitioner(&self) -> Arc<dyn DynPartitioner<K>> {
        self.key_partitioner()
            .unwrap_or_else(|| hash_partitioner(self.default_partitions()))
    }

    /// Spark's `combineByKey` with an environment: values combined per key
    /// on the map side (`create`, `merge_value`), shuffled into
    /// `partitions` hash partitions, and merged (`merge_combiners`); an
    /// RDD already placed that way is combined in place, with no shuffle.
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
        let partitioner = hash_partitioner(partitions);
        self.combine_by_key_on(env, create, merge_value, merge_combiners, partitioner)
    }

    /// `combine_by_key_with` by `partitioner`: when this RDD is already
    /// partitioned by it, the values are combined where they are, with
    /// no shuffle.
    pub fn combine_by_key_with_partitioner<C: Data, E: Env + Clone, F1, F2, F3, P>(
        &self,
        env: E,
        create: F1,
        merge_value: F2,
        merge_combiners: F3,
        partitioner: P,
    ) -> Rdd<(K, C)>
    where
        F1: Fn(&E, V) -> C + UserFn,
        F2: Fn(&E, C, V) -> C + UserFn,
        F3: Fn(&E, C, C) -> C + UserFn,
        P: KeyPartitioner<K>,
    {
        let partitioner = Typed::erase(partitioner);
        self.combine_by_key_on(env, create, merge_value, merge_combiners, partitioner)
    }

    fn combine_by_key_on<C: Data, E: Env + Clone, F1, F2, F3>(
        &self,
        env: E,
        create: F1,
        merge_value: F2,
        merge_combiners: F3,
        partitioner: Arc<dyn DynPartitioner<K>>,
    ) -> Rdd<(K, C)>
    where
        F1: Fn(&E, V) -> C + UserFn,
        F2: Fn(&E, C, V) -> C + UserFn,
        F3: Fn(&E, C, C) -> C + UserFn,
    {
        let reduce_side = Combiner::new(env.clone(), create, merge_value, merge_combiners);
        if self.is_partitioned_by(partitioner.as_ref()) {
            // Every value of a key is in this one partition already.
            return self
                .map_partitions_with_env(
                    reduce_side,
                    |c: &Arc<Combiner<E, F1, F2, F3>>, _: usize, it: BoxIter<(K, V)>| {
                        c.combine_values(it)
                    },
                )
                .with_partitioner(self.partitioner.clone());
        }
        let map_side = Combiner::new(env, create, merge_value, merge_combiners);
        let shuffled = self
            .map_partitions_with_env(
                map_side,
                |c: &Arc<Combiner<E, F1, F2, F3>>, _: usize, it: BoxIter<(K, V)>| {
                    c.combine_values(it)
                },
            )
            .partition_by_dyn(partitioner);
        shuffled
            .map_partitions_with_env(
                reduce_side,
                |c: &Arc<Combiner<E, F1, F2, F3>>, _: usize, it: BoxIter<(K, C)>| {
                    c.merge_combiners(it)
                },
            )
            .with_partitioner(shuffled.partitioner.clone())
    }

    /// Spark's `combineByKey`, by this RDD's partitioner or into the
    /// default number of hash partitions.
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
        self.combine_by_key_on(
            (),
            move |_: &(), v: V| create(v),
            move |_: &(), c: C, v: V| merge_value(c, v),
            move |_: &(), a: C, b: C| merge_combiners(a, b),
            self.default_partitioner(),
        )
    }

    /// Values of each key combined with `f` (combined on the map side
    /// first), by this RDD's partitioner (no shuffle) or into the default
    /// number of hash partitions.
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
        self.reduce_by_key_on(f, self.default_partitioner())
    }

    /// Values of each key combined with `f(env, a, b)`, by this RDD's
    /// partitioner or into the default number of hash partitions; `env`
    /// is shipped with the tasks of both sides of the shuffle.
    pub fn reduce_by_key_with<E: Env + Clone, F: Fn(&E, V, V) -> V + UserFn>(
        &self,
        env: E,
        f: F,
    ) -> Rdd<(K, V)> {
        self.combine_by_key_on(
            env,
            |_: &E, v: V| v,
            move |e: &E, a: V, b: V| f(e, a, b),
            move |e: &E, a: V, b: V| f(e, a, b),
            self.default_partitioner(),
        )
    }

    /// `reduce_by_key` into `partitions` hash partitions.
    pub fn reduce_by_key_into<F: Fn(V, V) -> V + UserFn>(
        &self,
        f: F,
        partitions: usize,
    ) -> Rdd<(K, V)> {
        self.reduce_by_key_on(f, hash_partitioner(partitions))
    }

    /// `reduce_by_key` by `partitioner`.
    pub fn reduce_by_key_with_partitioner<F, P>(&self, f: F, partitioner: P) -> Rdd<(K, V)>
    where
        F: Fn(V, V) -> V + UserFn,
        P: KeyPartitioner<K>,
    {
        self.reduce_by_key_on(f, Typed::erase(partitioner))
    }

    fn reduce_by_key_on<F: Fn(V, V) -> V + UserFn>(
        &self,
        f: F,
        partitioner: Arc<dyn DynPartitioner<K>>,
    ) -> Rdd<(K, V)> {
        self.combine_by_key_on(
            (),
            |_: &(), v: V| v,
            move |_: &(), a: V, b: V| f(a, b),
            move |_: &(), a: V, b: V| f(a, b),
            partitioner,
        )
    }

    /// Values of each key folded from `zero` with `f` (`zero` may be used
    /// once per key and partition, as in Spark), by this RDD's
    /// partitioner or into the default number of hash partitions.
    pub fn fold_by_key<F: Fn(V, V) -> V + UserFn>(&self, zero: V, f: F) -> Rdd<(K, V)> {
        self.fold_by_key_on(zero, f, self.default_partitioner())
    }

    /// `fold_by_key` into `partitions` hash partitions.
    pub fn fold_by_key_into<F: Fn(V, V) -> V + UserFn>(
        &self,
        zero: V,
        f: F,
        partitions: usize,
    ) -> Rdd<(K, V)> {
        self.fold_by_key_on(zero, f, hash_partitioner(partitions))
    }

    /// `fold_by_key` by `partitioner`.
    pub fn fold_by_key_with_partitioner<F, P>(&self, zero: V, f: F, partitioner: P) -> Rdd<(K, V)>
    where
        F: Fn(V, V) -> V + UserFn,
        P: KeyPartitioner<K>,
    {
        self.fold_by_key_on(zero, f, Typed::erase(partitioner))
    }

    fn fold_by_key_on<F: Fn(V, V) -> V + UserFn>(
        &self,
        zero: V,
        f: F,
        partitioner: Arc<dyn DynPartitioner<K>>,
    ) -> Rdd<(K, V)> {
        self.combine_by_key_on(
            zero,
            move |z: &V, v: V| f(z.clone(), v),
            move |_: &V, a: V, b: V| f(a, b),
            move |_: &V, a: V, b: V| f(a, b),
            partitioner,
        )
    }

    /// Values of each key aggregated from `zero` with `seq`, partial
    /// results combined with `comb`, by this RDD's partitioner or into
    /// the default number of hash partitions.
    pub fn aggregate_by_key<U: Data, S, C>(&self, zero: U, seq: S, comb: C) -> Rdd<(K, U)>
    where
        S: Fn(U, V) -> U + UserFn,
        C: Fn(U, U) -> U + UserFn,
    {
        self.aggregate_by_key_on(zero, seq, comb, self.default_partitioner())
    }

    /// `aggregate_by_key` into `partitions` hash partitions.
    pub fn aggregate_by_key_into<U: Data, S, C>(
        &self,
        zero: U,
        seq: S,
        comb: C,
        partitions: usize,
    ) -> Rdd<(K, U)>
    where
        S: Fn(U, V) -> U + UserFn,
        C: Fn(U, U) -> U + UserFn,
    {
        self.aggregate_by_key_on(zero, seq, comb, hash_partitioner(partitions))
    }

    /// `aggregate_by_key` by `partitioner`.
    pub fn aggregate_by_key_with_partitioner<U: Data, S, C, P>(
        &self,
        zero: U,
        seq: S,
        comb: C,
        partitioner: P,
    ) -> Rdd<(K, U)>
    where
        S: Fn(U, V) -> U + UserFn,
        C: Fn(U, U) -> U + UserFn,
        P: KeyPartitioner<K>,
    {
        self.aggregate_by_key_on(zero, seq, comb, Typed::erase(partitioner))
    }

    fn aggregate_by_key_on<U: Data, S, C>(
        &self,
        zero: U,
        seq: S,
        comb: C,
        partitioner: Arc<dyn DynPartitioner<K>>,
    ) -> Rdd<(K, U)>
    where
        S: Fn(U, V) -> U + UserFn,
        C: Fn(U, U) -> U + UserFn,
    {
        self.combine_by_key_on(
            zero,
            move |z: &U, v: V| seq(z.clone(), v),
            move |_: &U, u: U, v: V| seq(u, v),
            move |_: &U, a: U, b: U| comb(a, b),
            partitioner,
        )
    }

    /// All values of each key (no map-side combine, as in Spark), by this
    /// RDD's partitioner (no shuffle) or into the default number of hash
    /// partitions.
    pub fn group_by_key(&self) -> Rdd<(K, Vec<V>)> {
        self.group_by_key_on(self.default_partitioner())
    }

    /// `group_by_key` into `partitions` hash partitions.
    pub fn group_by_key_into(&self, partitions: usize) -> Rdd<(K, Vec<V>)> {
        self.group_by_key_on(hash_partitioner(partitions))
    }

    /// `group_by_key` by `partitioner`.
    pub fn group_by_key_with_partitioner<P: KeyPartitioner<K>>(
        &self,
        partitioner: P,
    ) -> Rdd<(K, Vec<V>)> {
        self.group_by_key_on(Typed::erase(partitioner))
    }

    pub(crate) fn group_by_key_on(
        &self,
        partitioner: Arc<dyn DynPartitioner<K>>,
    ) -> Rdd<(K, Vec<V>)> {
        let placed = self.partition_by_dyn(partitioner);
        placed
            .map_partitions(|it: BoxIter<(K, V)>| group_values(it))
            .with_partitioner(placed.partitioner.clone())
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
        let placed = self.partition_by(Partitioner::Hash(partitions.max(1)));
        placed
            .map_partitions(move |it: BoxIter<(K, V)>| {
                let sorted =
                    crate::spill::sort_records(it, true).unwrap_or_else(|e| crate::task::throw(e));
                crate::spill::Groups::new(sorted, f)
            })
            .with_partitioner(placed.partitioner.clone())
    }

    /// Pairs sorted by key into `partitions` range partitions (a sampling
    /// job chooses the ranges first, as Spark does); the result is
    /// partitioned by that range partitioner.
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
        let placed = self.partition_by(partitioner);
        Ok(placed
            .map_partitions_with_env(
                ascending,
                |asc: &Arc<bool>, _: usize, it: BoxIter<(K, V)>| -> BoxIter<(K, V)> {
                    crate::spill::sort_records(it, **asc).unwrap_or_else(|e| crate::task::throw(e))
                },
            )
            .with_partitioner(placed.partitioner.clone()))
    }

    /// What a co-group of this RDD and one with `other_partitions`
    /// partitions and partitioner `other` partitions by (Spark's
    /// `defaultPartitioner`): the partitioner of the input with more
    /// partitions among those that have one, else a hash into as many
    /// partitions as the larger input has.
    fn default_partitioner_with(
        &self,
        other: Option<Arc<dyn DynPartitioner<K>>>,
        other_partitions: usize,
    ) -> Arc<dyn DynPartitioner<K>> {
        match (self.key_partitioner(), other) {
            (Some(a), Some(b)) if b.num_partitions() > a.num_partitions() => b,
            (Some(a), _) => a,
            (None, Some(b)) => b,
            (None, None) => hash_partitioner(self.num_partitions().max(other_partitions)),
        }
    }

    /// For each key, its values here and its values in `other`: by the
    /// inputs' partitioner when either has one (an input partitioned that
    /// way is not shuffled), else into as many hash partitions as the
    /// larger input has.
    pub fn cogroup<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<CoGrouped<K, V, W>> {
        let partitioner =
            self.default_partitioner_with(other.key_partitioner(), other.num_partitions());
        self.cogroup_on(other, partitioner)
    }

    /// `cogroup` into `partitions` hash partitions.
    pub fn cogroup_into<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitions: usize,
    ) -> Rdd<CoGrouped<K, V, W>> {
        self.cogroup_on(other, hash_partitioner(partitions))
    }

    /// `cogroup` by `partitioner`.
    pub fn cogroup_with_partitioner<W: Data, P: KeyPartitioner<K>>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: P,
    ) -> Rdd<CoGrouped<K, V, W>> {
        self.cogroup_on(other, Typed::erase(partitioner))
    }

    /// Spark's `CoGroupedRDD`: each side placed by `partitioner` (a
    /// shuffle, unless it is already), then partition `i` groups
    /// partition `i` of both sides (a narrow dependency on each).
    fn cogroup_on<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: Arc<dyn DynPartitioner<K>>,
    ) -> Rdd<CoGrouped<K, V, W>> {
        let left = self.partition_by_dyn(partitioner.clone());
        let right = other.partition_by_dyn(partitioner);
        let node = ZipPartitionsNode::new(
            left.core(left.num_partitions()),
            left.node.clone(),
            right.node.clone(),
            (),
            |_: &Arc<()>, _: usize, a: BoxIter<(K, V)>, b: BoxIter<(K, W)>| {
                let sides = a
                    .map(|(k, v)| (k, Side::<V, W>::Left(v)))
                    .chain(b.map(|(k, w)| (k, Side::Right(w))));
                let grouped: BoxIter<CoGrouped<K, V, W>> =
                    Box::new(group_values(Box::new(sides)).map(|(k, sides)| (k, split(sides))));
                grouped
            },
        );
        left.wrap(Arc::new(node))
            .with_partitioner(left.partitioner.clone())
    }

    /// Pairs of values with equal keys (see [`Rdd::cogroup`] for the
    /// partitioning).
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let by_id = Partitioner::Hash(2);
    /// let names = ctx.parallelize(vec![(1u32, 'a'), (2, 'b')], 2)?.partition_by(by_id.clone());
    /// let ages = ctx.parallelize(vec![(1u32, 31u8), (2, 42)], 2)?.partition_by(by_id);
    /// // Both sides are placed alike: the join reads them where they are.
    /// let mut joined = names.join(&ages).collect()?;
    /// joined.sort();
    /// assert_eq!(joined, vec![(1, ('a', 31)), (2, ('b', 42))]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (V, W))> {
        self.cogroup(other).flat_map_values(inner_pairs)
    }

    /// `join` into `partitions` hash partitions.
    pub fn join_into<W: Data>(&self, other: &Rdd<(K, W)>, partitions: usize) -> Rdd<(K, (V, W))> {
        self.cogroup_into(other, partitions)
            .flat_map_values(inner_pairs)
    }

    /// `join` by `partitioner`.
    pub fn join_with_partitioner<W: Data, P: KeyPartitioner<K>>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: P,
    ) -> Rdd<(K, (V, W))> {
        self.cogroup_with_partitioner(other, partitioner)
            .flat_map_values(inner_pairs)
    }

    /// Every pair here with the matching values of `other`, or `None`.
    pub fn left_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (V, Option<W>))> {
        self.cogroup(other).flat_map_values(left_pairs)
    }

    /// `left_outer_join` into `partitions` hash partitions.
    pub fn left_outer_join_into<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitions: usize,
    ) -> Rdd<(K, (V, Option<W>))> {
        self.cogroup_into(other, partitions)
            .flat_map_values(left_pairs)
    }

    /// `left_outer_join` by `partitioner`.
    pub fn left_outer_join_with_partitioner<W: Data, P: KeyPartitioner<K>>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: P,
    ) -> Rdd<(K, (V, Option<W>))> {
        self.cogroup_with_partitioner(other, partitioner)
            .flat_map_values(left_pairs)
    }

    /// Every pair of `other` with the matching values here, or `None`.
    pub fn right_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (Option<V>, W))> {
        self.cogroup(other).flat_map_values(right_pairs)
    }

    /// `right_outer_join` into `partitions` hash partitions.
    pub fn right_outer_join_into<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitions: usize,
    ) -> Rdd<(K, (Option<V>, W))> {
        self.cogroup_into(other, partitions)
            .flat_map_values(right_pairs)
    }

    /// `right_outer_join` by `partitioner`.
    pub fn right_outer_join_with_partitioner<W: Data, P: KeyPartitioner<K>>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: P,
    ) -> Rdd<(K, (Option<V>, W))> {
        self.cogroup_with_partitioner(other, partitioner)
            .flat_map_values(right_pairs)
    }

    /// Every key of either side, with the matching values or `None`.
    pub fn full_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<OuterPair<K, V, W>> {
        self.cogroup(other).flat_map_values(outer_pairs)
    }

    /// `full_outer_join` into `partitions` hash partitions.
    pub fn full_outer_join_into<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
        partitions: usize,
    ) -> Rdd<OuterPair<K, V, W>> {
        self.cogroup_into(other, partitions)
            .flat_map_values(outer_pairs)
    }

    /// `full_outer_join` by `partitioner`.
    pub fn full_outer_join_with_partitioner<W: Data, P: KeyPartitioner<K>>(
        &self,
        other: &Rdd<(K, W)>,
        partitioner: P,
    ) -> Rdd<OuterPair<K, V, W>> {
        self.cogroup_with_partitioner(other, partitioner)
            .flat_map_values(outer_pairs)
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

    /// The values of `key`. When the partitioner is known, the job reads
    /// only the partition `key` belongs to; otherwise every partition.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let pairs = ctx.parallelize((0..100u32).map(|i| (i % 10, i)).collect(), 4)?;
    /// let placed = pairs.partition_by(Partitioner::Hash(8)).cache();
    /// let mut sevens = placed.lookup(7)?; // one task, on one partition
    /// sevens.sort();
    /// assert_eq!(sevens, (0..10).map(|i| i * 10 + 7).collect::<Vec<_>>());
    /// # Ok(())
    /// # }
    /// ```
    pub fn lookup(&self, key: K) -> Result<Vec<V>> {
        let Some(partitioner) = self.key_partitioner() else {
            return self
                .filter_with(key, |k: &K, (x, _): &(K, V)| x == k)
                .values()
                .collect();
        };
        let part = partitioner.partition(&key);
        if part >= self.num_partitions() {
            return Err(EmberError::Other(format!(
                "partitioner {} put the key in partition {part} of {}",
                partitioner.type_name(),
                self.num_partitions()
            )));
        }
        let found = self.run_job(
            key,
            |k: &Arc<K>, _: &TaskContext, it: BoxIter<(K, V)>| -> Vec<V> {
                it.filter(|(x, _)| x == k.as_ref())
                    .map(|(_, v)| v)
                    .collect()
            },
            vec![part],
        )?;
        Ok(found.into_iter().flatten().collect())
    }
}

/// A hash partitioner of `partitions` partitions (at least one).
pub(crate) fn hash_partitioner<K: Key>(partitions: usize) -> Arc<dyn DynPartitioner<K>> {
    Typed::erase(Partitioner::Hash(partitions.max(1)))
}

/// A co-grouped key's values split back by side.
fn split<V, W>(sides: Vec<Side<V, W>>) -> (Vec<V>, Vec<W>) {
    let (mut vs, mut ws) = (Vec::new(), Vec::new());
    for s in sides {
        match s {
            Side::Left(v) => vs.push(v),
            Side::Right(w) => ws.push(w),
        }
    }
    (vs, ws)
}

/// Every pair of one value of each side.
fn cross<A: Clone, B: Clone>(xs: Vec<A>, ys: Vec<B>) -> Vec<(A, B)> {
    xs.into_iter()
        .flat_map(move |x| ys.clone().into_iter().map(move |y| (x.clone(), y)))
        .collect()
}

/// The values of a side, or one `None` when it has none.
fn or_none<A>(xs: Vec<A>) -> Vec<Option<A>> {
    if xs.is_empty() {
        vec![None]
    } else {
        xs.into_iter().map(Some).collect()
    }
}

fn inner_pairs<V: Clone, W: Clone>((vs, ws): (Vec<V>, Vec<W>)) -> Vec<(V, W)> {
    cross(vs, ws)
}

fn left_pairs<V: Clone, W: Clone>((vs, ws): (Vec<V>, Vec<W>)) -> Vec<(V, Option<W>)> {
    cross(vs, or_none(ws))
}

fn right_pairs<V: Clone, W: Clone>((vs, ws): (Vec<V>, Vec<W>)) -> Vec<(Option<V>, W)> {
    cross(or_none(vs), ws)
}

fn outer_pairs<V: Clone, W: Clone>((vs, ws): (Vec<V>, Vec<W>)) -> Vec<(Option<V>, Option<W>)> {
    cross(or_none(vs), or_none(ws))
}

impl<K: Key> Rdd<(K, u64)> {
    /// Sums of the counts of each key, collected.
    pub(crate) fn count_by_key_sum(&self) -> Result<HashMap<K, u64>> {
        self.reduce_by_key(|a: u64, b: u64| a + b).collect_as_map()
    }
}
