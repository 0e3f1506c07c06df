//! [`Rdd<T>`]: the user's handle on a dataset, with its transformations
//! and actions. Transformations only build lineage; actions run jobs.
//!
//! User functions must not capture variables (see `ember_core::ship`):
//! values they need go in through the `*_with(env, ..)` variants, which
//! ship `env` to the executors, or through broadcast variables.

use crate::cleanup::{Cleanup, CleanupGuard};
use crate::node::{BoxIter, Compute, NodeCore, RddNode};
use crate::runner::JobRunner;
use crate::shuffled::{Key, ResultRoot};
use crate::task::TaskContext;
use crate::transforms::{CoalesceNode, Env, MapPartitionsNode, PartitionFn, UnionNode};
use ember_core::{codec, Data, PartitionerRef, RddId, Result};
use ember_storage::StorageLevel;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;
use std::sync::Arc;

/// A lazy, partitioned, typed dataset.
///
/// Transformations describe new RDDs; actions (`collect`, `count`, ...)
/// run jobs. Functions passed to them must not capture variables (they
/// travel to executors by type); a value a function needs is the `env` of
/// a `*_with` operation, or a broadcast:
///
/// ```
/// use ember_driver::prelude::*;
///
/// # fn main() -> ember_driver::Result<()> {
/// let ctx = Context::new("local[2]")?;
/// let limit = 3u64;
/// let small = ctx.parallelize((1..=6u64).collect(), 2)?.filter_with(limit, |l, x| x <= l);
/// assert_eq!(small.collect()?, vec![1, 2, 3]);
/// # Ok(())
/// # }
/// ```
///
/// A closure that captures does not compile:
///
/// ```compile_fail,E0080
/// # use ember_driver::prelude::*;
/// # fn main() -> ember_driver::Result<()> {
/// # let ctx = Context::new("local[2]")?;
/// let limit = 3u64;
/// let small = ctx.parallelize((1..=6u64).collect(), 2)?.filter(move |x| *x <= limit);
/// # small.count()?;
/// # Ok(())
/// # }
/// ```
pub struct Rdd<T> {
    pub(crate) node: Arc<dyn Compute<T>>,
    pub(crate) runner: Arc<dyn JobRunner>,
    /// How the records are placed in partitions by key, when known.
    pub(crate) partitioner: Option<PartitionerRef>,
}

impl<T> Clone for Rdd<T> {
    fn clone(&self) -> Self {
        Rdd {
            node: self.node.clone(),
            runner: self.runner.clone(),
            partitioner: self.partitioner.clone(),
        }
    }
}

/// Bound of user functions: no captures (zero-sized), callable from any
/// thread.
pub trait UserFn: Copy + Send + Sync + 'static {}
impl<F: Copy + Send + Sync + 'static> UserFn for F {}

impl<T: Data> Rdd<T> {
    /// Wraps a lineage node.
    pub fn from_node(runner: Arc<dyn JobRunner>, node: Arc<dyn Compute<T>>) -> Self {
        Rdd {
            node,
            runner,
            partitioner: None,
        }
    }

    /// This RDD's id.
    pub fn id(&self) -> RddId {
        self.node.core().id
    }

    /// Number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.node.core().partitions
    }

    /// How the records (pairs) are placed in partitions by key, when that
    /// is known (Spark's `partitioner`): set by `partition_by` and the
    /// shuffling pair operations, kept by operations that cannot move a
    /// record to another key (`filter`, `map_values`, ...), dropped by
    /// the others (`map`, ...).
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let pairs = ctx.parallelize(vec![(1u32, 'a'), (2, 'b')], 2)?;
    /// assert_eq!(pairs.partitioner(), None);
    /// let placed = pairs.partition_by(Partitioner::Hash(3));
    /// let hash3 = PartitionerRef::new(Partitioner::<u32>::Hash(3));
    /// assert_eq!(placed.partitioner(), Some(hash3.clone()));
    /// assert_eq!(placed.map_values(|c| c.to_ascii_uppercase()).partitioner(), Some(hash3));
    /// assert_eq!(placed.map(|(k, c)| (k + 1, c)).partitioner(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn partitioner(&self) -> Option<PartitionerRef> {
        self.partitioner.clone()
    }

    /// This RDD, its partitioner said to be `partitioner` (for operations
    /// that keep every record in its key's partition).
    pub(crate) fn with_partitioner(mut self, partitioner: Option<PartitionerRef>) -> Self {
        self.partitioner = partitioner;
        self
    }

    /// The lineage node (for the scheduler and tests).
    pub fn node(&self) -> Arc<dyn RddNode> {
        self.node.clone().as_node()
    }

    /// The typed lineage node.
    pub fn compute_node(&self) -> Arc<dyn Compute<T>> {
        self.node.clone()
    }

    /// The job runner (driver context) of this RDD.
    pub fn runner(&self) -> &Arc<dyn JobRunner> {
        &self.runner
    }

    pub(crate) fn core(&self, partitions: usize) -> NodeCore {
        NodeCore::new(self.runner.new_rdd_id(), partitions)
    }

    pub(crate) fn wrap<U: Data>(&self, node: Arc<dyn Compute<U>>) -> Rdd<U> {
        Rdd {
            node,
            runner: self.runner.clone(),
            partitioner: None,
        }
    }

    fn derive<U: Data, E: Env, F: PartitionFn<E, T, U>>(
        &self,
        name: &'static str,
        env: E,
        f: F,
    ) -> Rdd<U> {
        let node = MapPartitionsNode::new(
            self.core(self.num_partitions()),
            self.node.clone(),
            env,
            f,
            name,
        );
        self.wrap(Arc::new(node))
    }

    // ---- narrow transformations ----

    /// The primitive behind every per-partition transformation:
    /// `f(env, partition index, records)`.
    pub fn map_partitions_with_env<U: Data, E: Env, F: PartitionFn<E, T, U>>(
        &self,
        env: E,
        f: F,
    ) -> Rdd<U> {
        self.derive("map_partitions", env, f)
    }

    /// `f` applied to every record.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let squares = ctx.parallelize(vec![1u64, 2, 3], 2)?.map(|x| x * x);
    /// assert_eq!(squares.collect()?, vec![1, 4, 9]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn map<U: Data, F: Fn(T) -> U + UserFn>(&self, f: F) -> Rdd<U> {
        self.derive(
            "map",
            (),
            move |_: &Arc<()>, _: usize, it: BoxIter<T>| -> BoxIter<U> { Box::new(it.map(f)) },
        )
    }

    /// `f(env, record)` for every record; `env` is shipped with the task.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let scaled = ctx.parallelize(vec![1u64, 2, 3], 2)?.map_with(10u64, |k, x| k * x);
    /// assert_eq!(scaled.collect()?, vec![10, 20, 30]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn map_with<U: Data, E: Env, F: Fn(&E, T) -> U + UserFn>(&self, env: E, f: F) -> Rdd<U> {
        self.derive(
            "map",
            env,
            move |env: &Arc<E>, _: usize, it: BoxIter<T>| -> BoxIter<U> {
                let env = env.clone();
                Box::new(it.map(move |x| f(&env, x)))
            },
        )
    }

    /// Records for which `f` is true.
    pub fn filter<F: Fn(&T) -> bool + UserFn>(&self, f: F) -> Rdd<T> {
        self.derive(
            "filter",
            (),
            move |_: &Arc<()>, _: usize, it: BoxIter<T>| -> BoxIter<T> { Box::new(it.filter(f)) },
        )
        .with_partitioner(self.partitioner.clone())
    }

    /// Records for which `f(env, record)` is true.
    pub fn filter_with<E: Env, F: Fn(&E, &T) -> bool + UserFn>(&self, env: E, f: F) -> Rdd<T> {
        self.derive(
            "filter",
            env,
            move |env: &Arc<E>, _: usize, it: BoxIter<T>| -> BoxIter<T> {
                let env = env.clone();
                Box::new(it.filter(move |x| f(&env, x)))
            },
        )
        .with_partitioner(self.partitioner.clone())
    }

    /// Every record of `f(record)`, flattened.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let lines = ctx.parallelize(vec!["a b".to_string(), "c".into()], 2)?;
    /// let words = lines.flat_map(|l: String| l.split(' ').map(String::from).collect::<Vec<_>>());
    /// assert_eq!(words.collect()?, vec!["a", "b", "c"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn flat_map<U: Data, I, F>(&self, f: F) -> Rdd<U>
    where
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
        F: Fn(T) -> I + UserFn,
    {
        self.derive(
            "flat_map",
            (),
            move |_: &Arc<()>, _: usize, it: BoxIter<T>| -> BoxIter<U> { Box::new(it.flat_map(f)) },
        )
    }

    /// Every record of `f(env, record)`, flattened.
    pub fn flat_map_with<U: Data, E: Env, I, F>(&self, env: E, f: F) -> Rdd<U>
    where
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
        F: Fn(&E, T) -> I + UserFn,
    {
        self.derive(
            "flat_map",
            env,
            move |env: &Arc<E>, _: usize, it: BoxIter<T>| -> BoxIter<U> {
                let env = env.clone();
                Box::new(it.flat_map(move |x| f(&env, x)))
            },
        )
    }

    /// `f` applied to each whole partition.
    pub fn map_partitions<U: Data, I, F>(&self, f: F) -> Rdd<U>
    where
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
        F: Fn(BoxIter<T>) -> I + UserFn,
    {
        self.derive(
            "map_partitions",
            (),
            move |_: &Arc<()>, _: usize, it: BoxIter<T>| -> BoxIter<U> {
                Box::new(f(it).into_iter())
            },
        )
    }

    /// `f(env, records)` for each whole partition; `env` is shipped with
    /// the task (Spark's `mapPartitions` with a captured value).
    pub fn map_partitions_with<U: Data, E: Env, I, F>(&self, env: E, f: F) -> Rdd<U>
    where
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
        F: Fn(&E, BoxIter<T>) -> I + UserFn,
    {
        self.derive(
            "map_partitions",
            env,
            move |env: &Arc<E>, _: usize, it: BoxIter<T>| -> BoxIter<U> {
                Box::new(f(env, it).into_iter())
            },
        )
    }

    /// `f(partition index, records)` for each partition.
    pub fn map_partitions_with_index<U: Data, I, F>(&self, f: F) -> Rdd<U>
    where
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
        F: Fn(usize, BoxIter<T>) -> I + UserFn,
    {
        self.derive(
            "map_partitions_with_index",
            (),
            move |_: &Arc<()>, p: usize, it: BoxIter<T>| -> BoxIter<U> {
                Box::new(f(p, it).into_iter())
            },
        )
    }

    /// `(f(record), record)` pairs.
    pub fn key_by<K: Data, F: Fn(&T) -> K + UserFn>(&self, f: F) -> Rdd<(K, T)> {
        self.derive(
            "key_by",
            (),
            move |_: &Arc<()>, _: usize, it: BoxIter<T>| -> BoxIter<(K, T)> {
                Box::new(it.map(move |x| (f(&x), x)))
            },
        )
    }

    /// `(f(env, &record), record)` pairs; `env` is shipped with the task.
    pub fn key_by_with<K: Data, E: Env, F: Fn(&E, &T) -> K + UserFn>(
        &self,
        env: E,
        f: F,
    ) -> Rdd<(K, T)> {
        self.derive(
            "key_by",
            env,
            move |env: &Arc<E>, _: usize, it: BoxIter<T>| -> BoxIter<(K, T)> {
                let env = env.clone();
                Box::new(it.map(move |x| (f(&env, &x), x)))
            },
        )
    }

    /// Each partition as one vector.
    pub fn glom(&self) -> Rdd<Vec<T>> {
        self.derive(
            "glom",
            (),
            |_: &Arc<()>, _: usize, it: BoxIter<T>| -> BoxIter<Vec<T>> {
                Box::new(std::iter::once(it.collect()))
            },
        )
    }

    /// A random sample: each record kept with probability `fraction`
    /// (without replacement) or repeated a Poisson(`fraction`) number of
    /// times (with replacement); the same seed gives the same sample.
    pub fn sample(&self, with_replacement: bool, fraction: f64, seed: u64) -> Rdd<T> {
        self.derive(
            "sample",
            (with_replacement, fraction, seed),
            |env: &Arc<(bool, f64, u64)>, p: usize, it: BoxIter<T>| -> BoxIter<T> {
                let (with_replacement, fraction, seed) = **env;
                let mut rng = rand::rngs::StdRng::seed_from_u64(
                    seed ^ (p as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                if with_replacement {
                    Box::new(it.flat_map(move |x| {
                        let n = poisson(&mut rng, fraction);
                        std::iter::repeat_n(x, n)
                    }))
                } else {
                    Box::new(it.filter(move |_| rng.gen::<f64>() < fraction))
                }
            },
        )
        .with_partitioner(self.partitioner.clone())
    }

    /// Each record with its global index (partition order, then position).
    /// Runs a job to count the partitions first, as Spark does.
    pub fn zip_with_index(&self) -> Result<Rdd<(T, u64)>> {
        let counts = self
            .map_partitions(|it: BoxIter<T>| std::iter::once(it.count() as u64))
            .collect()?;
        let mut offsets = Vec::with_capacity(counts.len());
        let mut acc = 0u64;
        for c in counts {
            offsets.push(acc);
            acc += c;
        }
        Ok(self.derive(
            "zip_with_index",
            offsets,
            |off: &Arc<Vec<u64>>, p: usize, it: BoxIter<T>| -> BoxIter<(T, u64)> {
                let start = off.get(p).copied().unwrap_or(0);
                Box::new(it.enumerate().map(move |(i, x)| (x, start + i as u64)))
            },
        ))
    }

    /// This RDD's partitions followed by `other`'s.
    pub fn union(&self, other: &Rdd<T>) -> Rdd<T> {
        let node = UnionNode::new(
            self.runner.new_rdd_id(),
            vec![self.node.clone(), other.node.clone()],
        );
        self.wrap(Arc::new(node))
    }

    /// At most `partitions` partitions, merging neighbours without a
    /// shuffle.
    pub fn coalesce(&self, partitions: usize) -> Rdd<T> {
        let node = CoalesceNode::new(self.runner.new_rdd_id(), self.node.clone(), partitions);
        self.wrap(Arc::new(node))
    }

    /// Exactly `partitions` partitions, balanced by a shuffle.
    pub fn repartition(&self, partitions: usize) -> Rdd<T> {
        self.map_partitions_with_index(|p: usize, it: BoxIter<T>| {
            // Start each partition at a different target, as Spark does.
            it.enumerate().map(move |(i, x)| ((p + i) as u64, x))
        })
        .partition_by(ember_core::Partitioner::Hash(partitions.max(1)))
        .values()
    }

    /// Distinct records.
    pub fn distinct(&self) -> Rdd<T>
    where
        T: Key,
    {
        self.map(|x: T| (x, ())).reduce_by_key(|(), ()| ()).keys()
    }

    /// Distinct records, in `partitions` hash partitions.
    pub fn distinct_into(&self, partitions: usize) -> Rdd<T>
    where
        T: Key,
    {
        self.map(|x: T| (x, ()))
            .reduce_by_key_into(|(), ()| (), partitions)
            .keys()
    }

    /// Records grouped by `f(record)`.
    pub fn group_by<K: Key, F: Fn(&T) -> K + UserFn>(&self, f: F) -> Rdd<(K, Vec<T>)> {
        self.key_by(f).group_by_key()
    }

    /// Records grouped by `f(record)` into `partitions` hash partitions.
    pub fn group_by_into<K: Key, F: Fn(&T) -> K + UserFn>(
        &self,
        f: F,
        partitions: usize,
    ) -> Rdd<(K, Vec<T>)> {
        self.key_by(f).group_by_key_into(partitions)
    }

    /// Records grouped by `f(record)`, placed by `partitioner`.
    pub fn group_by_with_partitioner<K: Key, F, P>(&self, f: F, partitioner: P) -> Rdd<(K, Vec<T>)>
    where
        F: Fn(&T) -> K + UserFn,
        P: ember_core::KeyPartitioner<K>,
    {
        self.key_by(f).group_by_key_with_partitioner(partitioner)
    }

    /// Records sorted by `f(record)`.
    pub fn sort_by<K: Key, F: Fn(&T) -> K + UserFn>(
        &self,
        f: F,
        ascending: bool,
        partitions: usize,
    ) -> Result<Rdd<T>> {
        Ok(self.key_by(f).sort_by_key(ascending, partitions)?.values())
    }

    // ---- persistence ----

    /// Keeps computed partitions at `level` on the executors that compute
    /// them; later jobs read them instead of recomputing. Once the last
    /// handle to the RDD is dropped, its blocks are removed.
    pub fn persist(&self, level: StorageLevel) -> Rdd<T> {
        let core = self.node.core();
        core.set_storage_level(Some(level));
        core.set_cleanup(Some(CleanupGuard::new(
            Cleanup::Rdd(self.id()),
            &self.runner,
        )));
        self.clone()
    }

    /// `persist(MemoryOnly)`.
    pub fn cache(&self) -> Rdd<T> {
        self.persist(StorageLevel::MemoryOnly)
    }

    /// Drops cached partitions and stops caching.
    pub fn unpersist(&self) -> Rdd<T> {
        self.node.core().set_storage_level(None);
        self.node.core().set_cleanup(None);
        self.runner.unpersist(self.id());
        self.clone()
    }

    // ---- actions ----

    /// Runs `f(env, task, records)` on the given partitions and returns
    /// their results in order: the primitive behind every action.
    ///
    /// A job is named by the call site of the action that started it
    /// (`count at main.rs:12`), or of this call when it is made directly.
    #[track_caller]
    pub fn run_job<R: Data, E: Env, F>(
        &self,
        env: E,
        f: F,
        partitions: Vec<usize>,
    ) -> Result<Vec<R>>
    where
        F: Fn(&Arc<E>, &TaskContext, BoxIter<T>) -> R + UserFn,
    {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let _site = crate::job_info::enter_action("run_job");
        let root = Arc::new(ResultRoot::new(self.node.clone(), env, f));
        let results = self.runner.run_job(root, partitions)?;
        // Each task's bytes are freed once decoded: a large collect holds
        // about one copy of its data, not the encoded and decoded both.
        results
            .into_iter()
            .map(|b| codec::decode(&b, "task result"))
            .collect()
    }

    fn all_partitions(&self) -> Vec<usize> {
        (0..self.num_partitions()).collect()
    }

    /// Every record, in partition order.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// assert_eq!(ctx.range(0, 4, 1, 3)?.collect()?, vec![0, 1, 2, 3]);
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn collect(&self) -> Result<Vec<T>> {
        let _site = crate::job_info::enter_action("collect");
        let parts = self.run_job(
            (),
            |_: &Arc<()>, _: &TaskContext, it: BoxIter<T>| it.collect::<Vec<T>>(),
            self.all_partitions(),
        )?;
        // Sized once, so appending never holds a half-copied buffer.
        let mut all = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for part in parts {
            all.extend(part);
        }
        Ok(all)
    }

    /// Number of records.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// assert_eq!(ctx.range(0, 1000, 1, 4)?.count()?, 1000);
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn count(&self) -> Result<u64> {
        let _site = crate::job_info::enter_action("count");
        let parts = self.run_job(
            (),
            |_: &Arc<()>, _: &TaskContext, it: BoxIter<T>| it.count() as u64,
            self.all_partitions(),
        )?;
        Ok(parts.into_iter().sum())
    }

    /// The first `n` records, scanning as few partitions as possible
    /// (1, then 4 times more per round, as Spark does).
    #[track_caller]
    pub fn take(&self, n: usize) -> Result<Vec<T>> {
        let _site = crate::job_info::enter_action("take");
        let mut out = Vec::new();
        let total = self.num_partitions();
        let mut next = 0;
        let mut round = 1;
        while out.len() < n && next < total {
            let parts: Vec<usize> = (next..(next + round).min(total)).collect();
            next += parts.len();
            let want = n - out.len();
            let got = self.run_job(
                want,
                |w: &Arc<usize>, _: &TaskContext, it: BoxIter<T>| it.take(**w).collect::<Vec<T>>(),
                parts,
            )?;
            out.extend(got.into_iter().flatten().take(want));
            round *= 4;
        }
        Ok(out)
    }

    /// The first record, if any.
    #[track_caller]
    pub fn first(&self) -> Result<Option<T>> {
        let _site = crate::job_info::enter_action("first");
        Ok(self.take(1)?.into_iter().next())
    }

    /// All records combined with `f` (`None` for an empty RDD).
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// assert_eq!(ctx.range(1, 5, 1, 2)?.reduce(|a, b| a * b)?, Some(24));
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn reduce<F: Fn(T, T) -> T + UserFn>(&self, f: F) -> Result<Option<T>> {
        let _site = crate::job_info::enter_action("reduce");
        let parts = self.run_job(
            (),
            move |_: &Arc<()>, _: &TaskContext, it: BoxIter<T>| it.reduce(f),
            self.all_partitions(),
        )?;
        Ok(parts.into_iter().flatten().reduce(f))
    }

    /// Folds each partition from `zero`, then the partition results from
    /// `zero` (Spark's semantics: `zero` is used once per partition).
    #[track_caller]
    pub fn fold<F: Fn(T, T) -> T + UserFn>(&self, zero: T, f: F) -> Result<T> {
        let _site = crate::job_info::enter_action("fold");
        let parts = self.run_job(
            zero.clone(),
            move |z: &Arc<T>, _: &TaskContext, it: BoxIter<T>| it.fold((**z).clone(), f),
            self.all_partitions(),
        )?;
        Ok(parts.into_iter().fold(zero, f))
    }

    /// Aggregates each partition with `seq` from `zero`, then combines the
    /// partition results with `comb`.
    #[track_caller]
    pub fn aggregate<U: Data, S, C>(&self, zero: U, seq: S, comb: C) -> Result<U>
    where
        S: Fn(U, T) -> U + UserFn,
        C: Fn(U, U) -> U + UserFn,
    {
        let _site = crate::job_info::enter_action("aggregate");
        let parts = self.run_job(
            zero.clone(),
            move |z: &Arc<U>, _: &TaskContext, it: BoxIter<T>| it.fold((**z).clone(), seq),
            self.all_partitions(),
        )?;
        Ok(parts.into_iter().fold(zero, comb))
    }

    /// Runs `f` on every record, on the executors.
    #[track_caller]
    pub fn foreach<F: Fn(T) + UserFn>(&self, f: F) -> Result<()> {
        let _site = crate::job_info::enter_action("foreach");
        self.run_job(
            (),
            move |_: &Arc<()>, _: &TaskContext, it: BoxIter<T>| it.for_each(f),
            self.all_partitions(),
        )?;
        Ok(())
    }

    /// Runs `f(env, record)` on every record, on the executors.
    #[track_caller]
    pub fn foreach_with<E: Env, F: Fn(&E, T) + UserFn>(&self, env: E, f: F) -> Result<()> {
        let _site = crate::job_info::enter_action("foreach_with");
        self.run_job(
            env,
            move |e: &Arc<E>, _: &TaskContext, it: BoxIter<T>| it.for_each(|x| f(e, x)),
            self.all_partitions(),
        )?;
        Ok(())
    }

    /// Runs `f` on every partition, on the executors.
    #[track_caller]
    pub fn foreach_partition<F: Fn(BoxIter<T>) + UserFn>(&self, f: F) -> Result<()> {
        let _site = crate::job_info::enter_action("foreach_partition");
        self.run_job(
            (),
            move |_: &Arc<()>, _: &TaskContext, it: BoxIter<T>| f(it),
            self.all_partitions(),
        )?;
        Ok(())
    }

    /// How many times each distinct record occurs.
    #[track_caller]
    pub fn count_by_value(&self) -> Result<HashMap<T, u64>>
    where
        T: Key,
    {
        let _site = crate::job_info::enter_action("count_by_value");
        self.map(|x: T| (x, 1u64)).count_by_key_sum()
    }

    /// The `n` smallest records, ascending.
    #[track_caller]
    pub fn take_ordered(&self, n: usize) -> Result<Vec<T>>
    where
        T: Ord,
    {
        let _site = crate::job_info::enter_action("take_ordered");
        let parts = self.run_job(
            n,
            |n: &Arc<usize>, _: &TaskContext, it: BoxIter<T>| smallest(it, **n),
            self.all_partitions(),
        )?;
        Ok(smallest(parts.into_iter().flatten(), n))
    }

    /// The `n` largest records, descending.
    #[track_caller]
    pub fn top(&self, n: usize) -> Result<Vec<T>>
    where
        T: Ord,
    {
        let _site = crate::job_info::enter_action("top");
        let parts = self.run_job(
            n,
            |n: &Arc<usize>, _: &TaskContext, it: BoxIter<T>| largest(it, **n),
            self.all_partitions(),
        )?;
        Ok(largest(parts.into_iter().flatten(), n))
    }

    /// Writes each partition as a text file `part-NNNNN` (one record per
    /// line) in the new folder `path`, each written under a temporary name
    /// and renamed, then a `_SUCCESS` marker. Fails if `path` exists.
    #[track_caller]
    pub fn save_as_text_file(&self, path: impl AsRef<Path>) -> Result<()>
    where
        T: Display,
    {
        let _site = crate::job_info::enter_action("save_as_text_file");
        let dir = path.as_ref();
        crate::object_file::create_output_dir(dir)?;
        self.run_job(
            dir.display().to_string(),
            |d: &Arc<String>, tc: &TaskContext, it: BoxIter<T>| {
                crate::object_file::write_part(d, tc, |w| {
                    use std::io::Write;
                    for x in it {
                        writeln!(w, "{x}")?;
                    }
                    Ok(())
                })
            },
            self.all_partitions(),
        )?;
        crate::object_file::write_success(dir)
    }
}

/// Knuth's Poisson sampler; fine for the small means sampling uses.
fn poisson(rng: &mut impl Rng, mean: f64) -> usize {
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p = rng.gen::<f64>();
    while p > limit {
        k += 1;
        p *= rng.gen::<f64>();
    }
    k
}

fn smallest<T: Ord>(it: impl Iterator<Item = T>, n: usize) -> Vec<T> {
    let mut heap = std::collections::BinaryHeap::with_capacity(n + 1);
    for x in it {
        heap.push(x);
        if heap.len() > n {
            heap.pop();
        }
    }
    heap.into_sorted_vec()
}

fn largest<T: Ord>(it: impl Iterator<Item = T>, n: usize) -> Vec<T> {
    let mut v: Vec<T> = smallest(it.map(std::cmp::Reverse), n)
        .into_iter()
        .map(|r| r.0)
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v
}
