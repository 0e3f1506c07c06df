//! Partitioners: which reduce partition a key goes to.

use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};

/// How keys are spread over the partitions of a shuffle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Partitioner<K> {
    /// By a hash of the key that is the same in every process (SipHash
    /// with fixed keys), modulo the number of partitions.
    Hash(usize),
    /// By sorted range: `bounds[i]` is the largest key of partition `i`
    /// (ascending); keys above every bound go to the last partition.
    Range {
        /// Upper bounds, one fewer than the partitions.
        bounds: Vec<K>,
        /// Whether partitions are in ascending key order.
        ascending: bool,
    },
}

/// A process-independent hash of `key`.
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x656d62, 0x6572);
    key.hash(&mut h);
    h.finish()
}

impl<K: Hash + Ord> Partitioner<K> {
    /// The number of partitions.
    pub fn num_partitions(&self) -> usize {
        match self {
            Partitioner::Hash(n) => (*n).max(1),
            Partitioner::Range { bounds, .. } => bounds.len() + 1,
        }
    }

    /// The partition of `key`.
    pub fn partition(&self, key: &K) -> usize {
        match self {
            Partitioner::Hash(n) => (stable_hash(key) % (*n).max(1) as u64) as usize,
            Partitioner::Range { bounds, ascending } => {
                let p = bounds.partition_point(|b| b < key);
                if *ascending {
                    p
                } else {
                    bounds.len() - p
                }
            }
        }
    }
}

impl<K: Ord + Clone> Partitioner<K> {
    /// A range partitioner of up to `partitions` partitions from a sample of
    /// keys: bounds at evenly spaced quantiles of the sorted sample.
    pub fn range_from_sample(mut sample: Vec<K>, partitions: usize, ascending: bool) -> Self {
        sample.sort();
        let mut bounds: Vec<K> = Vec::new();
        if partitions > 1 && !sample.is_empty() {
            for i in 1..partitions {
                let idx = (i * sample.len() / partitions).min(sample.len() - 1);
                let k = &sample[idx];
                if bounds.last() != Some(k) {
                    bounds.push(k.clone());
                }
            }
        }
        Partitioner::Range { bounds, ascending }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_partitions_are_in_range_and_stable() {
        let p = Partitioner::<String>::Hash(7);
        for w in ["a", "bb", "ccc", ""] {
            let i = p.partition(&w.to_string());
            assert!(i < 7);
            assert_eq!(i, p.partition(&w.to_string()));
        }
    }

    #[test]
    fn range_partitions_follow_key_order() {
        let p = Partitioner::range_from_sample((0..1000).collect::<Vec<i32>>(), 4, true);
        assert_eq!(p.num_partitions(), 4);
        let parts: Vec<usize> = [-5, 0, 300, 600, 999, 5000]
            .iter()
            .map(|k| p.partition(k))
            .collect();
        assert!(parts.windows(2).all(|w| w[0] <= w[1]), "{parts:?}");
        assert_eq!(parts[0], 0);
        assert_eq!(parts[5], 3);
        let d = Partitioner::range_from_sample((0..1000).collect::<Vec<i32>>(), 4, false);
        assert_eq!(d.partition(&-5), 3);
        assert_eq!(d.partition(&5000), 0);
    }

    #[test]
    fn range_from_an_empty_sample_has_one_partition() {
        let p = Partitioner::<i32>::range_from_sample(vec![], 8, true);
        assert_eq!(p.num_partitions(), 1);
        assert_eq!(p.partition(&3), 0);
    }
}
