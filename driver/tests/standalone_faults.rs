//! A worker that stops answering (SIGSTOP: its connection stays open, its
//! heartbeats stop) is declared lost by the master after
//! `ember.worker.timeout`; the master tells the driver, whose executor on
//! that worker is dropped, launches a replacement on the other worker, and
//! jobs go on giving the right answers. The driver's UI API shows the
//! lost executor and where cached partitions live.

use ember_driver::prelude::*;
use std::time::{Duration, Instant};

mod support {
    pub mod daemon;
}
use support::daemon::Daemon;

fn ember(args: &[&str]) -> Daemon {
    Daemon::spawn(std::path::Path::new(env!("CARGO_BIN_EXE_ember")), args)
}

fn json(base: &str, path: &str) -> serde_json::Value {
    let (status, body) =
        ember_driver::ui::http::get(base.trim_start_matches("http://"), path).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_silent_worker_is_declared_lost_and_its_executor_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = ember(&[
        "master",
        "--port",
        "0",
        "--webui-port",
        "0",
        "--conf",
        "ember.worker.timeout=1s",
    ]);
    let url = master.word_after("listening on ");
    let master_ui = master.word_after("web UI at ");
    let workers: Vec<Daemon> = (0..2)
        .map(|i| {
            let work = dir.path().join(format!("w{i}"));
            let mut w = ember(&[
                "worker",
                &url,
                "--cores",
                "2",
                "--memory",
                "2g",
                "--webui-port",
                "0",
                "--work-dir",
                work.to_str().unwrap(),
                "--conf",
                "ember.worker.heartbeatInterval=200ms",
            ]);
            w.line("registered with");
            w
        })
        .collect();
    let ctx = Context::builder()
        .master(&url)
        .app_name("faults")
        .conf("ember.executor.cores", "1")
        .conf("ember.cores.max", "2")
        .conf("ember.executor.memory", "512m")
        .conf("ember.ui.port", "0")
        .build()
        .unwrap();
    let ui = ctx.ui_url().unwrap();
    let app = format!("/api/v1/applications/{}", ctx.app_id());
    let cached = ctx
        .parallelize((0..4000u64).collect(), 4)
        .unwrap()
        .map(|x| x * 3)
        .cache();
    assert_eq!(cached.count().unwrap(), 4000);
    let storage = json(&ui, &format!("{app}/storage/rdd"));
    assert_eq!(storage[0]["numCachedPartitions"], 4, "{storage}");

    // Executor 0's worker goes silent.
    let placed = json(&master_ui, "/json");
    let victim_id = placed["activeapps"][0]["executors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "0")
        .unwrap()["worker"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = workers.iter().find(|w| w.printed(&victim_id)).unwrap();
    victim.signal("-STOP");
    wait_until("the master to lose the worker", || {
        json(&master_ui, "/json")["aliveworkers"] == 1
    });
    // The master launched a replacement (executor 2) on the other worker.
    wait_until("the replacement executor", || {
        let m = json(&master_ui, "/json");
        m["activeapps"][0]["executors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == "2" && e["state"] == "RUNNING")
    });
    let sums = cached
        .map(|x| (x % 10, x))
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap();
    let mut expected = [0u64; 10];
    for x in 0..4000u64 {
        expected[((x * 3) % 10) as usize] += x * 3;
    }
    let mut sums = sums;
    sums.sort();
    assert_eq!(
        sums,
        expected
            .iter()
            .enumerate()
            .map(|(k, v)| (k as u64, *v))
            .collect::<Vec<_>>()
    );
    // The scheduler (which hears of executors while it runs jobs) dropped
    // executor 0; no cached partition is said to live there.
    let all = json(&ui, &format!("{app}/allexecutors"));
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == "0" && e["isActive"] == false),
        "{all}"
    );
    let storage = json(&ui, &format!("{app}/storage/rdd"));
    assert!(
        !storage.to_string().contains("\"executor\":\"0\""),
        "{storage}"
    );
    ctx.stop();
}
