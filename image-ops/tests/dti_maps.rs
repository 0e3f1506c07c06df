//! Every map of DIPY's `dipy_fit_dti` workflow (fa, ga, rgb, md, ad, rd,
//! mode, evecs, evals, tensors) from Ember's tensors against DIPY's
//! `TensorFit` goldens, in the workflow's array layouts, within the spec's
//! tolerances. Run with `--nocapture` to see the measured differences.

use std::path::PathBuf;

use ember_image::block::{Region, SeriesBlock};
use ember_image::dti::{Tensor, TensorModel};
use ember_image::gradients::GradientTable;
use ember_image::nifti_io::read_array;
use ndarray::{ArrayD, Axis, IxDyn};

/// FA-like, dimensionless maps (fa, ga, mode, rgb).
const DIMENSIONLESS: f64 = 1e-4;
/// Diffusivities (md, ad, rd, evals) and tensor elements, mm²/s.
const DIFFUSIVITY: f64 = 1e-7;
/// Eigenvectors, up to sign, where the eigenvalues are well separated.
const EVECS: f64 = 1e-3;
/// An eigenvalue is well separated when its distance to the other two is
/// at least this fraction of the largest one.
const SEPARATION: f64 = 0.01;

fn golden(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

/// Any golden map as f64, with its own rank (the nifti crate reads the
/// 5-D `evecs` and `tensors` files, which `read_array` does not take).
fn map(case: &str, name: &str) -> ArrayD<f64> {
    let path = golden(case).join(format!("{name}.nii.gz"));
    nifti::ReaderOptions::new()
        .read_file(&path)
        .and_then(|o| nifti::IntoNdArray::into_ndarray::<f64>(nifti::NiftiObject::into_volume(o)))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Largest differences from DIPY over the mask, one per map.
#[derive(Debug, Default)]
struct Diffs {
    fa: f64,
    ga: f64,
    mode: f64,
    rgb: f64,
    md: f64,
    ad: f64,
    rd: f64,
    evals: f64,
    tensors: f64,
    evecs: f64,
    /// Eigenvectors compared, and skipped for a close eigenvalue.
    evecs_compared: usize,
    evecs_skipped: usize,
    /// Voxels whose three eigenvalues are equal (all clipped at the minimum
    /// diffusivity): the tensor is isotropic, its deviatoric part is 0 and
    /// so is Ember's mode, while DIPY's is the rounding noise of rebuilding
    /// `V diag(λ) Vᵀ` from LAPACK's eigenvectors (anything in about ±1.4).
    mode_isotropic: usize,
    voxels: usize,
}

/// Fits a case's fit input (denoised data, or the input for the thin
/// cases) with DIPY's mask and measures every map against DIPY's.
fn compare(case: &str) -> Diffs {
    let dir = golden(case);
    let prov: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("provenance.json")).unwrap())
            .unwrap();
    let input = prov["fit_input"]
        .as_str()
        .expect("provenance.json: fit_input");
    let gtab = GradientTable::from_fsl_files(dir.join("input.bval"), dir.join("input.bvec"), 10.0)
        .unwrap();
    let (data, _) = read_array::<f32>(dir.join(input)).unwrap();
    let (mask, _) = read_array::<f64>(dir.join("mask.nii.gz")).unwrap();
    let mask = mask.index_axis_move(Axis(3), 0).mapv(|v| v != 0.0);
    let (nx, ny, nz) = mask.dim();
    let region = Region {
        start: [0; 3],
        end: [nx, ny, nz],
    };
    let block = SeriesBlock::from_image(data.view(), region).unwrap();
    let flags: Vec<bool> = region.voxels().map(|v| mask[v]).collect();
    let tensors = TensorModel::new(&gtab)
        .unwrap()
        .fit_series(&block.series, &flags)
        .unwrap();

    let [fa, ga, mode, md, ad, rd] = ["fa", "ga", "mode", "md", "ad", "rd"].map(|n| map(case, n));
    let (rgb, evals, evecs, lower) = (
        map(case, "rgb"),
        map(case, "evals"),
        map(case, "evecs"),
        map(case, "tensors"),
    );
    // The workflow's layouts.
    assert_eq!(fa.shape(), [nx, ny, nz]);
    assert_eq!(rgb.shape(), [nx, ny, nz, 3]);
    assert_eq!(evals.shape(), [nx, ny, nz, 3]);
    assert_eq!(evecs.shape(), [nx, ny, nz, 3, 3]);
    assert_eq!(lower.shape(), [nx, ny, nz, 1, 6]);

    let mut d = Diffs::default();
    for ([x, y, z], t) in region.voxels().zip(&tensors) {
        let at = |a: &ArrayD<f64>, rest: &[usize]| {
            let mut i = vec![x, y, z];
            i.extend_from_slice(rest);
            a[IxDyn(&i)]
        };
        if !mask[[x, y, z]] {
            // 0 outside the mask, on both sides.
            assert_eq!(*t, Tensor::ZERO);
            let ours = [t.fa(), t.ga(), t.mode(), t.md(), t.ad(), t.rd()];
            assert!(
                ours.iter().all(|&v| v == 0.0),
                "{case} {x} {y} {z}: {ours:?}"
            );
            assert_eq!(t.rgb(), [0.0; 3]);
            assert_eq!(t.lower_triangular(), [0.0; 6]);
            for m in [&fa, &ga, &mode, &md, &ad, &rd] {
                assert_eq!(at(m, &[]), 0.0);
            }
            continue;
        }
        d.voxels += 1;
        let worse = |m: &mut f64, ours: f64, theirs: f64| *m = m.max((ours - theirs).abs());
        worse(&mut d.fa, t.fa(), at(&fa, &[]));
        worse(&mut d.ga, t.ga(), at(&ga, &[]));
        let theirs = [0, 1, 2].map(|i| at(&evals, &[i]));
        if theirs[0] == theirs[1] && theirs[1] == theirs[2] {
            d.mode_isotropic += 1;
            assert_eq!(t.evals, theirs, "{case} {x} {y} {z}");
            assert_eq!(t.mode(), 0.0);
        } else {
            worse(&mut d.mode, t.mode(), at(&mode, &[]));
        }
        worse(&mut d.md, t.md(), at(&md, &[]));
        worse(&mut d.ad, t.ad(), at(&ad, &[]));
        worse(&mut d.rd, t.rd(), at(&rd, &[]));
        for c in 0..3 {
            worse(&mut d.rgb, t.rgb()[c], at(&rgb, &[c]));
            worse(&mut d.evals, t.evals[c], at(&evals, &[c]));
        }
        for (k, &v) in t.lower_triangular().iter().enumerate() {
            worse(&mut d.tensors, v, at(&lower, &[0, k]));
        }
        for i in 0..3 {
            let gap = (0..3)
                .filter(|&j| j != i)
                .map(|j| (theirs[i] - theirs[j]).abs())
                .fold(f64::INFINITY, f64::min);
            if gap < SEPARATION * theirs[0] {
                d.evecs_skipped += 1;
                continue;
            }
            d.evecs_compared += 1;
            // evecs[x, y, z, j, i]: component j of eigenvector i.
            let g = [0, 1, 2].map(|j| at(&evecs, &[j, i]));
            let dot: f64 = (0..3).map(|j| g[j] * t.evecs[i][j]).sum();
            let sign = if dot < 0.0 { -1.0 } else { 1.0 };
            for (&ours, &theirs) in t.evecs[i].iter().zip(&g) {
                worse(&mut d.evecs, sign * ours, theirs);
            }
        }
    }
    println!("{case}: {d:?}");
    d
}

fn check(case: &str) {
    let d = compare(case);
    assert!(
        d.voxels > 0 && d.evecs_compared > 0,
        "{case}: nothing compared"
    );
    for (name, diff, tol) in [
        ("fa", d.fa, DIMENSIONLESS),
        ("ga", d.ga, DIMENSIONLESS),
        ("mode", d.mode, DIMENSIONLESS),
        ("rgb", d.rgb, DIMENSIONLESS),
        ("md", d.md, DIFFUSIVITY),
        ("ad", d.ad, DIFFUSIVITY),
        ("rd", d.rd, DIFFUSIVITY),
        ("evals", d.evals, DIFFUSIVITY),
        ("tensors", d.tensors, DIFFUSIVITY),
        ("evecs", d.evecs, EVECS),
    ] {
        assert!(
            diff <= tol,
            "{case}: max |{name} - DIPY| = {diff:e} > {tol:e}"
        );
    }
}

#[test]
fn small_64d_maps_match_dipy() {
    check("small_64D");
}

#[test]
fn synthetic_maps_match_dipy() {
    check("synthetic");
}

#[test]
fn thin_small_25_maps_match_dipy() {
    check("small_25");
}

#[test]
fn one_slice_maps_match_dipy() {
    check("oneslice");
}
