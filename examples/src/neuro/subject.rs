//! Finding a subject's files and checking them before any work starts:
//! HCP folders, FSL prefixes and BIDS runs become [`Subject`]s.

use super::bids::BidsRun;
use ember_image::nifti_io::Geometry;
use ember_image::{read_header, GradientTable, DEFAULT_B0_THRESHOLD};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How the inputs are read: what counts as b0, which shells the tensor is
/// fitted on, whether a mask shipped with the data replaces the computed one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputOptions {
    /// Volumes with `bval <= b0_threshold` are b0 (the spec's 10).
    pub b0_threshold: f64,
    /// Fit the tensor on shells with `bval <= max_bval` only (b0s always);
    /// denoising still uses every volume.
    pub max_bval: Option<f64>,
    /// Use the brain mask that comes with the data (HCP's
    /// `nodif_brain_mask.nii.gz`) instead of computing one.
    pub mask_from_input: bool,
}

impl Default for InputOptions {
    fn default() -> Self {
        InputOptions {
            b0_threshold: DEFAULT_B0_THRESHOLD,
            max_bval: None,
            mask_from_input: false,
        }
    }
}

/// One subject's inputs, checked.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subject {
    /// Name used for the output folder and in reports.
    pub name: String,
    /// BIDS entities when the subject is a run of a BIDS dataset; outputs
    /// then follow the BIDS-derivatives layout.
    pub bids: Option<BidsRun>,
    /// The run's JSON sidecar, checked to be JSON, reported in `run.json`.
    pub metadata: Option<PathBuf>,
    /// The 4-D diffusion image.
    pub image: PathBuf,
    /// Its gradient table, one row per volume.
    pub gtab: GradientTable,
    /// Volumes the tensor is fitted on, ascending (every volume unless
    /// `--max-bval` leaves some shells out).
    pub fit_volumes: Vec<usize>,
    /// The gradient table of those volumes.
    pub fit_gtab: GradientTable,
    /// A brain mask shipped with the data, used instead of computing one.
    pub mask_file: Option<PathBuf>,
    /// Volume shape.
    pub shape: [usize; 3],
    /// Number of volumes.
    pub volumes: usize,
    /// The image's affines, their codes, voxel sizes and units, kept on
    /// every output.
    pub geometry: Geometry,
}

impl Subject {
    /// Whether volume `v` is a b0 volume.
    pub fn is_b0(&self, v: usize) -> bool {
        self.gtab.bvals[v] <= self.gtab.b0_threshold
    }
}

/// Where one subject's files are, before they are checked.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectFiles {
    /// Name for outputs.
    pub name: String,
    /// The 4-D image.
    pub image: PathBuf,
    /// FSL b-values.
    pub bvals: PathBuf,
    /// FSL b-vectors.
    pub bvecs: PathBuf,
    /// A brain mask shipped with the data, if any.
    pub mask: Option<PathBuf>,
    /// BIDS entities, for runs of a BIDS dataset.
    pub bids: Option<BidsRun>,
    /// The run's JSON sidecar (acquisition metadata), for BIDS runs.
    pub metadata: Option<PathBuf>,
}

fn existing(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates.iter().find(|p| p.is_file()).cloned()
}

fn last_component(path: &Path, fallback: &str) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| fallback.to_string())
}

/// The name of an HCP-layout folder: `<id>` for `…/<id>/T1w/Diffusion`
/// (the layout HCP ships), otherwise the folder's own name.
fn folder_name(dir: &Path, arg: &str) -> String {
    // `canonicalize` so `.` and `sub/..` name the folder, not the dots.
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let parent = dir.parent();
    let is_hcp = dir.file_name().is_some_and(|n| n == "Diffusion")
        && parent.and_then(Path::file_name).is_some_and(|n| n == "T1w");
    match parent.and_then(Path::parent) {
        Some(id_dir) if is_hcp => last_component(id_dir, arg),
        _ => last_component(&dir, arg),
    }
}

/// Finds the files of `arg`: an HCP-layout folder (`data.nii[.gz]`,
/// `bvals`, `bvecs`, optionally `nodif_brain_mask.nii[.gz]`), an FSL
/// prefix `p` (`p.nii[.gz]`, `p.bval`, `p.bvec`), or the image `p.nii[.gz]`
/// of such a prefix. Errors name the subject and what is missing.
pub fn locate(arg: &str) -> Result<SubjectFiles, String> {
    let path = Path::new(arg);
    if path.is_dir() {
        let name = folder_name(path, arg);
        let image =
            existing(&[path.join("data.nii.gz"), path.join("data.nii")]).ok_or_else(|| {
                format!(
                    "subject {name}: {}: no data.nii.gz or data.nii",
                    path.display()
                )
            })?;
        return Ok(SubjectFiles {
            name,
            image,
            bvals: path.join("bvals"),
            bvecs: path.join("bvecs"),
            mask: existing(&[
                path.join("nodif_brain_mask.nii.gz"),
                path.join("nodif_brain_mask.nii"),
            ]),
            bids: None,
            metadata: None,
        });
    }
    let prefix = arg
        .strip_suffix(".nii.gz")
        .or_else(|| arg.strip_suffix(".nii"))
        .filter(|_| path.is_file())
        .unwrap_or(arg);
    let name = last_component(Path::new(prefix), prefix);
    let with = |ext: &str| PathBuf::from(format!("{prefix}{ext}"));
    let image = existing(&[with(".nii.gz"), with(".nii")]).ok_or_else(|| {
        format!(
            "subject {name}: neither {prefix}.nii.gz nor {prefix}.nii exists (nor a folder {prefix})"
        )
    })?;
    Ok(SubjectFiles {
        name,
        image,
        bvals: with(".bval"),
        bvecs: with(".bvec"),
        mask: None,
        bids: None,
        metadata: None,
    })
}

/// Checks `files` and reads what the pipeline needs up front: the image
/// is 4-D, the gradient table matches its volumes, there is at least one
/// b0 volume, the fitted shells leave enough volumes for a tensor, and a
/// mask to use has the image's shape. Errors name the subject and the file.
pub fn check(files: SubjectFiles, options: &InputOptions) -> Result<Subject, String> {
    let name = files.name;
    for f in [&files.bvals, &files.bvecs] {
        if !f.is_file() {
            return Err(format!("subject {name}: {}: missing", f.display()));
        }
    }
    if let Some(json) = &files.metadata {
        let text = std::fs::read_to_string(json)
            .map_err(|e| format!("subject {name}: {}: {e}", json.display()))?;
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| format!("subject {name}: {}: not JSON: {e}", json.display()))?;
    }
    let header = read_header(&files.image).map_err(|e| format!("subject {name}: {e}"))?;
    let [x, y, z, t] = header.shape;
    if t < 2 {
        return Err(format!(
            "subject {name}: {}: a 3-D image ({x}×{y}×{z}); the pipeline needs a 4-D diffusion series",
            files.image.display()
        ));
    }
    let gtab = GradientTable::from_fsl_files(&files.bvals, &files.bvecs, options.b0_threshold)
        .map_err(|e| format!("subject {name}: {e}"))?;
    gtab.check_volumes(t, &files.image)
        .map_err(|e| format!("subject {name}: {e}"))?;
    if !gtab.b0_mask().iter().any(|&b| b) {
        return Err(format!(
            "subject {name}: {}: no b0 volume (no b-value ≤ {})",
            files.bvals.display(),
            options.b0_threshold
        ));
    }
    let (fit_gtab, fit_volumes) = match options.max_bval {
        None => (gtab.clone(), (0..t).collect()),
        Some(max) => gtab
            .up_to_bval(max)
            .map_err(|e| format!("subject {name}: {}: {e}", files.bvals.display()))?,
    };
    let mask_file = match (&files.mask, options.mask_from_input) {
        (Some(mask), true) => {
            let h = read_header(mask).map_err(|e| format!("subject {name}: {e}"))?;
            if h.shape != [x, y, z, 1] {
                return Err(format!(
                    "subject {name}: {}: mask of shape {:?}, but the image's volumes are {x}×{y}×{z}",
                    mask.display(),
                    &h.shape[..3]
                ));
            }
            Some(mask.clone())
        }
        (None, true) => {
            return Err(format!(
                "subject {name}: --mask-from-input, but {} comes with no nodif_brain_mask.nii[.gz]",
                files.image.display()
            ))
        }
        (_, false) => None,
    };
    Ok(Subject {
        name,
        bids: files.bids,
        metadata: files.metadata,
        image: files.image,
        gtab,
        fit_volumes,
        fit_gtab,
        mask_file,
        shape: [x, y, z],
        volumes: t,
        geometry: header.geometry(),
    })
}

/// Locates and checks `arg` (see [`locate`] and [`check`]) with the
/// default options.
pub fn resolve(arg: &str) -> Result<Subject, String> {
    check(locate(arg)?, &InputOptions::default())
}

/// Reads a subjects list: one subject a line, `PATH` or `PATH NAME`
/// (whitespace between), `#` starting a comment. Relative paths are taken
/// from the list's folder.
pub fn read_list(list: &Path) -> Result<Vec<(String, Option<String>)>, String> {
    let text = std::fs::read_to_string(list)
        .map_err(|e| format!("subjects list {}: {e}", list.display()))?;
    let base = list.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let path = words.next().unwrap_or_default();
        let name = words.next().map(str::to_string);
        if words.next().is_some() {
            return Err(format!(
                "subjects list {} line {}: expected `PATH [NAME]`, got {line:?}",
                list.display(),
                n + 1
            ));
        }
        out.push((base.join(path).display().to_string(), name));
    }
    Ok(out)
}

/// Makes subject names unique by suffixing repeats (`a`, `a-2`, ...).
pub fn dedupe_names<'a>(names: impl IntoIterator<Item = &'a mut String>) {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for name in names {
        let n = seen.entry(name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            *name = format!("{name}-{n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcp_folders_are_named_by_subject_id() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("100307/T1w/Diffusion");
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(folder_name(&dir, "x"), "100307");
        let plain = root.path().join("subject-a");
        std::fs::create_dir_all(&plain).unwrap();
        assert_eq!(folder_name(&plain, "x"), "subject-a");
    }

    #[test]
    fn subjects_lists_take_paths_and_optional_names() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("subjects.txt");
        std::fs::write(&list, "# comment\na/b  first\n\nc # no name\n").unwrap();
        let got = read_list(&list).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].0.ends_with("a/b") && got[0].1.as_deref() == Some("first"));
        assert!(got[1].0.ends_with('c') && got[1].1.is_none());
        std::fs::write(&list, "a b c\n").unwrap();
        assert!(read_list(&list).unwrap_err().contains("line 1"));
    }
}
