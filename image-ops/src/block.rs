//! Cutting volumes into a grid of blocks and putting block results back: the
//! geometry the engine uses to spread one volume's (or one subject's) work
//! over tasks.
//!
//! * Denoising a block needs its neighbourhood: [`extract_with_halo`] takes
//!   the halo from the reflect-padded volume (numpy's `reflect`, the
//!   filter's own edge rule), so that `nlmeans::nlmeans_with_halo` on every
//!   block, put back with [`stitch`] (or [`place`]), equals the whole-volume
//!   result bit for bit.
//! * The tensor fit needs each voxel's full series: [`extract_values`] cuts
//!   one volume's block into a flat list, [`SeriesBlock::from_volumes`]
//!   regroups the lists of all volumes into voxel series, and
//!   [`place_values`] writes per-voxel results (FA, MD) back into a volume.
//!
//! Inside a block, voxels are always listed x fastest, then y, then z (the
//! NIfTI order): see [`Region::voxels`].

use ndarray::{Array3, ArrayView3, ArrayView4, ShapeBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{ImageError, Result};
use crate::volume::reflect_index_numpy;

/// A box of voxels, `start[a] .. end[a]` on axis `a` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    /// First voxel on each axis.
    pub start: [usize; 3],
    /// One past the last voxel on each axis.
    pub end: [usize; 3],
}

impl Region {
    /// Voxels along each axis.
    pub fn shape(&self) -> [usize; 3] {
        [0, 1, 2].map(|a| self.end[a].saturating_sub(self.start[a]))
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the region holds no voxel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The region's voxels, x fastest, then y, then z: the order of every
    /// flat list of block values in this module.
    pub fn voxels(&self) -> impl Iterator<Item = [usize; 3]> + '_ {
        (self.start[2]..self.end[2]).flat_map(move |z| {
            (self.start[1]..self.end[1])
                .flat_map(move |y| (self.start[0]..self.end[0]).map(move |x| [x, y, z]))
        })
    }

    /// Errors unless the region lies inside a volume of `shape`.
    fn check_inside(&self, shape: [usize; 3], what: &'static str) -> Result<()> {
        if (0..3).all(|a| self.start[a] <= self.end[a] && self.end[a] <= shape[a]) {
            Ok(())
        } else {
            Err(ImageError::invalid(
                what,
                format!("region {self:?} is not inside a volume of shape {shape:?}"),
            ))
        }
    }
}

/// A block's number in its grid: x fastest, then y, then z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockId(pub usize);

/// A volume of `shape` cut into `blocks_per_axis` blocks on each axis. As
/// numpy's `array_split`, the first `n % k` blocks of an axis of `n` voxels
/// in `k` blocks are one voxel longer than the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockGrid {
    shape: [usize; 3],
    blocks: [usize; 3],
}

impl BlockGrid {
    /// A grid of `blocks_per_axis` blocks over a volume of `shape`. Errors
    /// unless every axis has at least one voxel per block.
    pub fn new(shape: [usize; 3], blocks_per_axis: [usize; 3]) -> Result<BlockGrid> {
        if (0..3).any(|a| blocks_per_axis[a] == 0 || blocks_per_axis[a] > shape[a]) {
            return Err(ImageError::invalid(
                "BlockGrid::new",
                format!(
                    "cannot cut shape {shape:?} into {blocks_per_axis:?} non-empty blocks per axis"
                ),
            ));
        }
        Ok(BlockGrid {
            shape,
            blocks: blocks_per_axis,
        })
    }

    /// A grid of at most `blocks_per_axis` blocks: `min(k, shape[a])` on
    /// axis `a`, so that a fixed request (the pipeline's 4×4×4) adapts to
    /// thin volumes (a 16×16×1 slice gets 4×4×1 blocks). Errors on an axis
    /// of 0 voxels or a request of 0 blocks.
    pub fn at_most(shape: [usize; 3], blocks_per_axis: [usize; 3]) -> Result<BlockGrid> {
        if (0..3).any(|a| shape[a] == 0 || blocks_per_axis[a] == 0) {
            return Err(ImageError::invalid(
                "BlockGrid::at_most",
                format!(
                    "cannot cut shape {shape:?} into {blocks_per_axis:?} blocks per axis: \
                     every axis needs a voxel and a block"
                ),
            ));
        }
        BlockGrid::new(shape, [0, 1, 2].map(|a| blocks_per_axis[a].min(shape[a])))
    }

    /// The volume's shape.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Blocks along each axis.
    pub fn blocks_per_axis(&self) -> [usize; 3] {
        self.blocks
    }

    /// Number of blocks (at least 1).
    pub fn len(&self) -> usize {
        self.blocks.iter().product()
    }

    /// Always false: a grid has at least one block.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every block id, in order.
    pub fn ids(&self) -> impl Iterator<Item = BlockId> {
        (0..self.len()).map(BlockId)
    }

    /// Every block with its region, in id order.
    pub fn blocks(&self) -> impl Iterator<Item = (BlockId, Region)> + '_ {
        self.ids().map(move |id| (id, self.cell(id)))
    }

    /// The region of block `id`. Errors on an id past the grid.
    pub fn region(&self, id: BlockId) -> Result<Region> {
        if id.0 >= self.len() {
            return Err(ImageError::invalid(
                "BlockGrid::region",
                format!("block {} of a grid of {} blocks", id.0, self.len()),
            ));
        }
        Ok(self.cell(id))
    }

    /// The block holding `voxel`. Errors on a voxel outside the volume.
    pub fn block_of(&self, voxel: [usize; 3]) -> Result<BlockId> {
        if (0..3).any(|a| voxel[a] >= self.shape[a]) {
            return Err(ImageError::invalid(
                "BlockGrid::block_of",
                format!("voxel {voxel:?} outside shape {:?}", self.shape),
            ));
        }
        let index = [0, 1, 2].map(|a| {
            let (n, k) = (self.shape[a], self.blocks[a]);
            let (base, extra) = (n / k, n % k);
            // The first `extra` blocks have `base + 1` voxels.
            let long = extra * (base + 1);
            if voxel[a] < long {
                voxel[a] / (base + 1)
            } else {
                extra + (voxel[a] - long) / base
            }
        });
        Ok(BlockId(
            index[0] + self.blocks[0] * (index[1] + self.blocks[1] * index[2]),
        ))
    }

    fn cell(&self, id: BlockId) -> Region {
        let index = [
            id.0 % self.blocks[0],
            id.0 / self.blocks[0] % self.blocks[1],
            id.0 / (self.blocks[0] * self.blocks[1]),
        ];
        let bound = |a: usize, i: usize| {
            let (n, k) = (self.shape[a], self.blocks[a]);
            i * (n / k) + i.min(n % k)
        };
        Region {
            start: [0, 1, 2].map(|a| bound(a, index[a])),
            end: [0, 1, 2].map(|a| bound(a, index[a] + 1)),
        }
    }
}

fn dims(volume: &ArrayView3<'_, impl Sized>) -> [usize; 3] {
    let (x, y, z) = volume.dim();
    [x, y, z]
}

/// A copy of `region` of `volume`, x-fastest.
pub fn extract<T: Copy>(volume: ArrayView3<'_, T>, region: Region) -> Result<Array3<T>> {
    extract_with_halo(volume, region, 0)
}

/// `region` of `volume` grown by `halo` voxels on every side, the voxels
/// beyond the volume's edge taken from its numpy-`reflect` padding
/// (reflecting again as often as needed), x-fastest. With `halo` =
/// `nlmeans::BLOCK_RADIUS` this is what `nlmeans::nlmeans_with_halo` reads.
pub fn extract_with_halo<T: Copy>(
    volume: ArrayView3<'_, T>,
    region: Region,
    halo: usize,
) -> Result<Array3<T>> {
    let shape = dims(&volume);
    region.check_inside(shape, "extract_with_halo")?;
    // Padding reads the volume, which must then hold a voxel.
    if halo > 0 && shape.contains(&0) {
        return Err(ImageError::invalid(
            "extract_with_halo",
            format!("cannot pad an empty volume of shape {shape:?}"),
        ));
    }
    let h = halo as isize;
    let table = |a: usize| -> Vec<usize> {
        (region.start[a] as isize - h..region.end[a] as isize + h)
            .map(|i| reflect_index_numpy(i, shape[a]))
            .collect()
    };
    let (tx, ty, tz) = (table(0), table(1), table(2));
    let mut data = Vec::with_capacity(tx.len() * ty.len() * tz.len());
    for &k in &tz {
        for &j in &ty {
            data.extend(tx.iter().map(|&i| volume[[i, j, k]]));
        }
    }
    Ok(
        Array3::from_shape_vec((tx.len(), ty.len(), tz.len()).f(), data)
            .expect("the tables give the shape"),
    )
}

/// Writes `block` into `region` of `dest`; the shapes must agree.
pub fn place<T: Copy>(
    dest: &mut Array3<T>,
    region: Region,
    block: ArrayView3<'_, T>,
) -> Result<()> {
    region.check_inside(dims(&dest.view()), "place")?;
    if dims(&block) != region.shape() {
        return Err(ImageError::invalid(
            "place",
            format!("block of shape {:?} for region {region:?}", block.dim()),
        ));
    }
    let [sx, sy, sz] = region.start;
    for v in region.voxels() {
        dest[v] = block[[v[0] - sx, v[1] - sy, v[2] - sz]];
    }
    Ok(())
}

/// Puts a whole grid's blocks back together: each block of `grid` must come
/// exactly once (in any order), shaped like its region.
pub fn stitch<T: Copy + Default>(
    grid: &BlockGrid,
    blocks: impl IntoIterator<Item = (BlockId, Array3<T>)>,
) -> Result<Array3<T>> {
    let [x, y, z] = grid.shape();
    let mut out = Array3::from_elem((x, y, z).f(), T::default());
    let mut seen = vec![false; grid.len()];
    for (id, block) in blocks {
        let region = grid.region(id)?;
        if std::mem::replace(&mut seen[id.0], true) {
            return Err(ImageError::invalid(
                "stitch",
                format!("block {} given twice", id.0),
            ));
        }
        place(&mut out, region, block.view())?;
    }
    match seen.iter().position(|&s| !s) {
        Some(missing) => Err(ImageError::invalid(
            "stitch",
            format!("block {missing} of {} is missing", grid.len()),
        )),
        None => Ok(out),
    }
}

/// One volume's values in `region`, as a flat list in [`Region::voxels`]
/// order: what a volume contributes to a block when the engine regroups
/// voxels for the tensor fit.
pub fn extract_values<T: Copy>(volume: ArrayView3<'_, T>, region: Region) -> Result<Vec<T>> {
    region.check_inside(dims(&volume), "extract_values")?;
    Ok(region.voxels().map(|v| volume[v]).collect())
}

/// Writes a flat list of per-voxel values (in [`Region::voxels`] order)
/// into `region` of `dest`: how FA or MD of one block goes back into its
/// map.
pub fn place_values<T: Copy>(dest: &mut Array3<T>, region: Region, values: &[T]) -> Result<()> {
    region.check_inside(dims(&dest.view()), "place_values")?;
    if values.len() != region.len() {
        return Err(ImageError::invalid(
            "place_values",
            format!(
                "{} values for the {} voxels of {region:?}",
                values.len(),
                region.len()
            ),
        ));
    }
    for (v, &value) in region.voxels().zip(values) {
        dest[v] = value;
    }
    Ok(())
}

/// The full series of every voxel of a block, voxel after voxel
/// (`series[v * n_volumes + t]` is volume `t` at voxel `v` of
/// [`Region::voxels`]): the input of `dti::TensorModel::fit_series`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesBlock {
    /// Where the block lies.
    pub region: Region,
    /// Values per voxel.
    pub n_volumes: usize,
    /// The series, voxel after voxel.
    pub series: Vec<f32>,
}

impl SeriesBlock {
    /// Regroups the per-volume lists of one block (each from
    /// [`extract_values`], tagged with its volume index, in any order) into
    /// voxel series. Errors on a missing, repeated or out-of-range volume
    /// and on a list of the wrong length.
    pub fn from_volumes<'a>(
        region: Region,
        n_volumes: usize,
        parts: impl IntoIterator<Item = (usize, &'a [f32])>,
    ) -> Result<SeriesBlock> {
        let voxels = region.len();
        let mut series = vec![0f32; voxels * n_volumes];
        let mut seen = vec![false; n_volumes];
        for (t, values) in parts {
            if t >= n_volumes || seen[t] {
                return Err(ImageError::invalid(
                    "SeriesBlock::from_volumes",
                    format!("volume {t} is out of range or repeated ({n_volumes} volumes)"),
                ));
            }
            if values.len() != voxels {
                return Err(ImageError::invalid(
                    "SeriesBlock::from_volumes",
                    format!("volume {t} has {} values for {voxels} voxels", values.len()),
                ));
            }
            seen[t] = true;
            for (v, &value) in values.iter().enumerate() {
                series[v * n_volumes + t] = value;
            }
        }
        if let Some(t) = seen.iter().position(|&s| !s) {
            return Err(ImageError::invalid(
                "SeriesBlock::from_volumes",
                format!("volume {t} is missing"),
            ));
        }
        Ok(SeriesBlock {
            region,
            n_volumes,
            series,
        })
    }

    /// The block's series read straight from a 4-D image (`[x, y, z, t]`).
    pub fn from_image(image: ArrayView4<'_, f32>, region: Region) -> Result<SeriesBlock> {
        let (x, y, z, n) = image.dim();
        region.check_inside([x, y, z], "SeriesBlock::from_image")?;
        let mut series = Vec::with_capacity(region.len() * n);
        for [i, j, k] in region.voxels() {
            series.extend((0..n).map(|t| image[[i, j, k, t]]));
        }
        Ok(SeriesBlock {
            region,
            n_volumes: n,
            series,
        })
    }
}
