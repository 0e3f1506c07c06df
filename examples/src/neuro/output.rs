//! Writing a subject's results: the mask, the tensor maps (as DIPY's
//! `dipy_fit_dti` names and lays them out), the colour-FA montage, the QA
//! image and optionally the denoised image; in the plain layout
//! (`OUT/<subject>/fa.nii.gz`, ...) or, for BIDS runs, the
//! BIDS-derivatives layout (`OUT/sub-01/dwi/sub-01_space-dwi_model-DTI_param-FA_dwimap.nii.gz`).
//!
//! A subject's files appear together or not at all: they are written into
//! a staging folder under `OUT`, then renamed into place; on any failure
//! the staging folder and whatever was already moved are removed.

use super::maps::Map;
use super::pipeline::SubjectResult;
use super::qa::qa_image;
use super::subject::Subject;
use ember_image::montage::{rgb_montage, write_png};
use ember_image::nifti_io::write_nifti;
use ember_image::Result;
use ndarray::{Array4, ArrayD, Axis, ShapeBuilder};
use std::path::{Path, PathBuf};

/// One output file of a subject.
enum Output<'a> {
    Mask,
    Map(Map, &'a ArrayD<f32>),
    ColourFa,
    Qa,
    Denoised,
}

impl Output<'_> {
    /// The file's path under `out` in the subject's layout.
    fn path(&self, out: &Path, subject: &Subject) -> PathBuf {
        match &subject.bids {
            None => out.join(&subject.name).join(match self {
                Output::Mask => "mask.nii.gz".to_string(),
                Output::Map(m, _) => format!("{}.nii.gz", m.name()),
                Output::ColourFa => "fa.png".to_string(),
                Output::Qa => "qa.png".to_string(),
                Output::Denoised => "denoised.nii.gz".to_string(),
            }),
            Some(run) => {
                let figure = |desc: &str| {
                    out.join(format!("sub-{}", run.subject()))
                        .join("figures")
                        .join(format!("{}_desc-{desc}_dwi.png", run.prefix()))
                };
                match self {
                    Output::Mask => run.derivative(out, "space-dwi_desc-brain_mask.nii.gz"),
                    Output::Map(m, _) => run.derivative(
                        out,
                        &format!("space-dwi_model-DTI_param-{}_dwimap.nii.gz", m.bids_param()),
                    ),
                    Output::ColourFa => figure("colorFA"),
                    Output::Qa => figure("qa"),
                    Output::Denoised => run.derivative(out, "space-dwi_desc-denoised_dwi.nii.gz"),
                }
            }
        }
    }

    /// Writes the file at `path`.
    fn write(&self, path: &Path, subject: &Subject, result: &SubjectResult) -> Result<()> {
        let geometry = &subject.geometry;
        match self {
            Output::Mask => write_nifti(path, &result.mask.mapv(u8::from), geometry),
            // The workflow's types: colour FA as bytes (255·c, truncated),
            // the tensor as float64, every other map as float32.
            Output::Map(Map::Rgb, data) => {
                write_nifti(path, &data.mapv(|c| (255.0 * c) as u8), geometry)
            }
            Output::Map(Map::Tensors, data) => write_nifti(path, &data.mapv(f64::from), geometry),
            Output::Map(_, data) => write_nifti(path, *data, geometry),
            Output::ColourFa => write_png(path, &rgb_montage(rgb(result)?.view())?),
            Output::Qa => {
                let md = result
                    .scalar(Map::Md)
                    .ok_or_else(|| missing("the MD map"))?;
                write_png(
                    path,
                    &qa_image(
                        result.mean_b0.view(),
                        result.mask.view(),
                        rgb(result)?.view(),
                        md.view(),
                    ),
                )
            }
            Output::Denoised => {
                let vols = result
                    .denoised
                    .as_ref()
                    .ok_or_else(|| missing("the denoised volumes"))?;
                let (x, y, z) = result.mask.dim();
                let mut data = Array4::<f32>::zeros((x, y, z, vols.len()).f());
                for (t, v) in vols.iter().enumerate() {
                    data.index_axis_mut(Axis(3), t).assign(&v.0);
                }
                write_nifti(path, &data, geometry)
            }
        }
    }
}

fn missing(what: &str) -> ember_image::ImageError {
    ember_image::ImageError::InvalidInput {
        what: "output",
        problem: format!("{what} was not computed"),
    }
}

/// The colour-FA map as `[x, y, z, 3]`.
fn rgb(result: &SubjectResult) -> Result<Array4<f32>> {
    result
        .map(Map::Rgb)
        .and_then(|a| a.clone().into_dimensionality().ok())
        .ok_or_else(|| missing("the colour-FA map"))
}

/// Writes one subject's outputs under `out`: the mask, the `saved` maps,
/// the montage, the QA image and, if computed, the denoised image. Returns
/// the files written; on failure nothing of the subject is left.
pub fn write_subject(
    out: &Path,
    subject: &Subject,
    result: &SubjectResult,
    saved: &[Map],
) -> std::result::Result<Vec<PathBuf>, String> {
    let mut outputs = vec![Output::Mask];
    for &m in saved {
        let data = result
            .map(m)
            .ok_or_else(|| format!("write: the {} map was not computed", m.name()))?;
        outputs.push(Output::Map(m, data));
    }
    outputs.push(Output::ColourFa);
    outputs.push(Output::Qa);
    if result.denoised.is_some() {
        outputs.push(Output::Denoised);
    }
    let stage = out.join(format!(
        ".staging-{}-{}",
        subject.name.replace(['/', '\\'], "_"),
        std::process::id()
    ));
    let outcome = stage_and_move(&stage, out, subject, result, &outputs);
    // The staging folder is gone after a success (every file was moved).
    let _ = std::fs::remove_dir_all(&stage);
    outcome
}

fn stage_and_move(
    stage: &Path,
    out: &Path,
    subject: &Subject,
    result: &SubjectResult,
    outputs: &[Output<'_>],
) -> std::result::Result<Vec<PathBuf>, String> {
    let io =
        |what: &str, p: &Path, e: std::io::Error| format!("write: {what} {}: {e}", p.display());
    std::fs::create_dir_all(stage).map_err(|e| io("cannot create", stage, e))?;
    let mut staged = Vec::new();
    for (i, o) in outputs.iter().enumerate() {
        let target = o.path(out, subject);
        let ext = if target.to_string_lossy().ends_with(".png") {
            "png"
        } else {
            "nii.gz"
        };
        let tmp = stage.join(format!("{i}.{ext}"));
        o.write(&tmp, subject, result)
            .map_err(|e| format!("write: {}: {e}", target.display()))?;
        staged.push((tmp, target));
    }
    let mut moved: Vec<PathBuf> = Vec::new();
    for (tmp, target) in staged {
        let step = target
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(&tmp, &target));
        if let Err(e) = step {
            for m in &moved {
                let _ = std::fs::remove_file(m);
            }
            return Err(io("cannot move into place", &target, e));
        }
        moved.push(target);
    }
    Ok(moved)
}
