//! The event log: an application's [`EmberEvent`]s as JSON lines in
//! `ember.eventLog.dir`, written to `APP_ID.inprogress` while it runs and
//! renamed to `APP_ID` when it ends (so a finished log is never partial).

use super::status::{EmberEvent, SchedulerListener};
use ember_core::{EmberError, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Whether to write an event log (default false).
pub const ENABLED_KEY: &str = "ember.eventLog.enabled";
/// Where (default `/tmp/ember-events`).
pub const DIR_KEY: &str = "ember.eventLog.dir";
/// Suffix of a log still being written.
pub const IN_PROGRESS: &str = ".inprogress";

/// Writes one application's events.
pub struct EventLogWriter {
    file: Mutex<Option<BufWriter<File>>>,
    path: PathBuf,
    final_path: PathBuf,
}

impl EventLogWriter {
    /// Creates `dir/APP_ID.inprogress` (and `dir` if missing).
    pub fn create(dir: &Path, app_id: &str) -> Result<EventLogWriter> {
        std::fs::create_dir_all(dir).map_err(|e| EmberError::io(dir, "create event log dir", e))?;
        let name: String = app_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let final_path = dir.join(&name);
        let path = dir.join(format!("{name}{IN_PROGRESS}"));
        let file = File::create(&path).map_err(|e| EmberError::io(&path, "create event log", e))?;
        Ok(EventLogWriter {
            file: Mutex::new(Some(BufWriter::new(file))),
            path,
            final_path,
        })
    }

    /// The log's path once finished.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes, syncs and renames the log to its final name; later events
    /// are dropped.
    pub fn finish(&self) -> Result<()> {
        let Some(mut w) = self.file.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        w.flush()
            .map_err(|e| EmberError::io(&self.path, "write event log", e))?;
        w.get_ref()
            .sync_all()
            .map_err(|e| EmberError::io(&self.path, "sync event log", e))?;
        std::fs::rename(&self.path, &self.final_path)
            .map_err(|e| EmberError::io(&self.final_path, "rename event log", e))
    }
}

impl SchedulerListener for EventLogWriter {
    fn on_event(&self, event: &EmberEvent) {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = guard.as_mut() else { return };
        let line = match serde_json::to_string(event) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%e, "cannot encode an event");
                return;
            }
        };
        let busy = matches!(
            event,
            EmberEvent::TaskStart { .. } | EmberEvent::TaskEnd { .. }
        );
        let written = writeln!(w, "{line}").and_then(|()| if busy { Ok(()) } else { w.flush() });
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), %e, "event log write failed; logging stops");
            *guard = None;
        }
    }
}

/// Reads a log's events; a torn last line (a log still being written, or
/// of a crashed driver) is ignored, other bad lines are errors.
pub fn read_events(path: &Path) -> Result<Vec<EmberEvent>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| EmberError::io(path, "read event log", e))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut events = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<EmberEvent>(line) {
            Ok(e) => events.push(e),
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => {
                return Err(EmberError::Codec {
                    what: format!("{} line {}", path.display(), i + 1),
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_log_is_renamed_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let w = EventLogWriter::create(dir.path(), "app-1").unwrap();
        let e = EmberEvent::ApplicationEnd { time: 5 };
        w.on_event(&e);
        assert!(dir.path().join("app-1.inprogress").exists());
        w.finish().unwrap();
        assert!(!dir.path().join("app-1.inprogress").exists());
        assert_eq!(read_events(&dir.path().join("app-1")).unwrap(), vec![e]);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app-2.inprogress");
        std::fs::write(
            &p,
            "{\"Event\":\"ApplicationEnd\",\"time\":1}\n{\"Event\":\"Job",
        )
        .unwrap();
        assert_eq!(read_events(&p).unwrap().len(), 1);
        std::fs::write(&p, "garbage\n{\"Event\":\"ApplicationEnd\",\"time\":1}\n").unwrap();
        assert!(read_events(&p).is_err());
    }
}
