//! Every kernel on volumes of any shape with at least one voxel per axis:
//! thin (10×8×2), one slice (16×16×1), one voxel (1×1×1), one voxel thick
//! (1×5×7). Each result is checked against a direct transcription of the
//! DIPY/scipy definition or a closed form, not just for not panicking.

use ember_image::block::{stitch, BlockGrid, Region, SeriesBlock};
use ember_image::dti::{Tensor, TensorModel};
use ember_image::gradients::GradientTable;
use ember_image::morphology::dilate_cross;
use ember_image::nlmeans::{nlmeans, nlmeans_with_halo, Sigma, BLOCK_RADIUS};
use ember_image::{
    block, estimate_sigma, median_filter_passes, median_otsu, otsu, reflect_index_scipy,
};
use ndarray::{Array3, Array4, Axis, ShapeBuilder};

const SHAPES: [(usize, usize, usize); 5] =
    [(10, 8, 2), (16, 16, 1), (1, 1, 1), (1, 5, 7), (3, 1, 4)];

/// Deterministic pseudo-random values (64-bit LCG) around 500.
fn noisy(shape: (usize, usize, usize), seed: u64) -> Array3<f32> {
    let mut s = seed;
    Array3::from_shape_fn(shape.f(), |(x, y, z)| {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let noise = (s >> 40) as f32 / (1u64 << 24) as f32;
        400.0 + 40.0 * ((x * 7 + y * 3 + z) % 5) as f32 + 60.0 * noise
    })
}

/// scipy's `median_filter(size=2r+1, mode="reflect")`, one voxel at a time.
fn median_brute(v: &Array3<f64>, r: usize) -> Array3<f64> {
    let (nx, ny, nz) = v.dim();
    let r = r as isize;
    Array3::from_shape_fn(v.dim(), |(x, y, z)| {
        let mut w = Vec::new();
        for dz in -r..=r {
            for dy in -r..=r {
                for dx in -r..=r {
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
        w.sort_by(f64::total_cmp);
        w[w.len() / 2]
    })
}

#[test]
fn median_filter_passes_equal_scipy_on_any_shape() {
    for shape in SHAPES {
        let v = noisy(shape, 1).mapv(f64::from);
        let once = median_brute(&v, 4);
        let twice = median_brute(&once, 4);
        assert_eq!(
            median_filter_passes(v.view(), 4, 2).unwrap(),
            twice,
            "{shape:?}"
        );
    }
}

#[test]
fn otsu_and_median_otsu_work_on_any_shape() {
    for shape in SHAPES {
        let v = noisy(shape, 2).mapv(f64::from);
        let found = median_otsu(v.view(), 4, 2, 1).unwrap();
        let filtered = median_filter_passes(v.view(), 4, 2).unwrap();
        let t = otsu(filtered.view()).unwrap();
        assert_eq!(found.threshold, t, "{shape:?}");
        let raw = filtered.mapv(|f| f > t);
        assert_eq!(found.mask, dilate_cross(raw.view(), 1), "{shape:?}");
        // A left bin edge below the maximum keeps some voxel.
        assert!(found.mask.iter().any(|&m| m), "{shape:?}");
        // DIPY's constant-image threshold: min - 0.5, so every voxel is kept.
        let c = Array3::from_elem(shape, 42.0f32);
        assert_eq!(otsu(c.view()).unwrap(), 41.5, "{shape:?}");
        let all = median_otsu(c.view(), 4, 2, 1).unwrap();
        assert!(all.mask.iter().all(|&m| m), "{shape:?}");
    }
}

#[test]
fn dilation_equals_the_cross_definition_on_any_shape() {
    for shape in SHAPES {
        let (nx, ny, nz) = shape;
        let m = Array3::from_shape_fn(shape, |(x, y, z)| (x * 3 + y * 5 + z * 7) % 11 == 0);
        let got = dilate_cross(m.view(), 1);
        let at = |x: isize, y: isize, z: isize| {
            (0..nx as isize).contains(&x)
                && (0..ny as isize).contains(&y)
                && (0..nz as isize).contains(&z)
                && m[[x as usize, y as usize, z as usize]]
        };
        let want = Array3::from_shape_fn(shape, |(x, y, z)| {
            let (x, y, z) = (x as isize, y as isize, z as isize);
            at(x, y, z)
                || at(x - 1, y, z)
                || at(x + 1, y, z)
                || at(x, y - 1, z)
                || at(x, y + 1, z)
                || at(x, y, z - 1)
                || at(x, y, z + 1)
        });
        assert_eq!(got, want, "{shape:?}");
    }
}

#[test]
fn estimate_sigma_equals_its_definition_on_any_shape() {
    for shape in SHAPES {
        let (nx, ny, nz) = shape;
        let v = noisy(shape, 3);
        let at = |x: usize, dx: isize, y: usize, dy: isize, z: usize, dz: isize| {
            f64::from(
                v[[
                    reflect_index_scipy(x as isize + dx, nx),
                    reflect_index_scipy(y as isize + dy, ny),
                    reflect_index_scipy(z as isize + dz, nz),
                ]],
            )
        };
        let mut sum = 0.0;
        for ((x, y, z), &c) in v.indexed_iter() {
            let conv = at(x, -1, y, 0, z, 0)
                + at(x, 1, y, 0, z, 0)
                + at(x, 0, y, -1, z, 0)
                + at(x, 0, y, 1, z, 0)
                + at(x, 0, y, 0, z, -1)
                + at(x, 0, y, 0, z, 1);
            let r = (6.0f64 / 7.0).sqrt() * (f64::from(c) - conv / 6.0);
            sum += r * r;
        }
        let want = (sum / v.len() as f64).sqrt();
        let got = f64::from(estimate_sigma(v.view()).unwrap());
        let close = if want == 0.0 {
            got == 0.0
        } else {
            (got - want).abs() <= 1e-6 * want
        };
        assert!(close, "{shape:?}: {got} vs {want}");
    }
}

#[test]
fn nlmeans_of_a_constant_volume_has_the_closed_form_on_any_shape() {
    // Every patch distance is 0, every weight 1, so each mask voxel is
    // sqrt(c² - 2σ²) with the Rician correction, c without it.
    let (c, sigma) = (300.0f32, 20.0);
    let want = (f64::from(c).powi(2) - 2.0 * sigma * sigma).sqrt() as f32;
    for shape in SHAPES {
        let v = Array3::from_elem(shape, c);
        let mask = Array3::from_shape_fn(shape, |(x, y, z)| (x + y + z) % 3 != 1);
        for (rician, inside) in [(true, want), (false, c)] {
            let out = nlmeans(v.view(), mask.view(), Sigma::Constant(sigma), rician).unwrap();
            for (at, &o) in out.indexed_iter() {
                let expected = if mask[at] { inside } else { 0.0 };
                assert!(
                    (o - expected).abs() <= 1e-3,
                    "{shape:?} {at:?}: {o} vs {expected}"
                );
            }
        }
    }
}

#[test]
fn nlmeans_by_adaptive_blocks_equals_the_whole_volume_on_any_shape() {
    for shape in SHAPES {
        let v = noisy(shape, 4);
        let mask = Array3::from_elem(shape, true);
        let whole = nlmeans(v.view(), mask.view(), Sigma::Constant(15.0), true).unwrap();
        assert!(whole.iter().all(|o| o.is_finite() && *o > 0.0), "{shape:?}");
        assert_eq!(
            whole,
            nlmeans(v.view(), mask.view(), Sigma::Constant(15.0), true).unwrap(),
            "{shape:?}: two runs differ"
        );
        let grid = BlockGrid::at_most([shape.0, shape.1, shape.2], [4, 4, 4]).unwrap();
        let blocks = grid.blocks().map(|(id, region)| {
            let padded = block::extract_with_halo(v.view(), region, BLOCK_RADIUS).unwrap();
            let m = block::extract(mask.view(), region).unwrap();
            let out =
                nlmeans_with_halo(padded.view(), m.view(), Sigma::Constant(15.0), true).unwrap();
            (id, out)
        });
        let stitched = stitch(&grid, blocks).unwrap();
        let same = whole
            .iter()
            .zip(&stitched)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{shape:?}: blocks differ from the whole volume");
    }
}

#[test]
fn block_grid_at_most_adapts_to_thin_volumes() {
    for (shape, want) in [
        ([10, 8, 2], [4, 4, 2]),
        ([16, 16, 1], [4, 4, 1]),
        ([1, 1, 1], [1, 1, 1]),
        ([1, 5, 7], [1, 4, 4]),
        ([145, 174, 145], [4, 4, 4]),
    ] {
        let grid = BlockGrid::at_most(shape, [4, 4, 4]).unwrap();
        assert_eq!(grid.blocks_per_axis(), want, "{shape:?}");
        assert_eq!(grid, BlockGrid::new(shape, want).unwrap());
        let covered: usize = grid.blocks().map(|(_, r)| r.len()).sum();
        assert_eq!(covered, shape.iter().product::<usize>());
        assert!(grid.blocks().all(|(_, r)| !r.is_empty()));
    }
    // `new` stays strict; `at_most` errors (never panics) on empty axes.
    assert!(BlockGrid::new([16, 16, 1], [4, 4, 4]).is_err());
    for (shape, k) in [
        ([0, 4, 4], [4, 4, 4]),
        ([4, 4, 0], [1, 1, 1]),
        ([4, 4, 4], [4, 0, 4]),
    ] {
        let e = BlockGrid::at_most(shape, k).unwrap_err().to_string();
        assert!(e.starts_with("BlockGrid::at_most"), "{e}");
    }
}

/// b0, then 10 directions at each of b = 1000 and 2000.
fn scheme() -> GradientTable {
    let mut bvals = vec![0.0];
    let mut bvecs = vec![[0.0; 3]];
    for b in [1000.0, 2000.0] {
        for i in 0..10 {
            let z = 1.0 - (i as f64 + 0.5) / 10.0;
            let r = (1.0 - z * z).sqrt();
            let phi = i as f64 * 2.399_963 + b / 1000.0;
            bvals.push(b);
            bvecs.push([r * phi.cos(), r * phi.sin(), z]);
        }
    }
    GradientTable {
        bvals,
        bvecs,
        b0_threshold: 10.0,
    }
}

#[test]
fn tensor_fit_works_on_any_shape() {
    let gtab = scheme();
    let model = TensorModel::new(&gtab).unwrap();
    // A diagonal tensor whose eigenvalues vary with the voxel.
    let evals = |x: usize, y: usize, z: usize| {
        [
            1.5e-3 + 1e-5 * x as f64,
            0.5e-3 + 1e-5 * y as f64,
            0.3e-3 + 1e-5 * z as f64,
        ]
    };
    for shape in SHAPES {
        let n = gtab.len();
        let image = Array4::from_shape_fn((shape.0, shape.1, shape.2, n).f(), |(x, y, z, t)| {
            let [a, b, c] = evals(x, y, z);
            let g = gtab.bvecs[t];
            let q = a * g[0] * g[0] + b * g[1] * g[1] + c * g[2] * g[2];
            (1000.0 * (-gtab.bvals[t] * q).exp()) as f32
        });
        let mask = Array3::from_shape_fn(shape, |(x, y, z)| (x + 2 * y + z) % 4 != 3);
        let maps = model.fit(image.view(), mask.view()).unwrap();
        // Block by block over the adaptive grid, as the pipeline does.
        let grid = BlockGrid::at_most([shape.0, shape.1, shape.2], [4, 4, 4]).unwrap();
        for (_, region) in grid.blocks() {
            let series = SeriesBlock::from_image(image.view(), region).unwrap();
            let flags: Vec<bool> = region.voxels().map(|v| mask[v]).collect();
            let tensors = model.fit_series(&series.series, &flags).unwrap();
            for (v, t) in region.voxels().zip(&tensors) {
                if !mask[v] {
                    assert_eq!(*t, Tensor::ZERO);
                    assert_eq!(maps.fa[v], 0.0);
                    continue;
                }
                let want = evals(v[0], v[1], v[2]);
                for i in 0..3 {
                    let rel = (t.evals[i] - want[i]).abs() / want[i];
                    assert!(rel < 1e-5, "{shape:?} {v:?}: {:?} vs {want:?}", t.evals);
                }
                assert_eq!(maps.fa[v], t.fa(), "{shape:?} {v:?}");
                assert_eq!(maps.md[v], t.md(), "{shape:?} {v:?}");
            }
        }
        assert_eq!(maps.evals.len_of(Axis(3)), 3);
    }
}

#[test]
fn whole_volume_region_covers_a_single_voxel() {
    let r = Region {
        start: [0; 3],
        end: [1, 1, 1],
    };
    assert_eq!(r.voxels().collect::<Vec<_>>(), [[0, 0, 0]]);
    let v = Array3::from_elem((1, 1, 1), 7.0f32);
    let padded = block::extract_with_halo(v.view(), r, BLOCK_RADIUS).unwrap();
    assert_eq!(padded.dim(), (11, 11, 11));
    assert!(padded.iter().all(|&p| p == 7.0));
}

#[test]
fn an_axis_of_zero_voxels_is_an_error_not_a_panic() {
    let gtab = scheme();
    let model = TensorModel::new(&gtab).unwrap();
    for shape in [(0, 4, 4), (4, 0, 4), (4, 4, 0)] {
        let v = Array3::<f32>::zeros(shape);
        let m = Array3::from_elem(shape, true);
        assert!(median_filter_passes(v.view(), 4, 2).is_err(), "{shape:?}");
        assert!(otsu(v.view()).is_err(), "{shape:?}");
        assert!(median_otsu(v.view(), 4, 2, 1).is_err(), "{shape:?}");
        assert!(estimate_sigma(v.view()).is_err(), "{shape:?}");
        let e = nlmeans(v.view(), m.view(), Sigma::Constant(1.0), true).unwrap_err();
        assert!(e.to_string().starts_with("nlmeans: volume"), "{e}");
        let halo = Array3::<f32>::zeros((shape.0 + 10, shape.1 + 10, shape.2 + 10));
        assert!(nlmeans_with_halo(halo.view(), m.view(), Sigma::Constant(1.0), true).is_err());
        let image = Array4::<f32>::zeros((shape.0, shape.1, shape.2, gtab.len()));
        assert!(model.fit(image.view(), m.view()).is_err(), "{shape:?}");
        assert_eq!(dilate_cross(m.view(), 1).dim(), shape);
    }
}
