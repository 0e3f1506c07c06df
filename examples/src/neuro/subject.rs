//! Finding a subject's files and checking them before any work starts.

use ember_image::{read_header, GradientTable, DEFAULT_B0_THRESHOLD};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One subject's inputs, checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subject {
    /// Name used for the output folder.
    pub name: String,
    /// The 4-D diffusion image.
    pub image: PathBuf,
    /// Its gradient table, one row per volume.
    pub gtab: GradientTable,
    /// Volume shape.
    pub shape: [usize; 3],
    /// Number of volumes.
    pub volumes: usize,
    /// Voxel-to-world affine, kept on outputs.
    pub affine: [[f64; 4]; 4],
    /// Voxel sizes in mm.
    pub voxel_size: [f64; 3],
}

fn existing(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|p| p.is_file()).cloned()
}

/// Resolves `arg` — an HCP-layout folder (`data.nii.gz`, `bvals`,
/// `bvecs`) or an FSL prefix `p` (`p.nii` or `p.nii.gz`, `p.bval`,
/// `p.bvec`) — and checks it: the image is 4-D, the gradient table matches
/// its volumes, and there is at least one b0 volume. Errors name the
/// subject and the file.
pub fn resolve(arg: &str) -> Result<Subject, String> {
    let path = Path::new(arg);
    let (name, image, bvals, bvecs) = if path.is_dir() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| arg.to_string());
        let image =
            existing(&[path.join("data.nii.gz"), path.join("data.nii")]).ok_or_else(|| {
                format!(
                    "subject {name}: {}: no data.nii.gz or data.nii",
                    path.display()
                )
            })?;
        (name, image, path.join("bvals"), path.join("bvecs"))
    } else {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| arg.to_string());
        let with = |ext: &str| PathBuf::from(format!("{arg}{ext}"));
        let image = existing(&[with(".nii.gz"), with(".nii")]).ok_or_else(|| {
            format!(
                "subject {name}: neither {arg}.nii.gz nor {arg}.nii exists (nor a folder {arg})"
            )
        })?;
        (name, image, with(".bval"), with(".bvec"))
    };
    for f in [&bvals, &bvecs] {
        if !f.is_file() {
            return Err(format!("subject {name}: {}: missing", f.display()));
        }
    }
    let header = read_header(&image).map_err(|e| format!("subject {name}: {e}"))?;
    let [x, y, z, t] = header.shape;
    if t < 2 {
        return Err(format!(
            "subject {name}: {}: a 3-D image ({x}×{y}×{z}); the pipeline needs a 4-D diffusion series",
            image.display()
        ));
    }
    let gtab = GradientTable::from_fsl_files(&bvals, &bvecs, DEFAULT_B0_THRESHOLD)
        .map_err(|e| format!("subject {name}: {e}"))?;
    gtab.check_volumes(t, &image)
        .map_err(|e| format!("subject {name}: {e}"))?;
    if !gtab.b0_mask().iter().any(|&b| b) {
        return Err(format!(
            "subject {name}: {}: no b0 volume (no b-value ≤ {DEFAULT_B0_THRESHOLD})",
            bvals.display()
        ));
    }
    Ok(Subject {
        name,
        image,
        gtab,
        shape: [x, y, z],
        volumes: t,
        affine: header.affine,
        voxel_size: header.voxel_size,
    })
}

/// Makes subject names unique by suffixing repeats (`a`, `a-2`, ...).
pub fn dedupe_names(subjects: &mut [Subject]) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for s in subjects.iter_mut() {
        let n = seen.entry(s.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            s.name = format!("{}-{}", s.name, n);
        }
    }
}
