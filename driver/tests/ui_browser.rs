//! The web UIs in a real browser: headless Chromium loads the application
//! UI while a job runs on a standalone cluster (master and two workers in
//! this process, executors as processes of this test binary) and the
//! master's UI, and the test reads the rendered pages: the job list, the
//! stage's progress, the executors, the workers and the application.
//! Screenshots are kept under `target/ui-artifacts/`.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it); without it the test
//! says so and passes.

use ember_driver::deploy::{Master, MasterOptions, Worker, WorkerOptions};
use ember_driver::prelude::*;
use ember_driver::EmberConf;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Holds a task until the test creates the release file (at most a minute).
fn hold(release: &String, x: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Path::new(release).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    x
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chromium(profile: &Path, args: &[&str], url: &str) -> String {
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The page as the browser rendered it (DOM after load), and optionally
/// a screenshot (each a browser run of a second or two).
fn load(profile: &Path, url: &str, shot: Option<&str>) -> String {
    let dom = chromium(profile, &["--dump-dom"], url);
    if let Some(shot) = shot {
        let png = artifacts().join(shot);
        chromium(profile, &[&format!("--screenshot={}", png.display())], url);
        assert!(png.is_file(), "no screenshot of {url}");
    }
    dom
}

fn text(dom: &str) -> String {
    // Tags out, whitespace folded: what a reader sees.
    let mut out = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn chromium_renders_the_application_and_master_uis_during_a_job() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("SKIPPED: {CHROMIUM} is absent (apt-get install chromium; .ci/run installs it)");
        return;
    }
    ember_core::logging::init(ember_core::logging::DEFAULT_FILTER);
    let dir = tempfile::tempdir().unwrap();
    let master = Master::start(MasterOptions {
        host: "127.0.0.1".into(),
        port: 0,
        webui_port: Some(0),
        conf: EmberConf::new(),
    })
    .unwrap();
    let workers: Vec<Worker> = (0..2)
        .map(|i| {
            Worker::start(WorkerOptions {
                master: master.url().trim_start_matches("ember://").into(),
                host: Some("127.0.0.1".into()),
                cores: 1,
                memory_mib: 1024,
                work_dir: dir.path().join(format!("worker-{i}")),
                webui_port: Some(0),
                conf: EmberConf::new(),
            })
            .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !workers.iter().all(Worker::registered) {
        assert!(Instant::now() < deadline, "workers did not register");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ctx = Context::builder()
        .master(master.url())
        .app_name("ui-browser-test")
        .conf("ember.ui.port", "0")
        .build()
        .unwrap();
    let ui = ctx.ui_url().expect("the application UI runs");
    let release = dir.path().join("release");
    let release_s = release.display().to_string();
    let job = {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            ctx.parallelize((0..8u64).collect(), 8)
                .unwrap()
                .map_with(release_s, hold)
                .map(|x| x * 2)
                .collect()
                .unwrap()
        })
    };
    // Wait until the stage's first tasks run on both executors.
    let api = format!("/api/v1/applications/{}/stages", ctx.app_id());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) =
            ember_driver::ui::http::get(ui.trim_start_matches("http://"), &api).unwrap();
        if body.contains("\"numActiveTasks\": 2") {
            break;
        }
        assert!(Instant::now() < deadline, "the job never started: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let profile = tempfile::tempdir().unwrap();
    let jobs = text(&load(profile.path(), &format!("{ui}/jobs/"), None));
    assert!(jobs.contains("Active Jobs (1)"), "{jobs}");
    assert!(jobs.contains("ui-browser-test"), "{jobs}");
    assert!(jobs.contains("0/8 (2 running)"), "job progress: {jobs}");
    let stages = text(&load(
        profile.path(),
        &format!("{ui}/stages/"),
        Some("app-stages.png"),
    ));
    assert!(stages.contains("Active Stages (1)"), "{stages}");
    assert!(
        stages.contains("0/8 (2 running)"),
        "stage progress: {stages}"
    );
    let execs = text(&load(profile.path(), &format!("{ui}/executors/"), None));
    assert!(execs.contains("Executors (2 active, 0 dead)"), "{execs}");
    let master_ui = master.webui_url().unwrap();
    let overview = text(&load(
        profile.path(),
        &format!("{master_ui}/"),
        Some("master.png"),
    ));
    assert!(overview.contains("Alive workers 2"), "{overview}");
    assert!(overview.contains("Running Applications"), "{overview}");
    assert!(overview.contains("ui-browser-test"), "{overview}");
    assert!(overview.contains("ALIVE"), "{overview}");

    std::fs::write(&release, b"go").unwrap();
    assert_eq!(
        job.join().unwrap(),
        (0..8u64).map(|x| x * 2).collect::<Vec<_>>()
    );
    // After the job: completed in the UI.
    let jobs = text(&load(profile.path(), &format!("{ui}/jobs/"), None));
    assert!(jobs.contains("Completed Jobs (1)"), "{jobs}");
    assert!(jobs.contains("8/8"), "{jobs}");
    ctx.stop();
}
