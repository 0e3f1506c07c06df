//! The pipeline as a scientist writes it: the study's Spark plan in Ember's
//! RDD API, calling `ember-image` for the science. The helpers below the
//! driver function are the per-record steps it maps over.
//!
//! A subject's bad input must not sink the others, so every per-record
//! step returns an [`Outcome`]: a failure travels as a record naming the
//! subject's file and the cause, the subject drops out of later steps, and
//! the engine's own failures (a lost executor, a failed fetch) stay what
//! the engine retries.

use super::maps::{offsets, Map};
use super::records::{BlockData, Vol};
use super::subject::Subject;
use crate::steps::Steps;
use ember_driver::prelude::*;
use ember_driver::Result;
use ember_image::block::{extract_values, BlockGrid, BlockId, SeriesBlock};
use ember_image::dti::TensorModel;
use ember_image::nifti_io::read_array;
use ember_image::nifti_io::VolumeStream;
use ember_image::nlmeans::{nlmeans, Sigma};
use ember_image::{estimate_sigma, mean_volumes, median_otsu, ImageError};
use ndarray::{Array3, ArrayD, Axis, IxDyn, ShapeBuilder};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

/// A per-subject step's result: the value, or why the subject failed.
pub type Outcome<T> = std::result::Result<T, String>;

/// Why a subject has no result when the run stopped at another's failure.
pub const NOT_RUN: &str = "not run: the run stopped at another subject's failure";

/// What to compute besides the mask.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// The tensor maps to compute ([`super::maps::computed`]).
    pub maps: Vec<Map>,
    /// Also return each subject's denoised volumes.
    pub keep_denoised: bool,
    /// Go on with the other subjects when one fails; otherwise stop after
    /// the step in which the first subject failed.
    pub keep_going: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            maps: super::maps::computed(&Map::DEFAULT),
            keep_denoised: false,
            keep_going: false,
        }
    }
}

/// What the pipeline produces for one subject.
pub struct SubjectResult {
    /// The subject's index in the input list.
    pub subject: usize,
    /// Brain mask.
    pub mask: Array3<bool>,
    /// Mean of the b0 volumes (what the mask is computed from).
    pub mean_b0: Array3<f32>,
    /// Each computed map, `[x, y, z, trailing dims...]`, 0 outside the mask.
    pub maps: Vec<(Map, ArrayD<f32>)>,
    /// The noise sigma of each volume, in volume order.
    pub sigmas: Vec<f32>,
    /// Seconds of compute spent on this subject in each step.
    pub seconds: Vec<(String, f64)>,
    /// The denoised volumes in order, when asked for.
    pub denoised: Option<Vec<Vol>>,
}

impl SubjectResult {
    /// Map `m`, if it was computed.
    pub fn map(&self, m: Map) -> Option<&ArrayD<f32>> {
        self.maps.iter().find(|(n, _)| *n == m).map(|(_, a)| a)
    }

    /// A scalar map as a volume (`None` if not computed or not scalar).
    pub fn scalar(&self, m: Map) -> Option<Array3<f32>> {
        self.map(m)?
            .view()
            .into_dimensionality()
            .ok()
            .map(|v: ndarray::ArrayView3<f32>| v.to_owned())
    }

    /// Voxels in the brain mask.
    pub fn mask_voxels(&self) -> usize {
        self.mask.iter().filter(|&&m| m).count()
    }
}

type Key = (usize, usize);

/// The subjects, broadcast to every executor.
type SubjectsBc = Broadcast<Vec<Subject>>;

/// Each subject's brain mask, broadcast to every executor.
type MasksBc = Broadcast<HashMap<usize, Array3<bool>>>;

/// Compute seconds per (subject, step), gathered from tasks.
type SecondsAcc = Accumulator<Vec<(usize, String, f64)>>;

/// Noise sigma per (subject, volume), gathered from tasks.
type SigmasAcc = Accumulator<Vec<(usize, usize, f32)>>;

/// The fitted maps of one block: each voxel's values of every computed
/// map, voxel after voxel in the block's voxel order.
type BlockFit = BlockData;

/// A pipeline run: which subjects failed at which step, and the fitted
/// maps of the others, assembled one subject at a time by [`Run::result`]
/// so the driver holds one subject's maps at once.
pub struct Run {
    subjects: Vec<Subject>,
    options: PipelineOptions,
    failures: BTreeMap<usize, String>,
    masks: HashMap<usize, (Array3<bool>, Vol)>,
    fitted: Option<Rdd<(Key, Outcome<BlockFit>)>>,
    denoised: Option<Rdd<(Key, Outcome<Vol>)>>,
    seconds: SecondsAcc,
    sigmas: SigmasAcc,
}

impl Run {
    /// Subjects that failed, by index, with the step and the cause.
    pub fn failures(&self) -> &BTreeMap<usize, String> {
        &self.failures
    }

    /// Subject `s`'s results, or why it failed (including "not run" when
    /// the run stopped at another subject's failure).
    pub fn result(&self, s: usize) -> Result<Outcome<SubjectResult>> {
        if let Some(why) = self.failures.get(&s) {
            return Ok(Err(why.clone()));
        }
        let (Some(fitted), Some((mask, mean_b0))) = (&self.fitted, self.masks.get(&s)) else {
            return Ok(Err(NOT_RUN.into()));
        };
        let blocks = fitted
            .filter_with(s, |s: &usize, ((t, _), _): &(Key, Outcome<BlockFit>)| {
                t == s
            })
            .collect()?;
        let denoised = match &self.denoised {
            Some(d) => {
                let mut vols = d
                    .filter_with(s, |s: &usize, ((t, _), _): &(Key, Outcome<Vol>)| t == s)
                    .collect()?;
                vols.sort_by_key(|(k, _)| *k);
                let vols: Outcome<Vec<Vol>> = vols.into_iter().map(|(_, v)| v).collect();
                match vols {
                    Ok(v) => Some(v),
                    Err(e) => return Ok(Err(e)),
                }
            }
            None => None,
        };
        let subject = &self.subjects[s];
        let maps = match assemble(subject, &self.options.maps, blocks) {
            Ok(maps) => maps,
            Err(e) => return Ok(Err(e)),
        };
        let mut sigmas = vec![f32::NAN; subject.volumes];
        for (t, v, sigma) in self.sigmas.value() {
            if t == s && v < sigmas.len() {
                sigmas[v] = sigma;
            }
        }
        let mut seconds: BTreeMap<String, f64> = BTreeMap::new();
        for (t, step, secs) in self.seconds.value() {
            if t == s {
                *seconds.entry(step).or_default() += secs;
            }
        }
        let order = ["load", "mask", "denoise", "fit"];
        let mut seconds: Vec<(String, f64)> = seconds.into_iter().collect();
        seconds.sort_by_key(|(step, _)| order.iter().position(|o| o == step));
        Ok(Ok(SubjectResult {
            subject: s,
            mask: mask.clone(),
            mean_b0: mean_b0.0.clone(),
            maps,
            sigmas,
            seconds,
            denoised,
        }))
    }
}

/// Mask, denoise and fit every subject (Mehta et al.'s Spark plan). A
/// subject that fails at a step is recorded in [`Run::failures`] and left
/// out of later steps; without `keep_going`, no later step runs at all.
pub fn pipeline(
    ctx: &Context,
    subjects: &[Subject],
    options: &PipelineOptions,
    steps: &mut Steps,
) -> Result<Run> {
    let info = ctx.broadcast(subjects.to_vec())?;
    let seconds: SecondsAcc = ctx.accumulator(Vec::new());
    let sigmas: SigmasAcc = ctx.accumulator(Vec::new());
    let mut run = Run {
        subjects: subjects.to_vec(),
        options: options.clone(),
        failures: BTreeMap::new(),
        masks: HashMap::new(),
        fitted: None,
        denoised: None,
        seconds: seconds.clone(),
        sigmas: sigmas.clone(),
    };
    // Volumes as ((subject, volume), volume) records, one partition each.
    let keys: Vec<Key> = subjects
        .iter()
        .enumerate()
        .flat_map(|(s, x)| (0..x.volumes).map(move |v| (s, v)))
        .collect();
    let one_per_partition = Partitioner::Range {
        bounds: keys[..keys.len().saturating_sub(1)].to_vec(),
        ascending: true,
    };
    let loaded = ctx
        .parallelize((0..subjects.len()).collect(), subjects.len())?
        .flat_map_with((info.clone(), seconds.clone()), read_volumes)
        .partition_by(one_per_partition)
        .cache();
    let load_failures = steps.time("load", || {
        loaded
            .filter(|(_, v): &(Key, Outcome<Vol>)| v.is_err())
            .collect()
    })?;
    for ((s, _), why) in load_failures {
        run.failures
            .entry(s)
            .or_insert_with(|| format!("load: {}", why.unwrap_err()));
    }
    if !options.keep_going && !run.failures.is_empty() {
        return Ok(run);
    }
    let failed = ctx.broadcast(run.failures.keys().copied().collect::<HashSet<usize>>())?;
    let volumes = loaded.flat_map_with(failed, |failed: &Broadcast<HashSet<usize>>, rec| {
        let ((s, v), vol) = rec;
        match vol {
            Ok(vol) if !failed.value().contains(&s) => Some(((s, v), vol)),
            _ => None,
        }
    });
    // Mask: mean of each subject's b0 volumes, then median_otsu (or the
    // subject's own mask); broadcast.
    let masks = steps.time("mask", || {
        volumes
            .filter_with(
                info.clone(),
                |info: &SubjectsBc, ((s, v), _): &(Key, Vol)| info.value()[*s].is_b0(*v),
            )
            .map(|((s, v), vol): (Key, Vol)| (s, (v, vol)))
            .group_by_key()
            .map_with((info.clone(), seconds.clone()), brain_mask)
            .collect()
    })?;
    for (s, outcome) in masks {
        match outcome {
            Ok(m) => {
                run.masks.insert(s, m);
            }
            Err(why) => {
                run.failures.insert(s, format!("mask: {why}"));
            }
        }
    }
    if !options.keep_going && !run.failures.is_empty() {
        return Ok(run);
    }
    let masks: MasksBc = ctx.broadcast(
        run.masks
            .iter()
            .map(|(s, (m, _))| (*s, m.clone()))
            .collect(),
    )?;
    // Denoise every volume of a masked subject with its own noise level.
    let denoised = volumes
        .filter_with(masks.clone(), |m: &MasksBc, ((s, _), _): &(Key, Vol)| {
            m.value().contains_key(s)
        })
        .map_with((masks.clone(), seconds.clone(), sigmas.clone()), denoise);
    if options.keep_denoised {
        denoised.cache();
    }
    // Regroup into voxel blocks holding each voxel's full series; fit.
    let fitted = denoised
        .flat_map_with(info.clone(), cut_blocks)
        .group_by_key_into(fit_partitions(ctx, subjects))
        .map_with(
            (info.clone(), masks.clone(), options.maps.clone(), seconds),
            fit_block,
        )
        .persist(StorageLevel::MemoryAndDisk);
    let fit_failures = steps.time_job(ctx, &["denoise", "fit"], || {
        fitted
            .filter(|(_, f): &(Key, Outcome<BlockFit>)| f.is_err())
            .map(|((s, _), f): (Key, Outcome<BlockFit>)| (s, f.err().unwrap_or_default()))
            .collect()
    })?;
    for (s, why) in fit_failures {
        run.failures.entry(s).or_insert(why);
    }
    run.fitted = Some(fitted);
    run.denoised = options.keep_denoised.then_some(denoised);
    loaded.unpersist();
    Ok(run)
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

fn add_seconds(acc: &SecondsAcc, s: usize, step: &str, start: Instant) {
    acc.add(vec![(s, step.to_string(), start.elapsed().as_secs_f64())]);
}

/// The volumes of one subject's image, read one at a time: each checked
/// to hold only finite values. A failure ends the subject's stream with one
/// error record naming the file and the volume.
fn read_volumes(
    env: &(SubjectsBc, SecondsAcc),
    s: usize,
) -> impl Iterator<Item = (Key, Outcome<Vol>)> {
    let (info, seconds) = (env.0.value()[s].clone(), env.1.clone());
    let start = Instant::now();
    let mut state: std::result::Result<VolumeStream, Option<String>> =
        ember_image::volumes(&info.image).map_err(|e| Some(e.to_string()));
    add_seconds(&seconds, s, "load", start);
    let mut v = 0;
    std::iter::from_fn(move || {
        let start = Instant::now();
        let item = match &mut state {
            Err(why) => return why.take().map(|why| ((s, v), Err(why))),
            Ok(stream) => stream.next()?,
        };
        let out = item
            .map_err(|e| e.to_string())
            .and_then(|vol| finite(vol, &info, v));
        add_seconds(&seconds, s, "load", start);
        if out.is_err() {
            state = Err(None);
        }
        v += 1;
        Some(((s, v - 1), out))
    })
}

/// `vol` if every voxel is finite; NaN or infinity would spread through
/// the mask, the denoising and the fit.
fn finite(vol: Array3<f32>, subject: &Subject, v: usize) -> Outcome<Vol> {
    match vol.indexed_iter().find(|(_, x)| !x.is_finite()) {
        None => Ok(Vol(vol)),
        Some(((x, y, z), value)) => Err(format!(
            "{}: volume {v} holds {value} at voxel [{x}, {y}, {z}]; the pipeline needs finite values",
            subject.image.display()
        )),
    }
}

/// The spec's mask: median_otsu of the b0 mean (radius 4, 2 passes,
/// dilated once), volumes averaged in volume order; or the subject's own
/// mask file when it has one. Returns the mask and the b0 mean.
fn brain_mask(
    env: &(SubjectsBc, SecondsAcc),
    (s, mut b0): (usize, Vec<(usize, Vol)>),
) -> (usize, Outcome<(Array3<bool>, Vol)>) {
    let start = Instant::now();
    let subject = &env.0.value()[s];
    b0.sort_by_key(|(v, _)| *v);
    let outcome = (|| -> ember_image::Result<(Array3<bool>, Vol)> {
        let mean = mean_volumes(b0.iter().map(|(_, vol)| vol.0.view()))?;
        let mask = match &subject.mask_file {
            Some(file) => {
                let (m, _) = read_array::<f32>(file)?;
                m.index_axis(Axis(3), 0).mapv(|x| x != 0.0)
            }
            None => median_otsu(mean.view(), 4, 2, 1)?.mask,
        };
        Ok((mask, Vol(mean.mapv(|x| x as f32))))
    })()
    .map_err(|e| e.to_string());
    add_seconds(&env.1, s, "mask", start);
    (s, outcome)
}

/// Non-local means with the volume's estimated sigma (patch 1, block 5,
/// Rician correction); records the sigma.
fn denoise(
    env: &(MasksBc, SecondsAcc, SigmasAcc),
    ((s, v), vol): (Key, Vol),
) -> (Key, Outcome<Vol>) {
    let start = Instant::now();
    let (masks, seconds, sigmas) = env;
    let out = (|| -> ember_image::Result<Vol> {
        let sigma = estimate_sigma(vol.0.view())?;
        sigmas.add(vec![(s, v, sigma)]);
        let mask = masks.value();
        let mask = mask.get(&s).ok_or_else(|| ImageError::InvalidInput {
            what: "denoise",
            problem: "no mask".into(),
        })?;
        Ok(Vol(nlmeans(
            vol.0.view(),
            mask.view(),
            Sigma::Constant(f64::from(sigma)),
            true,
        )?))
    })()
    .map_err(|e| format!("denoise: volume {v}: {e}"));
    add_seconds(seconds, s, "denoise", start);
    ((s, v), out)
}

/// The grid used to regroup a subject's voxels for the fit: 4×4×4
/// blocks, as in the study's plan, fewer along an axis thinner than 4.
pub fn grid_of(subject: &Subject) -> ember_image::Result<BlockGrid> {
    BlockGrid::at_most(subject.shape, [4, 4, 4])
}

/// Cuts a denoised volume into the pieces of its blocks, keyed by block;
/// volumes the tensor is not fitted on are left out. A failed volume sends
/// its failure to every block, so each block's fit reports the cause.
fn cut_blocks(
    info: &SubjectsBc,
    ((s, v), vol): (Key, Outcome<Vol>),
) -> Vec<(Key, (usize, Outcome<BlockData>))> {
    let subject = &info.value()[s];
    let grid = match grid_of(subject) {
        Ok(g) => g,
        Err(e) => return vec![((s, 0), (v, Err(e.to_string())))],
    };
    let position = subject.fit_volumes.binary_search(&v);
    match (vol, position) {
        (Err(why), _) => grid
            .ids()
            .map(|BlockId(b)| ((s, b), (v, Err(why.clone()))))
            .collect(),
        (Ok(_), Err(_)) => Vec::new(),
        (Ok(vol), Ok(p)) => grid
            .blocks()
            .map(|(BlockId(b), region)| {
                let values = extract_values(vol.0.view(), region)
                    .map(BlockData)
                    .map_err(|e| e.to_string());
                ((s, b), (p, values))
            })
            .collect(),
    }
}

/// Regroups one block's per-volume pieces into voxel series and fits a
/// tensor in every masked voxel; returns every computed map's values.
fn fit_block(
    env: &(SubjectsBc, MasksBc, Vec<Map>, SecondsAcc),
    ((s, b), pieces): (Key, Vec<(usize, Outcome<BlockData>)>),
) -> (Key, Outcome<BlockFit>) {
    let start = Instant::now();
    let (info, masks, maps, seconds) = env;
    let subject = &info.value()[s];
    let out = (|| -> Outcome<BlockFit> {
        if let Some((_, Err(why))) = pieces.iter().find(|(_, p)| p.is_err()) {
            return Err(why.clone());
        }
        let fit = || -> ember_image::Result<BlockFit> {
            let region = grid_of(subject)?.region(BlockId(b))?;
            let all = masks.value();
            let mask = all.get(&s).ok_or_else(|| ImageError::InvalidInput {
                what: "fit",
                problem: "no mask".into(),
            })?;
            let mask = extract_values(mask.view(), region)?;
            let parts = pieces.iter().filter_map(|(v, d)| match d {
                Ok(d) => Some((*v, d.0.as_slice())),
                Err(_) => None,
            });
            let block = SeriesBlock::from_volumes(region, subject.fit_volumes.len(), parts)?;
            let model = TensorModel::new(&subject.fit_gtab)?;
            let tensors = model.fit_series(&block.series, &mask)?;
            let channels: usize = maps.iter().map(|m| m.channels()).sum();
            let mut values = Vec::with_capacity(tensors.len() * channels);
            for t in &tensors {
                for m in maps {
                    m.push(t, &mut values);
                }
            }
            Ok(BlockData(values))
        };
        fit().map_err(|e| format!("fit: {e}"))
    })();
    add_seconds(seconds, s, "fit", start);
    ((s, b), out)
}

/// Places a subject's fitted blocks into one array per map (Fortran
/// order, `[x, y, z, trailing...]`).
fn assemble(
    subject: &Subject,
    maps: &[Map],
    blocks: Vec<(Key, Outcome<BlockFit>)>,
) -> Outcome<Vec<(Map, ArrayD<f32>)>> {
    let [nx, ny, nz] = subject.shape;
    let voxels = nx * ny * nz;
    let channels: usize = maps.iter().map(|m| m.channels()).sum();
    let layout = offsets(maps);
    let mut data: Vec<Vec<f32>> = maps
        .iter()
        .map(|m| vec![0.0; voxels * m.channels()])
        .collect();
    let grid = grid_of(subject).map_err(|e| format!("fit: {e}"))?;
    for ((_, b), fit) in blocks {
        let values = fit?.0;
        let region = grid.region(BlockId(b)).map_err(|e| format!("fit: {e}"))?;
        if values.len() != region.len() * channels {
            return Err(format!(
                "fit: block {b} returned {} values for {} voxels of {channels} channels",
                values.len(),
                region.len()
            ));
        }
        for (i, [x, y, z]) in region.voxels().enumerate() {
            let at = x + nx * (y + ny * z);
            for (k, (m, offset)) in layout.iter().enumerate() {
                for c in 0..m.channels() {
                    data[k][at + voxels * c] = values[i * channels + offset + c];
                }
            }
        }
    }
    maps.iter()
        .zip(data)
        .map(|(&m, values)| {
            let mut shape = vec![nx, ny, nz];
            shape.extend_from_slice(m.trailing_dims());
            ArrayD::from_shape_vec(IxDyn(&shape).f(), values)
                .map(|a| (m, a))
                .map_err(|e| format!("fit: {e}"))
        })
        .collect()
}
