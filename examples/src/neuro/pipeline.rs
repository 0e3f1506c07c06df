//! The pipeline as a scientist writes it: the study's Spark plan in Ember's
//! RDD API, calling `ember-image` for the science. The helpers below the
//! driver function are the per-record steps it maps over.

use super::records::{BlockData, Vol};
use super::subject::Subject;
use crate::steps::Steps;
use ember_driver::prelude::*;
use ember_driver::Result;
use ember_image::block::{extract_values, place_values, BlockGrid, BlockId, SeriesBlock};
use ember_image::dti::TensorModel;
use ember_image::nlmeans::{nlmeans, Sigma};
use ember_image::{estimate_sigma, mean_volumes, median_otsu};
use ndarray::{Array3, ShapeBuilder};
use std::collections::HashMap;

/// What the pipeline produces for one subject.
pub struct SubjectResult {
    /// The subject's index in the input list.
    pub subject: usize,
    /// Brain mask.
    pub mask: Array3<bool>,
    /// Fractional anisotropy (0 outside the mask).
    pub fa: Array3<f32>,
    /// Mean diffusivity, mm²/s (0 outside the mask).
    pub md: Array3<f32>,
    /// Principal eigenvector per voxel (for colour FA).
    pub evec: Array3<[f32; 3]>,
    /// The denoised volumes in order, when asked for.
    pub denoised: Option<Vec<Vol>>,
}

type Key = (usize, usize);

/// The subjects, broadcast to every executor.
type SubjectsBc = Broadcast<Vec<Subject>>;

/// Each subject's brain mask, broadcast to every executor.
type MasksBc = Broadcast<HashMap<usize, Array3<bool>>>;

/// Mask, denoise and fit every subject (Mehta et al.'s Spark plan).
pub fn pipeline(
    ctx: &Context,
    subjects: &[Subject],
    keep_denoised: bool,
    steps: &mut Steps,
) -> Result<Vec<SubjectResult>> {
    let info = ctx.broadcast(subjects.to_vec())?;
    // Volumes as ((subject, volume), volume) records, one partition each.
    let keys: Vec<Key> = subjects
        .iter()
        .enumerate()
        .flat_map(|(s, x)| (0..x.volumes).map(move |v| (s, v)))
        .collect();
    let one_per_partition = Partitioner::Range {
        bounds: keys[..keys.len() - 1].to_vec(),
        ascending: true,
    };
    let volumes = ctx
        .parallelize((0..subjects.len()).collect(), subjects.len())?
        .flat_map_with(info.clone(), |info: &Broadcast<Vec<Subject>>, s: usize| {
            read_volumes(&info.value()[s], s)
        })
        .partition_by(one_per_partition)
        .cache();
    steps.time("load", || volumes.count())?;
    // Mask: mean of each subject's b0 volumes, then median_otsu; broadcast.
    let masks = steps.time("mask", || {
        volumes
            .filter_with(
                info.clone(),
                |info: &Broadcast<Vec<Subject>>, ((s, v), _): &(Key, Vol)| {
                    is_b0(&info.value()[*s], *v)
                },
            )
            .map(|((s, v), vol): (Key, Vol)| (s, (v, vol)))
            .group_by_key()
            .map_values(brain_mask)
            .collect_as_map()
    })?;
    let masks = ctx.broadcast(masks)?;
    // Denoise every volume with its own noise level.
    let denoised = volumes.map_with(
        masks.clone(),
        |m: &Broadcast<HashMap<usize, Array3<bool>>>, ((s, v), vol): (Key, Vol)| {
            ((s, v), denoise(vol, &m.value()[&s]))
        },
    );
    if keep_denoised {
        denoised.cache();
    }
    // Regroup into voxel blocks holding each voxel's full series; fit.
    let fitted = steps.time_job(ctx, &["denoise", "fit"], || {
        denoised
            .flat_map_with(
                info.clone(),
                |info: &Broadcast<Vec<Subject>>, ((s, v), vol): (Key, Vol)| {
                    cut_blocks(&info.value()[s], s, v, vol)
                },
            )
            .group_by_key_into(fit_partitions(ctx, subjects))
            .map_with((info.clone(), masks.clone()), fit_block)
            .collect()
    })?;
    let saved = if keep_denoised {
        Some(steps.time("collect denoised", || denoised.collect())?)
    } else {
        None
    };
    volumes.unpersist();
    assemble(subjects, &masks.value(), fitted, saved).map_err(|e| EmberError::Other(e.to_string()))
}

/// Partitions of the regrouping before the fit: the cores, or one per
/// 64 MiB of denoised data when that is more, so a reduce task's input
/// and its fitted output stay small whatever the number of subjects.
fn fit_partitions(ctx: &Context, subjects: &[Subject]) -> usize {
    let bytes: usize = subjects
        .iter()
        .map(|x| x.shape.iter().product::<usize>() * x.volumes * std::mem::size_of::<f32>())
        .sum();
    ctx.default_parallelism().max(bytes.div_ceil(64 << 20))
}

fn is_b0(subject: &Subject, v: usize) -> bool {
    subject.gtab.bvals[v] <= subject.gtab.b0_threshold
}

/// The volumes of one subject's image, read one at a time.
fn read_volumes(subject: &Subject, s: usize) -> impl Iterator<Item = (Key, Vol)> {
    let stream = ember_image::volumes(&subject.image)
        .unwrap_or_else(|e| ember_driver::rdd::task::throw(EmberError::Other(e.to_string())));
    stream.enumerate().map(move |(v, vol)| {
        (
            (s, v),
            Vol(vol.unwrap_or_else(|e| {
                ember_driver::rdd::task::throw(EmberError::Other(e.to_string()))
            })),
        )
    })
}

/// The spec's mask: median_otsu of the b0 mean (radius 4, 2 passes,
/// dilated once), volumes averaged in volume order.
fn brain_mask(mut b0: Vec<(usize, Vol)>) -> Array3<bool> {
    b0.sort_by_key(|(v, _)| *v);
    let mean = mean_volumes(b0.iter().map(|(_, vol)| vol.0.view())).unwrap_or_else(|e| fail(e));
    median_otsu(mean.view(), 4, 2, 1)
        .unwrap_or_else(|e| fail(e))
        .mask
}

/// Non-local means with the volume's estimated sigma (patch 1, block 5,
/// Rician correction).
fn denoise(vol: Vol, mask: &Array3<bool>) -> Vol {
    let sigma = estimate_sigma(vol.0.view()).unwrap_or_else(|e| fail(e));
    Vol(nlmeans(
        vol.0.view(),
        mask.view(),
        Sigma::Constant(f64::from(sigma)),
        true,
    )
    .unwrap_or_else(|e| fail(e)))
}

/// The grid used to regroup a subject's voxels for the fit: 4×4×4
/// blocks, as in the study's plan.
pub fn grid_of(subject: &Subject) -> BlockGrid {
    BlockGrid::new(subject.shape, [4, 4, 4]).unwrap_or_else(|e| fail(e))
}

fn cut_blocks(subject: &Subject, s: usize, v: usize, vol: Vol) -> Vec<(Key, (usize, BlockData))> {
    grid_of(subject)
        .blocks()
        .map(|(BlockId(b), region)| {
            let values = extract_values(vol.0.view(), region).unwrap_or_else(|e| fail(e));
            ((s, b), (v, BlockData(values)))
        })
        .collect()
}

/// The fitted maps of one block, in the block's voxel order.
type BlockFit = (Vec<f32>, Vec<f32>, Vec<[f32; 3]>);

/// Regroups one block's per-volume pieces into voxel series and fits a
/// tensor in every masked voxel.
fn fit_block(
    env: &(SubjectsBc, MasksBc),
    ((s, b), pieces): (Key, Vec<(usize, BlockData)>),
) -> (Key, BlockFit) {
    let (info, masks) = env;
    let subject = &info.value()[s];
    let region = grid_of(subject)
        .region(BlockId(b))
        .unwrap_or_else(|e| fail(e));
    let mask = extract_values(masks.value()[&s].view(), region).unwrap_or_else(|e| fail(e));
    let parts = pieces.iter().map(|(v, d)| (*v, d.0.as_slice()));
    let block =
        SeriesBlock::from_volumes(region, subject.volumes, parts).unwrap_or_else(|e| fail(e));
    let model = TensorModel::new(&subject.gtab).unwrap_or_else(|e| fail(e));
    let tensors = model
        .fit_series(&block.series, &mask)
        .unwrap_or_else(|e| fail(e));
    let fa = tensors.iter().map(|t| t.fa() as f32).collect();
    let md = tensors.iter().map(|t| t.md() as f32).collect();
    let evec = tensors
        .iter()
        .map(|t| t.principal().map(|c| c as f32))
        .collect();
    ((s, b), (fa, md, evec))
}

fn fail(e: ember_image::ImageError) -> ! {
    ember_driver::rdd::task::throw(EmberError::Other(e.to_string()))
}

fn assemble(
    subjects: &[Subject],
    masks: &HashMap<usize, Array3<bool>>,
    fitted: Vec<(Key, BlockFit)>,
    denoised: Option<Vec<(Key, Vol)>>,
) -> ember_image::Result<Vec<SubjectResult>> {
    let mut out: Vec<SubjectResult> = subjects
        .iter()
        .enumerate()
        .map(|(s, x)| {
            let [nx, ny, nz] = x.shape;
            SubjectResult {
                subject: s,
                mask: masks
                    .get(&s)
                    .cloned()
                    .unwrap_or_else(|| Array3::from_elem((nx, ny, nz).f(), false)),
                fa: Array3::zeros((nx, ny, nz).f()),
                md: Array3::zeros((nx, ny, nz).f()),
                evec: Array3::from_elem((nx, ny, nz).f(), [0.0; 3]),
                denoised: None,
            }
        })
        .collect();
    for ((s, b), (fa, md, evec)) in fitted {
        let region = grid_of(&subjects[s]).region(BlockId(b))?;
        place_values(&mut out[s].fa, region, &fa)?;
        place_values(&mut out[s].md, region, &md)?;
        place_values(&mut out[s].evec, region, &evec)?;
    }
    if let Some(mut vols) = denoised {
        vols.sort_by_key(|(k, _)| *k);
        for ((s, _), vol) in vols {
            out[s].denoised.get_or_insert_with(Vec::new).push(vol);
        }
    }
    Ok(out)
}
