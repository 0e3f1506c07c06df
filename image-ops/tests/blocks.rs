//! Block geometry, and the promise the engine relies on: kernels run block
//! by block and put back together give exactly the whole-volume result.

use ember_image::block::{
    extract, extract_values, extract_with_halo, place, place_values, stitch, BlockGrid, BlockId,
    Region, SeriesBlock,
};
use ember_image::dti::TensorModel;
use ember_image::gradients::GradientTable;
use ember_image::nlmeans::{nlmeans, nlmeans_with_halo, Sigma, BLOCK_RADIUS};
use ember_image::reflect_index_numpy;
use ndarray::{Array3, Array4, ShapeBuilder};

/// Deterministic pseudo-random values (64-bit LCG).
fn values(shape: (usize, usize, usize), seed: u64) -> Array3<f32> {
    let mut s = seed;
    Array3::from_shape_fn(shape.f(), |(x, y, z)| {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let noise = (s >> 40) as f32 / (1u64 << 24) as f32;
        200.0 + 30.0 * ((x * 7 + y * 3 + z) % 5) as f32 + 25.0 * noise
    })
}

fn mask_of(shape: (usize, usize, usize)) -> Array3<bool> {
    Array3::from_shape_fn(shape, |(x, y, z)| (x * 5 + y * 3 + z * 2) % 7 != 0)
}

#[test]
fn blocks_partition_the_volume_like_array_split() {
    for (shape, blocks) in [
        ([10, 7, 5], [3, 2, 5]),
        ([4, 4, 4], [4, 4, 4]),
        ([13, 1, 9], [4, 1, 2]),
        ([5, 6, 7], [1, 1, 1]),
    ] {
        let grid = BlockGrid::new(shape, blocks).unwrap();
        assert_eq!(grid.len(), blocks.iter().product::<usize>());
        let mut owner = Array3::from_elem((shape[0], shape[1], shape[2]), usize::MAX);
        for (id, region) in grid.blocks() {
            assert!(!region.is_empty());
            for v in region.voxels() {
                assert_eq!(owner[v], usize::MAX, "voxel {v:?} in two blocks");
                owner[v] = id.0;
                assert_eq!(grid.block_of(v).unwrap(), id);
            }
        }
        assert!(owner.iter().all(|&o| o != usize::MAX));
    }
    // array_split: 10 voxels in 3 blocks are 4, 3, 3 long.
    let grid = BlockGrid::new([10, 1, 1], [3, 1, 1]).unwrap();
    let lengths: Vec<usize> = grid.blocks().map(|(_, r)| r.shape()[0]).collect();
    assert_eq!(lengths, [4, 3, 3]);
}

#[test]
fn bad_grids_and_ids_are_errors() {
    assert!(BlockGrid::new([4, 4, 4], [5, 1, 1]).is_err());
    assert!(BlockGrid::new([4, 4, 4], [1, 0, 1]).is_err());
    let grid = BlockGrid::new([4, 4, 4], [2, 2, 2]).unwrap();
    assert!(grid.region(BlockId(8)).is_err());
    assert!(grid.block_of([4, 0, 0]).is_err());
    let vol = values((4, 4, 4), 1);
    let outside = Region {
        start: [2, 0, 0],
        end: [5, 4, 4],
    };
    assert!(extract(vol.view(), outside).is_err());
    let mut dest = Array3::<f32>::zeros((4, 4, 4));
    let region = grid.region(BlockId(0)).unwrap();
    assert!(place(&mut dest, region, vol.view()).is_err());
    assert!(place_values(&mut dest, region, &[1.0; 3]).is_err());
}

#[test]
fn stitch_needs_every_block_exactly_once() {
    let grid = BlockGrid::new([4, 3, 2], [2, 1, 2]).unwrap();
    let vol = values((4, 3, 2), 9);
    let blocks = || {
        grid.blocks()
            .map(|(id, r)| (id, extract(vol.view(), r).unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(stitch(&grid, blocks()).unwrap(), vol);
    let mut missing = blocks();
    missing.pop();
    assert!(stitch(&grid, missing).is_err());
    let mut twice = blocks();
    twice.push(twice[0].clone());
    assert!(stitch(&grid, twice).is_err());
    let mut foreign = blocks();
    foreign[0].0 = BlockId(4);
    assert!(stitch(&grid, foreign).is_err());
}

#[test]
fn halo_comes_from_the_numpy_reflect_padding() {
    let vol = values((3, 5, 2), 2);
    let region = Region {
        start: [1, 0, 0],
        end: [3, 2, 2],
    };
    let halo = 5;
    let got = extract_with_halo(vol.view(), region, halo).unwrap();
    assert_eq!(got.dim(), (12, 12, 12));
    for ((i, j, k), &v) in got.indexed_iter() {
        let src = [(i, 1, 3), (j, 0, 5), (k, 0, 2)]
            .map(|(c, start, n)| reflect_index_numpy(c as isize + start as isize - 5, n));
        assert_eq!(v, vol[src]);
    }
}

/// Denoises block by block with halos and puts the blocks back.
fn nlmeans_by_blocks(
    vol: &Array3<f32>,
    mask: &Array3<bool>,
    sigma: Option<&Array3<f64>>,
    grid: &BlockGrid,
) -> Array3<f32> {
    let mut denoised_blocks = Vec::new();
    for (id, region) in grid.blocks() {
        let padded = extract_with_halo(vol.view(), region, BLOCK_RADIUS).unwrap();
        let block_mask = extract(mask.view(), region).unwrap();
        let padded_sigma =
            sigma.map(|s| extract_with_halo(s.view(), region, BLOCK_RADIUS).unwrap());
        let sigma = match &padded_sigma {
            Some(s) => Sigma::PerVoxel(s.view()),
            None => Sigma::Constant(17.0),
        };
        let denoised = nlmeans_with_halo(padded.view(), block_mask.view(), sigma, true).unwrap();
        denoised_blocks.push((id, denoised));
    }
    // Blocks come back from tasks in any order.
    denoised_blocks.reverse();
    stitch(grid, denoised_blocks).unwrap()
}

fn bitwise_equal(a: &Array3<f32>, b: &Array3<f32>) -> bool {
    a.dim() == b.dim() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn nlmeans_blocks_stitch_to_the_whole_volume_exactly() {
    for (shape, grids) in [
        (
            (13, 11, 9),
            vec![[2, 2, 2], [3, 1, 4], [13, 11, 1], [1, 1, 1]],
        ),
        ((7, 5, 3), vec![[2, 5, 3], [7, 1, 1]]),
        ((3, 4, 2), vec![[3, 2, 2], [1, 4, 1]]),
        // Larger than the filter's internal boxes (24 voxels in y and z).
        ((9, 30, 26), vec![[1, 2, 2], [3, 1, 1]]),
        ((70, 20, 19), vec![[2, 1, 3]]),
    ] {
        let vol = values(shape, 3);
        let mask = mask_of(shape);
        let whole = nlmeans(vol.view(), mask.view(), Sigma::Constant(17.0), true).unwrap();
        for blocks in grids {
            let grid = BlockGrid::new([shape.0, shape.1, shape.2], blocks).unwrap();
            let stitched = nlmeans_by_blocks(&vol, &mask, None, &grid);
            assert!(
                bitwise_equal(&whole, &stitched),
                "{shape:?} in {blocks:?} blocks"
            );
        }
    }
}

#[test]
fn nlmeans_blocks_with_per_voxel_sigma_stitch_exactly() {
    let shape = (11, 9, 8);
    let vol = values(shape, 4);
    let mask = mask_of(shape);
    let sigma = Array3::from_shape_fn(shape, |(x, y, z)| 10.0 + (x + 2 * y + 3 * z) as f64 * 0.5);
    let whole = nlmeans(vol.view(), mask.view(), Sigma::PerVoxel(sigma.view()), true).unwrap();
    let grid = BlockGrid::new([11, 9, 8], [3, 2, 3]).unwrap();
    let stitched = nlmeans_by_blocks(&vol, &mask, Some(&sigma), &grid);
    assert!(bitwise_equal(&whole, &stitched));
}

/// A brain-like mask: an ellipsoid, so rows hold runs of every length
/// and blocks cut them anywhere.
#[test]
fn nlmeans_blocks_with_an_ellipsoid_mask_stitch_exactly() {
    let shape = (30, 28, 26);
    let vol = values(shape, 6);
    let c = |i: usize, n: usize| (2.0 * i as f64 + 1.0) / n as f64 - 1.0;
    let mask = Array3::from_shape_fn(shape, |(x, y, z)| {
        c(x, shape.0).powi(2) + c(y, shape.1).powi(2) + c(z, shape.2).powi(2) < 0.7
    });
    let sigma = Array3::from_shape_fn(shape, |(x, y, z)| 12.0 + (x + y + 2 * z) as f64 * 0.25);
    let whole = nlmeans(vol.view(), mask.view(), Sigma::Constant(17.0), true).unwrap();
    let whole_pv = nlmeans(vol.view(), mask.view(), Sigma::PerVoxel(sigma.view()), true).unwrap();
    for blocks in [[2, 3, 2], [1, 4, 5]] {
        let grid = BlockGrid::new([shape.0, shape.1, shape.2], blocks).unwrap();
        let stitched = nlmeans_by_blocks(&vol, &mask, None, &grid);
        assert!(bitwise_equal(&whole, &stitched), "{blocks:?} blocks");
        let stitched = nlmeans_by_blocks(&vol, &mask, Some(&sigma), &grid);
        assert!(
            bitwise_equal(&whole_pv, &stitched),
            "{blocks:?} blocks, per-voxel sigma"
        );
    }
}

#[test]
fn nlmeans_with_halo_rejects_a_block_without_its_halo() {
    let vol = values((6, 6, 6), 5);
    let mask = Array3::from_elem((6, 6, 6), true);
    assert!(nlmeans_with_halo(vol.view(), mask.view(), Sigma::Constant(1.0), true).is_err());
}

fn gradient_table() -> GradientTable {
    let mut bvals = vec![0.0];
    let mut bvecs = vec![[0.0; 3]];
    for i in 0..12 {
        let z = 1.0 - (i as f64 + 0.5) / 12.0;
        let r = (1.0 - z * z).sqrt();
        let phi = i as f64 * 2.399_963;
        bvals.push(1000.0);
        bvecs.push([r * phi.cos(), r * phi.sin(), z]);
    }
    GradientTable {
        bvals,
        bvecs,
        b0_threshold: 10.0,
    }
}

#[test]
fn tensor_fit_by_blocks_equals_the_whole_image_fit() {
    let gtab = gradient_table();
    let n = gtab.bvals.len();
    let shape = (9, 7, 5);
    let image = Array4::from_shape_fn((shape.0, shape.1, shape.2, n).f(), |(x, y, z, t)| {
        let [gx, gy, gz] = gtab.bvecs[t];
        let adc =
            1e-3 * (1.0 + 0.5 * gx * gx) + 2e-4 * (x as f64 * gy * gy + (y + z) as f64 * gz * gz);
        (800.0 * (-gtab.bvals[t] * adc).exp() + ((x * 13 + y * 7 + z * 3 + t) % 11) as f64) as f32
    });
    let mask = mask_of(shape);
    let model = TensorModel::new(&gtab).unwrap();
    let whole = model.fit(image.view(), mask.view()).unwrap();

    let grid = BlockGrid::new([9, 7, 5], [2, 3, 2]).unwrap();
    let volumes: Vec<Array3<f32>> = (0..n)
        .map(|t| image.index_axis(ndarray::Axis(3), t).to_owned())
        .collect();
    let mut fa = Array3::<f64>::zeros(shape.f());
    let mut md = Array3::<f64>::zeros(shape.f());
    for (_, region) in grid.blocks() {
        // What the engine shuffles: per volume, the block's values; they may
        // arrive in any order.
        let parts: Vec<(usize, Vec<f32>)> = (0..n)
            .rev()
            .map(|t| (t, extract_values(volumes[t].view(), region).unwrap()))
            .collect();
        let block =
            SeriesBlock::from_volumes(region, n, parts.iter().map(|(t, v)| (*t, v.as_slice())))
                .unwrap();
        assert_eq!(
            block,
            SeriesBlock::from_image(image.view(), region).unwrap()
        );
        let block_mask = extract_values(mask.view(), region).unwrap();
        let tensors = model.fit_series(&block.series, &block_mask).unwrap();
        let fa_values: Vec<f64> = tensors.iter().map(|t| t.fa()).collect();
        let md_values: Vec<f64> = tensors.iter().map(|t| t.md()).collect();
        place_values(&mut fa, region, &fa_values).unwrap();
        place_values(&mut md, region, &md_values).unwrap();
    }
    assert_eq!(fa, whole.fa);
    assert_eq!(md, whole.md);
}

#[test]
fn series_regrouping_rejects_missing_and_repeated_volumes() {
    let region = Region {
        start: [0, 0, 0],
        end: [2, 1, 1],
    };
    let a = [1.0f32, 2.0];
    assert!(SeriesBlock::from_volumes(region, 2, [(0, &a[..])]).is_err());
    assert!(SeriesBlock::from_volumes(region, 2, [(0, &a[..]), (0, &a[..])]).is_err());
    assert!(SeriesBlock::from_volumes(region, 2, [(0, &a[..]), (2, &a[..])]).is_err());
    assert!(SeriesBlock::from_volumes(region, 2, [(0, &a[..]), (1, &a[..1])]).is_err());
    let ok = SeriesBlock::from_volumes(region, 2, [(1, &[3.0f32, 4.0][..]), (0, &a[..])]).unwrap();
    assert_eq!(ok.series, [1.0, 3.0, 2.0, 4.0]);
}
