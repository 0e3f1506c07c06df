//! `neuro run` on the datasets users have, run as a user would: BIDS trees
//! (derivatives layout, equal to the plain layout), HCP folders named by
//! subject id with their own mask, and bad subjects that must not sink the
//! good ones.

use ember_examples::phantom::{write_subject, PhantomSpec};
use ember_image::nifti_io::{read_array, read_header};
use ember_image::write_image4;
use std::path::{Path, PathBuf};
use std::process::Command;

fn spec(seed: u64) -> PhantomSpec {
    PhantomSpec {
        shape: [14, 16, 12],
        b0: 2,
        dirs: 7,
        shells: vec![1000.0],
        snr: 20.0,
        seed,
    }
}

/// A phantom subject in its own folder (`data.nii.gz`, `bvals`, `bvecs`).
fn phantom(dir: &Path, seed: u64) -> PathBuf {
    write_subject(&spec(seed), dir).unwrap();
    dir.to_path_buf()
}

/// Runs `neuro run ARGS` with `RUST_BACKTRACE=1` (as many users' shells
/// set it): (success, stderr).
fn neuro(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_neuro"))
        .arg("run")
        .args(["--master", "local[2]"])
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run neuro");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "no panic text reaches the user:\n{stderr}"
    );
    (out.status.code(), stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// Puts a phantom subject into a BIDS tree as run `prefix` under `dwi`.
fn bids_run(subject: &Path, dwi: &Path, prefix: &str) {
    copy(
        &subject.join("data.nii.gz"),
        &dwi.join(format!("{prefix}_dwi.nii.gz")),
    );
    copy(
        &subject.join("bvals"),
        &dwi.join(format!("{prefix}_dwi.bval")),
    );
    copy(
        &subject.join("bvecs"),
        &dwi.join(format!("{prefix}_dwi.bvec")),
    );
    std::fs::write(
        dwi.join(format!("{prefix}_dwi.json")),
        r#"{"PhaseEncodingDirection": "j-"}"#,
    )
    .unwrap();
}

fn same_bytes(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

#[test]
fn a_bids_dataset_gives_derivatives_equal_to_the_plain_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("bids");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("dataset_description.json"),
        r#"{"Name": "test", "BIDSVersion": "1.9.0"}"#,
    )
    .unwrap();
    let a = phantom(&tmp.path().join("a"), 1);
    let b = phantom(&tmp.path().join("b"), 2);
    bids_run(&a, &root.join("sub-01/dwi"), "sub-01");
    bids_run(&b, &root.join("sub-02/ses-pre/dwi"), "sub-02_ses-pre");
    bids_run(&a, &root.join("sub-02/ses-post/dwi"), "sub-02_ses-post");
    // Not a diffusion run: ignored.
    copy(
        &a.join("data.nii.gz"),
        &root.join("sub-01/anat/sub-01_T1w.nii.gz"),
    );

    let out = tmp.path().join("derivatives");
    let (code, err) = neuro(&["--out", s(&out), s(&root)]);
    assert_eq!(code, Some(0), "{err}");
    let description: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("dataset_description.json")).unwrap())
            .unwrap();
    assert_eq!(description["DatasetType"], "derivative");
    assert_eq!(description["GeneratedBy"][0]["Name"], "ember-neuro");

    let plain = tmp.path().join("plain");
    let prefix = |p: &str| root.join(p).display().to_string();
    let (code, err) = neuro(&[
        "--out",
        s(&plain),
        "--name",
        "one",
        "--name",
        "two-pre",
        &prefix("sub-01/dwi/sub-01_dwi"),
        &prefix("sub-02/ses-pre/dwi/sub-02_ses-pre_dwi"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    for (run, name) in [
        ("sub-01/dwi/sub-01", "one"),
        ("sub-02/ses-pre/dwi/sub-02_ses-pre", "two-pre"),
    ] {
        let derivative = |suffix: &str| out.join(format!("{run}_{suffix}"));
        same_bytes(
            &derivative("space-dwi_desc-brain_mask.nii.gz"),
            &plain.join(name).join("mask.nii.gz"),
        );
        for (param, file) in [
            ("FA", "fa"),
            ("MD", "md"),
            ("AD", "ad"),
            ("RD", "rd"),
            ("GA", "ga"),
            ("MODE", "mode"),
            ("RGB", "rgb"),
            ("evals", "evals"),
        ] {
            same_bytes(
                &derivative(&format!("space-dwi_model-DTI_param-{param}_dwimap.nii.gz")),
                &plain.join(name).join(format!("{file}.nii.gz")),
            );
        }
    }
    assert!(out
        .join("sub-02/ses-post/dwi/sub-02_ses-post_space-dwi_model-DTI_param-FA_dwimap.nii.gz")
        .is_file());
    assert!(out.join("sub-01/figures/sub-01_desc-qa_dwi.png").is_file());
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert!(run["subjects"][0]["metadata"]
        .as_str()
        .unwrap()
        .ends_with("sub-01/dwi/sub-01_dwi.json"));
    assert!(!out.join("sub-01/anat").exists());

    // --participant-label picks participants.
    let only = tmp.path().join("only");
    let (code, err) = neuro(&[
        "--out",
        s(&only),
        "--participant-label",
        "02",
        "--save-metrics",
        "fa",
        s(&root),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!only.join("sub-01").exists());
    assert!(only
        .join("sub-02/ses-pre/dwi/sub-02_ses-pre_space-dwi_model-DTI_param-FA_dwimap.nii.gz")
        .is_file());
    assert!(!only
        .join("sub-02/ses-pre/dwi/sub-02_ses-pre_space-dwi_model-DTI_param-MD_dwimap.nii.gz")
        .exists());
}

#[test]
fn hcp_folders_are_named_by_subject_id_and_can_bring_their_mask() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hcp/100307/T1w/Diffusion");
    phantom(&dir, 3);
    // A box mask of the image's shape, as nodif_brain_mask.nii.gz.
    let [x, y, z] = spec(3).shape;
    let mask = ndarray::Array4::from_shape_fn((x, y, z, 1), |(i, j, k, _)| {
        f32::from(u8::from(
            (3..10).contains(&i) && (4..12).contains(&j) && (2..9).contains(&k),
        ))
    });
    let geometry = read_array::<f32>(dir.join("data.nii.gz")).unwrap().1;
    write_image4(
        dir.join("nodif_brain_mask.nii.gz"),
        mask.view(),
        &geometry.affine,
        geometry.voxel_size,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (code, err) = neuro(&["--out", s(&out), "--mask-from-input", s(&dir)]);
    assert_eq!(code, Some(0), "{err}");
    let (written, _) = read_array::<f32>(out.join("100307/mask.nii.gz")).unwrap();
    assert_eq!(written, mask, "the subject's own mask is used");
    // Outputs keep the input's affines, their codes and units.
    let input = read_header(dir.join("data.nii.gz")).unwrap().geometry();
    for file in ["mask.nii.gz", "fa.nii.gz", "evals.nii.gz"] {
        let h = read_header(out.join("100307").join(file)).unwrap();
        assert_eq!(h.geometry(), input, "{file}");
    }
    let (fa, _) = read_array::<f32>(out.join("100307/fa.nii.gz")).unwrap();
    for ((idx, &m), &f) in mask.indexed_iter().zip(fa.iter()) {
        if m == 0.0 {
            assert_eq!(f, 0.0, "FA outside the mask at {idx:?}");
        }
    }
}

#[test]
fn keep_going_writes_the_good_subject_and_reports_the_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let good = phantom(&tmp.path().join("good"), 4);
    // Truncated: the compressed stream stops in the middle of the data.
    let truncated = tmp.path().join("truncated");
    std::fs::create_dir_all(&truncated).unwrap();
    let bytes = std::fs::read(good.join("data.nii.gz")).unwrap();
    std::fs::write(truncated.join("data.nii.gz"), &bytes[..bytes.len() / 2]).unwrap();
    // NaN-filled: a volume of NaNs in the middle of the series.
    let nan = tmp.path().join("nan");
    std::fs::create_dir_all(&nan).unwrap();
    let (mut data, h) = read_array::<f32>(good.join("data.nii.gz")).unwrap();
    data.index_axis_mut(ndarray::Axis(3), 3).fill(f32::NAN);
    write_image4(
        nan.join("data.nii.gz"),
        data.view(),
        &h.affine,
        h.voxel_size,
    )
    .unwrap();
    for dir in [&truncated, &nan] {
        for f in ["bvals", "bvecs"] {
            copy(&good.join(f), &dir.join(f));
        }
    }

    let out = tmp.path().join("out");
    let (code, err) = neuro(&[
        "--out",
        s(&out),
        "--keep-going",
        s(&truncated),
        s(&nan),
        s(&good),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.join("good/fa.nii.gz").is_file(), "{err}");
    assert!(out.join("good/qa.png").is_file());
    assert!(!out.join("truncated").exists());
    assert!(!out.join("nan").exists());
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".staging")),
        "no staging folder left: {names:?}"
    );
    assert!(
        err.contains("truncated") && err.contains("failed: load:"),
        "{err}"
    );
    assert!(err.contains("volume 3 holds NaN"), "{err}");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    let status: Vec<&str> = run["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["failed", "failed", "ok"]);
    assert_eq!(run["subjects"][2]["sigmas"].as_array().unwrap().len(), 9);
    assert!(run["subjects"][2]["mask_voxels"].as_u64().unwrap() > 0);
    assert!(run["engine"]["shuffle_bytes_written"].as_u64().unwrap() > 0);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("good/qa.png"));

    // Without --keep-going the first failure stops the run, naming it.
    let out2 = tmp.path().join("out2");
    let (code, err) = neuro(&["--out", s(&out2), s(&good), s(&nan)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("subject nan") && err.contains("NaN"), "{err}");
    assert!(!out2.join("nan").exists());
}

#[test]
fn thin_volumes_run_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, shape) in [("thin", [10, 8, 2]), ("slice", [16, 16, 1])] {
        let dir = tmp.path().join(name);
        let spec = PhantomSpec { shape, ..spec(5) };
        write_subject(&spec, &dir).unwrap();
        let out = tmp.path().join(format!("out-{name}"));
        let (code, err) = neuro(&["--out", s(&out), s(&dir)]);
        assert_eq!(code, Some(0), "{name}: {err}");
        let (fa, _) = read_array::<f32>(out.join(name).join("fa.nii.gz")).unwrap();
        assert_eq!(fa.shape()[..3], shape);
        assert!(fa.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
        // The mask holds voxels and the fit ran in them (all-zero FA would
        // mean nothing was fitted).
        assert!(fa.iter().any(|v| *v > 0.0), "{name}: FA is 0 everywhere");
    }
}

/// A `.nii.gz` of a few dozen bytes whose header claims 512×512×1024×20
/// float32 volumes (20 GiB).
fn lying_image(path: &Path) {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (i, d) in [4i16, 512, 512, 1024, 20, 1, 1, 1].iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&16i16.to_le_bytes()); // datatype float32
    h[72..74].copy_from_slice(&32i16.to_le_bytes()); // bitpix
    for i in 0..8 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes()); // pixdim
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes()); // vox_offset
    h[344..348].copy_from_slice(b"n+1\0");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &h).unwrap();
    std::fs::write(path, gz.finish().unwrap()).unwrap();
}

#[test]
fn a_lying_header_is_refused_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let good = phantom(&tmp.path().join("good"), 6);
    let liar = tmp.path().join("liar");
    std::fs::create_dir_all(&liar).unwrap();
    lying_image(&liar.join("data.nii.gz"));
    assert!(std::fs::metadata(liar.join("data.nii.gz")).unwrap().len() < 100);
    // 20 volumes, as the header claims.
    std::fs::write(liar.join("bvals"), "0 ".repeat(2) + &"1000 ".repeat(18)).unwrap();
    let dirs = |c: usize| {
        (0..20)
            .map(|i| if i >= 2 && i % 3 == c { "1" } else { "0" })
            .collect::<Vec<_>>()
            .join(" ")
    };
    std::fs::write(
        liar.join("bvecs"),
        format!("{}\n{}\n{}\n", dirs(0), dirs(1), dirs(2)),
    )
    .unwrap();
    let out = tmp.path().join("out");
    // GNU time's peak resident set of the whole run (Debian's `time`).
    let run = Command::new("/usr/bin/time")
        .args(["-f", "PEAK_KIB %M"])
        .arg(env!("CARGO_BIN_EXE_neuro"))
        .args(["run", "--master", "local[2]", "--keep-going", "--out"])
        .args([&out, &liar, &good])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("/usr/bin/time (Debian package `time`) runs neuro");
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("liar") && err.contains("data.nii.gz") && err.contains("dim"),
        "the error names the file and the header field:\n{err}"
    );
    assert!(out.join("good/fa.nii.gz").is_file(), "{err}");
    let peak_kib: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_KIB "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak in {err}"));
    println!(
        "lying header + good subject: peak RSS {} MiB",
        peak_kib >> 10
    );
    // The run of the good subject needs far less; the header claims 20 GiB.
    assert!(peak_kib < 256 << 10, "peak RSS {peak_kib} KiB");
}

#[test]
fn max_bval_fits_the_lower_shells_and_refuses_too_few_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shells");
    let two_shells = PhantomSpec {
        shells: vec![1000.0, 3000.0],
        ..spec(7)
    };
    write_subject(&two_shells, &dir).unwrap();
    let (all, low) = (tmp.path().join("all"), tmp.path().join("low"));
    let (code, err) = neuro(&["--out", s(&all), s(&dir)]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = neuro(&["--out", s(&low), "--max-bval", "1500", s(&dir)]);
    assert_eq!(code, Some(0), "{err}");
    let md = |o: &Path| read_array::<f32>(o.join("shells/md.nii.gz")).unwrap().0;
    let (md_all, md_low) = (md(&all), md(&low));
    // Same mask and denoising; runs are deterministic, so a fit that
    // ignored --max-bval would give the very same MD.
    same_bytes(
        &all.join("shells/mask.nii.gz"),
        &low.join("shells/mask.nii.gz"),
    );
    assert_ne!(md_all, md_low, "the fit used fewer shells");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(low.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        run["subjects"][0]["sigmas"].as_array().unwrap().len(),
        two_shells.volumes(),
        "every volume is still denoised"
    );
    let (code, err) = neuro(&["--out", s(&low), "--max-bval", "500", s(&dir)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("max_bval = 500"), "{err}");
}
