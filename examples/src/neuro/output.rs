//! Writing a subject's results: `mask`, `fa`, `md` (NIfTI, the input's
//! affine), `fa.png` (colour FA montage) and optionally `denoised`.

use super::pipeline::SubjectResult;
use super::subject::Subject;
use ember_image::montage::{color_fa_montage, write_png};
use ember_image::{write_image4, write_volume, Result};
use ndarray::{Array4, Axis, ShapeBuilder};
use std::path::{Path, PathBuf};

/// Writes one subject's outputs into `out/<subject name>/`; every file is
/// written under a temporary name and renamed.
pub fn write_subject(out: &Path, subject: &Subject, result: &SubjectResult) -> Result<PathBuf> {
    let dir = out.join(&subject.name);
    std::fs::create_dir_all(&dir).map_err(|source| ember_image::ImageError::Io {
        file: dir.display().to_string(),
        action: "cannot create",
        source,
    })?;
    let (a, vs) = (&subject.affine, subject.voxel_size);
    write_volume(
        dir.join("mask.nii.gz"),
        result.mask.mapv(u8::from).view(),
        a,
        vs,
    )?;
    write_volume(dir.join("fa.nii.gz"), result.fa.view(), a, vs)?;
    write_volume(dir.join("md.nii.gz"), result.md.view(), a, vs)?;
    let (x, y, z) = result.fa.dim();
    let evec = Array4::from_shape_fn((x, y, z, 3).f(), |(i, j, k, c)| result.evec[[i, j, k]][c]);
    write_png(
        dir.join("fa.png"),
        &color_fa_montage(result.fa.view(), evec.view())?,
    )?;
    if let Some(vols) = &result.denoised {
        let mut data = Array4::<f32>::zeros((x, y, z, vols.len()).f());
        for (t, v) in vols.iter().enumerate() {
            data.index_axis_mut(Axis(3), t).assign(&v.0);
        }
        write_image4(dir.join("denoised.nii.gz"), data.view(), a, vs)?;
    }
    Ok(dir)
}
