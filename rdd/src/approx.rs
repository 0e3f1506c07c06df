//! Approximate distinct counts: a HyperLogLog sketch per partition, merged
//! on the driver (Spark's `countApproxDistinct`).

use crate::node::BoxIter;
use crate::rdd::Rdd;
use crate::task::TaskContext;
use ember_core::partitioner::stable_hash;
use ember_core::{Data, EmberError, Result};
use serde::{Deserialize, Serialize};
use std::hash::Hash;
use std::sync::Arc;

/// A HyperLogLog sketch (Flajolet et al.) of `2^p` registers over 64-bit
/// hashes, with linear counting for small cardinalities as in HLL++
/// (Heule et al.). Unlike HLL++ it has no sparse form and no empirical
/// bias-correction tables, so estimates between about 2.5 and 5 times the
/// register count carry a small upward bias; 64-bit hashes make the
/// large-range correction unnecessary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HyperLogLog {
    p: u8,
    #[serde(with = "serde_bytes")]
    registers: Vec<u8>,
}

impl HyperLogLog {
    /// The precision for a relative standard deviation, as Spark chooses
    /// it (`ceil(2 log2(1.054 / relative_sd))`), from 4 to 18: the
    /// standard error of HyperLogLog is about `1.04 / sqrt(2^p)`.
    pub fn precision_for(relative_sd: f64) -> Result<u8> {
        let p = (2.0 * (1.054 / relative_sd).log2()).ceil();
        // NaN, zero and negative deviations give a NaN or infinite p.
        if !(4.0..=18.0).contains(&p) {
            return Err(EmberError::Other(format!(
                "count_approx_distinct: relative_sd {relative_sd} is out of range: it must be \
                 between 0.0021 and 0.37 (precision 4 to 18)"
            )));
        }
        Ok(p as u8)
    }

    /// An empty sketch of `2^p` registers (`p` from 4 to 18).
    pub fn new(p: u8) -> Self {
        let p = p.clamp(4, 18);
        HyperLogLog {
            p,
            registers: vec![0; 1 << p],
        }
    }

    /// Adds a value by its process-independent hash.
    pub fn add<T: Hash + ?Sized>(&mut self, value: &T) {
        let h = stable_hash(value);
        let p = self.p as u32;
        let index = (h >> (64 - p)) as usize;
        // The rank of the first 1 bit among the remaining 64 - p bits; a
        // sentinel bit bounds it when they are all zero.
        let rest = (h << p) | (1u64 << (p - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if rank > self.registers[index] {
            self.registers[index] = rank;
        }
    }

    /// Adds everything `other` saw; sketches of different precisions do
    /// not merge (the caller makes them all alike).
    pub fn merge(&mut self, other: &HyperLogLog) {
        if other.p != self.p {
            return;
        }
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    /// The estimated number of distinct values added.
    pub fn estimate(&self) -> u64 {
        let m = self.registers.len() as f64;
        let alpha = match self.registers.len() {
            16 => 0.673,
            32 => 0.697,
            64 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m),
        };
        let sum: f64 = self.registers.iter().map(|&r| 2f64.powi(-(r as i32))).sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

impl<T: Data + Hash> Rdd<T> {
    /// Spark's `countApproxDistinct`: the approximate number of distinct
    /// records, from a HyperLogLog sketch of each partition merged on the
    /// driver. `relative_sd` is the target relative standard deviation
    /// (Spark's default is 0.05); it must lie between 0.0021 and 0.37. See
    /// [`HyperLogLog`] for how the sketch differs from Spark's HLL++.
    pub fn count_approx_distinct(&self, relative_sd: f64) -> Result<u64> {
        let p = HyperLogLog::precision_for(relative_sd)?;
        let parts = self.run_job(
            p,
            |p: &Arc<u8>, _: &TaskContext, it: BoxIter<T>| {
                let mut h = HyperLogLog::new(**p);
                for x in it {
                    h.add(&x);
                }
                h
            },
            (0..self.num_partitions()).collect(),
        )?;
        let mut all = HyperLogLog::new(p);
        for h in &parts {
            all.merge(h);
        }
        Ok(all.estimate())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_stay_within_three_standard_errors() {
        for (relative_sd, n) in [
            (0.05, 100u64),
            (0.05, 10_000),
            (0.02, 200_000),
            (0.1, 3_000),
        ] {
            let p = HyperLogLog::precision_for(relative_sd).unwrap();
            // Split over four sketches, with every value added twice, as
            // partitions with duplicates would be.
            let mut parts = vec![HyperLogLog::new(p); 4];
            for i in 0..n {
                parts[(i % 4) as usize].add(&i);
                parts[((i + 1) % 4) as usize].add(&i);
            }
            let mut all = HyperLogLog::new(p);
            for h in &parts {
                all.merge(h);
            }
            let err = (all.estimate() as f64 - n as f64).abs() / n as f64;
            assert!(
                err < 3.0 * relative_sd,
                "n {n} sd {relative_sd}: error {err}"
            );
        }
    }

    #[test]
    fn precision_follows_sparks_formula_and_rejects_extremes() {
        assert_eq!(HyperLogLog::precision_for(0.05).unwrap(), 9);
        assert!(HyperLogLog::precision_for(0.0).is_err());
        assert!(HyperLogLog::precision_for(0.5).is_err());
        assert!(HyperLogLog::precision_for(1e-6).is_err());
        assert!(HyperLogLog::precision_for(f64::NAN).is_err());
    }

    #[test]
    fn an_empty_sketch_estimates_zero() {
        assert_eq!(HyperLogLog::new(9).estimate(), 0);
    }
}
