//! `estimate_sigma` (spec step 3) against DIPY's float32 sigmas.

use std::path::PathBuf;

use ember_image::nifti_io::read_image;
use ember_image::{estimate_sigma, estimate_sigma_4d};
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

/// Largest relative difference between our sigmas and DIPY's.
fn worst_relative(case: &str) -> f64 {
    let dir = golden(case);
    let image = read_image(dir.join("input.nii.gz")).unwrap();
    let got = estimate_sigma_4d(image.data.view()).unwrap();
    let want: Vec<f64> = json(dir.join("sigma.json"))["sigma"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .map(|(&g, &w)| (f64::from(g) - w).abs() / w.abs())
        .fold(0.0, f64::max)
}

#[test]
fn small_64d_sigma_equals_dipy() {
    let worst = worst_relative("small_64D");
    println!("small_64D: max relative sigma difference {worst:e}");
    assert!(worst <= 1e-6, "{worst}");
}

#[test]
fn synthetic_sigma_equals_dipy() {
    let worst = worst_relative("synthetic");
    println!("synthetic: max relative sigma difference {worst:e}");
    assert!(worst <= 1e-6, "{worst}");
}

#[test]
fn thin_small_25_sigma_equals_dipy() {
    let worst = worst_relative("small_25");
    println!("small_25: max relative sigma difference {worst:e}");
    assert!(worst <= 1e-6, "{worst}");
}

#[test]
fn one_slice_sigma_equals_dipy() {
    let worst = worst_relative("oneslice");
    println!("oneslice: max relative sigma difference {worst:e}");
    assert!(worst <= 1e-6, "{worst}");
}

#[test]
fn tiny_volumes_sigma_equals_dipy() {
    let dir = golden("edge");
    let edge = json(dir.join("edge.json"));
    for name in ["vol_3x5x7", "vol_1x6x4"] {
        let image = read_image(dir.join(format!("{name}.nii.gz"))).unwrap();
        let got = estimate_sigma(image.data.index_axis(Axis(3), 0)).unwrap();
        let want = edge[name]["estimate_sigma_N0"].as_f64().unwrap();
        let rel = (f64::from(got) - want).abs() / want;
        assert!(rel <= 1e-6, "{name}: {got} vs {want}");
    }
}

#[test]
fn infinite_voxel_gives_a_non_finite_sigma_not_a_panic() {
    let mut v = Array3::from_elem((3, 3, 3), 1.0f32);
    v[[1, 1, 1]] = f32::INFINITY;
    assert!(!estimate_sigma(v.view()).unwrap().is_finite());
}
