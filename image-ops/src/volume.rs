//! Volume types shared by every kernel, and the two edge conventions
//! (scipy's and numpy's `reflect`) used to read past a volume's border.

use ndarray::{Array3, Array4};

/// One 3-D single-precision volume, indexed `[x, y, z]` as NIfTI stores it.
pub type Volume = Array3<f32>;

/// One 3-D double-precision volume (DIPY's working type in several steps).
pub type Volume64 = Array3<f64>;

/// A 3-D boolean mask, indexed `[x, y, z]`.
pub type Mask = Array3<bool>;

/// A 4-D image (x, y, z, t) with its spatial metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Image4 {
    /// Voxel values after `scl_slope` / `scl_inter`, indexed `[x, y, z, t]`.
    pub data: Array4<f32>,
    /// Voxel-to-world affine: the sform if its code is set, else the qform.
    pub affine: [[f64; 4]; 4],
    /// Voxel sizes in mm (`pixdim[1..=3]`).
    pub voxel_size: [f64; 3],
}

/// Maps an index that may lie outside `0..n` into it with scipy.ndimage's
/// `reflect` mode, where the edge sample is repeated: `d c b a | a b c d | d c b a`.
///
/// The extension is periodic with period `2n`, which is what scipy produces
/// when a window is wider than the axis (it keeps reflecting).
/// `n` must be at least 1.
pub fn reflect_index_scipy(i: isize, n: usize) -> usize {
    debug_assert!(n > 0, "reflect_index_scipy on an empty axis");
    let n = n as isize;
    let m = i.rem_euclid(2 * n);
    (if m >= n { 2 * n - 1 - m } else { m }) as usize
}

/// Maps an index that may lie outside `0..n` into it with numpy.pad's
/// `reflect` mode, where the edge sample is not repeated: `d c b | a b c d | c b a`.
///
/// The extension is periodic with period `2(n - 1)`, which is what
/// `np.pad(mode="reflect")` produces when the pad is wider than the axis.
/// An axis of length 1 maps every index to 0. `n` must be at least 1.
pub fn reflect_index_numpy(i: isize, n: usize) -> usize {
    debug_assert!(n > 0, "reflect_index_numpy on an empty axis");
    if n == 1 {
        return 0;
    }
    let p = 2 * (n as isize - 1);
    let m = i.rem_euclid(p);
    (if m >= n as isize { p - m } else { m }) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scipy_reflect_repeats_the_edge() {
        let got: Vec<usize> = (-4..8).map(|i| reflect_index_scipy(i, 4)).collect();
        assert_eq!(got, [3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]);
    }

    #[test]
    fn scipy_reflect_keeps_reflecting_past_a_short_axis() {
        let got: Vec<usize> = (-5..7).map(|i| reflect_index_scipy(i, 2)).collect();
        assert_eq!(got, [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]);
        assert!((-9..9).all(|i| reflect_index_scipy(i, 1) == 0));
    }

    #[test]
    fn numpy_reflect_skips_the_edge() {
        let got: Vec<usize> = (-3..7).map(|i| reflect_index_numpy(i, 4)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }

    #[test]
    fn numpy_reflect_keeps_reflecting_past_a_short_axis() {
        // np.pad([a, b, c], 5, mode="reflect") == [b a b c b | a b c | b a b c b]
        let got: Vec<usize> = (-5..8).map(|i| reflect_index_numpy(i, 3)).collect();
        assert_eq!(got, [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]);
        assert!((-9..9).all(|i| reflect_index_numpy(i, 1) == 0));
    }
}
