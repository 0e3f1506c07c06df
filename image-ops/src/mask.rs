//! The brain mask (spec step 2): mean of the b0 volumes, then DIPY's
//! `median_otsu` (median filter passes, Otsu threshold, cross dilation).

use ndarray::{Array3, ArrayView3, ArrayView4, Axis, Zip};

use crate::error::{ImageError, Result};
use crate::median::{median_filter_passes, MedianSample};
use crate::morphology::dilate_cross;
use crate::otsu::{otsu, OtsuSample};
use crate::volume::Mask;

/// Voxel-wise mean of 3-D volumes, accumulated in f64 in the order given
/// (the spec's order for the b0 mean), then divided by their number.
///
/// A NaN or infinite voxel makes that voxel's mean NaN or infinite.
/// Errors when there is no volume or the shapes differ.
pub fn mean_volumes<'a, I>(volumes: I) -> Result<Array3<f64>>
where
    I: IntoIterator<Item = ArrayView3<'a, f32>>,
{
    let mut sum: Option<Array3<f64>> = None;
    let mut count = 0usize;
    for v in volumes {
        match &mut sum {
            None => sum = Some(v.mapv(f64::from)),
            Some(s) => {
                if s.dim() != v.dim() {
                    return Err(ImageError::invalid(
                        "mean_volumes",
                        format!(
                            "volume {count} has shape {:?}, the first has {:?}",
                            v.dim(),
                            s.dim()
                        ),
                    ));
                }
                Zip::from(s).and(&v).for_each(|s, &x| *s += f64::from(x));
            }
        }
        count += 1;
    }
    let mut sum = sum.ok_or_else(|| ImageError::invalid("mean_volumes", "no volume selected"))?;
    let n = count as f64;
    sum.mapv_inplace(|s| s / n);
    Ok(sum)
}

/// Mean of the volumes of a 4-D image (`[x, y, z, t]`) whose `select` entry
/// is true (e.g. [`GradientTable::b0_mask`](crate::gradients::GradientTable::b0_mask)).
pub fn mean_of_selected(image: ArrayView4<'_, f32>, select: &[bool]) -> Result<Array3<f64>> {
    let n = image.len_of(Axis(3));
    if select.len() != n {
        return Err(ImageError::invalid(
            "mean_of_selected",
            format!("{} selection flags for {n} volumes", select.len()),
        ));
    }
    mean_volumes(
        image
            .axis_iter(Axis(3))
            .zip(select)
            .filter(|(_, &keep)| keep)
            .map(|(v, _)| v),
    )
}

/// What [`median_otsu`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct MedianOtsu<T> {
    /// `filtered > threshold`, then dilated.
    pub mask: Mask,
    /// DIPY's Otsu threshold of the filtered volume.
    pub threshold: T,
}

/// DIPY's `median_otsu(volume, median_radius, numpass, autocrop=False,
/// dilate)`: `numpass` median filters of side `2 * median_radius + 1`
/// (scipy `reflect` edges), Otsu's threshold of the result, `filtered >
/// threshold`, then `dilate` dilations with the 6-connected cross
/// (0 = none). The pipeline uses radius 4, 2 passes, 1 dilation.
///
/// Errors on an empty volume and on NaN or infinite values surviving the
/// median filter (where Otsu's histogram has no finite range).
pub fn median_otsu<T>(
    volume: ArrayView3<'_, T>,
    median_radius: usize,
    numpass: usize,
    dilate: usize,
) -> Result<MedianOtsu<T>>
where
    T: MedianSample + OtsuSample,
{
    let filtered = median_filter_passes(volume, median_radius, numpass)?;
    let threshold = otsu(filtered.view())?;
    let above = filtered.mapv(|v| v > threshold);
    Ok(MedianOtsu {
        mask: dilate_cross(above.view(), dilate),
        threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, Array4};

    #[test]
    fn mean_accumulates_selected_volumes_in_f64() {
        let img = Array4::from_shape_fn((2, 2, 1, 3), |(x, _, _, t)| {
            [1.0f32, 1e8, 3.0][t] + x as f32
        });
        let m = mean_of_selected(img.view(), &[true, false, true]).unwrap();
        assert_eq!(m[[0, 0, 0]], 2.0);
        assert_eq!(m[[1, 1, 0]], 3.0);
    }

    #[test]
    fn mean_without_volumes_or_with_wrong_flags_is_an_error() {
        let img = Array4::<f32>::zeros((2, 2, 2, 2));
        assert!(mean_of_selected(img.view(), &[false, false]).is_err());
        assert!(mean_of_selected(img.view(), &[true]).is_err());
    }

    #[test]
    fn bright_cube_is_masked_and_dilated() {
        let v = Array3::from_shape_fn((12, 12, 12), |(x, y, z)| {
            if (3..9).contains(&x) && (3..9).contains(&y) && (3..9).contains(&z) {
                100.0f32
            } else {
                1.0
            }
        });
        let r = median_otsu(v.view(), 1, 1, 1).unwrap();
        // the background sits in bin 0, whose left edge is the threshold
        assert_eq!(r.threshold, 1.0);
        assert!(r.mask[[5, 5, 5]]);
        assert!(!r.mask[[0, 0, 0]]);
    }
}
