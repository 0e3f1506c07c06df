//! Timing the steps of a driver program for its closing table.

use ember_driver::{Context, Result};
use std::time::Instant;

/// Named step times, in the order they ran.
#[derive(Default, Debug)]
pub struct Steps {
    rows: Vec<(String, f64)>,
}

impl Steps {
    /// No steps yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` as step `name`.
    pub fn time<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let start = Instant::now();
        let out = f()?;
        self.rows
            .push((name.to_string(), start.elapsed().as_secs_f64()));
        Ok(out)
    }

    /// Runs `f`, one job whose stages are the steps `names` in order; each
    /// step gets its stage's time (the whole job's time if the stages do
    /// not match the names one to one).
    pub fn time_job<T>(
        &mut self,
        ctx: &Context,
        names: &[&str],
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let start = Instant::now();
        let out = f()?;
        let total = start.elapsed().as_secs_f64();
        let stages = ctx
            .job_reports()
            .last()
            .map(|r| r.stage_seconds.clone())
            .unwrap_or_default();
        if stages.len() == names.len() {
            for (name, (_, secs)) in names.iter().zip(stages) {
                self.rows.push((name.to_string(), secs));
            }
        } else {
            self.rows.push((names.join(" + "), total));
        }
        Ok(out)
    }

    /// Adds a step measured elsewhere.
    pub fn record(&mut self, name: &str, seconds: f64) {
        self.rows.push((name.to_string(), seconds));
    }

    /// The steps and their seconds.
    pub fn rows(&self) -> &[(String, f64)] {
        &self.rows
    }

    /// A plain-text table with a total.
    pub fn table(&self) -> String {
        let mut s = format!("{:<20} {:>10}\n", "step", "seconds");
        for (name, secs) in &self.rows {
            s.push_str(&format!("{name:<20} {secs:>10.3}\n"));
        }
        let total: f64 = self.rows.iter().map(|(_, t)| t).sum();
        s.push_str(&format!("{:<20} {total:>10.3}\n", "total"));
        s
    }
}
