//! Classic non-local means (spec step 4): against DIPY's goldens, against a
//! literal per-patch transcription of DIPY's Cython loop, and its edge cases.

use std::path::PathBuf;

use ember_image::nifti_io::read_array;
use ember_image::nlmeans::{nlmeans, nlmeans_4d, Sigma};
use ember_image::reflect_index_numpy;
use ndarray::{Array3, Array4, ArrayView3, Axis};
use serde_json::Value;

fn golden(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

/// A deterministic generator for test volumes (64-bit LCG, top 53 bits).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn noisy_volume(shape: (usize, usize, usize), seed: u64) -> Array3<f32> {
    let mut rng = Lcg(seed);
    Array3::from_shape_fn(shape, |(x, y, z)| {
        let signal = 100.0 + 40.0 * ((x + 2 * y) % 5) as f64 + 10.0 * z as f64;
        (signal + 20.0 * (rng.next() - 0.5)) as f32
    })
}

/// DIPY 1.12.1 `_nlmeans_3d` / `process_block`, transcribed loop for loop
/// (patch radius 1, block radius 5), with numpy-`reflect` padding that
/// reflects as often as needed.
fn dipy_reference(
    volume: ArrayView3<'_, f32>,
    mask: ArrayView3<'_, bool>,
    sigma: ArrayView3<'_, f64>,
    rician: bool,
) -> Array3<f32> {
    const B: isize = 5;
    const P: isize = 1;
    let (n0, n1, n2) = volume.dim();
    let at = |a: &ArrayView3<'_, f64>, i: isize, j: isize, k: isize| {
        a[[
            reflect_index_numpy(i, n0),
            reflect_index_numpy(j, n1),
            reflect_index_numpy(k, n2),
        ]]
    };
    let arr = volume.mapv(f64::from);
    let arr = arr.view();
    Array3::from_shape_fn((n0, n1, n2), |(i, j, k)| {
        let (i, j, k) = (i as isize, j as isize, k as isize);
        let mut out = 0.0;
        if mask[[i as usize, j as usize, k as usize]] {
            let mut weights = Vec::with_capacity(729);
            let mut sumw = 0.0;
            for m in -(B - P)..=(B - P) {
                for n in -(B - P)..=(B - P) {
                    for o in -(B - P)..=(B - P) {
                        let (mut summ, mut sigm) = (0.0, 0.0);
                        for a in -P..=P {
                            for b in -P..=P {
                                for c in -P..=P {
                                    let d = at(&arr, i + a, j + b, k + c)
                                        - at(&arr, i + m + a, j + n + b, k + o + c);
                                    summ += d * d;
                                    sigm += at(&sigma, i + m + a, j + n + b, k + o + c);
                                }
                            }
                        }
                        let denom = 2f64.sqrt() * (sigm / 27.0).powi(2);
                        let w = (-(summ / 27.0) / denom).exp();
                        sumw += w;
                        weights.push(w);
                    }
                }
            }
            let mut cnt = 0;
            for m in -(B - P)..=(B - P) {
                for n in -(B - P)..=(B - P) {
                    for o in -(B - P)..=(B - P) {
                        let w = if sumw > 0.0 { weights[cnt] / sumw } else { 0.0 };
                        let x = at(&arr, i + m, j + n, k + o);
                        out += w * x * x;
                        cnt += 1;
                    }
                }
            }
        }
        if rician {
            let s = sigma[[i as usize, j as usize, k as usize]];
            out -= 2.0 * s * s;
            if out < 0.0 {
                out = 0.0;
            }
        }
        out.sqrt() as f32
    })
}

/// Largest relative difference over the voxels of `mask`; NaN must meet NaN.
fn max_rel_diff(got: &Array3<f32>, want: &Array3<f32>, mask: ArrayView3<'_, bool>) -> f64 {
    assert_eq!(got.dim(), want.dim());
    let mut worst: f64 = 0.0;
    for ((g, w), &m) in got.iter().zip(want).zip(mask) {
        if !m {
            continue;
        }
        let (g, w) = (f64::from(*g), f64::from(*w));
        if g.is_nan() || w.is_nan() {
            assert!(g.is_nan() && w.is_nan(), "got {g}, want {w}");
            continue;
        }
        if g == w {
            continue;
        }
        worst = worst.max((g - w).abs() / w.abs().max(f64::MIN_POSITIVE));
    }
    worst
}

fn partial_mask(shape: (usize, usize, usize)) -> Array3<bool> {
    Array3::from_shape_fn(shape, |(x, y, z)| (x + y + z) % 4 != 0 || x == 0)
}

#[test]
fn matches_a_literal_transcription_of_dipy() {
    let vol = noisy_volume((7, 8, 9), 1);
    let mask = partial_mask(vol.dim());
    let sigma = 12.5;
    let got = nlmeans(vol.view(), mask.view(), Sigma::Constant(sigma), true).unwrap();
    let want = dipy_reference(
        vol.view(),
        mask.view(),
        Array3::from_elem(vol.dim(), sigma).view(),
        true,
    );
    let worst = max_rel_diff(&got, &want, mask.view());
    assert!(worst <= 1e-6, "max relative difference {worst:e}");
    assert!(got.iter().zip(&mask).all(|(&v, &m)| m || v == 0.0));
}

#[test]
fn per_voxel_sigma_matches_the_transcription() {
    let vol = noisy_volume((6, 7, 8), 2);
    let mask = partial_mask(vol.dim());
    let sigma = Array3::from_shape_fn(vol.dim(), |(x, y, z)| 8.0 + (x * 3 + y + 2 * z) as f64);
    for rician in [true, false] {
        let got = nlmeans(
            vol.view(),
            mask.view(),
            Sigma::PerVoxel(sigma.view()),
            rician,
        )
        .unwrap();
        let want = dipy_reference(vol.view(), mask.view(), sigma.view(), rician);
        let worst = max_rel_diff(&got, &want, mask.view());
        assert!(
            worst <= 1e-6,
            "rician {rician}: max relative difference {worst:e}"
        );
    }
}

#[test]
fn short_axes_reflect_repeatedly_and_match_the_transcription() {
    for shape in [(1, 4, 3), (2, 2, 2), (4, 1, 5), (3, 6, 1)] {
        let vol = noisy_volume(shape, 3);
        let mask = Array3::from_elem(shape, true);
        let got = nlmeans(vol.view(), mask.view(), Sigma::Constant(9.0), true).unwrap();
        let again = nlmeans(vol.view(), mask.view(), Sigma::Constant(9.0), true).unwrap();
        assert_eq!(got, again, "{shape:?}: two runs differ");
        let want = dipy_reference(
            vol.view(),
            mask.view(),
            Array3::from_elem(shape, 9.0).view(),
            true,
        );
        let worst = max_rel_diff(&got, &want, mask.view());
        assert!(
            worst <= 1e-6,
            "{shape:?}: max relative difference {worst:e}"
        );
    }
}

#[test]
fn repeated_runs_are_bitwise_identical() {
    let vol = noisy_volume((23, 19, 17), 4);
    let mask = partial_mask(vol.dim());
    let a = nlmeans(vol.view(), mask.view(), Sigma::Constant(15.0), true).unwrap();
    let b = nlmeans(vol.view(), mask.view(), Sigma::Constant(15.0), true).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn empty_mask_gives_zeros() {
    let vol = noisy_volume((9, 8, 7), 5);
    let mask = Array3::from_elem(vol.dim(), false);
    let out = nlmeans(vol.view(), mask.view(), Sigma::Constant(10.0), true).unwrap();
    assert!(out.iter().all(|&v| v == 0.0));
}

#[test]
fn zero_sigma_gives_dipys_zeros() {
    // DIPY: every weight is exp(NaN) (0/0 for the voxel itself), so every
    // normalised weight is 0.
    let vol = noisy_volume((6, 6, 6), 6);
    let mask = Array3::from_elem(vol.dim(), true);
    let out = nlmeans(vol.view(), mask.view(), Sigma::Constant(0.0), true).unwrap();
    let want = dipy_reference(
        vol.view(),
        mask.view(),
        Array3::zeros(vol.dim()).view(),
        true,
    );
    assert_eq!(out, want);
    assert!(out.iter().all(|&v| v == 0.0));
}

#[test]
fn non_finite_voxels_propagate_as_in_dipy() {
    let mut vol = noisy_volume((16, 15, 14), 7);
    vol[[3, 3, 3]] = f32::NAN;
    vol[[12, 10, 9]] = f32::INFINITY;
    vol[[8, 13, 2]] = f32::NEG_INFINITY;
    let mask = Array3::from_elem(vol.dim(), true);
    let got = nlmeans(vol.view(), mask.view(), Sigma::Constant(10.0), true).unwrap();
    let want = dipy_reference(
        vol.view(),
        mask.view(),
        Array3::from_elem(vol.dim(), 10.0).view(),
        true,
    );
    let worst = max_rel_diff(&got, &want, mask.view());
    assert!(worst <= 1e-6, "max relative difference {worst:e}");
    // Far from every non-finite voxel the output is an ordinary number; near
    // one it is NaN (a candidate centre is non-finite) or 0.
    assert!(got[[3, 3, 3]].is_nan());
    assert!(got[[15, 0, 13]].is_finite() && got[[15, 0, 13]] > 0.0);
    assert!(got.iter().any(|v| v.is_nan()));
}

#[test]
fn bad_arguments_are_errors() {
    let vol = noisy_volume((5, 5, 5), 8);
    let mask = Array3::from_elem((5, 5, 4), true);
    assert!(nlmeans(vol.view(), mask.view(), Sigma::Constant(1.0), true).is_err());
    let mask = Array3::from_elem((5, 5, 5), true);
    for s in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(nlmeans(vol.view(), mask.view(), Sigma::Constant(s), true).is_err());
    }
    let sigma = Array3::<f64>::ones((4, 5, 5));
    assert!(nlmeans(vol.view(), mask.view(), Sigma::PerVoxel(sigma.view()), true).is_err());
    let mut sigma = Array3::<f64>::ones((5, 5, 5));
    sigma[[1, 2, 3]] = f64::NAN;
    assert!(nlmeans(vol.view(), mask.view(), Sigma::PerVoxel(sigma.view()), true).is_err());
}

/// Denoises a golden case's input with DIPY's mask and sigmas and returns
/// the worst relative difference inside the mask.
fn golden_case(case: &str) -> f64 {
    let dir = golden(case);
    let (input, _) = read_array::<f32>(dir.join("input.nii.gz")).unwrap();
    let (mask, _) = read_array::<f32>(dir.join("mask.nii.gz")).unwrap();
    let mask = mask.index_axis(Axis(3), 0).mapv(|v| v != 0.0);
    let (want, _) = read_array::<f32>(dir.join("denoised.nii.gz")).unwrap();
    let text = std::fs::read_to_string(dir.join("sigma.json")).unwrap();
    let sigma: Value = serde_json::from_str(&text).unwrap();
    let sigmas: Vec<f64> = sigma["sigma"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let got: Array4<f32> = nlmeans_4d(input.view(), mask.view(), &sigmas, true).unwrap();
    let mut worst: f64 = 0.0;
    for t in 0..want.len_of(Axis(3)) {
        let g = got.index_axis(Axis(3), t).to_owned();
        let w = want.index_axis(Axis(3), t).to_owned();
        worst = worst.max(max_rel_diff(&g, &w, mask.view()));
        assert!(g.iter().zip(&mask).all(|(&v, &m)| m || v == 0.0));
    }
    println!("{case}: max relative difference inside the mask vs DIPY = {worst:e}");
    worst
}

#[test]
fn small_64d_matches_dipy() {
    assert!(golden_case("small_64D") <= 1e-4);
}

#[test]
fn synthetic_matches_dipy() {
    assert!(golden_case("synthetic") <= 1e-4);
}
