//! Noise level per volume: DIPY's `estimate_sigma(arr, N=0)` (spec step 3).

use ndarray::{ArrayView3, ArrayView4, Axis};

use crate::error::{ImageError, Result};
use crate::volume::reflect_index_scipy;

/// numpy's pairwise-summation block (`PW_BLOCKSIZE`).
const PAIRWISE_BLOCK: usize = 128;

/// DIPY's `estimate_sigma` with `N = 0` for one volume.
///
/// `conv` is the sum of the 6 face neighbours (scipy `reflect` edges),
/// accumulated in f64 in scipy's footprint order; `r = sqrt(6/7) * (v -
/// conv/6)`; the result is `sqrt(mean(r²))` over all voxels, the mean taken
/// with numpy's pairwise summation in C order, and rounded to f32 as DIPY
/// stores it. NaN or infinite voxels make the result NaN or infinite.
pub fn estimate_sigma(volume: ArrayView3<'_, f32>) -> Result<f32> {
    let (nx, ny, nz) = volume.dim();
    if nx == 0 || ny == 0 || nz == 0 {
        return Err(ImageError::invalid(
            "estimate_sigma",
            format!("empty volume of shape {:?}", volume.dim()),
        ));
    }
    let scale = (6.0f64 / 7.0).sqrt();
    let sixth = 1.0f64 / 6.0;
    let at = |x: usize, y: usize, z: usize| f64::from(volume[[x, y, z]]);
    let refl = |i: usize, d: isize, n: usize| reflect_index_scipy(i as isize + d, n);
    // C order (z fastest), the order numpy's boolean indexing flattens in
    let mut squares = Vec::with_capacity(nx * ny * nz);
    for x in 0..nx {
        for y in 0..ny {
            for z in 0..nz {
                // scipy's footprint order for the cross: -x, -y, -z, +z, +y, +x
                let mut conv = 0.0f64;
                conv += at(refl(x, -1, nx), y, z);
                conv += at(x, refl(y, -1, ny), z);
                conv += at(x, y, refl(z, -1, nz));
                conv += at(x, y, refl(z, 1, nz));
                conv += at(x, refl(y, 1, ny), z);
                conv += at(refl(x, 1, nx), y, z);
                let r = scale * (at(x, y, z) - sixth * conv);
                squares.push(r * r);
            }
        }
    }
    let mean = pairwise_sum(&squares) / squares.len() as f64;
    Ok(mean.sqrt() as f32)
}

/// [`estimate_sigma`] for every volume of a 4-D image (`[x, y, z, t]`).
pub fn estimate_sigma_4d(image: ArrayView4<'_, f32>) -> Result<Vec<f32>> {
    image.axis_iter(Axis(3)).map(estimate_sigma).collect()
}

/// numpy's `pairwise_sum` for float64: below 8 values a plain loop, up to
/// 128 eight interleaved partial sums, above that split in two halves whose
/// first is a multiple of 8.
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |s, &v| s + v)
    } else if n <= PAIRWISE_BLOCK {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        for chunk in a[8..whole].chunks_exact(8) {
            for (acc, &v) in r.iter_mut().zip(chunk) {
                *acc += v;
            }
        }
        let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[whole..] {
            s += v;
        }
        s
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn constant_volume_has_no_noise() {
        let v = Array3::from_elem((4, 5, 6), 3.5f32);
        assert_eq!(estimate_sigma(v.view()).unwrap(), 0.0);
    }

    #[test]
    fn single_voxel_reflects_onto_itself() {
        let v = Array3::from_elem((1, 1, 1), 9.0f32);
        assert_eq!(estimate_sigma(v.view()).unwrap(), 0.0);
    }

    #[test]
    fn checkerboard_has_the_closed_form_sigma() {
        // interior voxel: v = ±1, neighbours all ∓1 → r = sqrt(6/7) * 2
        let v = Array3::from_shape_fn(
            (4, 4, 4),
            |(x, y, z)| if (x + y + z) % 2 == 0 { 1.0f32 } else { -1.0 },
        );
        let s = estimate_sigma(v.view()).unwrap();
        assert!(s > 0.0 && s < (6.0f32 / 7.0).sqrt() * 2.0);
    }

    #[test]
    fn pairwise_sum_matches_plain_sum_on_exact_values() {
        for n in [0usize, 1, 7, 8, 9, 127, 128, 129, 1000] {
            let a: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert_eq!(pairwise_sum(&a), (n * n.saturating_sub(1) / 2) as f64);
        }
    }

    #[test]
    fn empty_volume_is_an_error() {
        assert!(estimate_sigma(Array3::<f32>::zeros((0, 1, 1)).view()).is_err());
    }
}
