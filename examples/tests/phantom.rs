//! The phantom generator: HCP-layout files, determinism, anatomy, signal
//! model and noise level.

use std::path::Path;

use ember_examples::phantom::{
    tissue_map, voxel_truth, white_matter_mask, write_subject, write_subjects, PhantomSpec, Tissue,
    S0_WHITE_MATTER,
};
use ember_image::{read_image, GradientTable, DEFAULT_B0_THRESHOLD};

const FILES: [&str; 4] = ["data.nii.gz", "bvals", "bvecs", "fa_truth.nii.gz"];

/// A small subject: 2 b0, 2 shells of 8 directions (18 volumes).
fn small(seed: u64) -> PhantomSpec {
    PhantomSpec {
        shape: [24, 28, 24],
        b0: 2,
        dirs: 8,
        shells: vec![1000.0, 2500.0],
        snr: 20.0,
        seed,
    }
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn table(dir: &Path) -> GradientTable {
    GradientTable::from_fsl_files(dir.join("bvals"), dir.join("bvecs"), DEFAULT_B0_THRESHOLD)
        .unwrap()
}

#[test]
fn the_default_is_one_hcp_subject() {
    let spec = PhantomSpec::default();
    assert_eq!(spec.shape, [145, 174, 145]);
    assert_eq!((spec.b0, spec.dirs, spec.volumes()), (18, 90, 288));
    assert_eq!(spec.shells, [1000.0, 2000.0, 3000.0]);
    assert_eq!((spec.snr, spec.seed), (20.0, 0));
    assert_eq!(spec.sigma(), S0_WHITE_MATTER / 20.0);
}

#[test]
fn the_same_seed_writes_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_subject(&small(7), &a).unwrap();
    write_subject(&small(7), &b).unwrap();
    for name in FILES {
        assert!(read(&a, name) == read(&b, name), "{name} differs");
    }
}

#[test]
fn different_seeds_differ_in_noise_and_anatomy() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_subject(&small(0), &a).unwrap();
    write_subject(&small(1), &b).unwrap();
    assert!(read(&a, "data.nii.gz") != read(&b, "data.nii.gz"));
    assert!(read(&a, "fa_truth.nii.gz") != read(&b, "fa_truth.nii.gz"));
    // One protocol for every subject, as in HCP.
    assert_eq!(read(&a, "bvals"), read(&b, "bvals"));
    assert_eq!(read(&a, "bvecs"), read(&b, "bvecs"));
    assert_ne!(white_matter_mask(&small(0)), white_matter_mask(&small(1)));
}

#[test]
fn files_read_back_with_the_right_shapes_and_gradients() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = small(3);
    let info = write_subject(&spec, tmp.path()).unwrap();
    assert_eq!(info.volumes, 18);
    assert_eq!(info.b0_volumes, 2);

    let image = read_image(tmp.path().join("data.nii.gz")).unwrap();
    assert_eq!(image.data.shape(), [24, 28, 24, 18]);
    assert_eq!(image.voxel_size, [1.25; 3]);
    // x flipped as in HCP, centred on the volume.
    assert_eq!(image.affine[0][0], -1.25);
    assert_eq!(image.affine[1][1], 1.25);
    assert_eq!(image.affine[2][2], 1.25);
    assert_eq!(
        [image.affine[0][3], image.affine[1][3], image.affine[2][3]],
        [14.375, -16.875, -14.375]
    );

    let fa = read_image(tmp.path().join("fa_truth.nii.gz")).unwrap();
    assert_eq!(fa.data.shape(), [24, 28, 24, 1]);
    assert_eq!(fa.affine, image.affine);

    let g = table(tmp.path());
    g.check_volumes(18, "data.nii.gz").unwrap();
    let b0: Vec<usize> = (0..g.len()).filter(|&i| g.b0_mask()[i]).collect();
    assert_eq!(b0, [0, 9], "b0 volumes first and spread evenly");
    for (&b, v) in g.bvals.iter().zip(&g.bvecs) {
        let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
        if b <= DEFAULT_B0_THRESHOLD {
            // The file says b = 5 with a zero vector; like DIPY, the table
            // zeroes the b-value of a non-unit b0 row.
            assert_eq!((b, *v), (0.0, [0.0; 3]));
        } else {
            assert!((norm - 1.0).abs() < 1e-12, "|g| = {norm}");
        }
    }
    for shell in [1000.0, 2500.0] {
        assert_eq!(g.bvals.iter().filter(|&&b| b == shell).count(), 8);
    }
}

#[test]
fn bvals_is_one_row_and_bvecs_three_rows() {
    let tmp = tempfile::tempdir().unwrap();
    write_subject(&small(0), tmp.path()).unwrap();
    let bvals = String::from_utf8(read(tmp.path(), "bvals")).unwrap();
    let bvecs = String::from_utf8(read(tmp.path(), "bvecs")).unwrap();
    assert_eq!(bvals.lines().count(), 1);
    assert!(bvals.starts_with("5 1000 2500 1000 2500 "), "{bvals}");
    assert_eq!(bvecs.lines().count(), 3);
    for line in bvecs.lines() {
        assert_eq!(line.split(' ').count(), 18);
    }
}

#[test]
fn the_hcp_protocol_interleaves_a_b0_every_16_volumes() {
    // The default protocol on a tiny grid, so it is fast.
    let spec = PhantomSpec {
        shape: [6, 7, 6],
        ..PhantomSpec::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    write_subject(&spec, tmp.path()).unwrap();
    let g = table(tmp.path());
    assert_eq!(g.len(), 288);
    let b0: Vec<usize> = (0..288).filter(|&i| g.b0_mask()[i]).collect();
    assert_eq!(b0, (0..18).map(|k| 16 * k).collect::<Vec<_>>());
    for shell in [1000.0, 2000.0, 3000.0] {
        assert_eq!(g.bvals.iter().filter(|&&b| b == shell).count(), 90);
    }
}

/// The smallest angle in degrees between two directions taken as axes
/// (g and -g are the same measurement for a tensor).
fn min_axis_angle(dirs: &[[f64; 3]]) -> f64 {
    let mut best = 90.0f64;
    for (i, a) in dirs.iter().enumerate() {
        for b in &dirs[i + 1..] {
            let dot = (a[0] * b[0] + a[1] * b[1] + a[2] * b[2]).abs().min(1.0);
            best = best.min(dot.acos().to_degrees());
        }
    }
    best
}

#[test]
fn directions_are_well_spread_and_differ_between_shells() {
    let spec = PhantomSpec {
        shape: [4, 4, 4],
        ..PhantomSpec::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    write_subject(&spec, tmp.path()).unwrap();
    let g = table(tmp.path());
    let shell = |b: f64| -> Vec<[f64; 3]> {
        (0..g.len())
            .filter(|&i| g.bvals[i] == b)
            .map(|i| g.bvecs[i])
            .collect()
    };
    let (s1, s2, s3) = (shell(1000.0), shell(2000.0), shell(3000.0));
    // 90 axes spread evenly over the hemisphere are about 14° apart.
    for s in [&s1, &s2, &s3] {
        let angle = min_axis_angle(s);
        assert!(angle > 7.0, "closest axes {angle}°");
    }
    assert_ne!(s1, s2);
    assert_ne!(s2, s3);
}

#[test]
fn the_background_is_exactly_zero_and_the_head_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = small(5);
    let info = write_subject(&spec, tmp.path()).unwrap();
    let image = read_image(tmp.path().join("data.nii.gz")).unwrap();
    let fa = read_image(tmp.path().join("fa_truth.nii.gz")).unwrap();
    let tissues = tissue_map(&spec);
    let mut head = 0;
    for ((x, y, z), &t) in tissues.indexed_iter() {
        let series = image.data.slice(ndarray::s![x, y, z, ..]);
        if t == Tissue::Background {
            assert!(series.iter().all(|&v| v == 0.0), "{x},{y},{z}");
            assert_eq!(fa.data[[x, y, z, 0]], 0.0);
        } else {
            head += 1;
            assert!(series[0] > 0.0, "b0 of head voxel {x},{y},{z}");
        }
    }
    assert_eq!(head, info.head_voxels);
    // The corners are outside the head.
    assert_eq!(tissues[[0, 0, 0]], Tissue::Background);
    assert_eq!(tissues[[23, 27, 23]], Tissue::Background);
}

#[test]
fn noise_free_signal_follows_the_tensor_model() {
    for snr in [1e12, f64::INFINITY] {
        let tmp = tempfile::tempdir().unwrap();
        let spec = PhantomSpec { snr, ..small(2) };
        write_subject(&spec, tmp.path()).unwrap();
        let image = read_image(tmp.path().join("data.nii.gz")).unwrap();
        let g = table(tmp.path());
        let mut checked = [0usize; 2];
        for ((x, y, z), &t) in tissue_map(&spec).indexed_iter() {
            if !matches!(t, Tissue::WhiteMatter | Tissue::Csf) {
                continue;
            }
            let truth = voxel_truth(&spec, [x, y, z]).unwrap();
            let [xx, xy, yy, xz, yz, zz] = truth.tensor;
            for (v, (&b, d)) in g.bvals.iter().zip(&g.bvecs).enumerate() {
                let q = xx * d[0] * d[0]
                    + yy * d[1] * d[1]
                    + zz * d[2] * d[2]
                    + 2.0 * (xy * d[0] * d[1] + xz * d[0] * d[2] + yz * d[1] * d[2]);
                let expected = truth.s0 * (-b * q).exp();
                let got = f64::from(image.data[[x, y, z, v]]);
                let tolerance = if snr.is_finite() { 1e-5 } else { 1e-7 };
                assert!(
                    (got - expected).abs() <= tolerance * expected,
                    "voxel {x},{y},{z} volume {v}: {got} vs {expected}"
                );
            }
            checked[usize::from(t == Tissue::Csf)] += 1;
        }
        assert!(checked[0] > 0 && checked[1] > 0, "{checked:?}");
    }
}

#[test]
fn white_matter_is_anisotropic_and_csf_isotropic_in_fa_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = small(4);
    write_subject(&spec, tmp.path()).unwrap();
    let fa = read_image(tmp.path().join("fa_truth.nii.gz")).unwrap();
    let (mut wm, mut csf, mut gm) = (Vec::new(), Vec::new(), Vec::new());
    for ((x, y, z), &t) in tissue_map(&spec).indexed_iter() {
        let v = fa.data[[x, y, z, 0]];
        match t {
            Tissue::WhiteMatter => wm.push(v),
            Tissue::Csf => csf.push(v),
            Tissue::GreyMatter => gm.push(v),
            _ => {}
        }
    }
    assert!(!wm.is_empty() && !csf.is_empty() && !gm.is_empty());
    assert!(wm.iter().all(|&v| v > 0.6), "min WM FA {:?}", min(&wm));
    assert!(wm.iter().all(|&v| v < 0.85));
    assert!(csf.iter().all(|&v| v < 0.1));
    assert!(gm.iter().all(|&v| (0.05..0.2).contains(&v)));
}

fn min(v: &[f32]) -> f32 {
    v.iter().copied().fold(f32::INFINITY, f32::min)
}

#[test]
fn truth_tensors_have_the_documented_diffusivities() {
    let spec = small(0);
    let mut seen = [false; 3];
    for ((x, y, z), &t) in tissue_map(&spec).indexed_iter() {
        let truth = voxel_truth(&spec, [x, y, z]).unwrap();
        let [xx, _, yy, _, _, zz] = truth.tensor;
        assert!((truth.md - (xx + yy + zz) / 3.0).abs() < 1e-15);
        match t {
            Tissue::WhiteMatter => {
                // λ⊥ rises from 0.3e-3 at the centre to 0.45e-3 at the edge.
                assert!((0.766e-3..0.867e-3).contains(&truth.md), "{}", truth.md);
                seen[0] = true;
            }
            Tissue::GreyMatter => {
                assert!((truth.md - 0.8e-3).abs() < 1e-12);
                seen[1] = true;
            }
            Tissue::Csf => {
                assert_eq!(truth.tensor, [3e-3, 0.0, 3e-3, 0.0, 0.0, 3e-3]);
                assert!(truth.s0 > S0_WHITE_MATTER, "CSF is bright on b0");
                seen[2] = true;
            }
            _ => {}
        }
    }
    assert_eq!(seen, [true; 3]);
    assert_eq!(voxel_truth(&spec, [24, 0, 0]), None);
}

#[test]
fn noise_sigma_is_white_matter_s0_over_snr() {
    // Many b0 volumes: across them, a white-matter voxel's values scatter
    // with the noise's sigma (Rician ≈ Gaussian at snr 20).
    let spec = PhantomSpec {
        shape: [24, 28, 24],
        b0: 40,
        dirs: 1,
        shells: vec![1000.0],
        snr: 20.0,
        seed: 9,
    };
    let tmp = tempfile::tempdir().unwrap();
    let info = write_subject(&spec, tmp.path()).unwrap();
    assert_eq!(info.sigma, S0_WHITE_MATTER / 20.0);
    let image = read_image(tmp.path().join("data.nii.gz")).unwrap();
    let g = table(tmp.path());
    let b0: Vec<usize> = (0..g.len()).filter(|&i| g.b0_mask()[i]).collect();
    let (mut sum_sq, mut n, mut sum_mean) = (0.0, 0usize, 0.0);
    let mut voxels = 0;
    for ((x, y, z), &wm) in white_matter_mask(&spec).indexed_iter() {
        if !wm {
            continue;
        }
        let vals: Vec<f64> = b0
            .iter()
            .map(|&v| f64::from(image.data[[x, y, z, v]]))
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        sum_sq += vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
        n += vals.len() - 1;
        sum_mean += mean;
        voxels += 1;
    }
    let sigma = (sum_sq / n as f64).sqrt();
    let mean = sum_mean / voxels as f64;
    assert!((sigma / info.sigma - 1.0).abs() < 0.05, "sigma {sigma}");
    // Rician mean at snr 20: S0 · (1 + 1/(2·snr²)) to first order.
    assert!((mean / S0_WHITE_MATTER - 1.0).abs() < 0.01, "mean {mean}");
}

#[test]
fn anatomy_scales_with_the_shape() {
    let fractions: Vec<(f64, f64)> = [[24, 28, 24], [48, 56, 48], [72, 87, 72]]
        .into_iter()
        .map(|shape| {
            let spec = PhantomSpec {
                shape,
                ..PhantomSpec::default()
            };
            let tissues = tissue_map(&spec);
            let n = tissues.len() as f64;
            let count = |t: Tissue| tissues.iter().filter(|&&x| x == t).count() as f64 / n;
            (count(Tissue::WhiteMatter), count(Tissue::Csf))
        })
        .collect();
    let (wm, csf) = fractions[2];
    assert!((0.02..0.2).contains(&wm), "{fractions:?}");
    assert!((0.002..0.05).contains(&csf), "{fractions:?}");
    // Bundles keep a minimum width at the smallest size, so only the larger
    // two are compared closely.
    assert!((fractions[1].0 / wm - 1.0).abs() < 0.2, "{fractions:?}");
    assert!((fractions[1].1 / csf - 1.0).abs() < 0.2, "{fractions:?}");
    assert!(fractions[0].0 > 0.0 && fractions[0].1 > 0.0);
}

#[test]
fn write_subjects_makes_one_folder_per_subject_with_seed_plus_index() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let spec = PhantomSpec {
        shape: [12, 14, 12],
        ..small(10)
    };
    let dirs = write_subjects(&spec, 3, &out).unwrap();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["subject-000", "subject-001", "subject-002"]);
    for d in &dirs {
        assert_eq!(d.parent(), Some(out.as_path()));
        for name in FILES {
            assert!(d.join(name).is_file(), "{}", d.join(name).display());
        }
        // Nothing left behind by the temp+rename writes.
        assert_eq!(std::fs::read_dir(d).unwrap().count(), FILES.len());
    }
    let single = tmp.path().join("single");
    write_subject(&PhantomSpec { seed: 12, ..spec }, &single).unwrap();
    assert!(read(&dirs[2], "data.nii.gz") == read(&single, "data.nii.gz"));
}

#[test]
fn bad_specs_are_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = [
        PhantomSpec {
            shape: [0, 28, 24],
            ..small(0)
        },
        PhantomSpec {
            shape: [24, 40_000, 24],
            ..small(0)
        },
        PhantomSpec {
            snr: 0.0,
            ..small(0)
        },
        PhantomSpec {
            snr: -3.0,
            ..small(0)
        },
        PhantomSpec {
            snr: f64::NAN,
            ..small(0)
        },
        PhantomSpec { b0: 0, ..small(0) },
        PhantomSpec {
            dirs: 0,
            ..small(0)
        },
        PhantomSpec {
            shells: vec![],
            ..small(0)
        },
        PhantomSpec {
            shells: vec![1000.0, 10.0],
            ..small(0)
        },
        PhantomSpec {
            shells: vec![f64::INFINITY],
            ..small(0)
        },
        PhantomSpec {
            dirs: usize::MAX,
            ..small(0)
        },
        PhantomSpec {
            dirs: 20_000,
            ..small(0)
        },
    ];
    for (i, spec) in bad.iter().enumerate() {
        let dir = tmp.path().join(format!("s{i}"));
        let e = write_subject(spec, &dir).unwrap_err().to_string();
        assert!(e.starts_with("PhantomSpec"), "{e}");
        assert!(write_subjects(spec, 2, &dir).is_err());
        assert!(!dir.exists(), "{spec:?} created {}", dir.display());
    }
    let e = write_subjects(&small(0), 0, tmp.path()).unwrap_err();
    assert!(e.to_string().contains("subjects"), "{e}");
    // A zero dimension gives an empty mask, not a panic.
    assert_eq!(white_matter_mask(&bad[0]).len(), 0);
}

#[test]
fn an_unwritable_folder_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = write_subject(&small(0), &file.join("sub")).unwrap_err();
    assert!(e.to_string().contains("cannot create folder"), "{e}");
}

#[test]
fn a_single_voxel_phantom_works() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = PhantomSpec {
        shape: [1, 1, 1],
        ..small(0)
    };
    let info = write_subject(&spec, tmp.path()).unwrap();
    let image = read_image(tmp.path().join("data.nii.gz")).unwrap();
    assert_eq!(image.data.shape(), [1, 1, 1, 18]);
    assert_eq!(info.head_voxels, 1);
}

/// FNV-1a over the bit patterns of `values`.
fn fnv1a(values: impl Iterator<Item = f32>) -> u64 {
    values.fold(0xcbf2_9ce4_8422_2325, |h, v| {
        v.to_bits()
            .to_le_bytes()
            .iter()
            .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    })
}

#[test]
fn decoded_values_are_those_of_the_in_memory_generator() {
    // Recorded from the generator that built the whole 4-D image in memory
    // before writing it (commit e1382f1); the streaming writer must produce
    // the same voxels, volume by volume, in the same order.
    let tmp = tempfile::tempdir().unwrap();
    write_subject(&small(7), tmp.path()).unwrap();
    let data = read_image(tmp.path().join("data.nii.gz")).unwrap();
    assert_eq!(data.data.shape(), [24, 28, 24, 18]);
    let fa = read_image(tmp.path().join("fa_truth.nii.gz")).unwrap();
    let hashes = [
        fnv1a(data.data.as_slice_memory_order().unwrap().iter().copied()),
        fnv1a(fa.data.as_slice_memory_order().unwrap().iter().copied()),
    ];
    assert_eq!(hashes, [0xb02b_9cb7_16f3_2252, 0xae58_9727_8b15_0b8f]);
}
