//! The neuro pipeline end to end: on DIPY's own small data sets its
//! outputs equal DIPY's (the goldens made by scripts/make_goldens.py)
//! within the spec's tolerances, in local and local-cluster mode; on a
//! phantom its FA is near the ground truth in white matter.

use ember_driver::Context;
use ember_examples::neuro::{pipeline, subject, SubjectResult};
use ember_examples::phantom::{white_matter_mask, write_subject, PhantomSpec};
use ember_examples::steps::Steps;
use ember_image::nifti_io::read_array;
use ndarray::{Array3, Axis};
use std::path::PathBuf;

fn golden(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../image-ops/tests/golden")
        .join(case)
}

fn read3<T: ember_image::nifti_io::VoxelType + Copy>(path: PathBuf) -> Array3<T> {
    let (a, _) = read_array::<T>(&path).unwrap_or_else(|e| panic!("{e}"));
    a.index_axis(Axis(3), 0).to_owned()
}

fn run(master: &str, subject_arg: &str) -> SubjectResult {
    let s = subject::resolve(subject_arg).unwrap();
    let ctx = Context::new(master).unwrap();
    let mut steps = Steps::new();
    let mut out = pipeline(&ctx, &[s], false, &mut steps).unwrap();
    out.remove(0)
}

/// Compares one run with DIPY's outputs; returns (max |ΔFA|, max |ΔMD|).
fn compare_with_dipy(case: &str, r: &SubjectResult) -> (f64, f64) {
    let dir = golden(case);
    let mask: Array3<f32> = read3(dir.join("mask.nii.gz"));
    let mask = mask.mapv(|v| v as u8);
    assert_eq!(
        r.mask.mapv(u8::from),
        mask,
        "{case}: masks must be identical"
    );
    let fa: Array3<f64> = read3(dir.join("fa.nii.gz"));
    let md: Array3<f64> = read3(dir.join("md.nii.gz"));
    let (mut dfa, mut dmd) = (0f64, 0f64);
    for ((idx, &m), (&f, &d)) in mask.indexed_iter().zip(fa.iter().zip(md.iter())) {
        if m == 1 {
            dfa = dfa.max((f64::from(r.fa[idx]) - f).abs());
            dmd = dmd.max((f64::from(r.md[idx]) - d).abs());
        } else {
            assert_eq!(r.fa[idx], 0.0);
            assert_eq!(r.md[idx], 0.0);
        }
    }
    (dfa, dmd)
}

#[test]
fn small_64d_matches_dipy_in_local_and_local_cluster_mode() {
    let arg = golden("small_64D").join("input").display().to_string();
    let local = run("local[2]", &arg);
    let (dfa, dmd) = compare_with_dipy("small_64D", &local);
    println!("small_64D local[2]: max |dFA| = {dfa:.2e}, max |dMD| = {dmd:.2e}");
    assert!(dfa <= 1e-4, "FA differs from DIPY by {dfa}");
    assert!(dmd <= 1e-7, "MD differs from DIPY by {dmd}");
    let cluster = run("local-cluster[2,1,512]", &arg);
    assert_eq!(cluster.mask, local.mask);
    assert_eq!(cluster.fa, local.fa, "identical FA in both modes");
    assert_eq!(cluster.md, local.md, "identical MD in both modes");
}

#[test]
fn synthetic_case_matches_dipy() {
    let arg = golden("synthetic").join("input").display().to_string();
    let r = run("local[2]", &arg);
    let (dfa, dmd) = compare_with_dipy("synthetic", &r);
    println!("synthetic: max |dFA| = {dfa:.2e}, max |dMD| = {dmd:.2e}");
    assert!(dfa <= 1e-4, "FA differs from DIPY by {dfa}");
    assert!(dmd <= 1e-7, "MD differs from DIPY by {dmd}");
}

#[test]
fn phantom_fa_is_near_the_ground_truth_in_white_matter() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PhantomSpec {
        shape: [48, 56, 48],
        b0: 3,
        dirs: 10,
        shells: vec![1000.0, 2000.0, 3000.0],
        snr: 20.0,
        seed: 7,
    };
    write_subject(&spec, dir.path()).unwrap();
    // The demo phantom of `neuro run`: big enough for bundles a few
    // voxels thick (partial volume and denoising blur thin ones).
    let r = run("local[2]", dir.path().to_str().unwrap());
    let truth: Array3<f32> = read3(dir.path().join("fa_truth.nii.gz"));
    let wm = white_matter_mask(&spec);
    let errors: Vec<f32> = wm
        .indexed_iter()
        .filter(|(idx, &w)| w && r.mask[*idx])
        .map(|(idx, _)| (r.fa[idx] - truth[idx]).abs())
        .collect();
    let bias: f32 = wm
        .indexed_iter()
        .filter(|(idx, &w)| w && r.mask[*idx])
        .map(|(idx, _)| r.fa[idx] - truth[idx])
        .sum::<f32>()
        / errors.len() as f32;
    assert!(
        errors.len() > 20,
        "enough white matter inside the mask: {}",
        errors.len()
    );
    let mean = errors.iter().sum::<f32>() / errors.len() as f32;
    let mut sorted = errors.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "phantom white matter: {} voxels, |FA - truth| mean {mean:.3}, median {median:.3}, bias {bias:+.3}",
        errors.len()
    );
    assert!(median < 0.1, "median FA error {median}");
}
