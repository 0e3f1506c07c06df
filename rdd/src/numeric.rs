//! Statistics of numeric RDDs (Spark's `DoubleRDDFunctions`): sums,
//! means, variances and histograms, computed in one pass per partition and
//! merged on the driver.

use crate::node::BoxIter;
use crate::rdd::Rdd;
use crate::task::TaskContext;
use ember_core::{Data, EmberError, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Records that statistics can be taken of: numbers convertible to `f64`
/// (64-bit integers beyond 2^53 lose precision, as Spark's `Double`s do).
pub trait Numeric: Data + Copy {
    /// The value as an `f64`.
    fn to_f64(self) -> f64;
}

macro_rules! numeric {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
numeric!(f64, f32, i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

/// Count, mean, sum of squared deviations (`m2`), minimum and maximum of
/// numbers, updated one at a time (Welford) and merged pairwise (Chan et
/// al.), as Spark's `StatCounter`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatCounter {
    /// How many numbers.
    pub count: u64,
    /// Their mean (0 when there are none, as in Spark).
    pub mean: f64,
    /// The sum of squared deviations from the mean.
    pub m2: f64,
    /// The smallest (`+inf` when there are none).
    pub min: f64,
    /// The largest (`-inf` when there are none).
    pub max: f64,
}

impl Default for StatCounter {
    fn default() -> Self {
        StatCounter {
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl StatCounter {
    /// The statistics of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut s = StatCounter::default();
        for x in values {
            s.push(x);
        }
        s
    }

    /// Adds one number.
    pub fn push(&mut self, x: f64) {
        let delta = x - self.mean;
        self.count += 1;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Adds the numbers `other` summarizes. Like Spark, when one side is
    /// much larger its mean is adjusted rather than recomputed as a
    /// weighted average, which keeps precision.
    pub fn merge(&mut self, other: &StatCounter) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (n, m) = (self.count as f64, other.count as f64);
        let delta = other.mean - self.mean;
        self.mean = if m * 10.0 < n {
            self.mean + delta * m / (n + m)
        } else if n * 10.0 < m {
            other.mean - delta * n / (n + m)
        } else {
            (self.mean * n + other.mean * m) / (n + m)
        };
        self.m2 += other.m2 + delta * delta * n * m / (n + m);
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The sum of the numbers.
    pub fn sum(&self) -> f64 {
        self.count as f64 * self.mean
    }

    /// The population variance (`m2 / count`; NaN when empty).
    pub fn variance(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.m2 / self.count as f64
        }
    }

    /// The sample variance (`m2 / (count - 1)`; NaN for fewer than two).
    pub fn sample_variance(&self) -> f64 {
        if self.count <= 1 {
            f64::NAN
        } else {
            self.m2 / (self.count - 1) as f64
        }
    }

    /// The population standard deviation.
    pub fn stdev(&self) -> f64 {
        self.variance().sqrt()
    }

    /// The sample standard deviation.
    pub fn sample_stdev(&self) -> f64 {
        self.sample_variance().sqrt()
    }
}

/// The buckets of a histogram: a count of evenly spaced buckets between
/// the minimum and the maximum, or explicit edges.
#[derive(Clone, Debug, PartialEq)]
pub enum Buckets {
    /// This many buckets of equal width spanning the data.
    Count(usize),
    /// Ascending edges: bucket `i` is `[edges[i], edges[i + 1])`, and the
    /// last is closed on the right.
    Edges(Vec<f64>),
}

impl From<usize> for Buckets {
    fn from(n: usize) -> Self {
        Buckets::Count(n)
    }
}

impl From<Vec<f64>> for Buckets {
    fn from(edges: Vec<f64>) -> Self {
        Buckets::Edges(edges)
    }
}

impl From<&[f64]> for Buckets {
    fn from(edges: &[f64]) -> Self {
        Buckets::Edges(edges.to_vec())
    }
}

/// The bucket of `x` among `edges` (ascending, at least two): `[e_i,
/// e_{i+1})`, the last one closed; `None` outside or for NaN.
fn bucket_of(edges: &[f64], x: f64) -> Option<usize> {
    let (first, last) = (edges[0], edges[edges.len() - 1]);
    if x.is_nan() || x < first || x > last {
        return None;
    }
    // The first edge above x ends x's bucket; x equal to the last edge
    // belongs to the last bucket.
    let above = edges.partition_point(|e| *e <= x);
    Some(above.clamp(1, edges.len() - 1) - 1)
}

impl<T: Numeric> Rdd<T> {
    /// Spark's `stats`: count, mean, `m2`, min and max in one job, each
    /// partition summarized then merged on the driver.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// let ctx = Context::new("local[2]")?;
    /// let s = ctx.parallelize(vec![1.0, 2.0, 3.0, 4.0], 2)?.stats()?;
    /// assert_eq!((s.count, s.mean, s.min, s.max), (4, 2.5, 1.0, 4.0));
    /// assert_eq!(s.variance(), 1.25);
    /// # Ok::<(), ember_driver::EmberError>(())
    /// ```
    pub fn stats(&self) -> Result<StatCounter> {
        let parts = self.run_job(
            (),
            |_: &Arc<()>, _: &TaskContext, it: BoxIter<T>| StatCounter::of(it.map(T::to_f64)),
            (0..self.num_partitions()).collect(),
        )?;
        let mut all = StatCounter::default();
        for p in &parts {
            all.merge(p);
        }
        Ok(all)
    }

    /// Spark's `sum`: the sum of the records as `f64` (0 when empty),
    /// added in record order within each partition, then over partitions.
    pub fn sum(&self) -> Result<f64> {
        let parts = self.run_job(
            (),
            |_: &Arc<()>, _: &TaskContext, it: BoxIter<T>| it.map(T::to_f64).sum::<f64>(),
            (0..self.num_partitions()).collect(),
        )?;
        Ok(parts.into_iter().sum())
    }

    /// Spark's `mean`: the `StatCounter`'s mean, so 0 for an empty RDD as
    /// in Spark.
    pub fn mean(&self) -> Result<f64> {
        Ok(self.stats()?.mean)
    }

    /// Spark's `variance`: the population variance.
    pub fn variance(&self) -> Result<f64> {
        Ok(self.stats()?.variance())
    }

    /// Spark's `sampleVariance`.
    pub fn sample_variance(&self) -> Result<f64> {
        Ok(self.stats()?.sample_variance())
    }

    /// Spark's `stdev`: the population standard deviation.
    pub fn stdev(&self) -> Result<f64> {
        Ok(self.stats()?.stdev())
    }

    /// Spark's `sampleStdev`.
    pub fn sample_stdev(&self) -> Result<f64> {
        Ok(self.stats()?.sample_stdev())
    }

    /// Spark's `histogram`: returns the bucket edges and the count of
    /// records in each bucket. `Buckets::Count(n)` (or just `n`) makes `n`
    /// evenly spaced buckets from the minimum to the maximum (one bucket
    /// `[min, min]` when they are equal), which takes an extra job; it
    /// fails on an empty RDD or one holding an infinity or NaN, and for
    /// `n == 0`. Explicit edges must be at least two, ascending and not
    /// NaN. Bucket `i` is `[e_i, e_{i+1})` except the last, which is
    /// closed `[e_{n-1}, e_n]`; records outside every bucket, and NaN, are
    /// not counted.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// let ctx = Context::new("local[2]")?;
    /// let r = ctx.parallelize(vec![0.0, 1.0, 2.5, 4.0, 9.0], 2)?;
    /// assert_eq!(r.histogram(vec![0.0, 2.0, 4.0])?.1, vec![2, 2]);
    /// assert_eq!(r.histogram(3)?.0, vec![0.0, 3.0, 6.0, 9.0]);
    /// # Ok::<(), ember_driver::EmberError>(())
    /// ```
    pub fn histogram(&self, buckets: impl Into<Buckets>) -> Result<(Vec<f64>, Vec<u64>)> {
        let edges = match buckets.into() {
            Buckets::Count(0) => {
                return Err(EmberError::Other(
                    "histogram: the bucket count must be at least 1".into(),
                ))
            }
            Buckets::Count(n) => {
                let s = self.stats()?;
                if s.count == 0 || !s.min.is_finite() || !s.max.is_finite() {
                    return Err(EmberError::Other(format!(
                        "histogram: cannot space buckets evenly over rdd {}: it is empty or \
                         holds an infinity or NaN (min {}, max {})",
                        self.id().0,
                        s.min,
                        s.max
                    )));
                }
                if s.min == s.max {
                    vec![s.min, s.max]
                } else {
                    let width = s.max - s.min;
                    let mut e: Vec<f64> = (0..n)
                        .map(|i| s.min + width * i as f64 / n as f64)
                        .collect();
                    e.push(s.max);
                    e
                }
            }
            Buckets::Edges(e) => {
                if e.len() < 2 || e.iter().any(|x| x.is_nan()) || e.windows(2).any(|w| w[0] >= w[1])
                {
                    return Err(EmberError::Other(format!(
                        "histogram: bucket edges must be at least two, strictly ascending and \
                         not NaN, got {e:?}"
                    )));
                }
                e
            }
        };
        let n = edges.len() - 1;
        let parts = self.run_job(
            edges.clone(),
            |edges: &Arc<Vec<f64>>, _: &TaskContext, it: BoxIter<T>| {
                let mut counts = vec![0u64; edges.len() - 1];
                for x in it {
                    if let Some(b) = bucket_of(edges, x.to_f64()) {
                        counts[b] += 1;
                    }
                }
                counts
            },
            (0..self.num_partitions()).collect(),
        )?;
        let mut counts = vec![0u64; n];
        for part in parts {
            for (c, p) in counts.iter_mut().zip(part) {
                *c += p;
            }
        }
        Ok((edges, counts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_counters_equal_one_pass_over_everything() {
        let xs: Vec<f64> = (0..1000)
            .map(|i| ((i * 37) % 101) as f64 * 0.5 - 7.0)
            .collect();
        let whole = StatCounter::of(xs.iter().copied());
        for cut in [0, 1, 50, 999, 1000] {
            let mut a = StatCounter::of(xs[..cut].iter().copied());
            a.merge(&StatCounter::of(xs[cut..].iter().copied()));
            assert_eq!(a.count, whole.count);
            assert!((a.mean - whole.mean).abs() < 1e-9, "cut {cut}");
            assert!((a.m2 - whole.m2).abs() < 1e-6 * whole.m2, "cut {cut}");
            assert_eq!((a.min, a.max), (whole.min, whole.max));
        }
    }

    #[test]
    fn buckets_are_half_open_but_the_last_is_closed() {
        let e = [0.0, 1.0, 2.0];
        assert_eq!(bucket_of(&e, 0.0), Some(0));
        assert_eq!(bucket_of(&e, 0.999), Some(0));
        assert_eq!(bucket_of(&e, 1.0), Some(1));
        assert_eq!(bucket_of(&e, 2.0), Some(1));
        assert_eq!(bucket_of(&e, 2.01), None);
        assert_eq!(bucket_of(&e, -0.1), None);
        assert_eq!(bucket_of(&e, f64::NAN), None);
        assert_eq!(bucket_of(&[3.0, 3.0], 3.0), Some(0));
    }
}
