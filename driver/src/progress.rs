//! The console progress bar: one line on stderr per running stage, as
//! Spark's `ConsoleProgressBar` draws it, redrawn at most every 100 ms.

use ember_core::StageId;
use std::io::Write;
use std::time::{Duration, Instant};

const REDRAW_EVERY: Duration = Duration::from_millis(100);
const WIDTH: usize = 40;

/// Task counts of one stage.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageProgress {
    /// Tasks of the stage attempt.
    pub total: usize,
    /// Finished successfully.
    pub done: usize,
    /// Running now.
    pub running: usize,
}

/// Draws stage progress when enabled.
pub struct ProgressBar {
    enabled: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl ProgressBar {
    /// A bar that draws only when `enabled`.
    pub fn new(enabled: bool) -> Self {
        ProgressBar {
            enabled,
            last: None,
            drawn: false,
        }
    }

    /// Whether [`update`](Self::update) would draw now. Gathering the
    /// counts costs a pass over the job's tasks, so callers ask first:
    /// doing it on every task event made a 10,000-task job quadratic.
    pub fn due(&self) -> bool {
        self.enabled && self.last.is_none_or(|t| t.elapsed() >= REDRAW_EVERY)
    }

    /// Redraws if enough time has passed since the last drawing.
    pub fn update(&mut self, stages: &[(StageId, StageProgress)]) {
        if !self.enabled || stages.is_empty() {
            return;
        }
        if self.last.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let line: String = stages
            .iter()
            .map(|(id, p)| render(*id, p))
            .collect::<Vec<_>>()
            .join(" ");
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the bar (at the end of a job).
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{:width$}\r", "", width = WIDTH + 40);
            let _ = err.flush();
            self.drawn = false;
        }
        self.last = None;
    }
}

/// `[Stage 3:==========>        (12 + 2) / 40]`
pub fn render(id: StageId, p: &StageProgress) -> String {
    let filled = (WIDTH * p.done).checked_div(p.total).unwrap_or(WIDTH);
    let bar: String = (0..WIDTH)
        .map(|i| {
            if i < filled {
                '='
            } else if i == filled {
                '>'
            } else {
                ' '
            }
        })
        .collect();
    format!(
        "[Stage {}:{bar}({} + {}) / {}]",
        id.0, p.done, p.running, p.total
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_done_running_and_total() {
        let s = render(
            StageId(3),
            &StageProgress {
                total: 40,
                done: 10,
                running: 2,
            },
        );
        assert!(s.starts_with("[Stage 3:=========="), "{s}");
        assert!(s.ends_with("(10 + 2) / 40]"), "{s}");
    }
}
