//! The WLS tensor fit (spec step 5): against DIPY's goldens (fitted on
//! DIPY's own denoised data), on noise-free tensors, and on degenerate input.

use std::path::PathBuf;

use ember_image::dti::{Tensor, TensorModel};
use ember_image::gradients::GradientTable;
use ember_image::nifti_io::read_array;
use ndarray::{Array3, Array4, Axis, ShapeBuilder};

fn golden(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

fn read64(path: PathBuf) -> Array4<f64> {
    read_array::<f64>(&path).unwrap_or_else(|e| panic!("{e}")).0
}

/// Fits DIPY's denoised data with DIPY's mask and returns the largest FA,
/// MD and eigenvalue differences inside the mask.
fn golden_case(case: &str) -> (f64, f64, f64) {
    let dir = golden(case);
    let gtab = GradientTable::from_fsl_files(dir.join("input.bval"), dir.join("input.bvec"), 10.0)
        .unwrap();
    let (denoised, _) = read_array::<f32>(dir.join("denoised.nii.gz")).unwrap();
    let mask = read64(dir.join("mask.nii.gz"))
        .index_axis_move(Axis(3), 0)
        .mapv(|v| v != 0.0);
    let model = TensorModel::new(&gtab).unwrap();
    let maps = model.fit(denoised.view(), mask.view()).unwrap();
    let fa = read64(dir.join("fa.nii.gz")).index_axis_move(Axis(3), 0);
    let md = read64(dir.join("md.nii.gz")).index_axis_move(Axis(3), 0);
    let evals = read64(dir.join("evals.nii.gz"));
    let (mut dfa, mut dmd, mut dev) = (0.0f64, 0.0f64, 0.0f64);
    for ((x, y, z), &m) in mask.indexed_iter() {
        if !m {
            assert_eq!(maps.fa[[x, y, z]], 0.0);
            assert_eq!(maps.md[[x, y, z]], 0.0);
            continue;
        }
        dfa = dfa.max((maps.fa[[x, y, z]] - fa[[x, y, z]]).abs());
        dmd = dmd.max((maps.md[[x, y, z]] - md[[x, y, z]]).abs());
        for i in 0..3 {
            dev = dev.max((maps.evals[[x, y, z, i]] - evals[[x, y, z, i]]).abs());
        }
    }
    println!("{case}: max |FA - DIPY| = {dfa:e}, max |MD - DIPY| = {dmd:e}, max |evals - DIPY| = {dev:e}");
    (dfa, dmd, dev)
}

#[test]
fn small_64d_matches_dipy() {
    let (fa, md, ev) = golden_case("small_64D");
    assert!(fa <= 1e-4 && md <= 1e-7 && ev <= 1e-7);
}

#[test]
fn synthetic_matches_dipy() {
    let (fa, md, ev) = golden_case("synthetic");
    assert!(fa <= 1e-4 && md <= 1e-7 && ev <= 1e-7);
}

/// 6 b0-free directions are not enough variety for a test: 2 shells of 20
/// directions spread by the golden angle, and one b0.
fn scheme() -> GradientTable {
    let mut bvals = vec![0.0];
    let mut bvecs = vec![[0.0; 3]];
    for b in [1000.0, 2000.0] {
        for i in 0..20 {
            let z = 1.0 - (i as f64 + 0.5) / 20.0;
            let r = (1.0 - z * z).sqrt();
            let phi = i as f64 * std::f64::consts::PI * (3.0 - 5f64.sqrt()) + b / 1000.0;
            bvals.push(b);
            bvecs.push([r * phi.cos(), r * phi.sin(), z]);
        }
    }
    GradientTable {
        bvals,
        bvecs,
        b0_threshold: 10.0,
    }
}

/// A tensor with eigenvalues `evals` along the orthonormal frame of `e1`.
fn tensor(evals: [f64; 3], e1: [f64; 3]) -> ([[f64; 3]; 3], [[f64; 3]; 3]) {
    let n = e1.iter().map(|c| c * c).sum::<f64>().sqrt();
    let a = e1.map(|c| c / n);
    let helper = if a[0].abs() < 0.9 {
        [1.0, 0.0, 0.0]
    } else {
        [0.0, 1.0, 0.0]
    };
    let cross = |u: [f64; 3], v: [f64; 3]| {
        [
            u[1] * v[2] - u[2] * v[1],
            u[2] * v[0] - u[0] * v[2],
            u[0] * v[1] - u[1] * v[0],
        ]
    };
    let b = cross(a, helper);
    let nb = b.iter().map(|c| c * c).sum::<f64>().sqrt();
    let b = b.map(|c| c / nb);
    let c = cross(a, b);
    let frame = [a, b, c];
    let mut d = [[0.0; 3]; 3];
    for (i, row) in d.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| evals[k] * frame[k][i] * frame[k][j]).sum();
        }
    }
    (d, frame)
}

fn signal(gtab: &GradientTable, s0: f64, d: &[[f64; 3]; 3]) -> Vec<f32> {
    gtab.bvals
        .iter()
        .zip(&gtab.bvecs)
        .map(|(b, g)| {
            let q: f64 = (0..3)
                .flat_map(|i| (0..3).map(move |j| (i, j)))
                .map(|(i, j)| g[i] * d[i][j] * g[j])
                .sum();
            (s0 * (-b * q).exp()) as f32
        })
        .collect()
}

fn fa_of(ev: [f64; 3]) -> f64 {
    let [a, b, c] = ev;
    (0.5 * ((a - b).powi(2) + (b - c).powi(2) + (c - a).powi(2)) / (a * a + b * b + c * c)).sqrt()
}

#[test]
fn noise_free_tensors_are_recovered() {
    let gtab = scheme();
    let model = TensorModel::new(&gtab).unwrap();
    let cases = [
        ([1.7e-3, 0.3e-3, 0.3e-3], [1.0, 0.0, 0.0]),
        ([1.4e-3, 0.5e-3, 0.3e-3], [1.0, 1.0, 1.0]),
        ([1.5e-3, 0.35e-3, 0.2e-3], [0.2, -0.9, 0.4]),
        ([0.8e-3, 0.8e-3, 0.8e-3], [0.0, 0.0, 1.0]),
    ];
    for (evals, e1) in cases {
        let (d, frame) = tensor(evals, e1);
        let t = model.fit_voxel(&signal(&gtab, 1000.0, &d)).unwrap();
        for i in 0..3 {
            assert!(
                (t.evals[i] - evals[i]).abs() < 1e-9,
                "{:?} vs {evals:?}",
                t.evals
            );
        }
        assert!(
            (t.fa() - fa_of(evals)).abs() < 1e-6,
            "FA {} vs {}",
            t.fa(),
            fa_of(evals)
        );
        assert!((t.md() - evals.iter().sum::<f64>() / 3.0).abs() < 1e-9);
        if evals[0] > evals[1] {
            let cos: f64 = (0..3).map(|k| t.principal()[k] * frame[0][k]).sum();
            assert!(
                1.0 - cos.abs() < 1e-6,
                "principal {:?} vs {:?}",
                t.principal(),
                frame[0]
            );
        }
    }
}

#[test]
fn all_zero_signal_is_clipped_and_gives_no_nan() {
    let gtab = scheme();
    let model = TensorModel::new(&gtab).unwrap();
    let t = model.fit_voxel(&vec![0.0; gtab.bvals.len()]).unwrap();
    // Every signal clips to 1: log 0 everywhere, a zero tensor, and each
    // eigenvalue raised to the floor.
    assert_eq!(t.evals, [model.min_diffusivity(); 3]);
    assert_eq!(t.fa(), 0.0);
    assert!(t.evecs.iter().flatten().all(|v| v.is_finite()));
    assert!((t.md() - model.min_diffusivity()).abs() <= 1e-24);
    // DIPY: 1e-6 / -min(X) with min(X) = -max(b g²) terms.
    assert!(model.min_diffusivity() > 0.0 && model.min_diffusivity() < 1e-9);
}

#[test]
fn non_finite_signal_gives_nan_not_a_panic() {
    let gtab = scheme();
    let model = TensorModel::new(&gtab).unwrap();
    let mut s = vec![500.0f32; gtab.bvals.len()];
    s[3] = f32::NAN;
    assert!(model.fit_voxel(&s).unwrap().fa().is_nan());
    s[3] = f32::INFINITY;
    assert!(model.fit_voxel(&s).unwrap().md().is_nan());
}

#[test]
fn too_few_directions_fall_back_to_the_minimum_norm_solution() {
    // Four volumes cannot determine seven coefficients: DIPY's pseudo-inverse
    // still gives an answer, and so must we, without NaN.
    let gtab = GradientTable {
        bvals: vec![0.0, 1000.0, 1000.0, 1000.0],
        bvecs: vec![[0.0; 3], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        b0_threshold: 10.0,
    };
    let model = TensorModel::new(&gtab).unwrap();
    let t = model.fit_voxel(&[1000.0, 200.0, 300.0, 400.0]).unwrap();
    assert!(t
        .evals
        .iter()
        .chain(t.evecs.iter().flatten())
        .all(|v| v.is_finite()));
    assert!(t.evals[0] >= t.evals[1] && t.evals[1] >= t.evals[2]);
}

#[test]
fn series_blocks_and_images_give_the_same_tensors() {
    let gtab = scheme();
    let model = TensorModel::new(&gtab).unwrap();
    let n = gtab.bvals.len();
    let shape = (3, 2, 2);
    let image = Array4::from_shape_fn((shape.0, shape.1, shape.2, n).f(), |(x, y, z, t)| {
        let (d, _) = tensor(
            [1.0e-3 + 2e-4 * x as f64, 4e-4, 3e-4],
            [1.0, y as f64, z as f64],
        );
        signal(&gtab, 900.0 + 10.0 * x as f64, &d)[t]
    });
    let mask = Array3::from_shape_fn(shape, |(x, y, z)| (x + y + z) % 3 != 1);
    let maps = model.fit(image.view(), mask.view()).unwrap();
    let mut series = Vec::new();
    let mut flags = Vec::new();
    for ((x, y, z), &m) in mask.indexed_iter() {
        series.extend((0..n).map(|t| image[[x, y, z, t]]));
        flags.push(m);
    }
    let tensors: Vec<Tensor> = model.fit_series(&series, &flags).unwrap();
    for (((x, y, z), &m), t) in mask.indexed_iter().zip(&tensors) {
        assert_eq!(maps.fa[[x, y, z]], t.fa());
        assert_eq!(maps.md[[x, y, z]], t.md());
        if !m {
            assert_eq!(*t, Tensor::ZERO);
        }
    }
    assert!(model.fit_series(&series[1..], &flags).is_err());
    assert!(model
        .fit(image.view(), Array3::from_elem((3, 2, 1), true).view())
        .is_err());
}
