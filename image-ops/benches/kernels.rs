//! Single-threaded timings of `ember-image`'s kernels next to DIPY/scipy's
//! on the very same input files. `median_filter` spreads its work over the
//! machine's cores; run the bench under `taskset -c 0` to time it on one.
//!
//! ```text
//! cargo bench -p ember-image --bench kernels [-- OPTIONS]
//!   --hcp                 3-D volume of HCP size, 145 x 174 x 145
//!   --shape X Y Z         3-D volume shape (default 96 x 96 x 60)
//!   --dti-shape X Y Z     4-D DTI set shape (default 32 x 32 x 20, 63 volumes)
//!   --budget SECONDS      time spent repeating a short kernel (default 2)
//!   --only k1,k2          a subset of the kernels
//!   --no-dipy             skip the Python side
//! ```
//!
//! The program builds a phantom (a soft-edged ellipsoid with a tensor field
//! and Rician noise, after `scripts/make_goldens.py`'s `synthetic_phantom`),
//! writes it with the crate's NIfTI writer into a temporary folder, times
//! each kernel (one untimed warm-up call, then the median over repeated
//! calls, as the Python script does), then runs
//! `scripts/bench_kernels_dipy.py` with the repository's `.venv` on the same
//! files and prints one table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ember_image::dti::TensorModel;
use ember_image::gradients::GradientTable;
use ember_image::morphology::dilate_cross;
use ember_image::nlmeans::{nlmeans, Sigma};
use ember_image::{estimate_sigma, median_filter, otsu, write_image4, write_volume};
use ndarray::{Array3, Array4, ShapeBuilder};
use serde_json::Value;

const KERNELS: [&str; 6] = [
    "median_filter",
    "otsu",
    "binary_dilation",
    "estimate_sigma",
    "nlmeans",
    "dti_fit",
];

struct Options {
    shape: [usize; 3],
    dti_shape: [usize; 3],
    budget: f64,
    only: Vec<String>,
    dipy: bool,
}

fn usage(problem: &str) -> ! {
    eprintln!("kernels: {problem}");
    eprintln!(
        "usage: kernels [--hcp | --shape X Y Z] [--dti-shape X Y Z] [--budget S] \
         [--only k1,k2] [--no-dipy]"
    );
    std::process::exit(2);
}

fn parse_options() -> Options {
    let mut o = Options {
        shape: [96, 96, 60],
        dti_shape: [32, 32, 20],
        budget: 2.0,
        only: KERNELS.iter().map(|k| k.to_string()).collect(),
        dipy: true,
    };
    let mut args = std::env::args().skip(1);
    let number = |args: &mut dyn Iterator<Item = String>, what: &str| -> usize {
        args.next()
            .and_then(|a| a.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| usage(&format!("{what} needs positive integers")))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // `cargo bench` passes this to every bench program.
            "--bench" => {}
            "--hcp" => o.shape = [145, 174, 145],
            "--shape" => o.shape = [0, 1, 2].map(|_| number(&mut args, "--shape")),
            "--dti-shape" => o.dti_shape = [0, 1, 2].map(|_| number(&mut args, "--dti-shape")),
            "--budget" => {
                o.budget = args
                    .next()
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| usage("--budget needs seconds"))
            }
            "--only" => {
                let list = args.next().unwrap_or_else(|| usage("--only needs a list"));
                o.only = list.split(',').map(|k| k.trim().to_string()).collect();
                if let Some(k) = o.only.iter().find(|k| !KERNELS.contains(&k.as_str())) {
                    usage(&format!("unknown kernel {k}; known: {}", KERNELS.join(",")));
                }
            }
            "--no-dipy" => o.dipy = false,
            other => usage(&format!("unknown argument {other}")),
        }
    }
    o
}

/// A 64-bit LCG with Box–Muller normals: the phantom's noise.
struct Noise {
    state: u64,
    spare: Option<f64>,
}

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let t = std::f64::consts::TAU * v;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

/// Unit vector `d` completed to an orthonormal frame `[d, e2, e3]`.
fn frame(d: [f64; 3]) -> [[f64; 3]; 3] {
    let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
    let e1 = d.map(|c| c / n);
    let helper = if e1[0].abs() < 0.9 {
        [1.0, 0.0, 0.0]
    } else {
        [0.0, 1.0, 0.0]
    };
    let cross = |a: [f64; 3], b: [f64; 3]| {
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    };
    let e2 = cross(e1, helper);
    let m = (e2[0] * e2[0] + e2[1] * e2[1] + e2[2] * e2[2]).sqrt();
    let e2 = e2.map(|c| c / m);
    [e1, e2, cross(e1, e2)]
}

/// The phantom of `make_goldens.synthetic_phantom`: S0 and the diffusion
/// tensor at voxel `(i, j, k)` of `shape` (0 outside the soft ellipsoid).
fn tissue(shape: [usize; 3], i: usize, j: usize, k: usize) -> (f64, [[f64; 3]; 3]) {
    let lin = |c: usize, n: usize| {
        if n == 1 {
            -1.0
        } else {
            -1.0 + 2.0 * c as f64 / (n - 1) as f64
        }
    };
    let (x, y, z) = (lin(i, shape[0]), lin(j, shape[1]), lin(k, shape[2]));
    let r = ((x / 1.15).powi(2) + (y / 1.15).powi(2) + (z / 1.1).powi(2)).sqrt();
    let t = ((1.0 - r) / 0.5 + 0.5).clamp(0.0, 1.0);
    let w = t * t * (3.0 - 2.0 * t);
    let (evals, dir) = if x * x + y * y + z * z < 0.09 {
        ([2.5e-3, 2.5e-3, 2.5e-3], [1.0, 0.0, 0.0])
    } else if x > 0.15 && y < -0.15 {
        ([1.4e-3, 0.5e-3, 0.3e-3], [1.0, 1.0, 1.0])
    } else if y.abs() <= 0.35 && x < -0.15 {
        ([1.5e-3, 0.35e-3, 0.35e-3], [0.0, 1.0, 0.0])
    } else if x.abs() <= 0.35 && y > 0.15 {
        ([1.7e-3, 0.3e-3, 0.3e-3], [1.0, 0.0, 0.0])
    } else {
        ([0.8e-3; 3], [1.0, 0.0, 0.0])
    };
    let f = frame(dir);
    let mut d = [[0.0; 3]; 3];
    for (a, row) in d.iter_mut().enumerate() {
        for (b, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|e| evals[e] * f[e][a] * f[e][b]).sum();
        }
    }
    (1000.0 * (0.9 + 0.1 * (z + 1.0)) * w, d)
}

/// Rician-noised signals of the phantom for each (b, g), sigma 20, f32.
fn phantom(shape: [usize; 3], bvals: &[f64], bvecs: &[[f64; 3]], seed: u64) -> Array4<f32> {
    let mut noise = Noise {
        state: seed,
        spare: None,
    };
    let n = bvals.len();
    let mut data = Array4::<f32>::zeros((shape[0], shape[1], shape[2], n).f());
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                let (s0, d) = tissue(shape, i, j, k);
                for (t, (b, g)) in bvals.iter().zip(bvecs).enumerate() {
                    let adc: f64 = (0..3)
                        .flat_map(|a| (0..3).map(move |c| (a, c)))
                        .map(|(a, c)| g[a] * d[a][c] * g[c])
                        .sum();
                    let s = s0 * (-b * adc).exp();
                    let (n1, n2) = (20.0 * noise.normal(), 20.0 * noise.normal());
                    data[[i, j, k, t]] = ((s + n1).powi(2) + n2 * n2).sqrt() as f32;
                }
            }
        }
    }
    data
}

/// 3 b0 volumes (b = 5, zero vector) and two shells of 30 directions
/// (b = 1000, 2000) spread on the half sphere by the golden angle.
fn gradient_scheme() -> (Vec<f64>, Vec<[f64; 3]>) {
    let mut bvals = vec![5.0; 3];
    let mut bvecs = vec![[0.0; 3]; 3];
    for (shell, b) in [1000.0, 2000.0].into_iter().enumerate() {
        for i in 0..30 {
            let z = 1.0 - (i as f64 + 0.5) / 30.0;
            let r = (1.0 - z * z).sqrt();
            let phi = (i as f64 + 0.5 * shell as f64) * std::f64::consts::PI * (3.0 - 5f64.sqrt());
            bvals.push(b);
            bvecs.push([r * phi.cos(), r * phi.sin(), z]);
        }
    }
    (bvals, bvecs)
}

fn write_fsl(dir: &Path, bvals: &[f64], bvecs: &[[f64; 3]]) -> (PathBuf, PathBuf) {
    let join = |v: Vec<String>| v.join(" ") + "\n";
    let bval = dir.join("dwi.bval");
    let bvec = dir.join("dwi.bvec");
    std::fs::write(
        &bval,
        join(bvals.iter().map(|b| format!("{b:?}")).collect()),
    )
    .expect("write bvals");
    let rows: String = (0..3)
        .map(|a| join(bvecs.iter().map(|g| format!("{:?}", g[a])).collect()))
        .collect();
    std::fs::write(&bvec, rows).expect("write bvecs");
    (bval, bvec)
}

/// One untimed warm-up call, then calls until `budget` seconds are spent
/// (at least 3, at most 50); the median seconds per call. A first call
/// longer than the budget is the only one.
fn time_kernel<T>(budget: f64, mut f: impl FnMut() -> T) -> (T, f64) {
    let start = Instant::now();
    let mut result = f();
    let first = start.elapsed().as_secs_f64();
    if first > budget {
        return (result, first);
    }
    let mut times = Vec::new();
    let mut spent = Duration::ZERO;
    while times.len() < 3 || (spent.as_secs_f64() < budget && times.len() < 50) {
        let start = Instant::now();
        result = f();
        let dt = start.elapsed();
        spent += dt;
        times.push(dt.as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        0.5 * (times[n / 2 - 1] + times[n / 2])
    };
    (result, median)
}

fn dipy_side(o: &Options, volume: &Path, dwi: &Path, bval: &Path, bvec: &Path) -> Option<Value> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    let python = repo.join(".venv/bin/python");
    let script = repo.join("scripts/bench_kernels_dipy.py");
    if !python.exists() || !script.exists() {
        eprintln!(
            "no DIPY side: {} or {} is missing (bash scripts/python-peers.sh)",
            python.display(),
            script.display()
        );
        return None;
    }
    eprintln!("running {} ...", script.display());
    let output = Command::new(&python)
        .arg(&script)
        .arg("--input")
        .arg(volume)
        .arg("--dti-input")
        .arg(dwi)
        .arg("--bvals")
        .arg(bval)
        .arg("--bvecs")
        .arg(bvec)
        .arg("--budget")
        .arg(o.budget.to_string())
        .arg("--only")
        .arg(o.only.join(","))
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "DIPY side failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last()?).ok()
}

fn main() {
    let o = parse_options();
    let wanted = |k: &str| o.only.iter().any(|w| w == k);
    let dir = tempfile::tempdir().expect("temporary folder");
    let affine = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];

    let volume: Array3<f32> =
        phantom(o.shape, &[5.0], &[[0.0; 3]], 20_170_901).index_axis_move(ndarray::Axis(3), 0);
    let volume_path = dir.path().join("volume.nii.gz");
    write_volume(&volume_path, volume.view(), &affine, [1.0; 3]).expect("write volume");

    let (bvals, bvecs) = gradient_scheme();
    let dwi = phantom(o.dti_shape, &bvals, &bvecs, 20_170_902);
    let dwi_path = dir.path().join("dwi.nii.gz");
    write_image4(&dwi_path, dwi.view(), &affine, [1.0; 3]).expect("write DTI set");
    let (bval_path, bvec_path) = write_fsl(dir.path(), &bvals, &bvecs);

    let mut ember: Vec<(&str, f64)> = Vec::new();
    let mut measure = |name: &'static str, f: &mut dyn FnMut()| {
        if wanted(name) {
            let ((), t) = time_kernel(o.budget, f);
            ember.push((name, t));
        } else {
            f();
        }
    };
    eprintln!("Ember kernels on {:?} ...", o.shape);
    let chain = ["median_filter", "otsu", "binary_dilation", "nlmeans"];
    if chain.iter().any(|k| wanted(k)) {
        let vol64 = volume.mapv(f64::from);
        let mut filtered = Array3::zeros((0, 0, 0));
        measure("median_filter", &mut || {
            filtered = median_filter(vol64.view(), 4).unwrap()
        });
        let mut threshold = 0.0;
        measure("otsu", &mut || threshold = otsu(filtered.view()).unwrap());
        let raw = filtered.mapv(|v| v > threshold);
        let mut mask = Array3::from_elem((0, 0, 0), false);
        measure("binary_dilation", &mut || {
            mask = dilate_cross(raw.view(), 1)
        });
        let mut sigma = 0.0;
        measure("estimate_sigma", &mut || {
            sigma = estimate_sigma(volume.view()).unwrap()
        });
        if wanted("nlmeans") {
            let in_mask = mask.iter().filter(|&&m| m).count();
            eprintln!("nlmeans: {in_mask} mask voxels, sigma {sigma}");
            let sigma = Sigma::Constant(f64::from(sigma));
            measure("nlmeans", &mut || {
                nlmeans(volume.view(), mask.view(), sigma, true).unwrap();
            });
        }
    } else if wanted("estimate_sigma") {
        measure("estimate_sigma", &mut || {
            estimate_sigma(volume.view()).unwrap();
        });
    }
    if wanted("dti_fit") {
        let gtab =
            GradientTable::from_fsl_files(&bval_path, &bvec_path, 10.0).expect("read gradients");
        let model = TensorModel::new(&gtab).expect("tensor model");
        let all = Array3::from_elem((o.dti_shape[0], o.dti_shape[1], o.dti_shape[2]).f(), true);
        measure("dti_fit", &mut || {
            model.fit(dwi.view(), all.view()).unwrap();
        });
    }

    let dipy = if o.dipy {
        dipy_side(&o, &volume_path, &dwi_path, &bval_path, &bvec_path)
    } else {
        None
    };

    println!();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "3-D volume {:?}; DTI set {:?} x {}; single-threaded (median_filter: {cores} threads)",
        o.shape,
        o.dti_shape,
        bvals.len()
    );
    println!(
        "{:<16} {:>12} {:>14} {:>9}",
        "kernel", "Ember s", "DIPY/scipy s", "ratio"
    );
    for (name, t) in &ember {
        let theirs = dipy.as_ref().and_then(|d| d[*name].as_f64());
        match theirs {
            Some(p) => println!("{name:<16} {t:>12.6} {p:>14.6} {:>8.1}x", p / t),
            None => println!("{name:<16} {t:>12.6} {:>14} {:>9}", "-", "-"),
        }
    }
    if let Some(d) = &dipy {
        println!("DIPY side: {}", d["versions"]);
    }
}
