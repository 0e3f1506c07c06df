//! Binary dilation with the 6-connected cross, as
//! `scipy.ndimage.binary_dilation(mask, generate_binary_structure(3, 1))`.

use ndarray::{Array3, ArrayView3, Zip};

use crate::volume::Mask;

/// Dilates `mask` `iterations` times with the 6-connected cross; voxels
/// outside the volume count as `false` (scipy's `border_value=0`).
///
/// Unlike scipy, `iterations == 0` means no dilation (scipy would repeat
/// until nothing changes).
pub fn dilate_cross(mask: ArrayView3<'_, bool>, iterations: usize) -> Mask {
    let mut current = mask.to_owned();
    for _ in 0..iterations {
        current = dilate_once(current.view());
    }
    current
}

fn dilate_once(m: ArrayView3<'_, bool>) -> Mask {
    let (nx, ny, nz) = m.dim();
    let mut out = Array3::from_elem((nx, ny, nz), false);
    Zip::indexed(&mut out).for_each(|(x, y, z), o| {
        *o = m[[x, y, z]]
            || (x > 0 && m[[x - 1, y, z]])
            || (x + 1 < nx && m[[x + 1, y, z]])
            || (y > 0 && m[[x, y - 1, z]])
            || (y + 1 < ny && m[[x, y + 1, z]])
            || (z > 0 && m[[x, y, z - 1]])
            || (z + 1 < nz && m[[x, y, z + 1]]);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_voxel_grows_into_a_cross() {
        let mut m = Array3::from_elem((3, 3, 3), false);
        m[[1, 1, 1]] = true;
        let d = dilate_cross(m.view(), 1);
        assert_eq!(d.iter().filter(|&&v| v).count(), 7);
        assert!(
            d[[0, 1, 1]]
                && d[[2, 1, 1]]
                && d[[1, 0, 1]]
                && d[[1, 2, 1]]
                && d[[1, 1, 0]]
                && d[[1, 1, 2]]
        );
        assert!(!d[[0, 0, 1]]);
    }

    #[test]
    fn border_voxel_does_not_wrap() {
        let mut m = Array3::from_elem((4, 1, 1), false);
        m[[0, 0, 0]] = true;
        let d = dilate_cross(m.view(), 1);
        assert_eq!(
            d.iter().copied().collect::<Vec<_>>(),
            [true, true, false, false]
        );
        assert_eq!(dilate_cross(m.view(), 0), m);
    }

    #[test]
    fn empty_mask_stays_empty() {
        let m = Array3::from_elem((2, 3, 4), false);
        assert_eq!(dilate_cross(m.view(), 2), m);
    }
}
