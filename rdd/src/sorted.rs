//! Operations that need ordered keys beyond `sort_by_key`: sorting inside
//! the partitions of any partitioner, range filters on sorted pairs, and
//! sorting by a key function with an environment.

use crate::node::BoxIter;
use crate::rdd::{Rdd, UserFn};
use crate::shuffled::Key;
use crate::spill::sort_records;
use crate::task::throw;
use crate::transforms::Env;
use ember_core::{Data, KeyPartitioner, Result};

impl<K: Key, V: Data> Rdd<(K, V)> {
    /// Spark's `repartitionAndSortWithinPartitions`: the pairs moved to the
    /// partitions `partitioner` names, each partition sorted by key
    /// (ascending), spilling sorted runs when memory runs out.
    pub fn repartition_and_sort_within_partitions<P: KeyPartitioner<K>>(
        &self,
        partitioner: P,
    ) -> Rdd<(K, V)> {
        self.partition_by(partitioner)
            .map_partitions_preserving(|it: BoxIter<(K, V)>| {
                sort_records(it, true).unwrap_or_else(|e| throw(e))
            })
    }

    /// Spark's `filterByRange`: the pairs with `lo <= key <= hi` (both
    /// inclusive). Spark skips the partitions of a range-partitioned RDD
    /// that cannot hold such keys; here every partition is filtered (the
    /// order of the records and the partitioner are kept, so a sorted RDD
    /// stays sorted).
    pub fn filter_by_range(&self, lo: K, hi: K) -> Rdd<(K, V)> {
        self.filter_with((lo, hi), |(lo, hi): &(K, K), (k, _): &(K, V)| {
            lo <= k && k <= hi
        })
    }
}

impl<T: Data> Rdd<T> {
    /// [`Rdd::sort_by`] with `f(env, &record)` as the sort key; `env` is
    /// shipped with the tasks (of the sampling job too).
    pub fn sort_by_with<K: Key, E: Env, F: Fn(&E, &T) -> K + UserFn>(
        &self,
        env: E,
        f: F,
        ascending: bool,
        partitions: usize,
    ) -> Result<Rdd<T>> {
        Ok(self
            .key_by_with(env, f)
            .sort_by_key(ascending, partitions)?
            .values())
    }
}
