//! The example programs submitted with `ember submit` to a standalone
//! cluster (a master and two workers, separate `ember` processes on
//! loopback) give byte-identical outputs to local mode, also when a worker
//! is killed with SIGKILL in the middle of a job.
//!
//! `ember` is the binary of the `ember-driver` package, built beside the
//! examples by `cargo test --workspace` (the driver's own integration
//! tests need it); run `cargo build -p ember-driver --bin ember` first
//! when testing this package alone.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../driver/tests/support/daemon.rs"]
mod daemon;
use daemon::Daemon;

#[path = "support/jobs.rs"]
mod jobs;
use jobs::{assert_same_outputs, check, ember, neuro_local, phantom, SMALL};

/// A master and two workers of `cores` cores each.
struct Cluster {
    url: String,
    ui: String,
    workers: Vec<(String, Daemon)>,
    _master: Daemon,
}

impl Cluster {
    fn start(dir: &Path, cores: usize) -> Cluster {
        let mut master = Daemon::spawn(&ember(), &["master", "--port", "0", "--webui-port", "0"]);
        let url = master.word_after("listening on ");
        let ui = master.word_after("web UI at ");
        let cores = cores.to_string();
        let workers = (0..2)
            .map(|i| {
                let work = dir.join(format!("worker-{i}"));
                let mut w = Daemon::spawn(
                    &ember(),
                    &[
                        "worker",
                        &url,
                        "--cores",
                        &cores,
                        "--memory",
                        "2g",
                        "--webui-port",
                        "0",
                        "--work-dir",
                        work.to_str().unwrap(),
                    ],
                );
                let id = daemon::word_after(&w.line("offers"), "ember worker: ");
                w.line("registered with");
                (id, w)
            })
            .collect();
        Cluster {
            url,
            ui,
            workers,
            _master: master,
        }
    }

    fn json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&get(&self.ui, path)).unwrap()
    }
}

fn get(base: &str, path: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let (status, body) = ember_driver::ui::http::get(addr, path).unwrap();
    assert_eq!(status, 200, "GET {base}{path}: {body}");
    body
}

/// A text of a few thousand lines over a small vocabulary.
fn write_text(path: &Path) {
    let words = [
        "brain",
        "voxel",
        "tensor",
        "mask",
        "noise",
        "signal",
        "image",
        "the",
        "of",
        "and",
        "diffusion",
        "gradient",
        "shell",
        "fit",
        "ember",
        "spark",
        "shuffle",
        "stage",
    ];
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut text = String::new();
    for line in 0..6000 {
        for _ in 0..(line % 13) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            text.push_str(words[(s % words.len() as u64) as usize]);
            text.push(if s.is_multiple_of(5) { ',' } else { ' ' });
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn wordcount_submitted_to_a_standalone_cluster_matches_local_mode() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1);
    let text = dir.path().join("book.txt");
    write_text(&text);
    let local = check(
        Command::new(env!("CARGO_BIN_EXE_wordcount"))
            .args(["--master", "local[2]"])
            .arg(&text)
            .output()
            .unwrap(),
        "wordcount in local[2]",
    );
    let events = dir.path().join("events");
    let submitted = check(
        Command::new(ember())
            .args([
                "submit",
                "--master",
                &cluster.url,
                "--executor-memory",
                "512m",
            ])
            .args(["--conf", "ember.eventLog.enabled=true", "--conf"])
            .arg(format!("ember.eventLog.dir={}", events.display()))
            .arg(env!("CARGO_BIN_EXE_wordcount"))
            .arg(&text)
            .output()
            .unwrap(),
        "ember submit wordcount",
    );
    assert!(!local.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&submitted.stdout),
        String::from_utf8_lossy(&local.stdout)
    );
    // The master saw the application come and go on both workers.
    let master = cluster.json("/json");
    let app = &master["completedapps"][0];
    assert_eq!(app["name"], "wordcount", "{master}");
    let workers: std::collections::BTreeSet<&str> = app["executors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["worker"].as_str().unwrap())
        .collect();
    assert_eq!(workers.len(), 2, "executors on both workers: {app}");

    // `ember history` serves the finished application from its event log.
    let app_id = app["id"].as_str().unwrap();
    assert!(events.join(app_id).is_file(), "no finished log {app_id}");
    let mut history = Daemon::spawn(
        &ember(),
        &["history", "--dir", events.to_str().unwrap(), "--port", "0"],
    );
    let url = daemon::word_after(&history.line("serving"), " at ");
    let apps: serde_json::Value = serde_json::from_str(&get(&url, "/api/v1/applications")).unwrap();
    assert_eq!(apps[0]["id"], app_id, "{apps}");
    assert_eq!(apps[0]["attempts"][0]["completed"], true, "{apps}");
    let jobs: serde_json::Value =
        serde_json::from_str(&get(&url, &format!("/api/v1/applications/{app_id}/jobs"))).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert!(
        !jobs.is_empty() && jobs.iter().all(|j| j["status"] == "SUCCEEDED"),
        "{jobs:?}"
    );
    let page = get(&url, &format!("/history/{app_id}/jobs/"));
    assert!(page.contains("Completed Jobs"), "{page}");
}

#[test]
fn neuro_submitted_to_a_standalone_cluster_matches_local_mode() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), 1);
    let subject = phantom(&dir.path().join("phantom"), SMALL);
    let local = dir.path().join("local");
    neuro_local(&subject, &local);
    let out = dir.path().join("cluster");
    check(
        Command::new(ember())
            .args(["submit", "--master", &cluster.url])
            .arg(env!("CARGO_BIN_EXE_neuro"))
            .args(["run", "--out"])
            .arg(&out)
            .arg(&subject)
            .output()
            .unwrap(),
        "ember submit neuro",
    );
    assert_same_outputs(&local, &out);
}

#[test]
fn killing_a_worker_in_the_middle_of_a_job_still_gives_local_mode_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), 2);
    let subject = phantom(&dir.path().join("phantom"), SMALL);
    let local = dir.path().join("local");
    neuro_local(&subject, &local);
    let out = dir.path().join("cluster");
    let events = dir.path().join("events");
    // One 1-core executor per worker: the survivor has room for a
    // relaunched one.
    let mut submit = Command::new(ember())
        .args(["submit", "--master", &cluster.url])
        .args(["--executor-cores", "1", "--total-executor-cores", "2"])
        .args(["--conf", "ember.eventLog.enabled=true"])
        .arg("--conf")
        .arg(format!("ember.eventLog.dir={}", events.display()))
        .args(["--conf", "ember.ui.port=0"])
        .arg(env!("CARGO_BIN_EXE_neuro"))
        .args(["run", "--out"])
        .arg(&out)
        .arg(&subject)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait for a stage with running tasks on both executors, then kill
    // the worker of executor 0.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        assert!(Instant::now() < deadline, "no job ever ran");
        assert!(
            submit.try_wait().unwrap().is_none(),
            "the application ended before a worker could be killed"
        );
        let master = cluster.json("/json");
        let app = &master["activeapps"][0];
        if let (Some(id), Some(ui)) = (app["id"].as_str(), app["driver_ui"].as_str()) {
            let addr = ui.trim_start_matches("http://");
            let path = format!("/api/v1/applications/{id}/stages?status=active");
            if let Ok((200, body)) = ember_driver::ui::http::get(addr, &path) {
                let stages: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let busy = stages.as_array().is_some_and(|s| {
                    s.iter()
                        .any(|s| s["status"] == "ACTIVE" && s["numActiveTasks"].as_u64() >= Some(2))
                });
                if busy {
                    let exec0 = app["executors"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|e| e["id"] == "0" && e["state"] == "RUNNING")
                        .expect("executor 0 runs");
                    break exec0["worker"].as_str().unwrap().to_string();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let i = cluster
        .workers
        .iter()
        .position(|(id, _)| *id == victim)
        .expect("the victim is one of ours");
    let (_, mut worker) = cluster.workers.remove(i);
    worker.kill();

    let status = submit.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(submit.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "neuro failed after a worker was killed:\n{err}"
    );
    assert_same_outputs(&local, &out);

    // The driver saw an executor go, and the master relaunched one on the
    // surviving worker.
    let log = std::fs::read_dir(&events)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.to_string_lossy().ends_with(".inprogress"))
        .expect("a finished event log");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("\"ExecutorRemoved\""), "no executor was lost");
    // The master files the application as completed when it hears the
    // driver's connection close, which may come just after the driver
    // process has exited.
    let deadline = Instant::now() + Duration::from_secs(10);
    let master = loop {
        let master = cluster.json("/json");
        if master["completedapps"][0].is_object() || Instant::now() > deadline {
            break master;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(master["aliveworkers"], 1, "{master}");
    let app = &master["completedapps"][0];
    let survivor = &cluster.workers[0].0;
    assert!(
        app["executors"].as_array().is_some_and(|es| es
            .iter()
            .any(|e| e["id"] == "2" && e["worker"].as_str() == Some(survivor.as_str()))),
        "no executor was relaunched on the surviving worker: {app}"
    );
}
