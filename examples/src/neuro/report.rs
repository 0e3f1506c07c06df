//! The run's report: `run.json` for scripts and `report.html` for a
//! person, a row per subject with its status, voxels in the mask, noise
//! sigma per volume, seconds per step and its QA image.

// A subject's name or an error is user input: escaped as the web UI does.
use ember_driver::ui::html::esc as escape;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One subject's line in the report.
#[derive(Clone, Debug, Serialize)]
pub struct SubjectReport {
    /// The subject's name.
    pub name: String,
    /// Its diffusion image, when it was found.
    pub image: Option<PathBuf>,
    /// Its JSON sidecar (BIDS runs).
    pub metadata: Option<PathBuf>,
    /// `ok`, `failed`, or `not run` (the run stopped at another subject's
    /// failure).
    pub status: &'static str,
    /// Why it failed (step and cause).
    pub reason: Option<String>,
    /// Voxels in the brain mask.
    pub mask_voxels: Option<usize>,
    /// Noise sigma of each volume, in volume order.
    pub sigmas: Vec<f32>,
    /// Compute seconds spent on the subject per step.
    pub seconds: Vec<(String, f64)>,
    /// Files written, relative to the output folder.
    pub outputs: Vec<PathBuf>,
    /// The QA image, relative to the output folder.
    pub qa: Option<PathBuf>,
}

impl SubjectReport {
    /// A subject that failed before or during the pipeline.
    pub fn failed(name: &str, image: Option<PathBuf>, reason: String) -> Self {
        SubjectReport {
            status: "failed",
            ..Self::not_run(name, image, reason)
        }
    }

    /// A subject left out because the run stopped at another's failure.
    pub fn not_run(name: &str, image: Option<PathBuf>, reason: String) -> Self {
        SubjectReport {
            name: name.to_string(),
            image,
            metadata: None,
            status: "not run",
            reason: Some(reason),
            mask_voxels: None,
            sigmas: Vec::new(),
            seconds: Vec::new(),
            outputs: Vec::new(),
            qa: None,
        }
    }
}

/// What the engine moved for the whole run, summed over its jobs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineTotals {
    /// Bytes written to shuffle files (compressed).
    pub shuffle_bytes_written: u64,
    /// In-memory size of data that aggregations spilled.
    pub spill_memory_bytes: u64,
    /// Bytes of spill files written.
    pub spill_disk_bytes: u64,
    /// Most execution memory one task held at once.
    pub peak_execution_memory: u64,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The master URL the run used.
    pub master: String,
    /// Every subject, in input order.
    pub subjects: Vec<SubjectReport>,
    /// Wall seconds of each step of the run.
    pub steps: Vec<(String, f64)>,
    /// The engine's shuffle and spill totals.
    pub engine: EngineTotals,
}

impl RunReport {
    /// Subjects that failed.
    pub fn failed(&self) -> usize {
        self.subjects
            .iter()
            .filter(|s| s.status == "failed")
            .count()
    }

    /// The per-subject summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let width = self
            .subjects
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0)
            .max(7);
        let mut out = format!("{:<width$}  status\n", "subject");
        for s in &self.subjects {
            match &s.reason {
                None => out.push_str(&format!("{:<width$}  ok\n", s.name)),
                Some(why) => out.push_str(&format!("{:<width$}  {}: {why}\n", s.name, s.status)),
            }
        }
        out
    }

    /// Writes `run.json` and `report.html` into `out` (each written, then
    /// renamed).
    pub fn write(&self, out: &Path) -> Result<(), String> {
        let json = serde_json::to_string_pretty(self).map_err(|e| format!("run.json: {e}"))?;
        write_atomic(&out.join("run.json"), json.as_bytes())?;
        write_atomic(&out.join("report.html"), self.html().as_bytes())
    }

    fn html(&self) -> String {
        let mut rows = String::new();
        for s in &self.subjects {
            let sigma = if s.sigmas.is_empty() {
                String::new()
            } else {
                let (lo, hi) = s
                    .sigmas
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(v), hi.max(v))
                    });
                let all: Vec<String> = s.sigmas.iter().map(|v| format!("{v:.3}")).collect();
                format!(
                    "{lo:.3} – {hi:.3}<details><summary>per volume</summary>{}</details>",
                    escape(&all.join(", "))
                )
            };
            let times: Vec<String> = s
                .seconds
                .iter()
                .map(|(step, t)| format!("{}&nbsp;{t:.2}&nbsp;s", escape(step)))
                .collect();
            let qa = s.qa.as_ref().map_or(String::new(), |p| {
                let p = escape(&p.display().to_string());
                format!("<a href=\"{p}\"><img src=\"{p}\" alt=\"QA\" width=\"320\"></a>")
            });
            let status = match &s.reason {
                None => "<span class=\"ok\">ok</span>".to_string(),
                Some(why) => format!(
                    "<span class=\"failed\">{}</span>: {}",
                    s.status,
                    escape(why)
                ),
            };
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{status}</td><td>{}</td><td>{sigma}</td><td>{}</td><td>{qa}</td></tr>\n",
                escape(&s.name),
                s.mask_voxels.map_or(String::new(), |v| v.to_string()),
                times.join("<br>"),
            ));
        }
        let steps: Vec<String> = self
            .steps
            .iter()
            .map(|(step, t)| format!("{} {t:.2} s", escape(step)))
            .collect();
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>neuro run report</title>\n\
             <style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} \
             td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}} \
             .ok{{color:#070}} .failed{{color:#b00}}</style></head><body>\n\
             <h1>neuro run</h1>\n<p>master {}; {} subject(s), {} failed; steps: {}</p>\n\
             <table><tr><th>subject</th><th>status</th><th>voxels in mask</th>\
             <th>noise sigma</th><th>compute seconds</th><th>QA: b0 + mask, colour FA, MD</th></tr>\n\
             {rows}</table></body></html>\n",
            escape(&self.master),
            self.subjects.len(),
            self.failed(),
            steps.join(", "),
        )
    }
}

/// Writes `bytes` to `path` through a temporary file renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let err = |e: std::io::Error| format!("{}: cannot write: {e}", path.display());
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_reasons_are_escaped_in_the_html_report() {
        let report = RunReport {
            master: "local[2]".into(),
            subjects: vec![SubjectReport::failed(
                "<script>x</script>",
                None,
                "load: a & b".into(),
            )],
            steps: vec![],
            engine: EngineTotals::default(),
        };
        let html = report.html();
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("a &amp; b"));
        assert_eq!(report.failed(), 1);
        assert!(report.summary().contains("failed: load: a & b"));
    }
}
