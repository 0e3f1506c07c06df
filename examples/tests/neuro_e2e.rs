//! The neuro pipeline end to end: on DIPY's own small data sets its
//! outputs equal DIPY's (the goldens made by scripts/make_goldens.py)
//! within the spec's tolerances, in local and local-cluster mode; on a
//! phantom its FA is near the ground truth in white matter.

use ember_driver::Context;
use ember_examples::neuro::maps::Map;
use ember_examples::neuro::{pipeline, subject, PipelineOptions};
use ember_examples::phantom::{white_matter_mask, write_subject, PhantomSpec};
use ember_examples::steps::Steps;
use ember_image::nifti_io::read_array;
use ndarray::{Array3, ArrayD, Axis};
use std::path::{Path, PathBuf};

fn golden(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../image-ops/tests/golden")
        .join(case)
}

fn read3<T: ember_image::nifti_io::VoxelType + Copy>(path: PathBuf) -> Array3<T> {
    let (a, _) = read_array::<T>(&path).unwrap_or_else(|e| panic!("{e}"));
    a.index_axis(Axis(3), 0).to_owned()
}

/// What the comparisons read of one subject's results.
struct Fit {
    mask: Array3<bool>,
    fa: Array3<f32>,
    md: Array3<f32>,
}

fn run(master: &str, subject_arg: &str) -> Fit {
    let s = subject::resolve(subject_arg).unwrap();
    let ctx = Context::new(master).unwrap();
    let mut steps = Steps::new();
    let run = pipeline(&ctx, &[s], &PipelineOptions::default(), &mut steps).unwrap();
    let r = run.result(0).unwrap().unwrap();
    Fit {
        fa: r.scalar(Map::Fa).unwrap(),
        md: r.scalar(Map::Md).unwrap(),
        mask: r.mask,
    }
}

/// Compares one run with DIPY's outputs; returns (max |ΔFA|, max |ΔMD|).
fn compare_with_dipy(case: &str, r: &Fit) -> (f64, f64) {
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

/// A NIfTI file of any dimension as `f64`, indexed as stored.
fn read_any(path: &Path) -> ArrayD<f64> {
    nifti::ReaderOptions::new()
        .read_file(path)
        .and_then(|o| nifti::IntoNdArray::into_ndarray::<f64>(nifti::NiftiObject::into_volume(o)))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_written_map_equals_dipys_on_small_64d() {
    let out = tempfile::tempdir().unwrap();
    let input = golden("small_64D").join("input");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_neuro"))
        .args(["run", "--master", "local[2]", "--save-metrics"])
        .arg("tensors,fa,ga,rgb,md,ad,rd,mode,evecs,evals")
        .arg("--out")
        .arg(out.path())
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let ours = |m: &str| read_any(&out.path().join("input").join(format!("{m}.nii.gz")));
    let dipy = |m: &str| read_any(&golden("small_64D").join(format!("{m}.nii.gz")));
    let mask = dipy("mask");
    let inside: Vec<[usize; 3]> = mask
        .indexed_iter()
        .filter(|(_, &m)| m != 0.0)
        .map(|(i, _)| [i[0], i[1], i[2]])
        .collect();
    assert!(inside.len() > 100);
    // Voxels whose eigenvalues are all clipped to the floor are isotropic:
    // their mode is 0 here and LAPACK's rounding noise in DIPY.
    let evals = dipy("evals");
    let isotropic = |[x, y, z]: [usize; 3]| evals[&[x, y, z, 0][..]] == evals[&[x, y, z, 2][..]];
    let mut report = Vec::new();
    for (m, tolerance) in [
        ("fa", 1e-4),
        ("ga", 1e-4),
        ("mode", 1e-4),
        ("md", 1e-7),
        ("ad", 1e-7),
        ("rd", 1e-7),
        ("evals", 1e-7),
        ("tensors", 1e-7),
    ] {
        let (a, b) = (ours(m), dipy(m));
        assert_eq!(a.shape(), b.shape(), "{m}: shape");
        let mut worst = 0f64;
        for (idx, &v) in a.indexed_iter() {
            let voxel = [idx[0], idx[1], idx[2]];
            if !inside.contains(&voxel) || (m == "mode" && isotropic(voxel)) {
                continue;
            }
            worst = worst.max((v - b[&idx]).abs());
        }
        report.push(format!("{m} {worst:.1e}"));
        assert!(worst <= tolerance, "{m} differs from DIPY by {worst}");
    }
    // Colour FA is written as bytes: 255 × DIPY's value, truncated.
    let (rgb, dipy_rgb) = (ours("rgb"), dipy("rgb"));
    assert_eq!(rgb.shape(), dipy_rgb.shape());
    for (idx, &v) in rgb.indexed_iter() {
        assert!((v - 255.0 * dipy_rgb[&idx]).abs() <= 1.0, "rgb at {idx:?}");
    }
    // Eigenvectors are columns ([.., component, vector]), equal up to sign
    // where their eigenvalue is well apart from the others.
    let (evecs, dipy_evecs) = (ours("evecs"), dipy("evecs"));
    assert_eq!(evecs.shape(), &[10, 10, 10, 3, 3]);
    let mut worst = 0f64;
    for &[x, y, z] in &inside {
        for j in 0..3 {
            let l = |k: usize| evals[&[x, y, z, k][..]];
            let apart = (0..3)
                .filter(|&k| k != j)
                .all(|k| (l(j) - l(k)).abs() > 0.01 * l(0));
            if !apart {
                continue;
            }
            let dot: f64 = (0..3)
                .map(|i| evecs[&[x, y, z, i, j][..]] * dipy_evecs[&[x, y, z, i, j][..]])
                .sum();
            let sign = dot.signum();
            for i in 0..3 {
                worst = worst.max(
                    (evecs[&[x, y, z, i, j][..]] - sign * dipy_evecs[&[x, y, z, i, j][..]]).abs(),
                );
            }
        }
    }
    report.push(format!("evecs {worst:.1e}"));
    assert!(worst <= 1e-3, "eigenvectors differ from DIPY's by {worst}");
    println!(
        "small_64D written maps, max |ours - DIPY| in the mask: {}",
        report.join(", ")
    );
}

#[test]
fn thin_and_one_slice_masks_match_dipy() {
    for case in ["small_25", "oneslice"] {
        let arg = golden(case).join("input").display().to_string();
        let r = run("local[2]", &arg);
        let mask: Array3<f32> = read3(golden(case).join("mask.nii.gz"));
        assert_eq!(
            r.mask.mapv(u8::from),
            mask.mapv(|v| v as u8),
            "{case}: masks"
        );
        assert!(r.fa.iter().all(|v| (0.0..=1.0).contains(v)), "{case}: FA");
    }
}
