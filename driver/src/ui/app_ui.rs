//! The application UI (jobs, stages with task metrics, executors,
//! storage, environment) and its JSON API in the shape of Spark's
//! `/api/v1`, rendered from an [`AppStatus`]. The driver serves it live;
//! `ember history` serves the same pages for replayed event logs.

use super::html::{self, esc, link, page, progress, table};
use super::http::{Request, Response};
use super::status::{AppStatus, JobData, StageData, Status};
use serde_json::{json, Value};

/// Configuration shown on the environment page (secrets hidden).
pub type Environment = Vec<(String, String)>;

fn nav(base: &str) -> Vec<(String, &'static str)> {
    vec![
        (format!("{base}/jobs/"), "Jobs"),
        (format!("{base}/stages/"), "Stages"),
        (format!("{base}/storage/"), "Storage"),
        (format!("{base}/environment/"), "Environment"),
        (format!("{base}/executors/"), "Executors"),
    ]
}

fn render(title: &str, base: &str, body: &str) -> Response {
    let nav = nav(base);
    let nav: Vec<(&str, &str)> = nav.iter().map(|(h, l)| (h.as_str(), *l)).collect();
    Response::html(page(title, &nav, body))
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Running => "RUNNING",
        Status::Succeeded => "SUCCEEDED",
        Status::Failed => "FAILED",
        Status::Skipped => "SKIPPED",
    }
}

fn stage_status_word(s: Status) -> &'static str {
    match s {
        Status::Running => "ACTIVE",
        Status::Succeeded => "COMPLETE",
        Status::Failed => "FAILED",
        Status::Skipped => "SKIPPED",
    }
}

/// One HTML page of the application UI; `rest` is the path below `base`.
pub fn html_page(
    st: &AppStatus,
    base: &str,
    rest: &[&str],
    req: &Request,
    env: &Environment,
) -> Response {
    match rest {
        [] | ["jobs"] => render(
            &format!("{} - Jobs", st.app.name),
            base,
            &jobs_page(st, base),
        ),
        ["jobs", "job"] => match req
            .param("id")
            .and_then(|i| i.parse::<u64>().ok())
            .and_then(|i| st.jobs.get(&i))
        {
            Some(j) => render(
                &format!("Details for Job {}", j.id),
                base,
                &job_page(st, base, j),
            ),
            None => Response::not_found(&req.path),
        },
        ["stages"] => render(
            &format!("{} - Stages", st.app.name),
            base,
            &stages_page(st, base),
        ),
        ["stages", "stage"] => {
            let id = req.param("id").and_then(|i| i.parse::<u64>().ok());
            let attempt = req
                .param("attempt")
                .and_then(|i| i.parse::<usize>().ok())
                .unwrap_or(0);
            match id.and_then(|i| st.stages.get(&(i, attempt))) {
                Some(s) => render(
                    &format!("Details for Stage {} (Attempt {})", s.id, s.attempt),
                    base,
                    &stage_page(s),
                ),
                None => Response::not_found(&req.path),
            }
        }
        ["executors"] => render(
            &format!("{} - Executors", st.app.name),
            base,
            &executors_page(st),
        ),
        ["storage"] => render(
            &format!("{} - Storage", st.app.name),
            base,
            &storage_page(st),
        ),
        ["environment"] => {
            let rows: Vec<Vec<String>> = env.iter().map(|(k, v)| vec![esc(k), esc(v)]).collect();
            let body = format!(
                "<h2>Ember Properties</h2>{}",
                table("properties", &["Name", "Value"], &rows)
            );
            render(&format!("{} - Environment", st.app.name), base, &body)
        }
        _ => Response::not_found(&req.path),
    }
}

fn app_summary(st: &AppStatus) -> String {
    let end = st.app.end.unwrap_or_else(html::now_ms);
    format!(
        "<dl><dt>Application</dt><dd id=\"app-id\">{} ({})</dd><dt>User</dt><dd>{}</dd><dt>Master</dt><dd>{}</dd>\
         <dt>Started</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd></dl>",
        esc(&st.app.id),
        esc(&st.app.name),
        esc(&st.app.user),
        esc(&st.app.master),
        html::date(st.app.start),
        if st.app.end.is_some() { "Total uptime" } else { "Uptime" },
        html::duration(end.saturating_sub(st.app.start))
    )
}

fn job_tasks(st: &AppStatus, j: &JobData) -> (usize, usize, usize, usize) {
    let (mut total, mut done, mut running, mut failed) = (0, 0, 0, 0);
    for s in st.stages.values().filter(|s| s.job_id == j.id) {
        total += s.num_tasks;
        done += s.complete.min(s.num_tasks);
        running += s.active;
        failed += s.failed;
    }
    (total, done, running, failed)
}

fn job_rows(st: &AppStatus, base: &str, jobs: &[&JobData]) -> Vec<Vec<String>> {
    jobs.iter()
        .map(|j| {
            let stages = st.job_stages(j);
            let count = |s: Status| stages.iter().filter(|(_, x)| *x == s).count();
            let (total, done, running, failed) = job_tasks(st, j);
            let end = j.completed.unwrap_or_else(html::now_ms);
            vec![
                j.id.to_string(),
                link(&format!("{base}/jobs/job/?id={}", j.id), &j.name),
                html::date(j.submitted),
                html::duration(end.saturating_sub(j.submitted)),
                format!(
                    "{}/{}{}",
                    count(Status::Succeeded),
                    stages.len() - count(Status::Skipped),
                    if count(Status::Skipped) > 0 {
                        format!(" ({} skipped)", count(Status::Skipped))
                    } else {
                        String::new()
                    }
                ),
                progress(done, running, total, failed),
                status_word(j.status).to_string(),
            ]
        })
        .collect()
}

fn jobs_page(st: &AppStatus, base: &str) -> String {
    let mut jobs: Vec<&JobData> = st.jobs.values().collect();
    jobs.reverse();
    let active: Vec<&JobData> = jobs
        .iter()
        .copied()
        .filter(|j| j.status == Status::Running)
        .collect();
    let done: Vec<&JobData> = jobs
        .iter()
        .copied()
        .filter(|j| j.status == Status::Succeeded)
        .collect();
    let failed: Vec<&JobData> = jobs
        .iter()
        .copied()
        .filter(|j| j.status == Status::Failed)
        .collect();
    let headers = [
        "Job Id",
        "Description",
        "Submitted",
        "Duration",
        "Stages: Succeeded/Total",
        "Tasks (for all stages): Succeeded/Total",
        "Status",
    ];
    let mut body = app_summary(st);
    body.push_str(&format!(
        "<h2 id=\"active-jobs\">Active Jobs ({})</h2>",
        active.len()
    ));
    body.push_str(&table(
        "active-jobs-table",
        &headers,
        &job_rows(st, base, &active),
    ));
    body.push_str(&format!(
        "<h2 id=\"completed-jobs\">Completed Jobs ({})</h2>",
        done.len()
    ));
    body.push_str(&table(
        "completed-jobs-table",
        &headers,
        &job_rows(st, base, &done),
    ));
    if !failed.is_empty() {
        body.push_str(&format!(
            "<h2 id=\"failed-jobs\">Failed Jobs ({})</h2>",
            failed.len()
        ));
        body.push_str(&table(
            "failed-jobs-table",
            &headers,
            &job_rows(st, base, &failed),
        ));
        for j in failed {
            if let Some(e) = &j.error {
                body.push_str(&format!("<p class=\"bad\">Job {}: {}</p>", j.id, esc(e)));
            }
        }
    }
    body
}

fn stage_rows(base: &str, stages: &[&StageData]) -> Vec<Vec<String>> {
    stages
        .iter()
        .map(|s| {
            let end = s.completed.unwrap_or_else(html::now_ms);
            vec![
                s.id.to_string(),
                s.attempt.to_string(),
                link(
                    &format!("{base}/stages/stage/?id={}&attempt={}", s.id, s.attempt),
                    &s.name,
                ),
                html::date(s.submitted),
                html::duration(end.saturating_sub(s.submitted)),
                progress(s.complete.min(s.num_tasks), s.active, s.num_tasks, s.failed),
                html::bytes(s.metrics.shuffle_bytes_read),
                html::bytes(s.metrics.shuffle_bytes_written),
                s.failure.as_deref().map(esc).unwrap_or_default(),
            ]
        })
        .collect()
}

const STAGE_HEADERS: [&str; 9] = [
    "Stage Id",
    "Attempt",
    "Description",
    "Submitted",
    "Duration",
    "Tasks: Succeeded/Total",
    "Shuffle Read",
    "Shuffle Write",
    "Failure Reason",
];

fn stages_page(st: &AppStatus, base: &str) -> String {
    let mut all: Vec<&StageData> = st.stages.values().collect();
    all.reverse();
    let pick =
        |s: Status| -> Vec<&StageData> { all.iter().copied().filter(|x| x.status == s).collect() };
    let (active, done, failed) = (
        pick(Status::Running),
        pick(Status::Succeeded),
        pick(Status::Failed),
    );
    let mut body = format!(
        "<h2 id=\"active-stages\">Active Stages ({})</h2>",
        active.len()
    );
    body.push_str(&table(
        "active-stages-table",
        &STAGE_HEADERS,
        &stage_rows(base, &active),
    ));
    body.push_str(&format!(
        "<h2 id=\"completed-stages\">Completed Stages ({})</h2>",
        done.len()
    ));
    body.push_str(&table(
        "completed-stages-table",
        &STAGE_HEADERS,
        &stage_rows(base, &done),
    ));
    body.push_str(&format!(
        "<h2 id=\"failed-stages\">Failed Stages ({})</h2>",
        failed.len()
    ));
    body.push_str(&table(
        "failed-stages-table",
        &STAGE_HEADERS,
        &stage_rows(base, &failed),
    ));
    body
}

fn job_page(st: &AppStatus, base: &str, j: &JobData) -> String {
    let mut body = format!(
        "<dl><dt>Description</dt><dd>{}</dd>{}<dt>Status</dt><dd>{}</dd><dt>Submitted</dt><dd>{}</dd>{}</dl>",
        esc(&j.name),
        j.group
            .as_ref()
            .map(|g| format!("<dt>Job group</dt><dd>{}</dd>", esc(g)))
            .unwrap_or_default(),
        status_word(j.status),
        html::date(j.submitted),
        j.error
            .as_ref()
            .map(|e| format!("<dt>Error</dt><dd class=\"bad\">{}</dd>", esc(e)))
            .unwrap_or_default()
    );
    if !j.stages.is_empty() {
        let statuses: std::collections::HashMap<u64, Status> =
            st.job_stages(j).into_iter().collect();
        // A stage not yet submitted has no attempt: drawn as pending.
        let started = |id: u64| st.stages.range((id, 0)..=(id, usize::MAX)).next().is_some();
        body.push_str("<h2>DAG Visualization</h2>");
        body.push_str(&super::dag_svg::stage_graph(&j.stages, |id| {
            statuses
                .get(&id)
                .copied()
                .filter(|s| *s == Status::Skipped || started(id))
        }));
    }
    let stages: Vec<&StageData> = st.stages.values().filter(|s| s.job_id == j.id).collect();
    body.push_str("<h2>Stages</h2>");
    body.push_str(&table(
        "job-stages-table",
        &STAGE_HEADERS,
        &stage_rows(base, &stages),
    ));
    let skipped: Vec<String> = st
        .job_stages(j)
        .into_iter()
        .filter(|(_, s)| *s == Status::Skipped)
        .map(|(id, _)| id.to_string())
        .collect();
    if !skipped.is_empty() {
        body.push_str(&format!(
            "<p class=\"muted\">Skipped stages (outputs already computed): {}</p>",
            skipped.join(", ")
        ));
    }
    body
}

fn stage_page(s: &StageData) -> String {
    let m = &s.metrics;
    let mut body = format!(
        "<dl><dt>Description</dt><dd>{}</dd><dt>Status</dt><dd>{}</dd><dt>Tasks</dt><dd>{}</dd>\
         <dt>Total task time</dt><dd>{}</dd><dt>Input</dt><dd>{} ({} records)</dd>\
         <dt>Shuffle read</dt><dd>{} ({} records)</dd>\
         <dt>Shuffle write</dt><dd>{} ({} records)</dd><dt>Spill (memory / disk)</dt><dd>{} / {}</dd>\
         <dt>Peak execution memory</dt><dd>{}</dd>{}</dl>",
        esc(&s.name),
        stage_status_word(s.status),
        progress(s.complete.min(s.num_tasks), s.active, s.num_tasks, s.failed),
        html::duration(s.executor_run_ms),
        html::bytes(m.input_bytes),
        m.input_records,
        html::bytes(m.shuffle_bytes_read),
        m.shuffle_records_read,
        html::bytes(m.shuffle_bytes_written),
        m.shuffle_records_written,
        html::bytes(m.spill_memory_bytes),
        html::bytes(m.spill_disk_bytes),
        html::bytes(m.peak_execution_memory),
        s.failure
            .as_ref()
            .map(|e| format!("<dt>Failure</dt><dd class=\"bad\">{}</dd>", esc(e)))
            .unwrap_or_default()
    );
    let rows: Vec<Vec<String>> = s
        .tasks
        .values()
        .map(|t| {
            vec![
                t.partition.to_string(),
                t.task_id.to_string(),
                esc(&t.executor_id),
                t.status.to_string(),
                html::date(t.launched),
                t.duration.map(html::duration).unwrap_or_default(),
                html::bytes(t.metrics.shuffle_bytes_read),
                html::bytes(t.metrics.shuffle_bytes_written),
                t.error.as_deref().map(esc).unwrap_or_default(),
            ]
        })
        .collect();
    body.push_str(&format!("<h2>Tasks ({})</h2>", rows.len()));
    body.push_str(&table(
        "tasks-table",
        &[
            "Index",
            "Task ID",
            "Executor",
            "Status",
            "Launch Time",
            "Duration",
            "Shuffle Read",
            "Shuffle Write",
            "Errors",
        ],
        &rows,
    ));
    body
}

fn executors_page(st: &AppStatus) -> String {
    let rows: Vec<Vec<String>> = st
        .executors
        .values()
        .map(|x| {
            vec![
                esc(&x.id),
                esc(x.host_port.as_deref().unwrap_or("driver")),
                if x.removed.is_some() {
                    format!(
                        "<span class=\"bad\">Dead</span> {}",
                        esc(x.removed_reason.as_deref().unwrap_or(""))
                    )
                } else {
                    "<span class=\"ok\">Active</span>".into()
                },
                x.cores.to_string(),
                x.active.to_string(),
                x.failed.to_string(),
                x.completed.to_string(),
                (x.active + x.failed + x.completed).to_string(),
                html::duration(x.total_ms),
            ]
        })
        .collect();
    let active = st
        .executors
        .values()
        .filter(|x| x.removed.is_none())
        .count();
    format!(
        "<h2 id=\"executors\">Executors ({active} active, {} dead)</h2>{}",
        st.executors.len() - active,
        table(
            "executors-table",
            &[
                "Executor ID",
                "Address",
                "Status",
                "Cores",
                "Active Tasks",
                "Failed Tasks",
                "Complete Tasks",
                "Total Tasks",
                "Task Time"
            ],
            &rows,
        )
    )
}

fn storage_page(st: &AppStatus) -> String {
    let rows: Vec<Vec<String>> = st
        .rdds
        .iter()
        .map(|(rdd, parts)| {
            let mut on: Vec<&str> = parts.values().map(String::as_str).collect();
            on.sort_unstable();
            on.dedup();
            vec![
                format!("rdd {rdd}"),
                parts.len().to_string(),
                esc(&on.join(", ")),
            ]
        })
        .collect();
    format!(
        "<h2 id=\"rdds\">RDDs ({})</h2>{}",
        rows.len(),
        table(
            "rdd-table",
            &["RDD", "Cached Partitions", "Executors"],
            &rows
        )
    )
}

fn storage_json(st: &AppStatus) -> Value {
    Value::Array(
        st.rdds
            .iter()
            .map(|(rdd, parts)| {
                let mut on: Vec<&str> = parts.values().map(String::as_str).collect();
                on.sort_unstable();
                on.dedup();
                json!({
                    "id": rdd,
                    "name": format!("rdd {rdd}"),
                    "numCachedPartitions": parts.len(),
                    "executors": on,
                    "partitions": parts.iter().map(|(p, e)| json!({"partition": p, "executor": e})).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// The application in `/api/v1/applications` form.
pub fn app_json(st: &AppStatus) -> Value {
    let end = st.app.end;
    json!({
        "id": st.app.id,
        "name": st.app.name,
        "attempts": [{
            "startTime": html::api_date(st.app.start),
            "endTime": end.map(html::api_date),
            "lastUpdated": html::api_date(st.app.last_updated),
            "duration": end.unwrap_or_else(html::now_ms).saturating_sub(st.app.start),
            "sparkUser": st.app.user,
            "completed": end.is_some(),
            "appSparkVersion": env!("CARGO_PKG_VERSION"),
            "startTimeEpoch": st.app.start,
            "endTimeEpoch": end,
            "lastUpdatedEpoch": st.app.last_updated,
        }],
    })
}

fn job_json(st: &AppStatus, j: &JobData) -> Value {
    let stages = st.job_stages(j);
    let count = |s: Status| stages.iter().filter(|(_, x)| *x == s).count();
    let (total, done, running, failed) = job_tasks(st, j);
    json!({
        "jobId": j.id,
        "name": j.name,
        "description": j.name,
        "jobGroup": j.group,
        "submissionTime": html::api_date(j.submitted),
        "completionTime": j.completed.map(html::api_date),
        "stageIds": j.stage_ids,
        "status": status_word(j.status),
        "numTasks": total,
        "numActiveTasks": running,
        "numCompletedTasks": done,
        "numSkippedTasks": 0,
        "numFailedTasks": failed,
        "numActiveStages": count(Status::Running),
        "numCompletedStages": count(Status::Succeeded),
        "numSkippedStages": count(Status::Skipped),
        "numFailedStages": count(Status::Failed),
        "errorMessage": j.error,
    })
}

fn stage_json(s: &StageData, with_tasks: bool) -> Value {
    let m = &s.metrics;
    let mut v = json!({
        "status": stage_status_word(s.status),
        "stageId": s.id,
        "attemptId": s.attempt,
        "jobId": s.job_id,
        "name": s.name,
        "numTasks": s.num_tasks,
        "numActiveTasks": s.active,
        "numCompleteTasks": s.complete,
        "numFailedTasks": s.failed,
        "executorRunTime": s.executor_run_ms,
        "submissionTime": html::api_date(s.submitted),
        "completionTime": s.completed.map(html::api_date),
        "failureReason": s.failure,
        "inputBytes": m.input_bytes,
        "inputRecords": m.input_records,
        "shuffleReadBytes": m.shuffle_bytes_read,
        "shuffleReadRecords": m.shuffle_records_read,
        "shuffleWriteBytes": m.shuffle_bytes_written,
        "shuffleWriteRecords": m.shuffle_records_written,
        "memoryBytesSpilled": m.spill_memory_bytes,
        "diskBytesSpilled": m.spill_disk_bytes,
        "peakExecutionMemory": m.peak_execution_memory,
    });
    if with_tasks {
        let tasks: serde_json::Map<String, Value> = s
            .tasks
            .values()
            .map(|t| {
                (
                    t.task_id.to_string(),
                    json!({
                        "taskId": t.task_id,
                        "index": t.partition,
                        "executorId": t.executor_id,
                        "launchTime": html::api_date(t.launched),
                        "duration": t.duration,
                        "status": t.status,
                        "errorMessage": t.error,
                        "taskMetrics": t.metrics,
                    }),
                )
            })
            .collect();
        v["tasks"] = Value::Object(tasks);
    }
    v
}

fn executors_json(st: &AppStatus, all: bool) -> Value {
    Value::Array(
        st.executors
            .values()
            .filter(|x| all || x.removed.is_none())
            .map(|x| {
                json!({
                    "id": x.id,
                    "hostPort": x.host_port.clone().unwrap_or_else(|| "driver".into()),
                    "isActive": x.removed.is_none(),
                    "totalCores": x.cores,
                    "maxTasks": x.cores,
                    "activeTasks": x.active,
                    "failedTasks": x.failed,
                    "completedTasks": x.completed,
                    "totalTasks": x.active + x.failed + x.completed,
                    "totalDuration": x.total_ms,
                    "addTime": html::api_date(x.added),
                    "removeTime": x.removed.map(html::api_date),
                    "removeReason": x.removed_reason,
                })
            })
            .collect(),
    )
}

/// One application-scoped API answer; `rest` follows
/// `/api/v1/applications/{id}`.
pub fn api(st: &AppStatus, rest: &[&str], req: &Request, env: &Environment) -> Response {
    match rest {
        [] => Response::json(&app_json(st)),
        ["jobs"] => {
            let wanted = req.param("status").map(str::to_ascii_uppercase);
            let jobs: Vec<Value> = st
                .jobs
                .values()
                .rev()
                .filter(|j| wanted.as_deref().is_none_or(|w| w == status_word(j.status)))
                .map(|j| job_json(st, j))
                .collect();
            Response::json(&jobs)
        }
        ["jobs", id] => match id.parse::<u64>().ok().and_then(|i| st.jobs.get(&i)) {
            Some(j) => Response::json(&job_json(st, j)),
            None => Response::not_found(&req.path),
        },
        ["stages"] => {
            let wanted = req.param("status").map(str::to_ascii_uppercase);
            let stages: Vec<Value> = st
                .stages
                .values()
                .rev()
                .filter(|s| {
                    wanted
                        .as_deref()
                        .is_none_or(|w| w == stage_status_word(s.status))
                })
                .map(|s| stage_json(s, false))
                .collect();
            Response::json(&stages)
        }
        ["stages", id] => {
            let Ok(id) = id.parse::<u64>() else {
                return Response::not_found(&req.path);
            };
            let attempts: Vec<Value> = st
                .stages
                .range((id, 0)..=(id, usize::MAX))
                .map(|(_, s)| stage_json(s, true))
                .collect();
            if attempts.is_empty() {
                Response::not_found(&req.path)
            } else {
                Response::json(&attempts)
            }
        }
        ["stages", id, attempt] => match (id.parse::<u64>(), attempt.parse::<usize>()) {
            (Ok(i), Ok(a)) => match st.stages.get(&(i, a)) {
                Some(s) => Response::json(&stage_json(s, true)),
                None => Response::not_found(&req.path),
            },
            _ => Response::not_found(&req.path),
        },
        ["executors"] => Response::json(&executors_json(st, false)),
        ["allexecutors"] => Response::json(&executors_json(st, true)),
        ["storage", "rdd"] => Response::json(&storage_json(st)),
        ["environment"] => Response::json(&json!({
            "sparkProperties": env.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect::<Vec<_>>(),
        })),
        _ => Response::not_found(&req.path),
    }
}

/// The driver's whole UI: pages at the root, the API under `/api/v1`.
pub fn handle_live(st: &AppStatus, req: &Request, env: &Environment) -> Response {
    let seg = req.segments();
    match seg.as_slice() {
        ["api", "v1", "applications"] => Response::json(&vec![app_json(st)]),
        ["api", "v1", "applications", id, rest @ ..] => {
            if *id == st.app.id {
                api(st, rest, req, env)
            } else {
                Response::not_found(&req.path)
            }
        }
        rest => html_page(st, "", rest, req, env),
    }
}

/// Configuration as the environment page shows it: secrets hidden.
pub fn environment(conf: &ember_core::EmberConf) -> Environment {
    conf.iter()
        .map(|(k, v)| {
            let v = if k.contains("secret") {
                "*********(redacted)"
            } else {
                v
            };
            (k.to_string(), v.to_string())
        })
        .collect()
}
