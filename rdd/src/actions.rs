//! More actions: multi-level aggregation (`tree_aggregate`,
//! `tree_reduce`), partition-at-a-time iteration on the driver, emptiness,
//! extremes and ordered takes by a key function.

use crate::node::BoxIter;
use crate::rdd::{Rdd, UserFn};
use crate::task::TaskContext;
use ember_core::{Data, EmberError, Result};
use std::cmp::Ordering;
use std::sync::Arc;

/// Picks `b` over `a` when `b_wins(a, b)`, where records that do not compare
/// with themselves (NaN) always lose to ones that do.
fn pick<T: PartialOrd>(a: T, b: T, b_wins: fn(&T, &T) -> bool) -> T {
    let a_ok = a.partial_cmp(&a).is_some();
    let b_ok = b.partial_cmp(&b).is_some();
    if b_ok && (!a_ok || b_wins(&a, &b)) {
        b
    } else {
        a
    }
}

/// A record with its sort key; compares by the key only.
struct ByKey<K, T>(K, T);

impl<K: Ord, T> PartialEq for ByKey<K, T> {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl<K: Ord, T> Eq for ByKey<K, T> {}
impl<K: Ord, T> PartialOrd for ByKey<K, T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<K: Ord, T> Ord for ByKey<K, T> {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.cmp(&o.0)
    }
}

/// The `n` records with the smallest keys (`descending`: the largest), in
/// key order (`descending`: reversed), holding at most `n + 1` at once.
fn smallest_by<K: Ord, T>(
    it: impl Iterator<Item = T>,
    n: usize,
    key: impl Fn(&T) -> K,
    descending: bool,
) -> Vec<T> {
    if descending {
        // The n largest are the n smallest of the reversed keys.
        smallest_keyed(it.map(|x| (std::cmp::Reverse(key(&x)), x)), n)
    } else {
        smallest_keyed(it.map(|x| (key(&x), x)), n)
    }
}

fn smallest_keyed<K: Ord, T>(it: impl Iterator<Item = (K, T)>, n: usize) -> Vec<T> {
    let mut heap = std::collections::BinaryHeap::with_capacity(n + 1);
    for (k, x) in it {
        heap.push(ByKey(k, x));
        if heap.len() > n {
            heap.pop();
        }
    }
    heap.into_sorted_vec().into_iter().map(|b| b.1).collect()
}

impl<T: Data> Rdd<T> {
    /// Spark's `treeAggregate`: like [`Rdd::aggregate`], but the
    /// partition results are combined in rounds of shuffles on the
    /// executors (`depth` levels in all, each cutting the number of
    /// partial results by a factor of about `n^(1/depth)`), so the driver
    /// merges only a few. `depth` must be at least 1; `zero` starts each
    /// partition's fold and the driver's final one, as in Spark.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// let ctx = Context::new("local[2]")?;
    /// let r = ctx.parallelize((1..=100u64).collect(), 16)?;
    /// let sum = r.tree_aggregate(0, |a, x| a + x, |a, b| a + b, 2)?;
    /// assert_eq!(sum, 5050);
    /// # Ok::<(), ember_driver::EmberError>(())
    /// ```
    pub fn tree_aggregate<U: Data, S, C>(&self, zero: U, seq: S, comb: C, depth: usize) -> Result<U>
    where
        S: Fn(U, T) -> U + UserFn,
        C: Fn(U, U) -> U + UserFn,
    {
        if depth < 1 {
            return Err(EmberError::Other(format!(
                "tree_aggregate: depth must be at least 1, got {depth}"
            )));
        }
        if self.num_partitions() == 0 {
            return Ok(zero);
        }
        let mut partial = self.map_partitions_with(zero.clone(), move |z: &U, it: BoxIter<T>| {
            std::iter::once(it.fold(z.clone(), seq))
        });
        let mut n = self.num_partitions();
        let scale = ((n as f64).powf(1.0 / depth as f64).ceil() as usize).max(2);
        // Spark's rule: another level only while it saves work over
        // merging on the driver.
        while n > scale + n.div_ceil(scale) {
            n /= scale;
            partial = partial
                .map_partitions_with_env(
                    n as u64,
                    |n: &Arc<u64>, p: usize, it: BoxIter<U>| -> BoxIter<(u64, U)> {
                        let key = p as u64 % **n;
                        Box::new(it.map(move |u| (key, u)))
                    },
                )
                .reduce_by_key_into(comb, n)
                .values();
        }
        let parts = partial.collect()?;
        Ok(parts.into_iter().fold(zero, comb))
    }

    /// Spark's `treeReduce`: [`Rdd::reduce`] with the partition results
    /// combined in `depth` levels on the executors (see
    /// [`Rdd::tree_aggregate`]); `None` for an empty RDD.
    pub fn tree_reduce<F: Fn(T, T) -> T + UserFn>(&self, f: F, depth: usize) -> Result<Option<T>> {
        self.tree_aggregate(
            None,
            move |acc: Option<T>, x: T| {
                Some(match acc {
                    Some(a) => f(a, x),
                    None => x,
                })
            },
            move |a: Option<T>, b: Option<T>| match (a, b) {
                (Some(a), Some(b)) => Some(f(a, b)),
                (a, b) => a.or(b),
            },
            depth,
        )
    }

    /// Spark's `toLocalIterator`: every record in partition order, fetched
    /// one partition at a time (one job per partition, run when the
    /// iterator reaches it), so the driver holds one partition at most. A
    /// failed job is yielded as an `Err`, after which the iterator ends.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// let ctx = Context::new("local[2]")?;
    /// let r = ctx.parallelize(vec![1, 2, 3, 4], 2)?;
    /// let firsts: Vec<i32> = r.to_local_iterator().take(3).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, vec![1, 2, 3]); // two jobs ran, one per partition
    /// # Ok::<(), ember_driver::EmberError>(())
    /// ```
    pub fn to_local_iterator(&self) -> LocalIterator<T> {
        LocalIterator {
            rdd: self.clone(),
            next_partition: 0,
            buffer: Vec::new().into_iter(),
            done: false,
        }
    }

    /// Spark's `isEmpty`: true if there are no partitions or no records
    /// (runs `take(1)`, scanning as few partitions as it can).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.num_partitions() == 0 || self.take(1)?.is_empty())
    }

    /// Spark's `min`: the smallest record (`None` when empty). Spark takes
    /// an `Ordering`; here `PartialOrd` serves floats too, and a record
    /// that does not compare with itself (NaN) is chosen only if every
    /// record is one.
    pub fn min(&self) -> Result<Option<T>>
    where
        T: PartialOrd,
    {
        self.reduce(|a: T, b: T| pick(a, b, |a, b| b < a))
    }

    /// Spark's `max`: the largest record (`None` when empty), with NaN
    /// treated as in [`Rdd::min`].
    pub fn max(&self) -> Result<Option<T>>
    where
        T: PartialOrd,
    {
        self.reduce(|a: T, b: T| pick(a, b, |a, b| b > a))
    }

    /// Spark's `takeOrdered` with an `Ordering` given as a key function:
    /// the `n` records with the smallest `key(record)`, ascending by key.
    /// Each partition keeps its `n` smallest, the driver merges them.
    pub fn take_ordered_by<K: Ord, F: Fn(&T) -> K + UserFn>(
        &self,
        n: usize,
        key: F,
    ) -> Result<Vec<T>> {
        self.ordered_by(n, key, false)
    }

    /// Spark's `top` with an `Ordering` given as a key function: the `n`
    /// records with the largest `key(record)`, descending by key.
    pub fn top_by<K: Ord, F: Fn(&T) -> K + UserFn>(&self, n: usize, key: F) -> Result<Vec<T>> {
        self.ordered_by(n, key, true)
    }

    fn ordered_by<K: Ord, F: Fn(&T) -> K + UserFn>(
        &self,
        n: usize,
        key: F,
        descending: bool,
    ) -> Result<Vec<T>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let parts = self.run_job(
            (n, descending),
            move |env: &Arc<(usize, bool)>, _: &TaskContext, it: BoxIter<T>| {
                smallest_by(it, env.0, key, env.1)
            },
            (0..self.num_partitions()).collect(),
        )?;
        Ok(smallest_by(parts.into_iter().flatten(), n, key, descending))
    }
}

/// The records of an RDD, fetched a partition at a time: see
/// [`Rdd::to_local_iterator`].
pub struct LocalIterator<T> {
    rdd: Rdd<T>,
    next_partition: usize,
    buffer: std::vec::IntoIter<T>,
    done: bool,
}

impl<T: Data> Iterator for LocalIterator<T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(x) = self.buffer.next() {
                return Some(Ok(x));
            }
            if self.done || self.next_partition >= self.rdd.num_partitions() {
                return None;
            }
            let p = self.next_partition;
            self.next_partition += 1;
            match self.rdd.run_job(
                (),
                |_: &Arc<()>, _: &TaskContext, it: BoxIter<T>| it.collect::<Vec<T>>(),
                vec![p],
            ) {
                Ok(mut parts) => self.buffer = parts.pop().unwrap_or_default().into_iter(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
