//! The mask path (spec step 2) against DIPY's goldens: b0 mean, median
//! passes, Otsu threshold and the final mask must all be identical.

use std::path::PathBuf;

use ember_image::gradients::GradientTable;
use ember_image::morphology::dilate_cross;
use ember_image::nifti_io::{read_array, read_image};
use ember_image::{mean_of_selected, median_filter, median_filter_passes, median_otsu, otsu};
use ndarray::{Array3, Axis};
use serde_json::Value;

fn golden(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

fn json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A 3-D golden read exactly (float64 files stay float64).
fn volume64(path: PathBuf) -> Array3<f64> {
    let (a, _) = read_array::<f64>(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.len_of(Axis(3)), 1, "{} is not 3-D", path.display());
    a.index_axis_move(Axis(3), 0)
}

fn max_abs_diff(a: &Array3<f64>, b: &Array3<f64>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The b0 selection for a case: its gradient table when it has one, else
/// every volume (S0_10slices is b0 only).
fn b0_flags(case: &str, n_volumes: usize) -> Vec<bool> {
    let dir = golden(case);
    if dir.join("input.bval").exists() {
        let g = GradientTable::from_fsl_files(dir.join("input.bval"), dir.join("input.bvec"), 10.0)
            .unwrap();
        g.check_volumes(n_volumes, dir.join("input.nii.gz"))
            .unwrap();
        g.b0_mask()
    } else {
        vec![true; n_volumes]
    }
}

fn check_case(case: &str) {
    let dir = golden(case);
    let image = read_image(dir.join("input.nii.gz")).unwrap();
    let flags = b0_flags(case, image.data.len_of(Axis(3)));
    let prov = json(dir.join("provenance.json"));
    let b0: Vec<usize> = flags
        .iter()
        .enumerate()
        .filter(|(_, &b)| b)
        .map(|(i, _)| i)
        .collect();
    let want_b0: Vec<usize> = prov["b0_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(b0, want_b0, "{case}: b0 volumes");

    let mean = mean_of_selected(image.data.view(), &flags).unwrap();
    let d_mean = max_abs_diff(&mean, &volume64(dir.join("mean_b0.nii.gz")));
    assert_eq!(d_mean, 0.0, "{case}: mean_b0");

    let median1 = median_filter(mean.view(), 4).unwrap();
    assert_eq!(
        max_abs_diff(&median1, &volume64(dir.join("median1.nii.gz"))),
        0.0,
        "{case}: median1"
    );
    let median2 = median_filter_passes(mean.view(), 4, 2).unwrap();
    assert_eq!(
        max_abs_diff(&median2, &volume64(dir.join("median2.nii.gz"))),
        0.0,
        "{case}: median2"
    );

    let o = json(dir.join("otsu.json"));
    let threshold = otsu(median2.view()).unwrap();
    assert_eq!(
        threshold,
        o["threshold"].as_f64().unwrap(),
        "{case}: otsu threshold"
    );
    let above = median2.iter().filter(|&&v| v > threshold).count() as u64;
    assert_eq!(
        above,
        o["voxels_above_threshold_before_dilation"]
            .as_u64()
            .unwrap(),
        "{case}"
    );

    let result = median_otsu(mean.view(), 4, 2, 1).unwrap();
    assert_eq!(result.threshold, threshold);
    let want = volume64(dir.join("mask.nii.gz"));
    let differing = result
        .mask
        .iter()
        .zip(&want)
        .filter(|(&m, &w)| m != (w != 0.0))
        .count();
    assert_eq!(differing, 0, "{case}: mask voxels differing from DIPY");
    let in_mask = result.mask.iter().filter(|&&m| m).count() as u64;
    assert_eq!(in_mask, o["voxels_in_mask"].as_u64().unwrap(), "{case}");
}

#[test]
fn small_64d_mask_equals_dipy() {
    check_case("small_64D");
}

#[test]
fn s0_10slices_mask_equals_dipy() {
    check_case("S0_10slices");
}

#[test]
fn synthetic_mask_equals_dipy() {
    check_case("synthetic");
}

/// DIPY's thin data set (10×8×2): the 9³ window reflects over z again and again.
#[test]
fn thin_small_25_mask_equals_dipy() {
    check_case("small_25");
}

/// One slice (16×16×1): every z neighbour is the voxel itself.
#[test]
fn one_slice_mask_equals_dipy() {
    check_case("oneslice");
}

#[test]
fn gradient_tables_match_dipy_after_zeroing() {
    for case in ["small_64D", "synthetic", "small_25", "oneslice"] {
        let dir = golden(case);
        let g = GradientTable::from_fsl_files(dir.join("input.bval"), dir.join("input.bvec"), 10.0)
            .unwrap();
        let want: Vec<f64> = json(dir.join("provenance.json"))["design_matrix"]
            ["bvals_after_gradient_table"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(g.bvals, want, "{case}");
    }
}

/// Volumes smaller than the 9³ window: scipy keeps reflecting.
#[test]
fn tiny_volumes_median_and_otsu_equal_scipy() {
    let dir = golden("edge");
    let edge = json(dir.join("edge.json"));
    for name in ["vol_3x5x7", "vol_1x6x4"] {
        let input = volume64(dir.join(format!("{name}.nii.gz")));
        let m1 = median_filter(input.view(), 4).unwrap();
        assert_eq!(
            m1,
            volume64(dir.join(format!("{name}_median1.nii.gz"))),
            "{name} median1"
        );
        let m2 = median_filter_passes(input.view(), 4, 2).unwrap();
        assert_eq!(
            m2,
            volume64(dir.join(format!("{name}_median2.nii.gz"))),
            "{name} median2"
        );
        assert_eq!(
            otsu(m2.view()).unwrap(),
            edge[name]["otsu_of_median2"].as_f64().unwrap(),
            "{name}"
        );
        assert_eq!(
            otsu(input.view()).unwrap(),
            edge[name]["otsu_of_input_float64"].as_f64().unwrap(),
            "{name}"
        );
    }
}

/// DIPY's threshold for a constant volume is `value - 0.5` (the first
/// class's 0/0 mean is a NaN that `np.argmax` picks), so everything is kept.
#[test]
fn constant_volume_is_all_mask() {
    let v = Array3::from_elem((5, 5, 5), 3.0f64);
    let r = median_otsu(v.view(), 1, 1, 1).unwrap();
    assert_eq!(r.threshold, 2.5);
    assert!(r.mask.iter().all(|&m| m));
}

/// Otsu's threshold is a left bin edge below the maximum, so `median_otsu`
/// never returns an empty mask; an empty mask handed to the dilation (as a
/// caller's own mask might be) stays empty.
#[test]
fn empty_mask_stays_empty_through_dilation() {
    let none = dilate_cross(Array3::from_elem((4, 1, 3), false).view(), 1);
    assert!(none.iter().all(|&m| !m));
}

#[test]
fn nan_in_the_volume_is_an_error_not_a_panic() {
    let mut v = Array3::from_elem((5, 5, 5), 3.0f64);
    // a NaN majority survives the median filter and reaches Otsu
    v.iter_mut().take(100).for_each(|x| *x = f64::NAN);
    assert!(median_otsu(v.view(), 1, 1, 1).is_err());
}
