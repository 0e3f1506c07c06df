//! Sampling actions and splits: `take_sample` and `random_split`.

use crate::node::BoxIter;
use crate::rdd::Rdd;
use ember_core::{Data, EmberError, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// The per-partition generator of `random_split`: the same seed and
/// partition give the same draws, whichever split is being computed.
fn partition_rng(seed: u64, partition: usize) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed ^ (partition as u64).wrapping_mul(0xA076_1D64_78BD_642F))
}

/// A sampling fraction that yields at least `num` of `total` records with
/// high probability (Spark's `SamplingUtils.computeFractionForSampleSize`:
/// a Poisson bound with replacement, a binomial one without).
fn fraction_for_sample_size(num: u64, total: u64, with_replacement: bool) -> f64 {
    let (n, t) = (num as f64, total as f64);
    if with_replacement {
        let std_devs = if num < 6 {
            12.0
        } else if num < 16 {
            9.0
        } else {
            6.0
        };
        (n + std_devs * n.sqrt()).max(1e-10) / t
    } else {
        let fraction = n / t;
        // Fails to reach `num` with probability at most 1e-4.
        let gamma = -(1e-4f64).ln() / t;
        (fraction + gamma + (gamma * gamma + 2.0 * gamma * fraction).sqrt()).clamp(1e-10, 1.0)
    }
}

impl<T: Data> Rdd<T> {
    /// Spark's `takeSample`: `num` records chosen at random (with or
    /// without replacement), shuffled, as a vector on the driver. Like
    /// Spark it counts the records first, then samples with a fraction
    /// that almost always yields enough, repeating with a new seed when
    /// it did not; the same seed gives the same sample. Without
    /// replacement and `num` at least the count, every record is returned
    /// in random order.
    pub fn take_sample(&self, with_replacement: bool, num: usize, seed: u64) -> Result<Vec<T>> {
        if num == 0 {
            return Ok(Vec::new());
        }
        let total = self.count()?;
        if total == 0 {
            return Ok(Vec::new());
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        if !with_replacement && num as u64 >= total {
            let mut all = self.collect()?;
            all.shuffle(&mut rng);
            return Ok(all);
        }
        let fraction = fraction_for_sample_size(num as u64, total, with_replacement);
        // The fraction misses with probability about 1e-4 a round, so 100
        // rounds failing means the data changes between jobs.
        for _ in 0..100 {
            let mut got = self
                .sample(with_replacement, fraction, rng.gen())
                .collect()?;
            if got.len() >= num {
                got.shuffle(&mut rng);
                got.truncate(num);
                return Ok(got);
            }
        }
        Err(EmberError::Other(format!(
            "take_sample: 100 sampling rounds of rdd {} gave fewer than {num} records; \
             is its data deterministic?",
            self.id().0
        )))
    }

    /// Spark's `randomSplit`: disjoint random subsets of the records in
    /// proportion to `weights` (normalized to sum to 1), which together
    /// hold every record once. Each split draws the same per-partition
    /// random sequence and keeps the records whose draw falls in its
    /// interval, so the parent must compute the same records in the same
    /// order each time (persist it otherwise, as in Spark). Fails on an
    /// empty, negative, non-finite or all-zero weight list.
    pub fn random_split(&self, weights: &[f64], seed: u64) -> Result<Vec<Rdd<T>>> {
        let sum: f64 = weights.iter().sum();
        if weights.is_empty()
            || weights.iter().any(|w| !w.is_finite() || *w < 0.0)
            || sum <= 0.0
            || !sum.is_finite()
        {
            return Err(EmberError::Other(format!(
                "random_split: weights must be finite, non-negative and not all zero, got {weights:?}"
            )));
        }
        let mut lower = 0.0;
        let mut splits = Vec::with_capacity(weights.len());
        for (i, w) in weights.iter().enumerate() {
            // The last bound is exactly 1, so rounding cannot drop a record.
            let upper = if i + 1 == weights.len() {
                1.0
            } else {
                lower + w / sum
            };
            splits.push(self.map_partitions_with_env(
                (lower, upper, seed),
                |env: &Arc<(f64, f64, u64)>, p: usize, it: BoxIter<T>| -> BoxIter<T> {
                    let (lo, hi, seed) = **env;
                    let mut rng = partition_rng(seed, p);
                    Box::new(it.filter(move |_| {
                        let x: f64 = rng.gen();
                        lo <= x && x < hi
                    }))
                },
            ));
            lower = upper;
        }
        Ok(splits)
    }
}

#[cfg(test)]
mod tests {
    use super::fraction_for_sample_size;

    #[test]
    fn sample_fractions_exceed_the_plain_ratio_and_stay_in_range() {
        for (num, total) in [(1u64, 10u64), (10, 1000), (500, 1000), (999, 1000)] {
            let without = fraction_for_sample_size(num, total, false);
            assert!(without >= num as f64 / total as f64 && without <= 1.0);
            let with = fraction_for_sample_size(num, total, true);
            assert!(with > num as f64 / total as f64);
        }
    }
}
