//! The master's web UI: workers and applications as HTML, and as JSON
//! under `/json` (Spark's master JSON) and `/api/v1/applications`.

use super::master::{AppState, ApplicationInfo, MasterSnapshot, WorkerState};
use crate::ui::html::{self, esc, link, page, table};
use crate::ui::http::{Request, Response};
use serde_json::json;

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/json", "JSON"),
    ("/api/v1/applications", "API"),
];

/// Answers one request from `snap`.
pub fn handle(snap: &MasterSnapshot, req: &Request) -> Response {
    let seg = req.segments();
    match seg.as_slice() {
        [] => Response::html(overview(snap)),
        ["app"] => match req
            .param("appId")
            .and_then(|id| snap.apps.iter().find(|a| a.id == id))
        {
            Some(app) => Response::html(app_page(app)),
            None => Response::not_found(&req.path),
        },
        ["json"] => Response::json(&master_json(snap)),
        ["api", "v1", "applications"] => {
            Response::json(&snap.apps.iter().map(api_app).collect::<Vec<_>>())
        }
        ["api", "v1", "applications", id] => match snap.apps.iter().find(|a| a.id == *id) {
            Some(a) => Response::json(&api_app(a)),
            None => Response::not_found(&req.path),
        },
        ["api", "v1", "workers"] => Response::json(&snap.workers),
        _ => Response::not_found(&req.path),
    }
}

fn master_json(s: &MasterSnapshot) -> serde_json::Value {
    let alive = s.workers.iter().filter(|w| w.state == WorkerState::Alive);
    json!({
        "url": s.url,
        "workers": s.workers,
        "aliveworkers": alive.clone().count(),
        "cores": alive.clone().map(|w| w.cores).sum::<usize>(),
        "coresused": alive.clone().map(|w| w.coresused).sum::<usize>(),
        "memory": alive.clone().map(|w| w.memory).sum::<u64>(),
        "memoryused": alive.map(|w| w.memoryused).sum::<u64>(),
        "activeapps": s.apps.iter().filter(|a| a.state != AppState::Finished).collect::<Vec<_>>(),
        "completedapps": s.apps.iter().filter(|a| a.state == AppState::Finished).collect::<Vec<_>>(),
        "status": "ALIVE",
    })
}

fn api_app(a: &ApplicationInfo) -> serde_json::Value {
    json!({
        "id": a.id,
        "name": a.name,
        "coresGranted": a.cores_granted,
        "maxCores": a.cores,
        "coresPerExecutor": a.cores_per_executor,
        "memoryPerExecutorMB": a.memoryperslave,
        "attempts": [{
            "startTime": html::api_date(a.starttime),
            "endTime": a.endtime.map(html::api_date),
            "lastUpdated": html::api_date(a.endtime.unwrap_or(a.starttime + a.duration)),
            "duration": a.duration,
            "sparkUser": a.user,
            "completed": a.state == AppState::Finished,
            "startTimeEpoch": a.starttime,
            "endTimeEpoch": a.endtime,
        }],
    })
}

fn app_rows(apps: &[&ApplicationInfo]) -> Vec<Vec<String>> {
    apps.iter()
        .map(|a| {
            vec![
                link(&format!("/app?appId={}", a.id), &a.id),
                match &a.driver_ui {
                    Some(u) if a.state != AppState::Finished => link(u, &a.name),
                    _ => esc(&a.name),
                },
                format!(
                    "{} of {}",
                    a.cores_granted,
                    a.cores.map_or("all".to_string(), |c| c.to_string())
                ),
                format!("{} MiB", a.memoryperslave),
                html::date(a.starttime),
                esc(&a.user),
                format!("{:?}", a.state).to_uppercase(),
                html::duration(a.duration),
            ]
        })
        .collect()
}

fn overview(s: &MasterSnapshot) -> String {
    let alive: Vec<_> = s
        .workers
        .iter()
        .filter(|w| w.state == WorkerState::Alive)
        .collect();
    let cores: usize = alive.iter().map(|w| w.cores).sum();
    let used: usize = alive.iter().map(|w| w.coresused).sum();
    let mem: u64 = alive.iter().map(|w| w.memory).sum();
    let mem_used: u64 = alive.iter().map(|w| w.memoryused).sum();
    let running: Vec<_> = s
        .apps
        .iter()
        .filter(|a| a.state != AppState::Finished)
        .collect();
    let done: Vec<_> = s
        .apps
        .iter()
        .filter(|a| a.state == AppState::Finished)
        .collect();
    let mut body = format!(
        "<dl><dt>URL</dt><dd id=\"master-url\">{}</dd><dt>Alive workers</dt><dd id=\"alive-workers\">{}</dd>\
         <dt>Cores in use</dt><dd>{used} of {cores}</dd><dt>Memory in use</dt><dd>{} of {}</dd>\
         <dt>Applications</dt><dd>{} running, {} completed</dd><dt>Status</dt><dd class=\"ok\">ALIVE</dd></dl>",
        esc(&s.url),
        alive.len(),
        html::bytes(mem_used << 20),
        html::bytes(mem << 20),
        running.len(),
        done.len()
    );
    body.push_str("<h2>Workers</h2>");
    let rows: Vec<Vec<String>> = s
        .workers
        .iter()
        .map(|w| {
            vec![
                if w.webuiaddress.is_empty() {
                    esc(&w.id)
                } else {
                    link(&w.webuiaddress, &w.id)
                },
                esc(&w.host),
                match w.state {
                    WorkerState::Alive => "<span class=\"ok\">ALIVE</span>".into(),
                    WorkerState::Dead => "<span class=\"bad\">DEAD</span>".into(),
                },
                format!("{} ({} used)", w.cores, w.coresused),
                format!(
                    "{} ({} used)",
                    html::bytes(w.memory << 20),
                    html::bytes(w.memoryused << 20)
                ),
                w.executors.to_string(),
            ]
        })
        .collect();
    body.push_str(&table(
        "workers",
        &["Worker", "Host", "State", "Cores", "Memory", "Executors"],
        &rows,
    ));
    let headers = [
        "Application ID",
        "Name",
        "Cores",
        "Memory per Executor",
        "Submitted",
        "User",
        "State",
        "Duration",
    ];
    body.push_str("<h2>Running Applications</h2>");
    body.push_str(&table("running-apps", &headers, &app_rows(&running)));
    body.push_str("<h2>Completed Applications</h2>");
    body.push_str(&table("completed-apps", &headers, &app_rows(&done)));
    page(&format!("Ember Master at {}", s.url), NAV, &body)
}

fn app_page(a: &ApplicationInfo) -> String {
    let mut body = format!(
        "<dl><dt>ID</dt><dd>{}</dd><dt>Name</dt><dd>{}</dd><dt>User</dt><dd>{}</dd>\
         <dt>Cores</dt><dd>{} granted</dd><dt>Memory per executor</dt><dd>{} MiB</dd>\
         <dt>Binary</dt><dd>{} <span class=\"muted\">sha256 {}</span></dd><dt>State</dt><dd>{:?}</dd>{}</dl>",
        esc(&a.id),
        esc(&a.name),
        esc(&a.user),
        a.cores_granted,
        a.memoryperslave,
        esc(&a.binary),
        esc(&a.binary_sha256),
        a.state,
        a.driver_ui
            .as_ref()
            .filter(|_| a.state != AppState::Finished)
            .map(|u| format!("<dt>Application UI</dt><dd>{}</dd>", link(u, u)))
            .unwrap_or_default()
    );
    body.push_str("<h2>Executors</h2>");
    let rows: Vec<Vec<String>> = a
        .executors
        .iter()
        .map(|e| {
            vec![
                esc(&e.id),
                esc(&e.worker),
                e.cores.to_string(),
                format!("{} MiB", e.memory),
                esc(&e.state),
            ]
        })
        .collect();
    body.push_str(&table(
        "executors",
        &["Executor ID", "Worker", "Cores", "Memory", "State"],
        &rows,
    ));
    page(&format!("Application: {}", a.name), NAV, &body)
}
