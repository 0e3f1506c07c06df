//! BIDS datasets: finding every diffusion run of a dataset
//! (`sub-*/[ses-*/]dwi/*_dwi.nii[.gz]` with its `.bval`, `.bvec` and JSON
//! sidecar) and naming outputs the BIDS-derivatives way.

use super::subject::SubjectFiles;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The entities of one diffusion run, in file-name order (`sub` first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidsRun {
    /// `(key, label)` pairs, e.g. `[("sub", "01"), ("ses", "pre")]`.
    pub entities: Vec<(String, String)>,
}

impl BidsRun {
    /// Parses a run's file name (`sub-01_ses-pre_run-1_dwi.nii.gz`); `None`
    /// when it is not a BIDS diffusion image name.
    pub fn from_file_name(name: &str) -> Option<BidsRun> {
        let stem = name
            .strip_suffix(".nii.gz")
            .or_else(|| name.strip_suffix(".nii"))?;
        let body = stem.strip_suffix("_dwi")?;
        let entities = body
            .split('_')
            .map(|part| {
                let (key, label) = part.split_once('-')?;
                let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
                (ok(key) && ok(label)).then(|| (key.to_string(), label.to_string()))
            })
            .collect::<Option<Vec<_>>>()?;
        (entities.first()?.0 == "sub").then_some(BidsRun { entities })
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.entities
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, l)| l.as_str())
    }

    /// The participant label (`01` of `sub-01`).
    pub fn subject(&self) -> &str {
        self.label("sub").unwrap_or_default()
    }

    /// The entities joined as in a file name: `sub-01_ses-pre_run-1`.
    pub fn prefix(&self) -> String {
        self.entities
            .iter()
            .map(|(k, l)| format!("{k}-{l}"))
            .collect::<Vec<_>>()
            .join("_")
    }

    /// The run's folder under a dataset root: `sub-01[/ses-pre]/dwi`.
    pub fn folder(&self) -> PathBuf {
        let mut dir = PathBuf::from(format!("sub-{}", self.subject()));
        if let Some(ses) = self.label("ses") {
            dir.push(format!("ses-{ses}"));
        }
        dir.join("dwi")
    }

    /// A derivative file of this run: `<folder>/<prefix>_<suffix>`.
    pub fn derivative(&self, root: &Path, suffix: &str) -> PathBuf {
        root.join(self.folder())
            .join(format!("{}_{suffix}", self.prefix()))
    }
}

/// Whether `dir` is the root of a BIDS dataset (it has a
/// `dataset_description.json`).
pub fn is_dataset_root(dir: &Path) -> bool {
    dir.join("dataset_description.json").is_file()
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| format!("BIDS dataset: {}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("BIDS dataset: {}: {e}", dir.display()))?;
    entries.sort();
    Ok(entries)
}

fn named_dirs(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, String> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect())
}

/// A sidecar of `image` with extension `ext` (`.bval`, `.bvec`, `.json`):
/// beside it with the same entities, or, by BIDS inheritance, `dwi<ext>`
/// at the dataset root.
fn sidecar(root: &Path, image: &Path, run: &BidsRun, ext: &str) -> Option<PathBuf> {
    let beside = image.with_file_name(format!("{}_dwi{ext}", run.prefix()));
    let inherited = root.join(format!("dwi{ext}"));
    [beside, inherited].into_iter().find(|p| p.is_file())
}

/// A run found, or `(run name, why it cannot be used)`.
pub type Discovered = Result<SubjectFiles, (String, String)>;

/// Every diffusion run of the dataset at `root`, participants in label
/// order, sessions and runs in name order; only the `participants` given
/// (labels with or without `sub-`) when the list is not empty. A run whose
/// b-values or b-vectors are missing is an `Err((run name, why))` among
/// the others; a participant asked for but absent, or a dataset without
/// diffusion runs, is an error of the whole dataset.
pub fn discover(root: &Path, participants: &[String]) -> Result<Vec<Discovered>, String> {
    let wanted: Vec<&str> = participants
        .iter()
        .map(|p| p.strip_prefix("sub-").unwrap_or(p))
        .collect();
    let mut found_participants = Vec::new();
    let mut runs = Vec::new();
    for sub_dir in named_dirs(root, "sub-")? {
        let label = sub_dir
            .file_name()
            .map(|n| n.to_string_lossy().trim_start_matches("sub-").to_string())
            .unwrap_or_default();
        if !wanted.is_empty() && !wanted.contains(&label.as_str()) {
            continue;
        }
        found_participants.push(label);
        let mut dwi_dirs = vec![sub_dir.join("dwi")];
        for ses in named_dirs(&sub_dir, "ses-")? {
            dwi_dirs.push(ses.join("dwi"));
        }
        for dwi in dwi_dirs.iter().filter(|d| d.is_dir()) {
            for image in sorted_entries(dwi)? {
                let name = image
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Some(run) = BidsRun::from_file_name(&name) else {
                    continue;
                };
                let need = |ext: &str| {
                    sidecar(root, &image, &run, ext).ok_or_else(|| {
                        format!(
                            "BIDS run {}: no {}_dwi{ext} beside {} (nor dwi{ext} at the dataset root)",
                            run.prefix(),
                            run.prefix(),
                            image.display()
                        )
                    })
                };
                let found = need(".bval").and_then(|bvals| {
                    Ok(SubjectFiles {
                        name: run.prefix(),
                        bvals,
                        bvecs: need(".bvec")?,
                        image: image.clone(),
                        mask: None,
                        metadata: sidecar(root, &image, &run, ".json"),
                        bids: Some(run.clone()),
                    })
                });
                runs.push(found.map_err(|why| (run.prefix(), why)));
            }
        }
    }
    if let Some(missing) = wanted
        .iter()
        .find(|w| !found_participants.iter().any(|f| f == *w))
    {
        return Err(format!(
            "BIDS dataset {}: no participant sub-{missing}",
            root.display()
        ));
    }
    if runs.is_empty() {
        return Err(format!(
            "BIDS dataset {}: no sub-*/[ses-*/]dwi/*_dwi.nii[.gz] run",
            root.display()
        ));
    }
    Ok(runs)
}

/// The `dataset_description.json` of the derivatives Ember writes.
pub fn derivatives_description(source: &[PathBuf]) -> serde_json::Value {
    serde_json::json!({
        "Name": "Ember DTI derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "ember-neuro",
            "Version": env!("CARGO_PKG_VERSION"),
            "Description": "brain mask (median_otsu), non-local means denoising, DTI fit by weighted least squares, as DIPY",
        }],
        "SourceDatasets": source
            .iter()
            .map(|p| serde_json::json!({ "URL": format!("file://{}", p.display()) }))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_parse_into_entities() {
        let run = BidsRun::from_file_name("sub-01_ses-pre_acq-multi_run-2_dwi.nii.gz").unwrap();
        assert_eq!(run.subject(), "01");
        assert_eq!(run.prefix(), "sub-01_ses-pre_acq-multi_run-2");
        assert_eq!(run.folder(), PathBuf::from("sub-01/ses-pre/dwi"));
        assert_eq!(
            run.derivative(Path::new("/o"), "model-DTI_param-FA_dwimap.nii.gz"),
            PathBuf::from(
                "/o/sub-01/ses-pre/dwi/sub-01_ses-pre_acq-multi_run-2_model-DTI_param-FA_dwimap.nii.gz"
            )
        );
        for bad in [
            "sub-01_T1w.nii.gz",
            "ses-1_dwi.nii",
            "sub-01_dwi.bval",
            "sub-_dwi.nii",
            "sub-01_x_dwi.nii",
        ] {
            assert!(BidsRun::from_file_name(bad).is_none(), "{bad}");
        }
    }
}
