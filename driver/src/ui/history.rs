//! `ember history --dir D`: serves applications past (and still running)
//! from their event logs with the application UI and API. A log is
//! replayed when it is first asked for and again whenever it changed.

use super::app_ui::{api, app_json, html_page, Environment};
use super::event_log::{read_events, IN_PROGRESS};
use super::html::{self, link, page, table};
use super::http::{HttpServer, Request, Response};
use super::status::AppStatus;
use ember_core::{EmberError, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

type Cache = HashMap<PathBuf, (SystemTime, u64, Arc<AppStatus>)>;

/// Replays every log in a folder, caching by modification time and size.
pub struct History {
    dir: PathBuf,
    cache: Mutex<Cache>,
}

impl History {
    /// A history of the logs in `dir`.
    pub fn new(dir: &Path) -> History {
        History {
            dir: dir.to_path_buf(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Every application with a readable log, newest first.
    pub fn apps(&self) -> Vec<Arc<AppStatus>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut apps = Vec::new();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let stamp = (
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            );
            if let Some((t, n, st)) = cache.get(&path) {
                if (*t, *n) == stamp {
                    apps.push(st.clone());
                    continue;
                }
            }
            match read_events(&path) {
                Ok(events) => {
                    let mut st = AppStatus::default();
                    for e in &events {
                        st.apply(e);
                    }
                    if st.app.id.is_empty() {
                        st.app.id = name.trim_end_matches(IN_PROGRESS).to_string();
                    }
                    let st = Arc::new(st);
                    cache.insert(path, (stamp.0, stamp.1, st.clone()));
                    apps.push(st);
                }
                Err(e) => tracing::warn!(%e, "skipping an unreadable event log"),
            }
        }
        apps.sort_by_key(|a| std::cmp::Reverse(a.app.start));
        apps
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Response {
        let apps = self.apps();
        let find = |id: &str| apps.iter().find(|a| a.app.id == id).cloned();
        let env = Environment::new();
        let seg = req.segments();
        match seg.as_slice() {
            [] => Response::html(self.index(&apps)),
            ["api", "v1", "applications"] => {
                Response::json(&apps.iter().map(|a| app_json(a)).collect::<Vec<_>>())
            }
            ["api", "v1", "applications", id, rest @ ..] => match find(id) {
                Some(st) => api(&st, rest, req, &env),
                None => Response::not_found(&req.path),
            },
            ["history", id, rest @ ..] => match find(id) {
                Some(st) => html_page(&st, &format!("/history/{id}"), rest, req, &env),
                None => Response::not_found(&req.path),
            },
            _ => Response::not_found(&req.path),
        }
    }

    fn index(&self, apps: &[Arc<AppStatus>]) -> String {
        let row = |a: &Arc<AppStatus>| {
            vec![
                link(&format!("/history/{}/jobs/", a.app.id), &a.app.id),
                html::esc(&a.app.name),
                html::date(a.app.start),
                a.app.end.map(html::date).unwrap_or_default(),
                html::duration(
                    a.app
                        .end
                        .unwrap_or(a.app.last_updated)
                        .saturating_sub(a.app.start),
                ),
                html::esc(&a.app.user),
                a.jobs.len().to_string(),
            ]
        };
        let headers = [
            "App ID",
            "App Name",
            "Started",
            "Completed",
            "Duration",
            "User",
            "Jobs",
        ];
        let done: Vec<Vec<String>> = apps
            .iter()
            .filter(|a| a.app.end.is_some())
            .map(row)
            .collect();
        let open: Vec<Vec<String>> = apps
            .iter()
            .filter(|a| a.app.end.is_none())
            .map(row)
            .collect();
        let body = format!(
            "<dl><dt>Event log directory</dt><dd>{}</dd></dl><h2>Completed Applications ({})</h2>{}\
             <h2>Incomplete Applications ({})</h2>{}",
            html::esc(&self.dir.display().to_string()),
            done.len(),
            table("completed-apps", &headers, &done),
            open.len(),
            table("incomplete-apps", &headers, &open)
        );
        page(
            "Ember History Server",
            &[("/", "Applications"), ("/api/v1/applications", "API")],
            &body,
        )
    }
}

/// Serves the event logs in `dir` on `host:port`.
pub fn serve(dir: &Path, host: &str, port: u16) -> Result<HttpServer> {
    if !dir.is_dir() {
        return Err(EmberError::Io {
            path: dir.display().to_string(),
            action: "open event log folder".into(),
            message: "not a folder".into(),
        });
    }
    let history = Arc::new(History::new(dir));
    HttpServer::start(host, port, false, Arc::new(move |req| history.handle(req)))
}
