//! Synthetic diffusion-MRI subjects in the Human Connectome Project's
//! layout, with known ground truth, for running and checking the pipeline
//! without HCP credentials.
//!
//! # What a subject is
//!
//! A folder holding `data.nii.gz` (float32, `X × Y × Z × V`, 1.25 mm
//! voxels), FSL `bvals` / `bvecs` and `fa_truth.nii.gz` (float32, the FA of
//! the tensor each voxel was simulated with).
//!
//! # Protocol
//!
//! `V = b0 + dirs × shells`. Volume 0 is a b0 and the b0 volumes are spread
//! evenly through the series (`floor(k·V / b0)`, so every 16th volume at
//! HCP's 288 / 18), as HCP interleaves them. The diffusion volumes in between
//! cycle through the shells (b = 1000, 2000, 3000, 1000, ...), taking each
//! shell's directions in order. b0 rows have b = 5 and a zero vector (so the
//! signal model below gives exactly S0 for them; DIPY's `gradient_table`
//! and `ember_image::GradientTable` read such rows back as b = 0). Each shell's directions are
//! a golden-spiral set on a hemisphere (well spread for the antipodally
//! symmetric tensor model), rotated differently per shell; the table does not
//! depend on the seed, as every HCP subject shares one protocol. Numbers are
//! written in Rust's shortest round-trip form, so the files hold exactly the
//! values the signal was computed with.
//!
//! # Anatomy
//!
//! Defined in normalized coordinates (`-1..1` across each axis, voxel
//! centres at `(2i + 1) / N - 1`), so any shape, from 24×28×24 to HCP's
//! 145×174×145, gets the same brain. Axes: x left–right, y posterior →
//! anterior, z inferior → superior. Tissues, each voxel one of them, with
//! this precedence:
//!
//! | tissue | where | S0 | tensor (mm²/s) | FA |
//! |---|---|---|---|---|
//! | background | outside the head ellipsoid | signal exactly 0 | — | 0 |
//! | skull / scalp | head minus brain | 1500 | isotropic 1.0e-3 | 0 |
//! | CSF | two lateral ventricles (bent ellipsoids) | 15000 | isotropic 3.0e-3 | 0 |
//! | white matter | inside a bundle | 6000 | λ∥ 1.7e-3, λ⊥ 0.3e-3 → 0.45e-3 at the bundle's edge | 0.80 → 0.69 |
//! | grey matter | the rest of the brain ellipsoid and brainstem | 7500 | λ∥ 0.9e-3 radial, λ⊥ 0.75e-3 | 0.11 |
//!
//! The bundles: a corpus-callosum-like sheet arching over the ventricles
//! (left–right at the midline, curving down into each hemisphere), two
//! corticospinal-like bundles rising from the brainstem and fanning out,
//! two anterior–posterior arcs high up (superior-longitudinal-like), two
//! low down (inferior-fronto-occipital-like) and two cingulum-like arcs
//! above the callosum. Each bundle's fibre direction is
//! the tangent of its centre curve, so it turns smoothly along the bundle.
//! Where bundles overlap (callosum × corticospinal, corticospinal ×
//! both longitudinal pairs, callosum × cingulum), the voxel takes the **dominant**
//! bundle, the one whose centre is nearest relative to its radius: every
//! voxel stays a single tensor, so `fa_truth` is exactly what a noise-free
//! single-tensor fit recovers, at the price of a sharp change of direction
//! at the interface. Bundles are at least ~0.9 voxel in radius so they stay
//! connected at tiny shapes.
//!
//! The seed jitters sizes and positions by a few percent (ventricles by up
//! to ~20 %), so subjects differ as people do.
//!
//! # Signal and noise
//!
//! `S = S0 · exp(-b gᵀDg)` per voxel and volume, with `g` in voxel axes as
//! written to `bvecs` (the affine has a negative determinant, as HCP's does,
//! so FSL's bvec convention and the voxel axes agree). Then Rician noise:
//! `sqrt((S + n1)² + n2²)` with `n1, n2 ~ N(0, σ)` drawn independently per
//! voxel and volume, and `σ = S0_wm / snr`: **snr is the white-matter b0
//! signal over the sigma of the underlying Gaussian noise**. An infinite snr
//! gives noise-free data. The background is left exactly 0 (no noise).
//!
//! # Determinism
//!
//! Everything derives from `spec.seed` through `rand`'s `StdRng`: one stream
//! for the anatomy, one per volume for the noise. The output is therefore
//! independent of the number of threads; it could change only if `rand`'s
//! `StdRng` algorithm changed (it is pinned by the lock file).
//!
//! # Memory
//!
//! `data.nii.gz` is simulated and written a batch of volumes at a time (one
//! volume per core, at most [`MAX_BATCH_VOLUMES`]): each batch is simulated
//! in parallel, then handed in order to a streaming gzip writer. Memory is
//! the ground truth of the head voxels (about 65 bytes each) plus one batch,
//! whatever the number of volumes: an HCP-size subject (4.2 GB of float32)
//! was written with a peak resident size of 161 MB (2 cores, 46 s, of which
//! gzip at level 1 is about a third of the CPU time).

use std::f64::consts::PI;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ember_image::{write_nifti, Geometry, ImageError, Result, VolumeWriter, DEFAULT_B0_THRESHOLD};
use ndarray::{Array3, ArrayView3, ShapeBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Voxel size in mm, on every axis (HCP's).
pub const VOXEL_SIZE_MM: f64 = 1.25;

/// b-value written for the b0 volumes (HCP's b ≈ 5).
pub const B0_BVALUE: f64 = 5.0;

/// b0 signal of white matter; `σ = S0_WHITE_MATTER / snr`.
pub const S0_WHITE_MATTER: f64 = 6000.0;
const S0_GREY_MATTER: f64 = 7500.0;
const S0_CSF: f64 = 15000.0;
const S0_SCALP: f64 = 1500.0;

/// Diffusivities in mm²/s.
const WM_AXIAL: f64 = 1.7e-3;
const WM_RADIAL_CORE: f64 = 0.3e-3;
/// How much the radial diffusivity rises from a bundle's centre to its edge.
const WM_RADIAL_EDGE_RISE: f64 = 0.15e-3;
const GM_AXIAL: f64 = 0.9e-3;
const GM_RADIAL: f64 = 0.75e-3;
const CSF_DIFFUSIVITY: f64 = 3.0e-3;
const SCALP_DIFFUSIVITY: f64 = 1.0e-3;

/// The largest dimension NIfTI-1 can store (`dim[i]` is a signed short).
const MAX_DIM: usize = i16::MAX as usize;

/// The most volumes simulated at once (one per core up to this), which
/// bounds the generator's memory: 8 HCP-size volumes are 117 MB.
pub const MAX_BATCH_VOLUMES: usize = 8;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct PhantomSpec {
    /// Volume shape `[x, y, z]` in voxels.
    pub shape: [usize; 3],
    /// Number of b0 volumes (b = 5); at least 1.
    pub b0: usize,
    /// Gradient directions per shell; at least 1.
    pub dirs: usize,
    /// b-values of the shells in s/mm²; each finite and above 10 (the b0
    /// threshold).
    pub shells: Vec<f64>,
    /// White-matter b0 signal over the sigma of the Rician noise's Gaussian
    /// components; positive, `f64::INFINITY` for noise-free data.
    pub snr: f64,
    /// Seed of the anatomy and the noise.
    pub seed: u64,
}

impl Default for PhantomSpec {
    /// One HCP subject: 145×174×145, 18 b0 volumes, 90 directions on each of
    /// the shells b = 1000, 2000, 3000 (288 volumes), snr 20, seed 0.
    fn default() -> Self {
        PhantomSpec {
            shape: [145, 174, 145],
            b0: 18,
            dirs: 90,
            shells: vec![1000.0, 2000.0, 3000.0],
            snr: 20.0,
            seed: 0,
        }
    }
}

impl PhantomSpec {
    /// Number of volumes: `b0 + dirs × shells` (saturating; [`check`](Self::check)
    /// rejects specs where that overflows).
    pub fn volumes(&self) -> usize {
        self.dirs
            .saturating_mul(self.shells.len())
            .saturating_add(self.b0)
    }

    /// Sigma of the Gaussian noise components: `S0_WHITE_MATTER / snr`
    /// (0 for an infinite snr).
    pub fn sigma(&self) -> f64 {
        S0_WHITE_MATTER / self.snr
    }

    /// Checks every field; the error names the one that is wrong.
    pub fn check(&self) -> Result<()> {
        let bad =
            |what: &'static str, problem: String| Err(ImageError::InvalidInput { what, problem });
        if let Some(&d) = self.shape.iter().find(|&&d| d == 0 || d > MAX_DIM) {
            return bad(
                "PhantomSpec.shape",
                format!(
                    "{:?} has dimension {d}; each must be 1 to {MAX_DIM}",
                    self.shape
                ),
            );
        }
        if self.b0 == 0 {
            return bad(
                "PhantomSpec.b0",
                "is 0; at least one b0 volume is needed (the first volume is a b0)".into(),
            );
        }
        if self.dirs == 0 {
            return bad(
                "PhantomSpec.dirs",
                "is 0; each shell needs at least one direction".into(),
            );
        }
        if self.shells.is_empty() {
            return bad(
                "PhantomSpec.shells",
                "is empty; at least one shell is needed".into(),
            );
        }
        if let Some(b) = self
            .shells
            .iter()
            .find(|b| !b.is_finite() || **b <= DEFAULT_B0_THRESHOLD)
        {
            return bad(
                "PhantomSpec.shells",
                format!(
                    "b = {b} is not a finite b-value above {DEFAULT_B0_THRESHOLD} \
                     (lower ones read back as b0)"
                ),
            );
        }
        if self.snr.is_nan() || self.snr <= 0.0 {
            return bad(
                "PhantomSpec.snr",
                format!(
                    "{} is not positive (use f64::INFINITY for no noise)",
                    self.snr
                ),
            );
        }
        let volumes = self
            .dirs
            .checked_mul(self.shells.len())
            .and_then(|n| n.checked_add(self.b0));
        match volumes {
            Some(v) if v <= MAX_DIM => Ok(()),
            _ => bad(
                "PhantomSpec",
                format!(
                    "b0 + dirs × shells = {} + {} × {} volumes exceeds NIfTI-1's {MAX_DIM}",
                    self.b0,
                    self.dirs,
                    self.shells.len()
                ),
            ),
        }
    }
}

/// What [`write_subject`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PhantomInfo {
    /// The subject's folder.
    pub dir: PathBuf,
    /// The seed the subject was made with.
    pub seed: u64,
    /// Volume shape `[x, y, z]`.
    pub shape: [usize; 3],
    /// Volumes in `data.nii.gz` (`b0 + dirs × shells`).
    pub volumes: usize,
    /// Of which b0.
    pub b0_volumes: usize,
    /// Voxels inside the head (every voxel that is not background).
    pub head_voxels: usize,
    /// Voxels of the brain: grey and white matter and CSF.
    pub brain_voxels: usize,
    /// White-matter voxels ([`white_matter_mask`]).
    pub wm_voxels: usize,
    /// CSF (ventricle) voxels.
    pub csf_voxels: usize,
    /// Sigma of the Gaussian noise components (0 when noise-free).
    pub sigma: f64,
}

/// The tissue a voxel was simulated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tissue {
    /// Outside the head: signal exactly 0.
    Background,
    /// Skull and scalp: low signal, isotropic.
    Scalp,
    /// Grey matter (cortex, deep grey, brainstem): nearly isotropic.
    GreyMatter,
    /// CSF of the ventricles: isotropic, bright b0.
    Csf,
    /// White-matter bundles: FA about 0.7–0.8.
    WhiteMatter,
}

/// The ground truth of one voxel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VoxelTruth {
    /// Its tissue.
    pub tissue: Tissue,
    /// Signal at b = 0.
    pub s0: f64,
    /// Diffusion tensor in voxel axes, mm²/s, ordered `xx, xy, yy, xz, yz,
    /// zz` (the order of the tensor fit's β).
    pub tensor: [f64; 6],
    /// Its fractional anisotropy.
    pub fa: f64,
    /// Its mean diffusivity (mm²/s).
    pub md: f64,
}

const BACKGROUND: VoxelTruth = VoxelTruth {
    tissue: Tissue::Background,
    s0: 0.0,
    tensor: [0.0; 6],
    fa: 0.0,
    md: 0.0,
};

/// Writes one subject in HCP layout into `dir` (created): `data.nii.gz`
/// (float32, X×Y×Z×V, 1.25 mm voxels, centred affine with x flipped as
/// HCP's), `bvals`, `bvecs` (FSL: bvals one row; bvecs 3 rows × V) and
/// `fa_truth.nii.gz` (float32 ground-truth FA). Every file is written to a
/// temporary name and renamed into place; `data.nii.gz` comes last.
///
/// [`write_subjects`] gives subject `i` the seed `spec.seed + i`.
pub fn write_subject(spec: &PhantomSpec, dir: &Path) -> Result<PhantomInfo> {
    spec.check()?;
    create_dir(dir)?;
    let anatomy = Anatomy::new(spec.shape, spec.seed);
    let (bvals, bvecs) = protocol(spec);
    let geometry = Geometry::from_affine(&affine(spec.shape), [VOXEL_SIZE_MM; 3]);

    write_text(&dir.join("bvals"), &bvals_text(&bvals))?;
    write_text(&dir.join("bvecs"), &bvecs_text(&bvecs))?;

    let truth = anatomy.head_voxels();
    let [nx, ny, nz] = spec.shape;
    let fa = Array3::from_shape_vec((nx, ny, nz).f(), truth.fa.clone()).map_err(shape_error)?;
    write_nifti(dir.join("fa_truth.nii.gz"), &fa, &geometry)?;

    write_data(
        spec,
        &truth,
        &bvals,
        &bvecs,
        &dir.join("data.nii.gz"),
        &geometry,
    )?;

    let count = |t: Tissue| truth.tissue.iter().filter(|&&x| x == t).count();
    let wm_voxels = count(Tissue::WhiteMatter);
    let csf_voxels = count(Tissue::Csf);
    Ok(PhantomInfo {
        dir: dir.to_path_buf(),
        seed: spec.seed,
        shape: spec.shape,
        volumes: bvals.len(),
        b0_volumes: spec.b0,
        head_voxels: truth.index.len(),
        brain_voxels: wm_voxels + csf_voxels + count(Tissue::GreyMatter),
        wm_voxels,
        csf_voxels,
        sigma: spec.sigma(),
    })
}

/// Writes `subjects` subjects into `out/subject-000`, `out/subject-001`,
/// ...; subject `i` uses seed `spec.seed + i` (wrapping). Returns the
/// folders in order. The spec is checked before anything is written.
pub fn write_subjects(spec: &PhantomSpec, subjects: usize, out: &Path) -> Result<Vec<PathBuf>> {
    spec.check()?;
    if subjects == 0 {
        return Err(ImageError::InvalidInput {
            what: "subjects",
            problem: "is 0; at least one subject must be written".into(),
        });
    }
    create_dir(out)?;
    let mut dirs = Vec::with_capacity(subjects);
    for i in 0..subjects {
        let dir = out.join(format!("subject-{i:03}"));
        let subject = PhantomSpec {
            seed: spec.seed.wrapping_add(i as u64),
            ..spec.clone()
        };
        write_subject(&subject, &dir)?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// The white-matter mask (where ground-truth FA is meaningful), indexed
/// `[x, y, z]`. Depends on `shape` and `seed` only; empty if a dimension is 0.
pub fn white_matter_mask(spec: &PhantomSpec) -> Array3<bool> {
    tissue_map(spec).mapv(|t| t == Tissue::WhiteMatter)
}

/// The tissue of every voxel, indexed `[x, y, z]`. Depends on `shape` and
/// `seed` only; empty if a dimension is 0.
pub fn tissue_map(spec: &PhantomSpec) -> Array3<Tissue> {
    let anatomy = Anatomy::new(spec.shape, spec.seed);
    let [nx, ny, nz] = spec.shape;
    Array3::from_shape_fn((nx, ny, nz).f(), |(x, y, z)| {
        anatomy.truth_at([x, y, z]).tissue
    })
}

/// The ground truth of voxel `[x, y, z]`, or `None` outside the shape.
/// Depends on `shape` and `seed` only.
pub fn voxel_truth(spec: &PhantomSpec, voxel: [usize; 3]) -> Option<VoxelTruth> {
    if voxel.iter().zip(&spec.shape).any(|(&v, &n)| v >= n) {
        return None;
    }
    Some(Anatomy::new(spec.shape, spec.seed).truth_at(voxel))
}

// ---------------------------------------------------------------------------
// Protocol

/// b-values and unit directions (voxel axes) per volume, in volume order.
fn protocol(spec: &PhantomSpec) -> (Vec<f64>, Vec<[f64; 3]>) {
    let v = spec.volumes();
    let mut is_b0 = vec![false; v];
    for k in 0..spec.b0 {
        is_b0[k * v / spec.b0] = true;
    }
    let shells: Vec<Vec<[f64; 3]>> = (0..spec.shells.len())
        .map(|s| shell_directions(spec.dirs, s))
        .collect();
    let mut bvals = Vec::with_capacity(v);
    let mut bvecs = Vec::with_capacity(v);
    let mut j = 0;
    for b0 in is_b0 {
        if b0 {
            bvals.push(B0_BVALUE);
            bvecs.push([0.0; 3]);
        } else {
            let s = j % shells.len();
            bvals.push(spec.shells[s]);
            bvecs.push(shells[s][j / shells.len()]);
            j += 1;
        }
    }
    (bvals, bvecs)
}

/// `n` directions spread over a hemisphere by the golden spiral, rotated by
/// a rotation particular to shell `shell` (the identity for shell 0).
fn shell_directions(n: usize, shell: usize) -> Vec<[f64; 3]> {
    let golden = PI * (3.0 - 5f64.sqrt());
    let s = shell as f64;
    let r = rotation(s * 1.1, s * 0.7, s * 0.45);
    (0..n)
        .map(|k| {
            let z = 1.0 - (k as f64 + 0.5) / n as f64;
            let rho = (1.0 - z * z).sqrt();
            let (sin, cos) = (k as f64 * golden).sin_cos();
            let p = [rho * cos, rho * sin, z];
            let mut q = [0.0; 3];
            for (i, qi) in q.iter_mut().enumerate() {
                *qi = r[i][0] * p[0] + r[i][1] * p[1] + r[i][2] * p[2];
            }
            normalize(q).unwrap_or([0.0, 0.0, 1.0])
        })
        .collect()
}

/// `Rz(a) · Ry(b) · Rx(c)`.
fn rotation(a: f64, b: f64, c: f64) -> [[f64; 3]; 3] {
    let (sa, ca) = a.sin_cos();
    let (sb, cb) = b.sin_cos();
    let (sc, cc) = c.sin_cos();
    [
        [ca * cb, ca * sb * sc - sa * cc, ca * sb * cc + sa * sc],
        [sa * cb, sa * sb * sc + ca * cc, sa * sb * cc - ca * sc],
        [-sb, cb * sc, cb * cc],
    ]
}

fn bvals_text(bvals: &[f64]) -> String {
    let mut text = join(bvals.iter());
    text.push('\n');
    text
}

fn bvecs_text(bvecs: &[[f64; 3]]) -> String {
    let mut text = String::new();
    for axis in 0..3 {
        text.push_str(&join(bvecs.iter().map(|g| &g[axis])));
        text.push('\n');
    }
    text
}

/// Numbers separated by spaces, each in Rust's shortest round-trip form.
fn join<'a>(values: impl Iterator<Item = &'a f64>) -> String {
    values.map(|v| v.to_string()).collect::<Vec<_>>().join(" ")
}

/// 1.25 mm voxels, x flipped (negative determinant, as HCP's), the volume's
/// centre at the world origin.
fn affine(shape: [usize; 3]) -> [[f64; 4]; 4] {
    let h = VOXEL_SIZE_MM;
    let half = shape.map(|n| (n as f64 - 1.0) / 2.0 * h);
    [
        [-h, 0.0, 0.0, half[0]],
        [0.0, h, 0.0, -half[1]],
        [0.0, 0.0, h, -half[2]],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

// ---------------------------------------------------------------------------
// Anatomy

/// The seed streams: 0 for the anatomy, `1 + t` for the noise of volume `t`.
fn stream_seed(seed: u64, stream: u64) -> u64 {
    splitmix64(splitmix64(seed) ^ stream)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Random perturbations of the anatomy's parameters.
struct Jitter(StdRng);

impl Jitter {
    /// Uniform in `-amp..=amp`.
    fn by(&mut self, amp: f64) -> f64 {
        self.0.gen_range(-amp..=amp)
    }

    /// Uniform in `1 - amp..=1 + amp`.
    fn scale(&mut self, amp: f64) -> f64 {
        1.0 + self.by(amp)
    }
}

/// An axis-aligned ellipsoid whose centre line may bow down along y
/// (`bend`: the centre's z drops by `bend · (y - c_y)²`).
#[derive(Debug, Clone, Copy)]
struct Ellipsoid {
    c: [f64; 3],
    r: [f64; 3],
    bend: f64,
}

impl Ellipsoid {
    fn contains(&self, p: [f64; 3]) -> bool {
        let dy = p[1] - self.c[1];
        let d = [p[0] - self.c[0], dy, p[2] - self.c[2] + self.bend * dy * dy];
        (0..3).map(|i| (d[i] / self.r[i]).powi(2)).sum::<f64>() <= 1.0
    }
}

/// A vertical elliptic cylinder (the brainstem).
#[derive(Debug, Clone, Copy)]
struct Cylinder {
    c: [f64; 2],
    r: [f64; 2],
    z: (f64, f64),
}

impl Cylinder {
    fn contains(&self, p: [f64; 3]) -> bool {
        p[2] >= self.z.0
            && p[2] <= self.z.1
            && ((p[0] - self.c[0]) / self.r[0]).powi(2) + ((p[1] - self.c[1]) / self.r[1]).powi(2)
                <= 1.0
    }
}

/// `c0 + c1 (t - at) + c2 (t - at)²`.
#[derive(Debug, Clone, Copy)]
struct Quad {
    at: f64,
    c: [f64; 3],
}

impl Quad {
    fn eval(&self, t: f64) -> f64 {
        let s = t - self.at;
        self.c[0] + s * (self.c[1] + s * self.c[2])
    }

    fn slope(&self, t: f64) -> f64 {
        self.c[1] + 2.0 * self.c[2] * (t - self.at)
    }
}

/// A bundle's centre curve.
#[derive(Debug, Clone, Copy)]
enum Course {
    /// Runs along axis `along` for `t` in `range`; the other two coordinates
    /// of its centre (in axis order) are quadratics of `t`. Cross-sections
    /// are taken perpendicular to `along`.
    Line {
        along: usize,
        range: (f64, f64),
        a: Quad,
        b: Quad,
    },
    /// A sheet: a circular arc in the x–z plane around `(0, zc)` for angles
    /// (from +x towards +z) in `theta`, extruded along y over
    /// `|y - y0| <= half_length`, with rounded edges.
    Arc {
        zc: f64,
        radius: f64,
        theta: (f64, f64),
        y0: f64,
        half_length: f64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bundle {
    course: Course,
    /// Half-thickness, normalized units.
    radius: f64,
}

impl Bundle {
    /// `(distance from the centre / radius, tangent in normalized units)`
    /// when `p` lies inside the bundle.
    fn member(&self, p: [f64; 3]) -> Option<(f64, [f64; 3])> {
        let (d, tangent) = match self.course {
            Course::Line { along, range, a, b } => {
                let t = p[along];
                if t < range.0 || t > range.1 {
                    return None;
                }
                let (i, j) = match along {
                    0 => (1, 2),
                    1 => (0, 2),
                    _ => (0, 1),
                };
                let d = (p[i] - a.eval(t)).hypot(p[j] - b.eval(t));
                let mut tangent = [0.0; 3];
                tangent[along] = 1.0;
                tangent[i] = a.slope(t);
                tangent[j] = b.slope(t);
                (d, tangent)
            }
            Course::Arc {
                zc,
                radius,
                theta,
                y0,
                half_length,
            } => {
                let (dx, dz) = (p[0], p[2] - zc);
                let angle = dz.atan2(dx);
                if angle < theta.0 || angle > theta.1 {
                    return None;
                }
                let radial = dx.hypot(dz) - radius;
                let beyond = ((p[1] - y0).abs() - half_length).max(0.0);
                let (sin, cos) = angle.sin_cos();
                (radial.hypot(beyond), [-sin, 0.0, cos])
            }
        };
        (d < self.radius).then(|| (d / self.radius, tangent))
    }
}

/// The head of one subject, in normalized coordinates.
struct Anatomy {
    shape: [usize; 3],
    head: Ellipsoid,
    brain: Ellipsoid,
    brainstem: Cylinder,
    ventricles: [Ellipsoid; 2],
    bundles: Vec<Bundle>,
}

/// The ground truth of every head voxel, and the FA volume.
struct HeadVoxels {
    /// Linear index (x fastest) of each head voxel, ascending.
    index: Vec<usize>,
    s0: Vec<f64>,
    tensor: Vec<[f64; 6]>,
    tissue: Vec<Tissue>,
    /// FA of every voxel, x fastest.
    fa: Vec<f32>,
}

impl Anatomy {
    fn new(shape: [usize; 3], seed: u64) -> Self {
        let mut j = Jitter(StdRng::seed_from_u64(stream_seed(seed, 0)));
        let head = Ellipsoid {
            c: [0.0; 3],
            r: [
                0.92 * j.scale(0.03),
                0.94 * j.scale(0.03),
                0.92 * j.scale(0.03),
            ],
            bend: 0.0,
        };
        let brain = Ellipsoid {
            c: [j.by(0.015), 0.02 + j.by(0.02), 0.08 + j.by(0.02)],
            r: [
                0.78 * j.scale(0.03),
                0.82 * j.scale(0.03),
                0.70 * j.scale(0.03),
            ],
            bend: 0.0,
        };
        let brainstem = Cylinder {
            c: [j.by(0.01), -0.12 + j.by(0.02)],
            r: [0.13 * j.scale(0.05), 0.12 * j.scale(0.05)],
            z: (-0.86, 0.0),
        };
        let ventricle_size = j.scale(0.2);
        let mut ventricle = |side: f64| Ellipsoid {
            c: [
                side * 0.12 + j.by(0.01),
                0.04 + j.by(0.02),
                0.10 + j.by(0.015),
            ],
            r: [
                0.085 * ventricle_size * j.scale(0.05),
                0.32 * ventricle_size * j.scale(0.05),
                0.11 * ventricle_size * j.scale(0.05),
            ],
            bend: 0.5,
        };
        let ventricles = [ventricle(-1.0), ventricle(1.0)];

        let mut bundles = vec![Bundle {
            // Corpus callosum.
            course: Course::Arc {
                zc: -0.12 + j.by(0.02),
                radius: 0.42 * j.scale(0.04),
                theta: (
                    (28.0 + j.by(2.0)).to_radians(),
                    (152.0 + j.by(2.0)).to_radians(),
                ),
                y0: j.by(0.02),
                half_length: 0.30 * j.scale(0.05),
            },
            radius: 0.075,
        }];
        for side in [-1.0, 1.0] {
            // Corticospinal: rises from the brainstem, fanning out sideways.
            bundles.push(Bundle {
                course: Course::Line {
                    along: 2,
                    range: (-0.84, 0.62 + j.by(0.03)),
                    a: Quad {
                        at: -0.84,
                        c: [
                            side * (0.05 + j.by(0.01)),
                            side * 0.08,
                            side * 0.0625 * j.scale(0.1),
                        ],
                    },
                    b: Quad {
                        at: -0.84,
                        c: [-0.10 + j.by(0.02), 0.06, 0.0],
                    },
                },
                radius: 0.09,
            });
            // Superior-longitudinal-like: front to back, arching up.
            bundles.push(Bundle {
                course: Course::Line {
                    along: 1,
                    range: (-0.62, 0.58),
                    a: Quad {
                        at: 0.0,
                        c: [side * (0.31 + j.by(0.02)), 0.0, side * 0.05],
                    },
                    b: Quad {
                        at: 0.0,
                        c: [0.30 + j.by(0.02), 0.0, -0.35],
                    },
                },
                radius: 0.085,
            });
            // Inferior fronto-occipital-like: front to back, low down.
            bundles.push(Bundle {
                course: Course::Line {
                    along: 1,
                    range: (-0.70, 0.62),
                    a: Quad {
                        at: 0.0,
                        c: [side * (0.28 + j.by(0.02)), 0.0, side * 0.08],
                    },
                    b: Quad {
                        at: 0.0,
                        c: [-0.05 + j.by(0.02), 0.04, -0.12],
                    },
                },
                radius: 0.08,
            });
            // Cingulum-like: above the callosum, near the midline.
            bundles.push(Bundle {
                course: Course::Line {
                    along: 1,
                    range: (-0.5, 0.45),
                    a: Quad {
                        at: 0.0,
                        c: [side * 0.085, 0.0, 0.0],
                    },
                    b: Quad {
                        at: 0.0,
                        c: [0.42 + j.by(0.015), 0.0, -0.30],
                    },
                },
                radius: 0.055,
            });
        }
        // At least ~0.9 voxel on the axis with the fewest voxels, so tiny shapes keep
        // connected bundles (axes of length 1 do not count).
        let finest = shape.iter().copied().filter(|&n| n > 1).min();
        if let Some(n) = finest {
            let min_radius = 1.8 / n as f64;
            for b in &mut bundles {
                b.radius = b.radius.max(min_radius);
            }
        }
        Anatomy {
            shape,
            head,
            brain,
            brainstem,
            ventricles,
            bundles,
        }
    }

    /// Normalized coordinates of a voxel's centre.
    fn position(&self, voxel: [usize; 3]) -> [f64; 3] {
        [0, 1, 2].map(|a| (2 * voxel[a] + 1) as f64 / self.shape[a] as f64 - 1.0)
    }

    /// A direction in normalized units turned into a unit vector in voxel
    /// axes (normalized units stretch each axis by `N / 2` voxels).
    fn to_voxel_axes(&self, v: [f64; 3]) -> Option<[f64; 3]> {
        normalize([0, 1, 2].map(|a| v[a] * self.shape[a] as f64 / 2.0))
    }

    fn truth_at(&self, voxel: [usize; 3]) -> VoxelTruth {
        let p = self.position(voxel);
        if !self.head.contains(p) {
            return BACKGROUND;
        }
        if !(self.brain.contains(p) || self.brainstem.contains(p)) {
            return isotropic(Tissue::Scalp, S0_SCALP, SCALP_DIFFUSIVITY);
        }
        if self.ventricles.iter().any(|v| v.contains(p)) {
            return isotropic(Tissue::Csf, S0_CSF, CSF_DIFFUSIVITY);
        }
        // The dominant bundle: the nearest centre relative to its radius.
        let dominant = self
            .bundles
            .iter()
            .filter_map(|b| b.member(p))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((m, tangent)) = dominant {
            let e = self.to_voxel_axes(tangent).unwrap_or([0.0, 0.0, 1.0]);
            let radial = WM_RADIAL_CORE + WM_RADIAL_EDGE_RISE * m * m;
            return axial(Tissue::WhiteMatter, S0_WHITE_MATTER, WM_AXIAL, radial, e);
        }
        // Grey matter: slightly anisotropic along the radius from the brain's
        // centre, like cortical columns.
        let outward = [0, 1, 2].map(|a| p[a] - self.brain.c[a]);
        let e = self.to_voxel_axes(outward).unwrap_or([0.0, 0.0, 1.0]);
        axial(Tissue::GreyMatter, S0_GREY_MATTER, GM_AXIAL, GM_RADIAL, e)
    }

    /// The truth of every head voxel, computed over z-slices in parallel.
    fn head_voxels(&self) -> HeadVoxels {
        let [nx, ny, nz] = self.shape;
        let slice = nx * ny;
        let mut fa = vec![0.0f32; slice * nz];
        let parts = parallel_chunks(&mut fa, slice, |first_z, fa_part| {
            let mut part = HeadVoxels {
                index: Vec::new(),
                s0: Vec::new(),
                tensor: Vec::new(),
                tissue: Vec::new(),
                fa: Vec::new(),
            };
            for (dz, fa_slice) in fa_part.chunks_mut(slice).enumerate() {
                let z = first_z + dz;
                for y in 0..ny {
                    for x in 0..nx {
                        let t = self.truth_at([x, y, z]);
                        if t.tissue == Tissue::Background {
                            continue;
                        }
                        fa_slice[x + nx * y] = t.fa as f32;
                        part.index.push(x + nx * (y + ny * z));
                        part.s0.push(t.s0);
                        part.tensor.push(t.tensor);
                        part.tissue.push(t.tissue);
                    }
                }
            }
            part
        });
        let mut all = HeadVoxels {
            index: Vec::new(),
            s0: Vec::new(),
            tensor: Vec::new(),
            tissue: Vec::new(),
            fa: Vec::new(),
        };
        for p in parts {
            all.index.extend(p.index);
            all.s0.extend(p.s0);
            all.tensor.extend(p.tensor);
            all.tissue.extend(p.tissue);
        }
        all.fa = fa;
        all
    }
}

fn isotropic(tissue: Tissue, s0: f64, d: f64) -> VoxelTruth {
    VoxelTruth {
        tissue,
        s0,
        tensor: [d, 0.0, d, 0.0, 0.0, d],
        fa: 0.0,
        md: d,
    }
}

/// A tensor with eigenvalue `axial` along the unit vector `e` and `radial`
/// across it.
fn axial(tissue: Tissue, s0: f64, axial: f64, radial: f64, e: [f64; 3]) -> VoxelTruth {
    let k = axial - radial;
    let d = |i: usize, j: usize| k * e[i] * e[j] + if i == j { radial } else { 0.0 };
    VoxelTruth {
        tissue,
        s0,
        tensor: [d(0, 0), d(0, 1), d(1, 1), d(0, 2), d(1, 2), d(2, 2)],
        fa: k.abs() / (axial * axial + 2.0 * radial * radial).sqrt(),
        md: (axial + 2.0 * radial) / 3.0,
    }
}

fn normalize(v: [f64; 3]) -> Option<[f64; 3]> {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    (n > 1e-12 && n.is_finite()).then(|| v.map(|c| c / n))
}

// ---------------------------------------------------------------------------
// Signal

/// Simulates the 4-D image and writes it to `path` (`[x, y, z, t]`) a batch
/// of volumes at a time: each batch in parallel, one volume per thread, then
/// into the streaming writer in volume order. Each volume's noise comes from
/// its own stream, so the values do not depend on the batching.
fn write_data(
    spec: &PhantomSpec,
    truth: &HeadVoxels,
    bvals: &[f64],
    bvecs: &[[f64; 3]],
    path: &Path,
    geometry: &Geometry,
) -> Result<()> {
    let [nx, ny, nz] = spec.shape;
    let per_volume = nx * ny * nz;
    let v = bvals.len();
    let mut writer = VolumeWriter::<f32>::create(path, &[nx, ny, nz, v], geometry)?;
    let batch = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_BATCH_VOLUMES)
        .min(v);
    let too_big = || ImageError::InvalidInput {
        what: "PhantomSpec.shape",
        problem: format!(
            "{:?}: {batch} volumes ({:.1} GB as float32) do not fit in memory",
            spec.shape,
            (batch * per_volume) as f64 * 4e-9
        ),
    };
    let len = per_volume.checked_mul(batch).ok_or_else(too_big)?;
    let mut volumes: Vec<f32> = Vec::new();
    volumes.try_reserve_exact(len).map_err(|_| too_big())?;
    // Background voxels are never written by `simulate_volume`, so they stay
    // exactly 0 from here through every batch.
    volumes.resize(len, 0.0);

    let sigma = spec.sigma();
    let seed = spec.seed;
    for first in (0..v).step_by(batch) {
        let count = batch.min(v - first);
        let part = &mut volumes[..count * per_volume];
        parallel_chunks(part, per_volume, |k, run| {
            for (j, volume) in run.chunks_mut(per_volume).enumerate() {
                let t = first + k + j;
                simulate_volume(volume, truth, bvals[t], bvecs[t], sigma, seed, t);
            }
        });
        for volume in part.chunks(per_volume) {
            let volume = ArrayView3::from_shape((nx, ny, nz).f(), volume).map_err(shape_error)?;
            writer.write_volume(&volume)?;
        }
    }
    writer.finish()
}

fn shape_error(e: ndarray::ShapeError) -> ImageError {
    ImageError::InvalidInput {
        what: "PhantomSpec.shape",
        problem: e.to_string(),
    }
}

/// Fills the head voxels of volume `t`; its noise comes from its own stream.
fn simulate_volume(
    volume: &mut [f32],
    truth: &HeadVoxels,
    b: f64,
    g: [f64; 3],
    sigma: f64,
    seed: u64,
    t: usize,
) {
    let mut rng = StdRng::seed_from_u64(stream_seed(seed, 1 + t as u64));
    // gᵀDg = Σ w · (xx, xy, yy, xz, yz, zz)
    let w = [
        g[0] * g[0],
        2.0 * g[0] * g[1],
        g[1] * g[1],
        2.0 * g[0] * g[2],
        2.0 * g[1] * g[2],
        g[2] * g[2],
    ];
    let noisy = sigma > 0.0 && sigma.is_finite();
    for ((&i, &s0), d) in truth.index.iter().zip(&truth.s0).zip(&truth.tensor) {
        let q: f64 = w.iter().zip(d).map(|(w, d)| w * d).sum();
        let s = s0 * (-b * q).exp();
        volume[i] = if noisy {
            // Box–Muller: two independent N(0, 1) from two uniforms.
            let u1 = 1.0 - rng.gen::<f64>();
            let u2: f64 = rng.gen();
            let r = (-2.0 * u1.ln()).sqrt();
            let (sin, cos) = (2.0 * PI * u2).sin_cos();
            let (n1, n2) = (sigma * r * cos, sigma * r * sin);
            ((s + n1) * (s + n1) + n2 * n2).sqrt() as f32
        } else {
            s as f32
        };
    }
}

/// Splits `items` into contiguous runs of whole `chunk`-sized pieces, one
/// run per available core, and runs `f(index of the run's first piece,
/// run)` on each in its own thread. Results come back in order.
fn parallel_chunks<T, R, F>(items: &mut [T], chunk: usize, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(usize, &mut [T]) -> R + Sync,
{
    let pieces = items.len().checked_div(chunk).unwrap_or(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(pieces)
        .max(1);
    let per_thread = pieces.div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks_mut(per_thread * chunk.max(1))
            .enumerate()
            .map(|(k, run)| scope.spawn(move || f(k * per_thread, run)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

// ---------------------------------------------------------------------------
// Files

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| ImageError::Io {
        file: dir.display().to_string(),
        action: "cannot create folder",
        source,
    })
}

/// Writes `text` to a temporary file beside `path` and renames it into place.
fn write_text(path: &Path, text: &str) -> Result<()> {
    let io = |action: &'static str| {
        move |source: std::io::Error| ImageError::Io {
            file: path.display().to_string(),
            action,
            source,
        }
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempfile_in(dir)
        .map_err(io("cannot create a temporary file beside"))?;
    tmp.write_all(text.as_bytes()).map_err(io("cannot write"))?;
    tmp.as_file().sync_all().map_err(io("cannot sync"))?;
    tmp.persist(path)
        .map_err(|e| io("cannot rename into place")(e.error))?;
    Ok(())
}
