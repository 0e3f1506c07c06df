//! Diffusion tensor fit by weighted least squares, with the results of
//! DIPY's `TensorModel(gtab, min_signal=1).fit(data, mask)` (spec step 5;
//! `wls_fit_tensor` and `design_matrix` in `dipy/reconst/dti.py`, 1.12.1).
//!
//! Per voxel, with `X` the design matrix (rows
//! `-[b gx², 2b gx gy, b gy², 2b gx gz, 2b gy gz, b gz², 1]`) and
//! `y = log(max(s, min_signal))`:
//!
//! 1. `β_ols = pinv(X) y` and weights `w = exp(X β_ols)` (the predicted
//!    signal: DIPY's `exp(H log s)` with `H = X pinv(X)`);
//! 2. `β = pinv(w∘X) (w∘y)`, numpy's pseudo-inverse with `rcond = 1e-15`;
//! 3. the tensor `[[β0, β1, β3], [β1, β2, β4], [β3, β4, β5]]` is
//!    eigen-decomposed, eigenvalues sorted descending and clipped below at
//!    `1e-6 / -min(X)` (DIPY's `min_diffusivity`);
//! 4. `FA = sqrt(½ Σ_{i<j} (λi - λj)² / Σ λi²)` (0 when every λ is 0) and
//!    `MD = (λ1 + λ2 + λ3) / 3`.
//!
//! The pseudo-inverse of `X` is computed once per gradient table. The
//! weighted problem is solved per voxel by Householder QR when the weights
//! provably keep `w∘X` far from the pseudo-inverse's rank cut-off (then
//! the pseudo-inverse solution is the unique least-squares solution), and
//! by a singular value decomposition with DIPY's cut-off otherwise.
//!
//! DIPY takes the logarithm of float32 data in float32; this module does it
//! in f64, which moves FA by about 1e-7 on real data.
//!
//! # The maps, as DIPY's `dipy_fit_dti` workflow writes them
//!
//! `ReconstDtiFlow` (`dipy/workflows/reconst.py`, 1.12.1) writes one NIfTI
//! file per map, each with the input's affine, 0 outside the mask, indices
//! `[x, y, z, ...]`. From a [`Tensor`] `t` per voxel:
//!
//! | file | shape | dtype | voxel value |
//! | --- | --- | --- | --- |
//! | `tensors.nii.gz` | X×Y×Z×1×6 | float64 | [`Tensor::lower_triangular`]: `[.., 0, k]` = Dxx, Dxy, Dyy, Dxz, Dyz, Dzz for k = 0..6; NIfTI intent "symmetric matrix" (1005), intent_p1 = 3 (`nifti1_symmat`) |
//! | `fa.nii.gz` | X×Y×Z | float32 | [`Tensor::fa`], NaN → 0, clipped to [0, 1] |
//! | `ga.nii.gz` | X×Y×Z | float32 | [`Tensor::ga`] |
//! | `rgb.nii.gz` | X×Y×Z×3 | uint8 | `(255 · c) as u8` (truncation) for each `c` of [`Tensor::rgb`] |
//! | `md.nii.gz` | X×Y×Z | float32 | [`Tensor::md`] |
//! | `ad.nii.gz` | X×Y×Z | float32 | [`Tensor::ad`] |
//! | `rd.nii.gz` | X×Y×Z | float32 | [`Tensor::rd`] |
//! | `mode.nii.gz` | X×Y×Z | float32 | [`Tensor::mode`] |
//! | `evecs.nii.gz` | X×Y×Z×3×3 | float32 | `[x, y, z, j, i]` = `t.evecs[i][j]`: component `j` of eigenvector `i` (eigenvectors are columns) |
//! | `evals.nii.gz` | X×Y×Z×3 | float32 | `[x, y, z, i]` = `t.evals[i]`, descending |
//!
//! An eigenvector's sign is arbitrary: DIPY's comes from LAPACK, this
//! module's makes the largest-magnitude component positive, so `evecs`
//! agrees with DIPY's up to the sign of each vector. `rgb` takes absolute
//! values and `tensors` and `mode` are sign-free, so they agree exactly.

use ndarray::{s, Array3, Array4, ArrayView3, ArrayView4, ShapeBuilder};

use crate::error::{ImageError, Result};
use crate::gradients::GradientTable;

/// DIPY's `min_signal` in the pipeline: signals are clipped below at 1.
pub const DEFAULT_MIN_SIGNAL: f64 = 1.0;

/// Coefficients of the log-linear model: six tensor elements and `-log S0`.
const COEFS: usize = 7;

/// numpy's `pinv` default: singular values at or below `RCOND · σ_max` are
/// treated as zero.
const RCOND: f64 = 1e-15;

/// A bound on the condition number of `w∘X` under which the least-squares
/// solution by QR is used: far below `1 / RCOND`, so numpy's pseudo-inverse
/// keeps every singular value and gives the same (unique) solution.
const QR_CONDITION_LIMIT: f64 = 1e10;

/// One voxel's fitted tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tensor {
    /// Eigenvalues in mm²/s, descending, clipped below at the model's
    /// minimum diffusivity (all 0 for voxels outside the mask).
    pub evals: [f64; 3],
    /// Unit eigenvectors, `evecs[i]` belonging to `evals[i]`. Each is
    /// signed so that its largest-magnitude component is positive (an
    /// eigenvector's sign is arbitrary; DIPY's depends on LAPACK).
    pub evecs: [[f64; 3]; 3],
}

impl Tensor {
    /// The tensor of a voxel outside the mask: every parameter 0.
    pub const ZERO: Tensor = Tensor {
        evals: [0.0; 3],
        evecs: [[0.0; 3]; 3],
    };

    /// The result for a voxel whose signal is not finite.
    const NAN: Tensor = Tensor {
        evals: [f64::NAN; 3],
        evecs: [[f64::NAN; 3]; 3],
    };

    /// Fractional anisotropy, as DIPY's `fractional_anisotropy` (0 when
    /// every eigenvalue is 0).
    pub fn fa(&self) -> f64 {
        let [a, b, c] = self.evals;
        let all_zero = if a == 0.0 && b == 0.0 && c == 0.0 {
            1.0
        } else {
            0.0
        };
        let num = (a - b) * (a - b) + (b - c) * (b - c) + (c - a) * (c - a);
        (0.5 * num / ((a * a + b * b + c * c) + all_zero)).sqrt()
    }

    /// Mean diffusivity in mm²/s: the trace over 3, as DIPY's `TensorFit.md`.
    pub fn md(&self) -> f64 {
        (self.evals[0] + self.evals[1] + self.evals[2]) / 3.0
    }

    /// The eigenvector of the largest eigenvalue.
    pub fn principal(&self) -> [f64; 3] {
        self.evecs[0]
    }

    /// Geodesic anisotropy, as DIPY's `geodesic_anisotropy`:
    /// `sqrt(Σ ln(λi / ∛(λ1 λ2 λ3))²)`, and 0 when `λ1` is 0 (so 0 for
    /// [`Tensor::ZERO`]; a fitted tensor's eigenvalues are clipped positive).
    pub fn ga(&self) -> f64 {
        let [a, b, c] = self.evals;
        if a == 0.0 {
            return 0.0;
        }
        let det = (a * b * c).powf(1.0 / 3.0);
        let logs = [a, b, c].map(|l| (l / det).ln());
        (logs[0] * logs[0] + logs[1] * logs[1] + logs[2] * logs[2]).sqrt()
    }

    /// Axial diffusivity in mm²/s: the largest eigenvalue (DIPY's
    /// `axial_diffusivity`).
    pub fn ad(&self) -> f64 {
        self.evals[0]
    }

    /// Radial diffusivity in mm²/s: the mean of the two smaller eigenvalues
    /// (DIPY's `radial_diffusivity`).
    pub fn rd(&self) -> f64 {
        (self.evals[1] + self.evals[2]) / 2.0
    }

    /// Tensor mode, DIPY's `mode(quadratic_form)`: `3√6 det(Ã / ‖Ã‖)` with
    /// `Ã` the deviatoric part of the tensor and `‖·‖` the Frobenius norm;
    /// 0 where `‖Ã‖` is 0 (isotropic tensors, [`Tensor::ZERO`]).
    ///
    /// Computed from the eigenvalues (`Ã` has eigenvalues `μi = λi - λ̄`,
    /// so `det(Ã / ‖Ã‖) = μ1 μ2 μ3 / (Σ μi²)^{3/2}`), which equals DIPY's
    /// value and gives exactly 0 for equal eigenvalues. DIPY rebuilds the
    /// tensor from its eigenvectors first, so where all three eigenvalues
    /// are equal (in a fit: all clipped at the minimum diffusivity, where
    /// the signal is flat, e.g. denoised to 0 at the mask's edge) its `Ã`
    /// is rounding noise and its mode anything in about ±1.4; this gives 0
    /// there. Elsewhere the two agree to about 1e-7.
    pub fn mode(&self) -> f64 {
        let mean = self.md();
        let mu = self.evals.map(|l| l - mean);
        let norm2 = mu[0] * mu[0] + mu[1] * mu[1] + mu[2] * mu[2];
        if norm2 == 0.0 {
            return 0.0;
        }
        let norm = norm2.sqrt();
        3.0 * 6f64.sqrt() * ((mu[0] / norm) * (mu[1] / norm) * (mu[2] / norm))
    }

    /// The tensor `D = Σ λi ei eiᵀ` (from the clipped eigenvalues, as
    /// DIPY's `TensorFit.quadratic_form`), lower triangle in NIfTI order
    /// `[Dxx, Dxy, Dyy, Dxz, Dyz, Dzz]` (DIPY's `lower_triangular`).
    pub fn lower_triangular(&self) -> [f64; 6] {
        // DIPY's vec_val_vect: D[r][k] = Σ_i (e_i[r] λi) e_i[k], i ascending.
        let d = |r: usize, k: usize| {
            (0..3).fold(0.0, |acc, i| {
                acc + self.evecs[i][r] * self.evals[i] * self.evecs[i][k]
            })
        };
        [d(0, 0), d(1, 0), d(1, 1), d(2, 0), d(2, 1), d(2, 2)]
    }

    /// Colour FA, DIPY's `color_fa(FA, evecs)` as the `dipy_fit_dti`
    /// workflow calls it: `|principal eigenvector| · clip(FA, 0, 1)`, with a
    /// NaN FA counted as 0 (the workflow's `FA[np.isnan(FA)] = 0`). The
    /// workflow saves `uint8(255 · rgb)` (truncated).
    pub fn rgb(&self) -> [f64; 3] {
        let fa = self.fa();
        let fa = if fa.is_nan() { 0.0 } else { fa.clamp(0.0, 1.0) };
        self.evecs[0].map(|c| c.abs() * fa)
    }
}

/// Maps of a fitted 4-D image, x-fastest (Fortran) order, 0 outside the mask.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMaps {
    /// Fractional anisotropy.
    pub fa: Array3<f64>,
    /// Mean diffusivity (mm²/s).
    pub md: Array3<f64>,
    /// Eigenvalues, `[x, y, z, i]`, descending in `i`.
    pub evals: Array4<f64>,
    /// Principal eigenvector, `[x, y, z, component]`.
    pub principal: Array4<f64>,
}

/// The weighted-least-squares tensor model of one gradient table.
#[derive(Debug, Clone)]
pub struct TensorModel {
    /// Rows of the design matrix `X`.
    design: Vec<[f64; COEFS]>,
    /// `pinv(X)` transposed: row `i` holds column `i` of the pseudo-inverse.
    ols: Vec<[f64; COEFS]>,
    /// `σ_max / σ_min` of `X` (infinite when `X` is rank deficient).
    condition: f64,
    min_signal: f64,
    min_diffusivity: f64,
}

impl TensorModel {
    /// The pipeline's model: DIPY's `TensorModel(gtab, min_signal=1)`.
    pub fn new(gtab: &GradientTable) -> Result<TensorModel> {
        TensorModel::with_min_signal(gtab, DEFAULT_MIN_SIGNAL)
    }

    /// A model clipping signals below at `min_signal`, which must be a
    /// finite positive number. Errors on an empty table or on a b-value or
    /// b-vector that is not finite.
    pub fn with_min_signal(gtab: &GradientTable, min_signal: f64) -> Result<TensorModel> {
        if !(min_signal.is_finite() && min_signal > 0.0) {
            return Err(ImageError::invalid(
                "TensorModel: min_signal",
                format!("{min_signal} is not a finite positive number"),
            ));
        }
        if gtab.bvals.is_empty() || gtab.bvals.len() != gtab.bvecs.len() {
            return Err(ImageError::invalid(
                "TensorModel: gradient table",
                format!(
                    "{} b-values and {} b-vectors",
                    gtab.bvals.len(),
                    gtab.bvecs.len()
                ),
            ));
        }
        let design = design_matrix(gtab)?;
        let svd = Svd::of_rows(&design);
        let ols = svd.pseudo_inverse_rows(design.len());
        let (smax, smin) = svd.extreme_values();
        let condition = if smin > RCOND * smax {
            smax / smin
        } else {
            f64::INFINITY
        };
        let most_negative = design
            .iter()
            .flatten()
            .fold(f64::INFINITY, |m, &v| m.min(v));
        Ok(TensorModel {
            design,
            ols,
            condition,
            min_signal,
            min_diffusivity: 1e-6 / -most_negative,
        })
    }

    /// Number of volumes (signal values per voxel) the model expects.
    pub fn n_volumes(&self) -> usize {
        self.design.len()
    }

    /// The eigenvalue floor, `1e-6 / -min(X)` as in DIPY.
    pub fn min_diffusivity(&self) -> f64 {
        self.min_diffusivity
    }

    /// Fits one voxel's signal (one value per volume). A signal holding NaN
    /// or an infinity gives NaN eigenvalues and eigenvectors.
    pub fn fit_voxel(&self, signal: &[f32]) -> Result<Tensor> {
        self.check_len("TensorModel::fit_voxel: signal", signal.len(), 1)?;
        Ok(self.fit_one(signal, &mut Scratch::default()))
    }

    /// Fits a block of voxel series stored voxel after voxel (`series[v * n
    /// .. (v + 1) * n]` is voxel `v`'s signal, `n` = [`Self::n_volumes`]);
    /// voxels whose `mask` entry is false get [`Tensor::ZERO`].
    pub fn fit_series(&self, series: &[f32], mask: &[bool]) -> Result<Vec<Tensor>> {
        self.check_len("TensorModel::fit_series: series", series.len(), mask.len())?;
        let n = self.n_volumes();
        let mut scratch = Scratch::default();
        Ok(series
            .chunks_exact(n)
            .zip(mask)
            .map(|(s, &m)| {
                if m {
                    self.fit_one(s, &mut scratch)
                } else {
                    Tensor::ZERO
                }
            })
            .collect())
    }

    /// Fits every voxel of `mask` in a 4-D image (`[x, y, z, t]`). Errors
    /// on a spatial axis of 0 voxels, a mask of another shape, or a number
    /// of volumes other than [`Self::n_volumes`].
    pub fn fit(&self, data: ArrayView4<'_, f32>, mask: ArrayView3<'_, bool>) -> Result<TensorMaps> {
        let (nx, ny, nz, nt) = data.dim();
        if nx == 0 || ny == 0 || nz == 0 {
            return Err(ImageError::invalid(
                "TensorModel::fit: image",
                format!("shape {:?} has a spatial axis of 0 voxels", data.dim()),
            ));
        }
        if mask.dim() != (nx, ny, nz) {
            return Err(ImageError::invalid(
                "TensorModel::fit: mask",
                format!(
                    "shape {:?} differs from the image's {:?}",
                    mask.dim(),
                    (nx, ny, nz)
                ),
            ));
        }
        self.check_len("TensorModel::fit: image volumes", nt, 1)?;
        let mut maps = TensorMaps {
            fa: Array3::zeros((nx, ny, nz).f()),
            md: Array3::zeros((nx, ny, nz).f()),
            evals: Array4::zeros((nx, ny, nz, 3).f()),
            principal: Array4::zeros((nx, ny, nz, 3).f()),
        };
        let mut scratch = Scratch::default();
        // One x-row of voxel series at a time, gathered volume by volume so
        // that an x-fastest image is read along its memory.
        let mut rows = vec![0f32; nx * nt];
        for z in 0..nz {
            for y in 0..ny {
                if !mask.slice(s![.., y, z]).iter().any(|&m| m) {
                    continue;
                }
                for t in 0..nt {
                    for (x, &v) in data.slice(s![.., y, z, t]).iter().enumerate() {
                        rows[x * nt + t] = v;
                    }
                }
                for x in 0..nx {
                    if !mask[[x, y, z]] {
                        continue;
                    }
                    let tensor = self.fit_one(&rows[x * nt..(x + 1) * nt], &mut scratch);
                    maps.fa[[x, y, z]] = tensor.fa();
                    maps.md[[x, y, z]] = tensor.md();
                    for i in 0..3 {
                        maps.evals[[x, y, z, i]] = tensor.evals[i];
                        maps.principal[[x, y, z, i]] = tensor.evecs[0][i];
                    }
                }
            }
        }
        Ok(maps)
    }

    fn check_len(&self, what: &'static str, len: usize, voxels: usize) -> Result<()> {
        if len == self.n_volumes() * voxels {
            Ok(())
        } else {
            Err(ImageError::invalid(
                what,
                format!(
                    "{len} values for {voxels} voxel(s) of {} volumes",
                    self.n_volumes()
                ),
            ))
        }
    }

    /// The WLS fit of one signal of [`Self::n_volumes`] values, with the
    /// widest vectors the CPU offers.
    fn fit_one(&self, signal: &[f32], scratch: &mut Scratch) -> Tensor {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `fit_one_avx2` needs AVX2, which the CPU was just found
            // to have.
            return unsafe { self.fit_one_avx2(signal, scratch) };
        }
        self.fit_one_portable(signal, scratch)
    }

    /// [`Self::fit_one_portable`] compiled for AVX2 (4 lanes of f64).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn fit_one_avx2(&self, signal: &[f32], scratch: &mut Scratch) -> Tensor {
        self.fit_one_portable(signal, scratch)
    }

    /// The fit itself; inlined into each build above.
    #[inline(always)]
    fn fit_one_portable(&self, signal: &[f32], scratch: &mut Scratch) -> Tensor {
        if signal.iter().any(|v| !v.is_finite()) {
            return Tensor::NAN;
        }
        let n = signal.len();
        let log_s = &mut scratch.log_s;
        log_s.clear();
        log_s.extend(
            signal
                .iter()
                .map(|&v| f64::from(v).max(self.min_signal).ln()),
        );
        // Ordinary least squares, then the predicted signal as weights.
        let mut beta = [0.0; COEFS];
        for (p, &y) in self.ols.iter().zip(log_s.iter()) {
            for c in 0..COEFS {
                beta[c] += p[c] * y;
            }
        }
        let weights = &mut scratch.weights;
        weights.clear();
        weights.extend(self.design.iter().map(|x| dot(x, &beta).exp()));
        let (mut wmin, mut wmax) = (f64::INFINITY, 0.0f64);
        for &w in weights.iter() {
            wmin = wmin.min(w);
            wmax = wmax.max(w);
        }
        // Columns of w∘X, then w∘y, for the solvers.
        let a = &mut scratch.columns;
        a.clear();
        for c in 0..COEFS {
            a.extend(
                self.design
                    .iter()
                    .zip(weights.iter())
                    .map(|(x, w)| w * x[c]),
            );
        }
        a.extend(weights.iter().zip(log_s.iter()).map(|(w, y)| w * y));
        let well_conditioned =
            wmin > 0.0 && wmax.is_finite() && self.condition * (wmax / wmin) <= QR_CONDITION_LIMIT;
        let beta = if well_conditioned {
            least_squares_qr(a, n)
        } else {
            let svd = Svd::of_columns(&a[..COEFS * n], n);
            svd.solve(&a[COEFS * n..])
        };
        tensor_from_coefficients(&beta, self.min_diffusivity)
    }
}

/// Buffers reused from voxel to voxel.
#[derive(Default)]
struct Scratch {
    log_s: Vec<f64>,
    weights: Vec<f64>,
    columns: Vec<f64>,
}

/// `Σ a[i] b[i]` over the shorter slice, with four running sums: a fixed
/// order that the compiler can keep in one vector register (a single
/// running sum would force one scalar addition after another).
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0; 4];
    for (x, y) in ac.zip(bc) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + tail
}

/// DIPY's `design_matrix(gtab)`: rows
/// `-[b gx², 2b gx gy, b gy², 2b gx gz, 2b gy gz, b gz², 1]`.
fn design_matrix(gtab: &GradientTable) -> Result<Vec<[f64; COEFS]>> {
    gtab.bvals
        .iter()
        .zip(&gtab.bvecs)
        .enumerate()
        .map(|(i, (&b, g))| {
            if !b.is_finite() || g.iter().any(|c| !c.is_finite()) {
                return Err(ImageError::invalid(
                    "TensorModel: gradient table",
                    format!("row {i} (b = {b}, g = {g:?}) is not finite"),
                ));
            }
            let [x, y, z] = *g;
            Ok([
                -(x * x * 1.0 * b),
                -(x * y * 2.0 * b),
                -(y * y * 1.0 * b),
                -(x * z * 2.0 * b),
                -(y * z * 2.0 * b),
                -(z * z * 1.0 * b),
                -1.0,
            ])
        })
        .collect()
}

/// Least squares by Householder QR: `columns` holds the `COEFS` columns of
/// an `m × COEFS` matrix of full column rank, then the right-hand side,
/// each `m` long; they are overwritten.
#[inline(always)]
fn least_squares_qr(columns: &mut [f64], m: usize) -> [f64; COEFS] {
    let mut r = [[0.0; COEFS]; COEFS];
    for k in 0..COEFS {
        let (done, rest) = columns.split_at_mut((k + 1) * m);
        let v = &mut done[k * m + k..(k + 1) * m];
        let norm = dot(v, v).sqrt();
        let alpha = if v[0] > 0.0 { -norm } else { norm };
        v[0] -= alpha;
        let vv = dot(v, v);
        r[k][k] = alpha;
        for (j, col) in rest.chunks_exact_mut(m).enumerate() {
            let c = &mut col[k..];
            if vv > 0.0 {
                let tau = 2.0 * dot(v, c) / vv;
                for (c, &v) in c.iter_mut().zip(v.iter()) {
                    *c -= tau * v;
                }
            }
            if k + 1 + j < COEFS {
                r[k][k + 1 + j] = c[0];
            }
        }
    }
    let rhs = &columns[COEFS * m..];
    let mut beta = [0.0; COEFS];
    for k in (0..COEFS).rev() {
        let mut acc = rhs[k];
        for j in k + 1..COEFS {
            acc -= r[k][j] * beta[j];
        }
        beta[k] = acc / r[k][k];
    }
    beta
}

/// A thin singular value decomposition `A = U Σ Vᵀ` of an `m × COEFS`
/// matrix by one-sided (Hestenes) Jacobi rotations, which give the small
/// singular values to high relative accuracy.
struct Svd {
    /// Rows of the matrix: `m`.
    m: usize,
    /// `A V`, column after column: column `j` is `σ_j u_j`.
    av: Vec<f64>,
    /// `V`, `v[j]` being the j-th right singular vector.
    v: [[f64; COEFS]; COEFS],
    /// Singular values, `σ_j = ‖(A V)_j‖`.
    sigma: [f64; COEFS],
}

impl Svd {
    /// The decomposition of a matrix given by rows.
    fn of_rows(rows: &[[f64; COEFS]]) -> Svd {
        let m = rows.len();
        let mut columns = Vec::with_capacity(COEFS * m);
        for c in 0..COEFS {
            columns.extend(rows.iter().map(|r| r[c]));
        }
        Svd::of_columns(&columns, m)
    }

    /// The decomposition of a matrix given column after column (`m` rows).
    fn of_columns(columns: &[f64], m: usize) -> Svd {
        let mut av = columns.to_vec();
        let mut v = [[0.0; COEFS]; COEFS];
        for (j, row) in v.iter_mut().enumerate() {
            row[j] = 1.0;
        }
        // Quadratic convergence: a few sweeps suffice; the cap only guards
        // against non-finite input.
        for _sweep in 0..60 {
            let mut rotated = false;
            for p in 0..COEFS {
                for q in p + 1..COEFS {
                    let (cp, cq) = (&av[p * m..(p + 1) * m], &av[q * m..(q + 1) * m]);
                    let (alpha, beta, gamma) = (dot(cp, cp), dot(cq, cq), dot(cp, cq));
                    // Already orthogonal (or not finite: no rotation helps).
                    if gamma.is_nan() || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt() {
                        continue;
                    }
                    rotated = true;
                    let zeta = (beta - alpha) / (2.0 * gamma);
                    let t = if zeta.abs() > 1e150 {
                        0.5 / zeta
                    } else {
                        zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt())
                    };
                    let c = 1.0 / (1.0 + t * t).sqrt();
                    let s = c * t;
                    let (head, tail) = av.split_at_mut(q * m);
                    let cp = &mut head[p * m..(p + 1) * m];
                    let cq = &mut tail[..m];
                    for (a, b) in cp.iter_mut().zip(cq.iter_mut()) {
                        let (x, y) = (*a, *b);
                        *a = c * x - s * y;
                        *b = s * x + c * y;
                    }
                    for row in v.iter_mut() {
                        let (x, y) = (row[p], row[q]);
                        row[p] = c * x - s * y;
                        row[q] = s * x + c * y;
                    }
                }
            }
            if !rotated {
                break;
            }
        }
        let mut sigma = [0.0; COEFS];
        for (j, s) in sigma.iter_mut().enumerate() {
            let column = &av[j * m..(j + 1) * m];
            *s = dot(column, column).sqrt();
        }
        Svd { m, av, v, sigma }
    }

    /// Largest and smallest singular value.
    fn extreme_values(&self) -> (f64, f64) {
        let max = self.sigma.iter().fold(0.0f64, |a, &b| a.max(b));
        let min = self.sigma.iter().fold(f64::INFINITY, |a, &b| a.min(b));
        (max, min)
    }

    /// The singular values numpy's `pinv` keeps, with their index.
    fn kept(&self) -> impl Iterator<Item = (usize, f64)> + '_ {
        let cutoff = RCOND * self.extreme_values().0;
        self.sigma
            .iter()
            .copied()
            .enumerate()
            .filter(move |&(_, s)| s > cutoff)
    }

    /// `pinv(A) b`: the minimum-norm least-squares solution.
    fn solve(&self, b: &[f64]) -> [f64; COEFS] {
        let m = self.m;
        let mut x = [0.0; COEFS];
        for (j, s) in self.kept() {
            // u_jᵀ b / σ_j = (A V)_jᵀ b / σ_j².
            let ub = dot(&self.av[j * m..(j + 1) * m], b);
            let f = ub / (s * s);
            for (xc, row) in x.iter_mut().zip(&self.v) {
                *xc += f * row[j];
            }
        }
        x
    }

    /// `pinv(A)` transposed: `m` rows of `COEFS`.
    fn pseudo_inverse_rows(&self, m: usize) -> Vec<[f64; COEFS]> {
        let mut out = vec![[0.0; COEFS]; m];
        for (j, s) in self.kept() {
            let col = &self.av[j * m..(j + 1) * m];
            for (row, &a) in out.iter_mut().zip(col) {
                let f = a / (s * s);
                for (c, r) in row.iter_mut().enumerate() {
                    *r += f * self.v[c][j];
                }
            }
        }
        out
    }
}

/// Eigen-decomposition of the tensor `(Dxx, Dxy, Dyy, Dxz, Dyz, Dzz)`,
/// eigenvalues descending and clipped below at `min_diffusivity`.
fn tensor_from_coefficients(beta: &[f64; COEFS], min_diffusivity: f64) -> Tensor {
    let d = [
        [beta[0], beta[1], beta[3]],
        [beta[1], beta[2], beta[4]],
        [beta[3], beta[4], beta[5]],
    ];
    let (values, vectors) = symmetric_eigen3(d);
    let mut order = [0, 1, 2];
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut t = Tensor::ZERO;
    for (slot, &i) in order.iter().enumerate() {
        t.evals[slot] = if values[i] < min_diffusivity {
            min_diffusivity
        } else {
            values[i]
        };
        let e = vectors[i];
        let big = e
            .iter()
            .fold(0.0f64, |m, &c| if c.abs() > m.abs() { c } else { m });
        t.evecs[slot] = if big < 0.0 { e.map(|c| -c) } else { e };
    }
    t
}

/// Eigenvalues and unit eigenvectors (`vectors[i]` for `values[i]`, in no
/// particular order) of a symmetric 3×3 matrix, by cyclic Jacobi rotations.
/// Accurate to rounding for any input, repeated eigenvalues included.
fn symmetric_eigen3(mut a: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    // Columns of `v` are the eigenvectors.
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for sweep in 0..50 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        if off == 0.0 || off.is_nan() {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            let apq = a[p][q];
            let g = 100.0 * apq.abs();
            // Once the rotations stop mattering to the diagonal, the
            // off-diagonal element is rounding noise.
            if sweep > 3 && a[p][p].abs() + g == a[p][p].abs() && a[q][q].abs() + g == a[q][q].abs()
            {
                a[p][q] = 0.0;
                a[q][p] = 0.0;
                continue;
            }
            if apq == 0.0 {
                continue;
            }
            let h = a[q][q] - a[p][p];
            let t = if h.abs() + g == h.abs() {
                apq / h
            } else {
                let theta = 0.5 * h / apq;
                let t = 1.0 / (theta.abs() + (1.0 + theta * theta).sqrt());
                if theta < 0.0 {
                    -t
                } else {
                    t
                }
            };
            let c = 1.0 / (1.0 + t * t).sqrt();
            let s = t * c;
            // A ← Jᵀ A J with J the rotation in the (p, q) plane.
            for row in a.iter_mut() {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (rp, rq) = (a[p], a[q]);
            a[p] = [0, 1, 2].map(|k| c * rp[k] - s * rq[k]);
            a[q] = [0, 1, 2].map(|k| s * rp[k] + c * rq[k]);
            a[p][q] = 0.0;
            a[q][p] = 0.0;
            for row in v.iter_mut() {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    let values = [a[0][0], a[1][1], a[2][2]];
    let vectors = [0, 1, 2].map(|j| [v[0][j], v[1][j], v[2][j]]);
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Matrix = Vec<Vec<f64>>;

    fn mul(a: &Matrix, b: &Matrix) -> Matrix {
        a.iter()
            .map(|row| {
                (0..b[0].len())
                    .map(|j| row.iter().zip(b).map(|(x, r)| x * r[j]).sum())
                    .collect()
            })
            .collect()
    }

    fn transpose(a: &Matrix) -> Matrix {
        (0..a[0].len())
            .map(|j| a.iter().map(|r| r[j]).collect())
            .collect()
    }

    fn max_diff(a: &Matrix, b: &Matrix) -> f64 {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    fn test_rows(m: usize) -> Vec<[f64; COEFS]> {
        (0..m)
            .map(|i| {
                let f = i as f64;
                [
                    f.sin(),
                    (2.0 * f).cos(),
                    f * 0.1,
                    1.0,
                    f * f * 0.01,
                    (0.5 * f).sin(),
                    (0.3 * f).cos() * 2.0,
                ]
            })
            .collect()
    }

    #[test]
    fn vector_builds_give_the_same_tensor() {
        let gtab = GradientTable {
            bvals: (0..15).map(|i| if i == 0 { 0.0 } else { 1000.0 }).collect(),
            bvecs: (0..15)
                .map(|i| {
                    let f = i as f64;
                    let v = [f.sin(), (1.7 * f).cos(), 0.3 + 0.1 * f];
                    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                    v.map(|c| c / n)
                })
                .collect(),
            b0_threshold: 10.0,
        };
        let model = TensorModel::new(&gtab).unwrap();
        let signal: Vec<f32> = (0..15).map(|i| 900.0 - 25.0 * i as f32).collect();
        let mut scratch = Scratch::default();
        let dispatched = model.fit_one(&signal, &mut scratch);
        let portable = model.fit_one_portable(&signal, &mut scratch);
        assert_eq!(dispatched, portable);
    }

    #[test]
    fn eigen3_reconstructs_and_is_orthonormal() {
        let cases = [
            [[2.0, 0.5, 0.1], [0.5, 1.0, -0.3], [0.1, -0.3, 0.7]],
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            [[1e-3, 1e-12, 0.0], [1e-12, 1e-3, 0.0], [0.0, 0.0, 3e-4]],
            [[0.0; 3]; 3],
            [[-1.0, 2.0, 3.0], [2.0, -4.0, 5.0], [3.0, 5.0, 6.0]],
        ];
        for a in cases {
            let (w, vecs) = symmetric_eigen3(a);
            let scale = a.iter().flatten().fold(1e-300f64, |m, &x| m.max(x.abs()));
            for i in 0..3 {
                for j in 0..3 {
                    let dot: f64 = (0..3).map(|k| vecs[i][k] * vecs[j][k]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-14, "{a:?}: {dot}");
                }
                for r in 0..3 {
                    let av: f64 = (0..3).map(|k| a[r][k] * vecs[i][k]).sum();
                    assert!((av - w[i] * vecs[i][r]).abs() < 1e-14 * scale, "{a:?}");
                }
            }
        }
    }

    #[test]
    fn pseudo_inverse_of_a_rank_deficient_matrix_meets_the_penrose_conditions() {
        let mut rows = test_rows(9);
        for r in rows.iter_mut() {
            r[6] = r[0] + r[1];
        }
        let svd = Svd::of_rows(&rows);
        assert_eq!(svd.kept().count(), 6);
        let a: Matrix = rows.iter().map(|r| r.to_vec()).collect();
        let p = transpose(
            &svd.pseudo_inverse_rows(rows.len())
                .iter()
                .map(|r| r.to_vec())
                .collect(),
        );
        let ap = mul(&a, &p);
        let pa = mul(&p, &a);
        assert!(max_diff(&mul(&ap, &a), &a) < 1e-12);
        assert!(max_diff(&mul(&pa, &p), &p) < 1e-12);
        assert!(max_diff(&ap, &transpose(&ap)) < 1e-12);
        assert!(max_diff(&pa, &transpose(&pa)) < 1e-12);
    }

    #[test]
    fn qr_and_svd_agree_on_a_full_rank_problem() {
        let rows = test_rows(20);
        let m = rows.len();
        let mut columns: Vec<f64> = (0..COEFS)
            .flat_map(|c| rows.iter().map(move |r| r[c]))
            .collect();
        let b: Vec<f64> = (0..m)
            .map(|i| (i as f64 * 0.7).cos() + 0.1 * i as f64)
            .collect();
        columns.extend(&b);
        let by_svd = Svd::of_columns(&columns[..COEFS * m], m).solve(&b);
        let by_qr = least_squares_qr(&mut columns, m);
        for (x, y) in by_qr.iter().zip(&by_svd) {
            assert!(
                (x - y).abs() < 1e-10 * y.abs().max(1.0),
                "{by_qr:?} vs {by_svd:?}"
            );
        }
    }
}
