//! 3-D median filter equal to `scipy.ndimage.median_filter(size=2r+1,
//! mode="reflect")`, fast enough for whole-brain volumes.
//!
//! How: values are first replaced by their ranks among the volume's distinct
//! values (one sort), so the filter works on small integers; each tile of
//! lines re-ranks its own slab so its histogram stays in cache. Along each line
//! of x the window slides one voxel at a time: the (2r+1)² values of the
//! plane leaving the window are removed from a histogram over ranks and those
//! of the entering plane are added. The median is found from a two-level
//! (coarse/fine) histogram whose coarse cursor follows the median as it
//! drifts, so a query costs a few coarse steps and at most 64 fine ones.
//! A median is always one of the window's values, so repeated passes stay in
//! rank space and only the final ranks are mapped back to values.
//!
//! Edges: scipy's `reflect` (`d c b a | a b c d | d c b a`), continued
//! periodically when the window is wider than the axis, exactly as scipy's
//! `NI_InitFilterOffsets` maps offsets. (For radius ≥ 4·len on an axis of
//! length ≥ 2 scipy's mapping reads outside the array; this filter keeps
//! reflecting instead.)
//!
//! NaN: ordered above +∞ (all NaNs equal), so a window holding fewer NaNs
//! than half its size still has a finite median, and the filter is
//! deterministic. scipy's result with NaN depends on its selection order and
//! is not reproduced. Infinities are ordinary values. `-0.0` sorts just
//! below `+0.0`.

use ndarray::{Array3, ArrayView3, ShapeBuilder};

use crate::error::{ImageError, Result};
use crate::volume::reflect_index_scipy;

/// A voxel type the median filter can order: `f32` or `f64`.
pub trait MedianSample: Copy + Send + Sync + 'static {
    /// An unsigned key whose order is the value order described in the
    /// module docs (NaN largest).
    fn order_key(self) -> u64;
}

impl MedianSample for f32 {
    fn order_key(self) -> u64 {
        if self.is_nan() {
            return u64::MAX;
        }
        let b = self.to_bits();
        u64::from(if b & 0x8000_0000 != 0 {
            !b
        } else {
            b | 0x8000_0000
        })
    }
}

impl MedianSample for f64 {
    fn order_key(self) -> u64 {
        if self.is_nan() {
            return u64::MAX;
        }
        let b = self.to_bits();
        if b & (1 << 63) != 0 {
            !b
        } else {
            b | (1 << 63)
        }
    }
}

/// One pass of the median filter with a cubic window of side `2 * radius + 1`
/// (radius at most 19). The result has the input's type and shape, in
/// x-fastest ("Fortran") memory order.
pub fn median_filter<T: MedianSample>(
    volume: ArrayView3<'_, T>,
    radius: usize,
) -> Result<Array3<T>> {
    median_filter_passes(volume, radius, 1)
}

/// `passes` successive median filters, each reading the previous pass's
/// output (DIPY's `multi_median`). `passes == 0` returns a copy.
pub fn median_filter_passes<T: MedianSample>(
    volume: ArrayView3<'_, T>,
    radius: usize,
    passes: usize,
) -> Result<Array3<T>> {
    let (nx, ny, nz) = volume.dim();
    if nx == 0 || ny == 0 || nz == 0 {
        return Err(ImageError::invalid(
            "median_filter",
            format!("empty volume of shape {:?}", volume.dim()),
        ));
    }
    let n = nx * ny * nz;
    if n > u32::MAX as usize {
        return Err(ImageError::invalid(
            "median_filter",
            format!("{n} voxels exceed the 2^32 this filter ranks"),
        ));
    }
    let side = radius
        .checked_mul(2)
        .and_then(|s| s.checked_add(1))
        .filter(|&s| s <= MAX_SIDE)
        .ok_or_else(|| {
            ImageError::invalid("median_filter", format!("radius {radius} is too large"))
        })?;

    let (mut ranks, values) = rank_transform(volume);
    let shape = [nx, ny, nz];
    for _ in 0..passes {
        ranks = filter_ranks(&ranks, shape, radius, side);
    }
    let out: Vec<T> = ranks.iter().map(|&r| values[r as usize]).collect();
    Array3::from_shape_vec((nx, ny, nz).f(), out)
        .map_err(|e| ImageError::invalid("median_filter", e.to_string()))
}

/// Replaces each voxel by its rank among the distinct values (x fastest),
/// and returns the distinct values in increasing order.
fn rank_transform<T: MedianSample>(volume: ArrayView3<'_, T>) -> (Vec<u32>, Vec<T>) {
    // `t()` iterates z, y, x with x fastest: the layout the filter slides along.
    let flat: Vec<T> = volume.t().iter().copied().collect();
    let mut keyed: Vec<(u64, u32)> = flat
        .iter()
        .enumerate()
        .map(|(i, v)| (v.order_key(), i as u32))
        .collect();
    keyed.sort_unstable();
    let mut ranks = vec![0u32; flat.len()];
    let mut values = Vec::new();
    let mut last_key = None;
    for &(key, i) in &keyed {
        if last_key != Some(key) {
            values.push(flat[i as usize]);
            last_key = Some(key);
        }
        ranks[i as usize] = (values.len() - 1) as u32;
    }
    (ranks, values)
}

/// Widest window: its (2r+1)³ values must fit the u16 histogram counts,
/// which keep the fine histogram small enough to stay in cache.
const MAX_SIDE: usize = 39;

/// log2 of the number of ranks per coarse bin.
const FINE_BITS: u32 = 6;

/// Counts of ranks in the current window, at two resolutions, plus a cursor
/// on the coarse bin that last held the median.
struct RankHistogram {
    /// Count per rank; at most `MAX_SIDE³ < 2^16`.
    fine: Vec<u16>,
    /// Count per block of `2^FINE_BITS` ranks.
    coarse: Vec<u32>,
    /// Coarse bin of the last median.
    cursor: usize,
    /// Number of window values in coarse bins before `cursor`.
    below: u32,
}

impl RankHistogram {
    fn new(n_ranks: usize) -> Self {
        RankHistogram {
            fine: vec![0; n_ranks],
            coarse: vec![0; (n_ranks >> FINE_BITS) + 1],
            cursor: 0,
            below: 0,
        }
    }

    #[inline(always)]
    fn insert(&mut self, r: u32) {
        let c = (r >> FINE_BITS) as usize;
        self.fine[r as usize] += 1;
        self.coarse[c] += 1;
        self.below += u32::from(c < self.cursor);
    }

    #[inline(always)]
    fn remove(&mut self, r: u32) {
        let c = (r >> FINE_BITS) as usize;
        self.fine[r as usize] -= 1;
        self.coarse[c] -= 1;
        self.below -= u32::from(c < self.cursor);
    }

    /// Moves the cursor back to the start; the histogram must be empty.
    fn reset(&mut self) {
        debug_assert!(self.coarse.iter().all(|&c| c == 0));
        self.cursor = 0;
        self.below = 0;
    }

    /// The rank of the `k`-th smallest value (0-based) in the window, which
    /// must hold more than `k` values.
    #[inline]
    fn kth(&mut self, k: u32) -> u32 {
        while self.below > k {
            self.cursor -= 1;
            self.below -= self.coarse[self.cursor];
        }
        while self.below + self.coarse[self.cursor] <= k {
            self.below += self.coarse[self.cursor];
            self.cursor += 1;
        }
        let mut seen = self.below;
        let start = self.cursor << FINE_BITS;
        for (r, &count) in self.fine[start..].iter().enumerate() {
            seen += u32::from(count);
            if seen > k {
                return (start + r) as u32;
            }
        }
        unreachable!("the coarse counts say the k-th rank lies in this bin")
    }
}

/// Output lines per tile along y and along z.
const TILE: usize = 16;

/// One median pass over a rank volume laid out x fastest, with the
/// machine's cores: slabs of `TILE` planes along z are independent, so
/// they are spread over scoped threads (the result does not depend on how
/// many).
fn filter_ranks(ranks: &[u32], shape: [usize; 3], radius: usize, side: usize) -> Vec<u32> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    filter_ranks_on(ranks, shape, radius, side, cores)
}

/// [`filter_ranks`] on at most `threads` threads.
fn filter_ranks_on(
    ranks: &[u32],
    [nx, ny, nz]: [usize; 3],
    radius: usize,
    side: usize,
    threads: usize,
) -> Vec<u32> {
    let pass = Pass::new([nx, ny, nz], radius, side);
    let mut out = vec![0u32; ranks.len()];
    // Slab i holds output planes i * TILE .. (i + 1) * TILE.
    let slabs: Vec<(usize, &mut [u32])> = out
        .chunks_mut(nx * ny * TILE)
        .enumerate()
        .map(|(i, c)| (i * TILE, c))
        .collect();
    let threads = threads.clamp(1, slabs.len());
    let mut shares: Vec<Vec<(usize, &mut [u32])>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, slab) in slabs.into_iter().enumerate() {
        shares[i % threads].push(slab);
    }
    let filter_share = |share: Vec<(usize, &mut [u32])>| {
        let mut work = SlabWork::new(&pass);
        for (z0, slab_out) in share {
            pass.filter_slab(ranks, z0, slab_out, &mut work);
        }
    };
    // The first share runs on this thread, the others on scoped ones.
    let mut shares = shares.into_iter();
    let first = shares.next();
    std::thread::scope(|scope| {
        for share in shares {
            scope.spawn(|| filter_share(share));
        }
        if let Some(share) = first {
            filter_share(share);
        }
    });
    out
}

/// What every slab of one pass shares: the shape, the window and the
/// reflection tables (entry i is the source index for window position
/// i - radius).
struct Pass {
    shape: [usize; 3],
    radius: usize,
    side: usize,
    xs: Vec<usize>,
    ys: Vec<usize>,
    zs: Vec<usize>,
}

/// One thread's buffers, reused from tile to tile.
struct SlabWork {
    hist: RankHistogram,
    slab: Vec<u32>,
    keyed: Vec<u64>,
    global_of_local: Vec<u32>,
    plane: Vec<usize>,
}

impl SlabWork {
    fn new(pass: &Pass) -> Self {
        let [nx, ny, nz] = pass.shape;
        let r = pass.radius;
        let slab_max = nx * (TILE.min(ny) + 2 * r) * (TILE.min(nz) + 2 * r);
        SlabWork {
            hist: RankHistogram::new(slab_max),
            slab: vec![0u32; slab_max],
            keyed: Vec::with_capacity(slab_max),
            global_of_local: Vec::with_capacity(slab_max),
            plane: Vec::with_capacity(pass.side * pass.side),
        }
    }
}

impl Pass {
    fn new(shape: [usize; 3], radius: usize, side: usize) -> Self {
        let table = |n: usize| -> Vec<usize> {
            (0..n + 2 * radius)
                .map(|i| reflect_index_scipy(i as isize - radius as isize, n))
                .collect()
        };
        Pass {
            shape,
            radius,
            side,
            xs: table(shape[0]),
            ys: table(shape[1]),
            zs: table(shape[2]),
        }
    }

    /// Filters output planes `z0 .. z0 + TILE` into `out` (those planes
    /// only), tile by tile of `TILE × TILE` lines. Each tile's input slab
    /// (its lines plus the window margin, already reflected) is re-ranked
    /// among its own distinct values, so the histogram spans at most the
    /// slab's size instead of the whole volume's distinct values and stays
    /// in cache.
    fn filter_slab(&self, ranks: &[u32], z0: usize, out: &mut [u32], w: &mut SlabWork) {
        let [nx, ny, nz] = self.shape;
        let (radius, side) = (self.radius, self.side);
        let (xs, ys, zs) = (&self.xs, &self.ys, &self.zs);
        let k = ((side * side * side) / 2) as u32;
        let tz = TILE.min(nz - z0);
        let sz = tz + 2 * radius;
        for y0 in (0..ny).step_by(TILE) {
            let ty = TILE.min(ny - y0);
            let sy = ty + 2 * radius;

            // the slab's global ranks, sorted with their slab positions
            w.keyed.clear();
            for (kk, &zsrc) in zs[z0..z0 + sz].iter().enumerate() {
                for (jj, &ysrc) in ys[y0..y0 + sy].iter().enumerate() {
                    let src = nx * (ysrc + ny * zsrc);
                    let dst = nx * (jj + sy * kk);
                    for x in 0..nx {
                        w.keyed
                            .push(u64::from(ranks[src + x]) << 32 | (dst + x) as u64);
                    }
                }
            }
            w.keyed.sort_unstable();
            w.global_of_local.clear();
            for &key in &w.keyed {
                let global = (key >> 32) as u32;
                if w.global_of_local.last() != Some(&global) {
                    w.global_of_local.push(global);
                }
                w.slab[(key & 0xffff_ffff) as usize] = (w.global_of_local.len() - 1) as u32;
            }
            w.hist.reset();
            let (hist, slab, plane) = (&mut w.hist, &w.slab, &mut w.plane);

            for k0 in 0..tz {
                for j0 in 0..ty {
                    // offsets of the (y, z) cross-section of the window in the slab
                    plane.clear();
                    for kk in k0..k0 + side {
                        for jj in j0..j0 + side {
                            plane.push(nx * (jj + sy * kk));
                        }
                    }
                    for &x in &xs[..side] {
                        for &p in plane.iter() {
                            hist.insert(slab[p + x]);
                        }
                    }
                    let line = nx * ((y0 + j0) + ny * k0);
                    for x in 0..nx {
                        out[line + x] = w.global_of_local[hist.kth(k) as usize];
                        if x + 1 < nx {
                            let (leaving, entering) = (xs[x], xs[x + side]);
                            if leaving != entering {
                                for &p in plane.iter() {
                                    hist.remove(slab[p + leaving]);
                                    hist.insert(slab[p + entering]);
                                }
                            }
                        }
                    }
                    for &x in &xs[nx - 1..nx - 1 + side] {
                        for &p in plane.iter() {
                            hist.remove(slab[p + x]);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// The definition: sort the reflected window, take the middle.
    fn brute<T: MedianSample>(v: &Array3<T>, radius: usize) -> Array3<T> {
        let (nx, ny, nz) = v.dim();
        let r = radius as isize;
        Array3::from_shape_fn((nx, ny, nz), |(x, y, z)| {
            let mut w = Vec::new();
            for dx in -r..=r {
                for dy in -r..=r {
                    for dz in -r..=r {
                        w.push(
                            v[[
                                reflect_index_scipy(x as isize + dx, nx),
                                reflect_index_scipy(y as isize + dy, ny),
                                reflect_index_scipy(z as isize + dz, nz),
                            ]],
                        );
                    }
                }
            }
            w.sort_by_key(|a| a.order_key());
            w[w.len() / 2]
        })
    }

    /// Deterministic pseudo-random volume with many ties.
    fn noise(shape: (usize, usize, usize), seed: u64, levels: u64) -> Array3<f32> {
        let mut s = seed;
        Array3::from_shape_fn(shape, |_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % levels) as f32 * 0.25 - 3.0
        })
    }

    #[test]
    fn matches_the_definition_on_odd_shapes() {
        for (i, &shape) in [
            (7, 5, 6),
            (1, 4, 9),
            (3, 1, 1),
            (1, 1, 1),
            (2, 3, 2),
            (12, 2, 1),
        ]
        .iter()
        .enumerate()
        {
            for radius in [0, 1, 2, 4] {
                let v = noise(shape, i as u64 + 7, 40);
                let got = median_filter(v.view(), radius).unwrap();
                assert_eq!(got, brute(&v, radius), "shape {shape:?} radius {radius}");
            }
        }
    }

    #[test]
    fn matches_the_definition_across_several_tiles() {
        let v = noise((6, 2 * TILE + 5, TILE + 3), 5, 100_000);
        assert_eq!(median_filter(v.view(), 2).unwrap(), brute(&v, 2));
    }

    #[test]
    fn any_number_of_threads_gives_the_same_result() {
        let v = noise((9, TILE + 3, 3 * TILE + 2), 8, 10_000);
        let (ranks, _) = rank_transform(v.view());
        let shape = [9, TILE + 3, 3 * TILE + 2];
        let one = filter_ranks_on(&ranks, shape, 2, 5, 1);
        for threads in [2, 3, 8] {
            assert_eq!(
                filter_ranks_on(&ranks, shape, 2, 5, threads),
                one,
                "{threads}"
            );
        }
    }

    #[test]
    fn two_passes_filter_the_first_pass_output() {
        let v = noise((9, 8, 7), 3, 1000);
        let once = brute(&v, 2);
        let twice = brute(&once, 2);
        assert_eq!(median_filter_passes(v.view(), 2, 2).unwrap(), twice);
    }

    #[test]
    fn works_on_f64_and_on_views_of_any_layout() {
        let v = noise((6, 5, 4), 11, 1_000_000).mapv(f64::from);
        let t = v.view().permuted_axes([2, 0, 1]).to_owned();
        let got = median_filter(t.view(), 1).unwrap();
        assert_eq!(got, brute(&t, 1));
    }

    #[test]
    fn nan_is_ordered_above_infinity() {
        let mut v = Array3::from_elem((3, 1, 1), 1.0f32);
        v[[0, 0, 0]] = f32::NAN;
        v[[2, 0, 0]] = f32::INFINITY;
        // windows: [NaN NaN 1], [NaN 1 inf], [1 inf inf]
        let got = median_filter(v.view(), 1).unwrap();
        assert!(got[[0, 0, 0]].is_nan());
        assert_eq!(got[[1, 0, 0]], f32::INFINITY);
        assert_eq!(got[[2, 0, 0]], f32::INFINITY);
    }

    #[test]
    fn radius_beyond_the_histogram_limit_is_an_error() {
        let v = Array3::from_elem((2, 2, 2), 1.0f32);
        assert!(median_filter(v.view(), 19).is_ok());
        assert!(median_filter(v.view(), 20).is_err());
        assert!(median_filter(v.view(), usize::MAX).is_err());
    }

    #[test]
    fn empty_volume_is_an_error() {
        let v = Array3::<f32>::zeros((0, 3, 3));
        assert!(median_filter(v.view(), 1).is_err());
    }
}
