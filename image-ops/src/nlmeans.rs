//! Non-local means denoising with the exact semantics of DIPY's classic
//! `nlmeans(..., patch_radius=1, block_radius=5, method="classic")`
//! (spec step 4), computed offset by offset instead of patch by patch.
//!
//! # What DIPY computes (`dipy/denoise/denspeed.pyx`, 1.12.1)
//!
//! The volume, the mask and a per-voxel sigma volume are converted to f64
//! and padded by [`BLOCK_RADIUS`] with numpy's `reflect` rule. For every
//! voxel `v` in the mask and every candidate centre `c = v + o` with
//! `o ∈ [-4, 4]³` (729 candidates, `v` itself included):
//!
//! * `d = Σ_p (x[v+p] - x[c+p])²` over the 27 patch offsets `p ∈ [-1, 1]³`;
//! * `s = Σ_p σ[c+p]`, `denom = √2 · (s / 27)²`, `W = exp(-(d / 27) / denom)`;
//! * with `sumw = Σ W`: `out = Σ (W / sumw) · x[c]²` when `sumw > 0`, else
//!   every normalised weight is 0 and `out = Σ 0 · x[c]²` (0, or NaN when a
//!   candidate centre is not finite).
//!
//! Afterwards, with Rician correction, `out = max(out - 2σ[v]², 0)`; in all
//! cases the result is `sqrt(out)`, voxels outside the mask are 0, and the
//! value is rounded to f32.
//!
//! # How it is computed here
//!
//! Instead of 729 patch comparisons of 27 voxels per voxel, each offset `o`
//! is handled for a whole box of voxels at once: the squared differences
//! `(x[u] - x[u+o])²` are formed once per voxel and summed over the 3×3×3
//! patch with three separable running sums, giving `d` for every voxel of
//! the box. Because `d(a, a+o) = d(a+o, a)`, only the 364 offsets of one
//! half-space are visited: each distance serves the voxel `a` (candidate
//! `a+o`) and the voxel `a+o` (candidate `a`). With a constant sigma the two
//! weights are the same number, so one `exp` serves two voxels.
//!
//! # Reproducibility
//!
//! Every voxel's sums are accumulated in one fixed order (itself, then each
//! half-space offset as "forward" then "backward"), and every weight is a
//! function of the ±5 neighbourhood only, computed by the same operations
//! wherever it is computed. The result is therefore bitwise independent of
//! how the volume is cut into boxes: a block denoised with its halo
//! ([`nlmeans_with_halo`]) gives exactly the voxels the whole volume gives.
//!
//! # Non-finite input
//!
//! NaN and ±inf voxels are not rejected: they propagate exactly as in DIPY.
//! A voxel whose patch neighbourhood (±5) holds a non-finite value gets
//! NaN weights, hence `sumw` is NaN and its output is 0, or NaN when one
//! of its 729 candidate centres is itself non-finite. Sigma must be finite
//! and non-negative (a zero sigma gives DIPY's all-zero output).
//!
//! Small dimensions are padded by reflecting again as often as needed
//! ([`reflect_index_numpy`]), so volumes with an axis of 4 voxels or fewer
//! are denoised deterministically (DIPY 1.12.1 reads memory it never padded
//! there).

use ndarray::{s, Array3, Array4, ArrayView3, ArrayView4, Axis, ShapeBuilder};

use crate::error::{ImageError, Result};
use crate::volume::reflect_index_numpy;

/// Patch radius: patches are 3×3×3 voxels.
pub const PATCH_RADIUS: usize = 1;

/// Block radius: candidate centres lie within ±(`BLOCK_RADIUS` −
/// `PATCH_RADIUS`) = ±4 voxels, and their patches reach ±5 voxels. This is
/// also the padding DIPY adds and the halo a block needs.
pub const BLOCK_RADIUS: usize = 5;

/// How far candidate centres reach on each axis.
const SEARCH: usize = BLOCK_RADIUS - PATCH_RADIUS;

/// Voxels in one patch: DIPY's `patch_vol_size`.
const PATCH_VOXELS: f64 = 27.0;

/// Output voxels handled together (each box then shrunk to its own mask
/// voxels): a box's accumulators and the samples they read stay in cache
/// across the 365 offsets, at the price of computing twice the weights of
/// pairs that straddle two boxes. Measured on 96×96×60: whole rows and
/// 24×24 cross-sections are about 20% faster than one box for the volume,
/// and faster than smaller boxes.
const TILE: [usize; 3] = [96, 24, 24];

/// The noise standard deviation handed to the filter.
#[derive(Debug, Clone, Copy)]
pub enum Sigma<'a> {
    /// One value for every voxel (DIPY fills a volume with it). The pair
    /// weights are then symmetric, which halves the `exp` calls.
    Constant(f64),
    /// One value per voxel, shaped like the volume passed alongside it
    /// (for [`nlmeans_with_halo`], including the halo).
    PerVoxel(ArrayView3<'a, f64>),
}

/// Denoises one 3-D volume with DIPY's classic non-local means (patch radius
/// 1, block radius 5). Voxels outside `mask` are 0. With `rician` the
/// Rician bias `2σ²` is removed before the square root.
///
/// The volume is padded with numpy's `reflect` rule, reflecting again as
/// often as needed for short axes. The output is in x-fastest (Fortran)
/// order. Errors on a mask or sigma of another shape and on a negative or
/// non-finite sigma.
pub fn nlmeans(
    volume: ArrayView3<'_, f32>,
    mask: ArrayView3<'_, bool>,
    sigma: Sigma<'_>,
    rician: bool,
) -> Result<Array3<f32>> {
    let shape = volume.dim();
    check_shape("nlmeans: mask", mask.dim(), shape)?;
    let sigma = match sigma {
        Sigma::Constant(s) => SigmaGrid::Constant(check_sigma(s)?),
        Sigma::PerVoxel(s) => {
            check_shape("nlmeans: sigma", s.dim(), shape)?;
            check_sigma_volume(s)?;
            SigmaGrid::PerVoxel(Grid::reflect_padded(s, |v| v))
        }
    };
    if shape.0 == 0 || shape.1 == 0 || shape.2 == 0 {
        return Ok(Array3::zeros(shape.f()));
    }
    let values = Grid::reflect_padded(volume, f64::from);
    denoise(&values, &sigma, mask, rician)
}

/// Denoises the core of a block given with its halo: `padded` holds the
/// block plus [`BLOCK_RADIUS`] voxels on every side, taken from the
/// reflect-padded whole volume (see `block::extract_with_halo`), and `mask`
/// covers the core only. A per-voxel sigma must be shaped like `padded`.
///
/// The result equals, bit for bit, the block's voxels in [`nlmeans`] of the
/// whole volume.
pub fn nlmeans_with_halo(
    padded: ArrayView3<'_, f32>,
    mask: ArrayView3<'_, bool>,
    sigma: Sigma<'_>,
    rician: bool,
) -> Result<Array3<f32>> {
    let (px, py, pz) = padded.dim();
    let m = mask.dim();
    let halo = 2 * BLOCK_RADIUS;
    if px < halo || py < halo || pz < halo || (px - halo, py - halo, pz - halo) != m {
        return Err(ImageError::invalid(
            "nlmeans_with_halo: padded block",
            format!(
                "shape {:?} is not the mask's shape {m:?} plus {BLOCK_RADIUS} voxels on every side",
                padded.dim()
            ),
        ));
    }
    let sigma = match sigma {
        Sigma::Constant(s) => SigmaGrid::Constant(check_sigma(s)?),
        Sigma::PerVoxel(s) => {
            check_shape("nlmeans_with_halo: sigma", s.dim(), padded.dim())?;
            check_sigma_volume(s)?;
            SigmaGrid::PerVoxel(Grid::copied(s, |v| v))
        }
    };
    if m.0 == 0 || m.1 == 0 || m.2 == 0 {
        return Ok(Array3::zeros(m.f()));
    }
    let values = Grid::copied(padded, f64::from);
    denoise(&values, &sigma, mask, rician)
}

/// Denoises every volume of a 4-D image (`[x, y, z, t]`) with its own
/// constant sigma, as DIPY's `nlmeans` does for 4-D input with a 1-D sigma.
pub fn nlmeans_4d(
    image: ArrayView4<'_, f32>,
    mask: ArrayView3<'_, bool>,
    sigmas: &[f64],
    rician: bool,
) -> Result<Array4<f32>> {
    let (x, y, z, t) = image.dim();
    if sigmas.len() != t {
        return Err(ImageError::invalid(
            "nlmeans_4d: sigmas",
            format!("{} values for {t} volumes", sigmas.len()),
        ));
    }
    let mut out = Array4::zeros((x, y, z, t).f());
    for (i, &s) in sigmas.iter().enumerate() {
        let denoised = nlmeans(
            image.index_axis(Axis(3), i),
            mask,
            Sigma::Constant(s),
            rician,
        )?;
        out.index_axis_mut(Axis(3), i).assign(&denoised);
    }
    Ok(out)
}

fn check_shape(
    what: &'static str,
    got: (usize, usize, usize),
    want: (usize, usize, usize),
) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(ImageError::invalid(
            what,
            format!("shape {got:?} differs from the volume's {want:?}"),
        ))
    }
}

fn check_sigma_volume(sigma: ArrayView3<'_, f64>) -> Result<()> {
    match sigma
        .indexed_iter()
        .find(|(_, s)| !(s.is_finite() && **s >= 0.0))
    {
        None => Ok(()),
        Some((at, s)) => Err(ImageError::invalid(
            "nlmeans: sigma",
            format!("{s} at voxel {at:?} is not a finite, non-negative noise level"),
        )),
    }
}

fn check_sigma(s: f64) -> Result<f64> {
    if s.is_finite() && s >= 0.0 {
        Ok(s)
    } else {
        Err(ImageError::invalid(
            "nlmeans: sigma",
            format!("{s} is not a finite, non-negative noise level"),
        ))
    }
}

/// Samples in f64, x fastest, covering a core box plus [`BLOCK_RADIUS`]
/// voxels on every side. Coordinates are local: core voxel `(i, j, k)` is
/// sample `(i + 5, j + 5, k + 5)`.
struct Grid {
    dims: [usize; 3],
    data: Vec<f64>,
}

impl Grid {
    /// The whole volume padded by [`BLOCK_RADIUS`] with numpy's `reflect`.
    fn reflect_padded<T: Copy>(volume: ArrayView3<'_, T>, to_f64: impl Fn(T) -> f64) -> Grid {
        let (n0, n1, n2) = volume.dim();
        let pad = BLOCK_RADIUS as isize;
        let table = |n: usize| -> Vec<usize> {
            (0..n + 2 * BLOCK_RADIUS)
                .map(|i| reflect_index_numpy(i as isize - pad, n))
                .collect()
        };
        let (tx, ty, tz) = (table(n0), table(n1), table(n2));
        let mut data = Vec::with_capacity(tx.len() * ty.len() * tz.len());
        for &k in &tz {
            for &j in &ty {
                data.extend(tx.iter().map(|&i| to_f64(volume[[i, j, k]])));
            }
        }
        Grid {
            dims: [tx.len(), ty.len(), tz.len()],
            data,
        }
    }

    /// An already padded block, copied into x-fastest order.
    fn copied<T: Copy>(padded: ArrayView3<'_, T>, to_f64: impl Fn(T) -> f64) -> Grid {
        let (n0, n1, n2) = padded.dim();
        let mut data = Vec::with_capacity(n0 * n1 * n2);
        for k in 0..n2 {
            for j in 0..n1 {
                data.extend((0..n0).map(|i| to_f64(padded[[i, j, k]])));
            }
        }
        Grid {
            dims: [n0, n1, n2],
            data,
        }
    }

    fn index(&self, x: usize, y: usize, z: usize) -> usize {
        x + self.dims[0] * (y + self.dims[1] * z)
    }

    /// `len` samples of row `(y, z)` starting at `x`.
    fn row(&self, x: usize, y: usize, z: usize, len: usize) -> &[f64] {
        let start = self.index(x, y, z);
        &self.data[start..start + len]
    }

    fn map(&self, f: impl Fn(f64) -> f64) -> Grid {
        Grid {
            dims: self.dims,
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }
}

/// Sigma as the filter needs it, in the same local coordinates as the values.
enum SigmaGrid {
    Constant(f64),
    PerVoxel(Grid),
}

/// The factor that turns a patch distance into an `exp` argument:
/// `-(d / 27) / (√2 · (s / 27)²)` is `d · neg_k` with this `neg_k`, `s`
/// being the sum of sigma over the candidate's patch.
fn neg_k(patch_sigma_sum: f64) -> f64 {
    let mean = patch_sigma_sum / PATCH_VOXELS;
    -1.0 / (PATCH_VOXELS * (std::f64::consts::SQRT_2 * (mean * mean)))
}

/// How the weights scale: one factor, or one per candidate centre.
enum Scale {
    Constant(f64),
    /// `neg_k` of each sample's patch (valid one voxel inside the grid).
    PerVoxel(Grid),
}

impl Scale {
    fn new(sigma: &SigmaGrid) -> Scale {
        match sigma {
            // DIPY sums sigma over the 27 patch voxels.
            SigmaGrid::Constant(s) => Scale::Constant(neg_k((0..27).fold(0.0, |acc, _| acc + s))),
            SigmaGrid::PerVoxel(g) => {
                let mut sums = Grid {
                    dims: g.dims,
                    data: vec![0.0; g.data.len()],
                };
                box_sum_interior(g, &mut sums);
                Scale::PerVoxel(sums.map(neg_k))
            }
        }
    }
}

/// Writes into `out` the 3×3×3 sum of `g` around every voxel at least one
/// voxel inside the grid (the border is left untouched), summing x, then
/// y, then z, always in the same order.
fn box_sum_interior(g: &Grid, out: &mut Grid) {
    let [nx, ny, nz] = g.dims;
    if nx < 3 || ny < 3 || nz < 3 {
        return;
    }
    let mut along_x = vec![0.0; g.data.len()];
    for z in 0..nz {
        for y in 0..ny {
            let src = g.row(0, y, z, nx);
            let start = g.index(1, y, z);
            sum3(
                &src[..nx - 2],
                &src[1..nx - 1],
                &src[2..],
                &mut along_x[start..start + nx - 2],
            );
        }
    }
    let mut along_y = vec![0.0; g.data.len()];
    for z in 0..nz {
        for y in 1..ny - 1 {
            let (a, b, c) = (g.index(0, y - 1, z), g.index(0, y, z), g.index(0, y + 1, z));
            let row = &mut along_y[b..b + nx];
            sum3(
                &along_x[a..a + nx],
                &along_x[b..b + nx],
                &along_x[c..c + nx],
                row,
            );
        }
    }
    for z in 1..nz - 1 {
        for y in 1..ny - 1 {
            let (a, b, c) = (g.index(0, y, z - 1), g.index(0, y, z), g.index(0, y, z + 1));
            sum3(
                &along_y[a..a + nx],
                &along_y[b..b + nx],
                &along_y[c..c + nx],
                &mut out.data[b..b + nx],
            );
        }
    }
}

/// `out[i] = (a[i] + b[i]) + c[i]`: the one summation order used for every
/// patch sum, so that equal neighbourhoods give equal bits.
#[inline(always)]
fn sum3(a: &[f64], b: &[f64], c: &[f64], out: &mut [f64]) {
    for (((o, &a), &b), &c) in out.iter_mut().zip(a).zip(b).zip(c) {
        *o = (a + b) + c;
    }
}

/// `exp(x)` for `x ≤ 0` (or NaN) in plain arithmetic that the compiler can
/// vectorize: the `exp` of the weights is the filter's bottleneck.
///
/// Cody–Waite reduction `x = k·ln2 + r`, `|r| ≤ ln2/2`, then the degree-12
/// Taylor polynomial of `exp(r)` (truncation below 2e-16) and a scaling by
/// `2^k` built from the exponent bits. Relative error below 1e-15; exact
/// `exp(-0) = 1`; arguments below -708 (results below the normal range,
/// which cannot change a sum holding the voxel's own weight of 1) give 0,
/// `-inf` gives 0 and NaN stays NaN, as the C library's `exp` does.
#[inline(always)]
fn exp_neg(x: f64) -> f64 {
    const LOWEST: f64 = -708.0;
    const LOG2_E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: the high part has 32 trailing zero bits, so
    // k · LN2_HI is exact for every k used here.
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // Adding 1.5 · 2^52 rounds to an integer held in the low mantissa bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // 1/n! for n = 0 to 12.
    const C: [f64; 13] = [
        1.0,
        1.0,
        0.5,
        1.666_666_666_666_666_6e-1,
        4.166_666_666_666_666_4e-2,
        8.333_333_333_333_333e-3,
        1.388_888_888_888_889e-3,
        1.984_126_984_126_984e-4,
        2.480_158_730_158_73e-5,
        2.755_731_922_398_589_3e-6,
        2.755_731_922_398_589e-7,
        2.505_210_838_544_172e-8,
        2.087_675_698_786_81e-9,
    ];
    // NaN fails the comparison and flows through unchanged.
    let xc = if x < LOWEST { LOWEST } else { x };
    let t = xc * LOG2_E + ROUND;
    let k = t - ROUND;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    // Estrin's scheme: a shallow tree of independent products instead of
    // Horner's chain of 12 dependent steps, so that neighbouring elements'
    // polynomials overlap in the pipeline.
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let pair = |i: usize| C[i] + C[i + 1] * r;
    let low = pair(0) + pair(2) * r2;
    let mid = pair(4) + pair(6) * r2;
    let high = pair(8) + pair(10) * r2;
    let p = (low + mid * r4) + (high + C[12] * r4) * r8;
    let k_int = t.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f64::from_bits(k_int.wrapping_add(1023) << 52);
    if x < LOWEST {
        0.0
    } else {
        p * scale
    }
}

/// A half-open box of sample coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Region {
    lo: [usize; 3],
    hi: [usize; 3],
}

impl Region {
    fn extent(&self, axis: usize) -> usize {
        self.hi[axis] - self.lo[axis]
    }

    fn len(&self) -> usize {
        (0..3).map(|a| self.extent(a)).product()
    }
}

/// The smallest box of core voxels holding every mask voxel, if any.
fn mask_bounds(mask: ArrayView3<'_, bool>) -> Option<Region> {
    let mut lo = [usize::MAX; 3];
    let mut hi = [0; 3];
    for ((i, j, k), &m) in mask.indexed_iter() {
        if m {
            for (a, c) in [i, j, k].into_iter().enumerate() {
                lo[a] = lo[a].min(c);
                hi[a] = hi[a].max(c + 1);
            }
        }
    }
    (lo[0] != usize::MAX).then_some(Region { lo, hi })
}

/// The 364 offsets of one half-space (`o > 0` lexicographically on
/// `(z, y, x)`), in the fixed order every voxel accumulates them.
fn half_space() -> Vec<[isize; 3]> {
    let s = SEARCH as isize;
    let mut out = Vec::with_capacity(364);
    for oz in 0..=s {
        for oy in -s..=s {
            for ox in -s..=s {
                if (oz, oy, ox) > (0, 0, 0) {
                    out.push([ox, oy, oz]);
                }
            }
        }
    }
    out
}

/// Runs the filter over every mask voxel of the core of `values`.
fn denoise(
    values: &Grid,
    sigma: &SigmaGrid,
    mask: ArrayView3<'_, bool>,
    rician: bool,
) -> Result<Array3<f32>> {
    let shape = mask.dim();
    let mut out = Array3::<f32>::zeros(shape.f());
    let Some(bounds) = mask_bounds(mask) else {
        return Ok(out);
    };
    let filter = Filter {
        values,
        squares: values.map(|v| v * v),
        scale: Scale::new(sigma),
        sigma,
        offsets: half_space(),
    };
    let mut work = Work::default();
    let r = BLOCK_RADIUS;
    for z0 in (bounds.lo[2]..bounds.hi[2]).step_by(TILE[2]) {
        for y0 in (bounds.lo[1]..bounds.hi[1]).step_by(TILE[1]) {
            for x0 in (bounds.lo[0]..bounds.hi[0]).step_by(TILE[0]) {
                let lo = [x0, y0, z0];
                let hi = [0, 1, 2].map(|a| (lo[a] + TILE[a]).min(bounds.hi[a]));
                // Shrink the box to its own mask voxels: work scales with it.
                let part = mask.slice(s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]);
                let Some(inner) = mask_bounds(part) else {
                    continue;
                };
                let tile = Region {
                    lo: [0, 1, 2].map(|a| lo[a] + inner.lo[a] + r),
                    hi: [0, 1, 2].map(|a| lo[a] + inner.hi[a] + r),
                };
                filter.accumulate(tile, &mut work);
                filter.finish(tile, &work, mask, rician, &mut out);
            }
        }
    }
    Ok(out)
}

/// Everything the per-offset passes read.
struct Filter<'a> {
    values: &'a Grid,
    squares: Grid,
    scale: Scale,
    sigma: &'a SigmaGrid,
    offsets: Vec<[isize; 3]>,
}

/// Buffers reused from tile to tile.
#[derive(Default)]
struct Work {
    /// Σ W per voxel of the tile.
    sum_w: Vec<f64>,
    /// Σ W · x_c² per voxel of the tile.
    sum_wx2: Vec<f64>,
    /// One row of squared differences, one voxel wider on each side.
    diff: Vec<f64>,
    /// Squared differences summed along x, for the rows of one plane.
    along_x: Vec<f64>,
    /// Ring of three planes summed along x and y (z-1, z, z+1).
    along_xy: [Vec<f64>; 3],
    /// Ring of weight planes towards the candidate `a + o`, enough to reach
    /// back `SEARCH` planes.
    forward: [Vec<f64>; SEARCH + 1],
    /// Same towards the candidate `a` (only differs with per-voxel sigma).
    backward: [Vec<f64>; SEARCH + 1],
}

/// Zeroes `v` to `len` elements.
fn resize(v: &mut Vec<f64>, len: usize) {
    v.clear();
    v.resize(len, 0.0);
}

/// Makes `v` at least `len` long, keeping (stale) contents.
fn grow(v: &mut Vec<f64>, len: usize) {
    if v.len() < len {
        v.resize(len, 0.0);
    }
}

impl Filter<'_> {
    /// Fills `work.sum_w` / `work.sum_wx2` for the voxels of `tile`, with
    /// the widest vectors the CPU offers.
    fn accumulate(&self, tile: Region, work: &mut Work) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `accumulate_avx2` needs AVX2, which the CPU was just
            // found to have.
            unsafe { self.accumulate_avx2(tile, work) };
            return;
        }
        self.accumulate_portable(tile, work);
    }

    /// [`Self::accumulate_portable`] compiled for AVX2 (4 lanes of f64
    /// instead of SSE2's 2). It performs the same IEEE operations in the
    /// same order (Rust never fuses a multiply and an add), so both builds
    /// give the same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn accumulate_avx2(&self, tile: Region, work: &mut Work) {
        self.accumulate_portable(tile, work);
    }

    /// The accumulation itself; inlined into each build above.
    #[inline(always)]
    fn accumulate_portable(&self, tile: Region, work: &mut Work) {
        let n = tile.len();
        resize(&mut work.sum_w, n);
        resize(&mut work.sum_wx2, n);
        // Plane buffers for the widest span of any offset; each offset then
        // writes every element it reads, so they need no clearing.
        let (mx, my) = (tile.extent(0) + SEARCH, tile.extent(1) + SEARCH);
        grow(&mut work.diff, mx + 2);
        grow(&mut work.along_x, mx * (my + 2));
        let per_voxel = matches!(self.scale, Scale::PerVoxel(_));
        let rings = work.along_xy.iter_mut().chain(&mut work.forward);
        for p in rings.chain(work.backward.iter_mut().filter(|_| per_voxel)) {
            grow(p, mx * my);
        }
        self.add_offset([0, 0, 0], tile, work);
        for &o in &self.offsets {
            self.add_offset(o, tile, work);
        }
    }

    /// Adds the weights of offset `o` to every voxel `v` of `tile`: the
    /// pair `(v, v + o)` ("forward") and, unless `o` is 0, the pair
    /// `(v - o, v)` ("backward"), in that order.
    #[inline(always)]
    fn add_offset(&self, o: [isize; 3], tile: Region, work: &mut Work) {
        let self_pair = o == [0, 0, 0];
        // The pairs (a, a + o) needed: a in the tile or a + o in the tile.
        let mut span = tile;
        for ((lo, hi), &o) in span.lo.iter_mut().zip(&mut span.hi).zip(&o) {
            if o > 0 {
                *lo -= o as usize;
            } else {
                *hi += o.unsigned_abs();
            }
        }
        let oz = o[2] as usize;
        // Planes z - 1 and z of the first pair plane prime the ring.
        self.patch_plane(o, span, span.lo[2] - 1, work);
        self.patch_plane(o, span, span.lo[2], work);
        for az in span.lo[2]..span.hi[2] {
            self.patch_plane(o, span, az + 1, work);
            self.weight_plane(o, span, az, work);
            if (tile.lo[2]..tile.hi[2]).contains(&az) {
                self.add_plane(o, self_pair, tile, span, az, oz, work);
            }
        }
    }

    /// Computes into the ring the squared differences of plane `z`, summed
    /// over x and y neighbours, for every pair origin `a` of `span`.
    #[inline(always)]
    fn patch_plane(&self, o: [isize; 3], span: Region, z: usize, work: &mut Work) {
        let wx = span.extent(0);
        let wy = span.extent(1);
        let x0 = span.lo[0] - 1;
        let xo = (x0 as isize + o[0]) as usize;
        let zo = (z as isize + o[2]) as usize;
        for (r, y) in (span.lo[1] - 1..span.hi[1] + 1).enumerate() {
            let yo = (y as isize + o[1]) as usize;
            let a = self.values.row(x0, y, z, wx + 2);
            let b = self.values.row(xo, yo, zo, wx + 2);
            for ((d, &a), &b) in work.diff.iter_mut().zip(a).zip(b) {
                let t = a - b;
                *d = t * t;
            }
            let d = &work.diff;
            sum3(
                &d[..wx],
                &d[1..wx + 1],
                &d[2..wx + 2],
                &mut work.along_x[r * wx..(r + 1) * wx],
            );
        }
        let out = &mut work.along_xy[z % 3];
        for r in 0..wy {
            let ax = &work.along_x;
            sum3(
                &ax[r * wx..(r + 1) * wx],
                &ax[(r + 1) * wx..(r + 2) * wx],
                &ax[(r + 2) * wx..(r + 3) * wx],
                &mut out[r * wx..(r + 1) * wx],
            );
        }
    }

    /// Turns the patch distances of pair plane `az` into weights.
    #[inline(always)]
    fn weight_plane(&self, o: [isize; 3], span: Region, az: usize, work: &mut Work) {
        let [below, here, above] = [az - 1, az, az + 1].map(|z| z % 3);
        let ring = &work.along_xy;
        let (q0, q1, q2) = (&ring[below], &ring[here], &ring[above]);
        let slot = az % (SEARCH + 1);
        let plane = span.extent(0) * span.extent(1);
        match &self.scale {
            Scale::Constant(k) => {
                let k = *k;
                let w = &mut work.forward[slot][..plane];
                let (q0, q1, q2) = (&q0[..plane], &q1[..plane], &q2[..plane]);
                for (((w, &a), &b), &c) in w.iter_mut().zip(q0).zip(q1).zip(q2) {
                    *w = exp_neg(((a + b) + c) * k);
                }
            }
            Scale::PerVoxel(scale) => {
                let wx = span.extent(0);
                let zo = (az as isize + o[2]) as usize;
                let xo = (span.lo[0] as isize + o[0]) as usize;
                for (r, y) in (span.lo[1]..span.hi[1]).enumerate() {
                    let yo = (y as isize + o[1]) as usize;
                    let rows = r * wx..(r + 1) * wx;
                    // Forward: the candidate is a + o; backward: it is a.
                    let k_fwd = scale.row(xo, yo, zo, wx);
                    let k_bwd = scale.row(span.lo[0], y, az, wx);
                    let fw = &mut work.forward[slot][rows.clone()];
                    let bw = &mut work.backward[slot][rows.clone()];
                    let (q0, q1, q2) = (&q0[rows.clone()], &q1[rows.clone()], &q2[rows]);
                    for i in 0..wx {
                        let d = (q0[i] + q1[i]) + q2[i];
                        fw[i] = exp_neg(d * k_fwd[i]);
                        bw[i] = exp_neg(d * k_bwd[i]);
                    }
                }
            }
        }
    }

    /// Adds the weights of offset `o` to the tile's plane `vz`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn add_plane(
        &self,
        o: [isize; 3],
        self_pair: bool,
        tile: Region,
        span: Region,
        vz: usize,
        oz: usize,
        work: &mut Work,
    ) {
        let (tx, ty) = (tile.extent(0), tile.extent(1));
        let wx = span.extent(0);
        let fwd_plane = &work.forward[vz % (SEARCH + 1)];
        let bwd_ring = if matches!(self.scale, Scale::PerVoxel(_)) {
            &work.backward
        } else {
            &work.forward
        };
        let bwd_plane = &bwd_ring[(vz - oz) % (SEARCH + 1)];
        let x_fwd = (tile.lo[0] as isize + o[0]) as usize;
        let x_bwd = (tile.lo[0] as isize - o[0]) as usize;
        let z_fwd = vz + oz;
        let z_bwd = vz - oz;
        let acc0 = (vz - tile.lo[2]) * tx * ty;
        for (r, y) in (tile.lo[1]..tile.hi[1]).enumerate() {
            let acc = acc0 + r * tx..acc0 + (r + 1) * tx;
            let sw = &mut work.sum_w[acc.clone()];
            let sx = &mut work.sum_wx2[acc];
            // Weight of pair (v, v + o), stored at a = v.
            let f_at = (y - span.lo[1]) * wx + (tile.lo[0] - span.lo[0]);
            let wf = &fwd_plane[f_at..f_at + tx];
            let y_fwd = (y as isize + o[1]) as usize;
            let xf = self.squares.row(x_fwd, y_fwd, z_fwd, tx);
            if self_pair {
                for (((sw, sx), &w), &x2) in sw.iter_mut().zip(sx.iter_mut()).zip(wf).zip(xf) {
                    *sw += w;
                    *sx += w * x2;
                }
                continue;
            }
            // Weight of pair (v - o, v), stored at a = v - o.
            let y_bwd = (y as isize - o[1]) as usize;
            let b_at = (y_bwd - span.lo[1]) * wx + (x_bwd - span.lo[0]);
            let wb = &bwd_plane[b_at..b_at + tx];
            let xb = self.squares.row(x_bwd, y_bwd, z_bwd, tx);
            for i in 0..tx {
                sw[i] += wf[i];
                sx[i] += wf[i] * xf[i];
                sw[i] += wb[i];
                sx[i] += wb[i] * xb[i];
            }
        }
    }

    /// Writes the tile's mask voxels: normalisation, Rician correction,
    /// square root, f32.
    fn finish(
        &self,
        tile: Region,
        work: &Work,
        mask: ArrayView3<'_, bool>,
        rician: bool,
        out: &mut Array3<f32>,
    ) {
        let r = BLOCK_RADIUS;
        let mut i = 0;
        for z in tile.lo[2]..tile.hi[2] {
            for y in tile.lo[1]..tile.hi[1] {
                for x in tile.lo[0]..tile.hi[0] {
                    let (sw, sx) = (work.sum_w[i], work.sum_wx2[i]);
                    i += 1;
                    let v = [x - r, y - r, z - r];
                    if !mask[v] {
                        continue;
                    }
                    let mut value = if sw > 0.0 {
                        sx / sw
                    } else if self.nonfinite_candidate(x, y, z) {
                        // DIPY: every normalised weight is 0, and 0 · inf is NaN.
                        f64::NAN
                    } else {
                        0.0
                    };
                    if rician {
                        let s = match self.sigma {
                            SigmaGrid::Constant(s) => *s,
                            SigmaGrid::PerVoxel(g) => g.data[g.index(x, y, z)],
                        };
                        value -= 2.0 * (s * s);
                        if value < 0.0 {
                            value = 0.0;
                        }
                    }
                    out[v] = value.sqrt() as f32;
                }
            }
        }
    }

    /// Whether a candidate centre of voxel `(x, y, z)` is NaN or infinite.
    fn nonfinite_candidate(&self, x: usize, y: usize, z: usize) -> bool {
        let s = SEARCH;
        (z - s..=z + s).any(|cz| {
            (y - s..=y + s).any(|cy| {
                self.values
                    .row(x - s, cy, cz, 2 * s + 1)
                    .iter()
                    .any(|v| !v.is_finite())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_neg_matches_the_c_library() {
        let mut worst: f64 = 0.0;
        let mut x = 0.0;
        while x > -708.0 {
            let (got, want) = (exp_neg(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
            x -= 0.001_234_567;
        }
        assert!(worst < 1e-15, "worst relative error {worst:e}");
        assert_eq!(exp_neg(-0.0), 1.0);
        assert_eq!(exp_neg(0.0), 1.0);
        assert_eq!(exp_neg(-709.0), 0.0);
        assert_eq!(exp_neg(f64::NEG_INFINITY), 0.0);
        assert!(exp_neg(f64::NAN).is_nan());
    }

    #[test]
    fn vector_builds_give_the_same_bits() {
        let shape = (20, 18, 12);
        let volume = Array3::from_shape_fn(shape, |(x, y, z)| {
            ((x * 31 + y * 17 + z * 7) % 23) as f32 * 9.5 + 100.0
        });
        let values = Grid::reflect_padded(volume.view(), f64::from);
        let sigma = SigmaGrid::Constant(12.0);
        let filter = Filter {
            values: &values,
            squares: values.map(|v| v * v),
            scale: Scale::new(&sigma),
            sigma: &sigma,
            offsets: half_space(),
        };
        let tile = Region {
            lo: [5, 5, 5],
            hi: [25, 23, 17],
        };
        let (mut dispatched, mut portable) = (Work::default(), Work::default());
        filter.accumulate(tile, &mut dispatched);
        filter.accumulate_portable(tile, &mut portable);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&dispatched.sum_w), bits(&portable.sum_w));
        assert_eq!(bits(&dispatched.sum_wx2), bits(&portable.sum_wx2));
    }

    #[test]
    fn half_space_pairs_every_other_offset_once() {
        let h = half_space();
        assert_eq!(h.len(), 364);
        for o in &h {
            assert!(!h.contains(&o.map(|c| -c)));
        }
    }
}
