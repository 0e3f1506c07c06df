//! Otsu's threshold exactly as DIPY's own `dipy.segment.threshold.otsu`
//! computes it (spec step 2), including numpy's histogram arithmetic.
//!
//! numpy ≥ 2 (NEP 50) does the histogram's edge and bin-index arithmetic in
//! the image's own float type, so this is generic over `f32` and `f64` and
//! rounds the same way: `edges = linspace(min, max, 257)` computed as
//! `i * step + min` in `T`, the last edge set to `max`; bin index
//! `trunc((v - min) / (max - min) * 256)` in `T`, then nudged by one against
//! the edges as `np.histogram` does. Class statistics are f64.

use ndarray::ArrayView3;

use crate::error::{ImageError, Result};

/// Number of histogram bins DIPY uses.
const BINS: usize = 256;

/// A voxel type Otsu's threshold can be computed for: `f32` or `f64`.
pub trait OtsuSample: Copy + PartialOrd + sealed::Sealed {
    /// DIPY's Otsu threshold of `values` (see [`otsu`]).
    fn otsu_threshold<'a, I: Iterator<Item = &'a Self> + Clone>(values: I) -> Result<Self>
    where
        Self: 'a;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// DIPY's Otsu threshold of a volume: the left edge of the histogram bin
/// (256 bins between min and max) that maximizes
/// `w1[:-1] * w2[1:] * (m1[:-1] - m2[1:])²`, where class weights are
/// cumulative counts and class means use each bin's right edge.
///
/// Errors on an empty volume and on NaN or infinite values (numpy's
/// `histogram` raises on a non-finite range too).
pub fn otsu<T: OtsuSample>(volume: ArrayView3<'_, T>) -> Result<T> {
    T::otsu_threshold(volume.iter())
}

macro_rules! impl_otsu {
    ($t:ty) => {
        impl OtsuSample for $t {
            fn otsu_threshold<'a, I: Iterator<Item = &'a Self> + Clone>(values: I) -> Result<Self> {
                let mut lo = <$t>::INFINITY;
                let mut hi = <$t>::NEG_INFINITY;
                let mut any = false;
                for &v in values.clone() {
                    if !v.is_finite() {
                        return Err(ImageError::invalid(
                            "otsu",
                            format!("volume holds a non-finite value ({v})"),
                        ));
                    }
                    lo = lo.min(v);
                    hi = hi.max(v);
                    any = true;
                }
                if !any {
                    return Err(ImageError::invalid("otsu", "empty volume"));
                }
                if lo == hi {
                    lo -= 0.5;
                    hi += 0.5;
                }

                // np.linspace(lo, hi, BINS + 1) in the array's type
                let delta = hi - lo;
                let step = delta / BINS as $t;
                let mut edges = [0 as $t; BINS + 1];
                for (i, e) in edges.iter_mut().enumerate() {
                    let y = if step == 0.0 {
                        i as $t / BINS as $t * delta
                    } else {
                        i as $t * step
                    };
                    *e = y + lo;
                }
                edges[BINS] = hi;

                let mut hist = [0u64; BINS];
                for &v in values {
                    let f = (v - lo) / delta * BINS as $t;
                    let mut i = (f as usize).min(BINS - 1);
                    if v < edges[i] {
                        i -= 1;
                    }
                    if i != BINS - 1 && v >= edges[i + 1] {
                        i += 1;
                    }
                    hist[i] += 1;
                }
                Ok(edges[best_bin(&hist, &edges.map(f64::from))])
            }
        }
    };
}

impl_otsu!(f32);
impl_otsu!(f64);

/// DIPY's class statistics in f64, with `np.argmax` semantics: the first
/// maximum, or the first NaN if any (a NaN arises only for empty classes).
fn best_bin(hist: &[u64; BINS], edges: &[f64; BINS + 1]) -> usize {
    let h: Vec<f64> = hist.iter().map(|&c| c as f64).collect();
    let moment: Vec<f64> = h.iter().zip(&edges[1..]).map(|(c, e)| c * e).collect();

    let mut w1 = vec![0.0; BINS];
    let mut m1 = vec![0.0; BINS];
    let (mut cw, mut cm) = (0.0, 0.0);
    for i in 0..BINS {
        cw += h[i];
        cm += moment[i];
        w1[i] = cw;
        m1[i] = cm / cw;
    }
    let mut w2 = vec![0.0; BINS];
    let mut m2 = vec![0.0; BINS];
    let (mut cw, mut cm) = (0.0, 0.0);
    for i in (0..BINS).rev() {
        cw += h[i];
        cm += moment[i];
        w2[i] = cw;
        m2[i] = cm / cw;
    }

    let mut best = 0;
    let mut best_value = f64::NEG_INFINITY;
    for i in 0..BINS - 1 {
        let d = m1[i] - m2[i + 1];
        let v = w1[i] * w2[i + 1] * (d * d);
        if v.is_nan() {
            return i;
        }
        if v > best_value {
            best_value = v;
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn threshold_is_the_left_edge_of_the_last_bin_of_class_one() {
        // values 0..9 and 100..109: every split between the clusters is
        // equally good, np.argmax takes the first, the bin holding 9, and
        // DIPY returns that bin's left edge, so 9 itself ends up above it.
        let v = Array3::from_shape_fn((10, 10, 2), |(x, _, z)| {
            if z == 0 {
                x as f32
            } else {
                100.0 + x as f32
            }
        });
        let t = otsu(v.view()).unwrap();
        let step = 109.0f32 / 256.0;
        assert_eq!(t, 21.0 * step);
        assert!(t < 9.0 && 9.0 < t + step);
    }

    #[test]
    fn constant_volume_gives_the_first_edge() {
        // numpy widens the range by ±0.5; every class-1 mean before the
        // middle bin is 0/0, and np.argmax returns the first NaN.
        let v = Array3::from_elem((3, 3, 3), 7.0f64);
        assert_eq!(otsu(v.view()).unwrap(), 6.5);
    }

    #[test]
    fn non_finite_values_are_an_error() {
        let mut v = Array3::from_elem((2, 2, 2), 1.0f32);
        v[[1, 1, 1]] = f32::NAN;
        assert!(otsu(v.view()).is_err());
        let e = Array3::<f32>::zeros((0, 2, 2));
        assert!(otsu(e.view()).is_err());
    }
}
