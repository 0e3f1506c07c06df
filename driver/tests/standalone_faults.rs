//! A worker that stops answering (SIGSTOP: its connection stays open, its
//! heartbeats stop) is declared lost by the master after
//! `ember.worker.timeout`; the master tells the driver, whose executor on
//! that worker is dropped, launches a replacement on the other worker, and
//! jobs go on giving the right answers. The driver's UI API shows the
//! lost executor and where cached partitions live.

use ember_driver::prelude::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    first_lines: Vec<String>,
}

impl Daemon {
    /// Starts `ember ARGS` and reads its stdout up to a line containing
    /// `until`.
    fn spawn(args: &[&str], until: &str) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(args)
            .env("EMBER_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut first_lines = Vec::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_secs(20)) {
            let done = l.contains(until);
            first_lines.push(l);
            if done {
                return Daemon { child, first_lines };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("ember {args:?} never printed {until:?}: {first_lines:?}");
    }

    fn after(&self, prefix: &str) -> String {
        let l = self
            .first_lines
            .iter()
            .find(|l| l.contains(prefix))
            .unwrap();
        let i = l.find(prefix).unwrap() + prefix.len();
        l[i..].split_whitespace().next().unwrap().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let master = Daemon::spawn(
        &[
            "master",
            "--port",
            "0",
            "--webui-port",
            "0",
            "--conf",
            "ember.worker.timeout=1s",
        ],
        "web UI at",
    );
    let url = master.after("listening on ");
    let master_ui = master.after("web UI at ");
    let workers: Vec<Daemon> = (0..2)
        .map(|i| {
            let work = dir.path().join(format!("w{i}"));
            Daemon::spawn(
                &[
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
                ],
                "registered with",
            )
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
    let victim = workers
        .iter()
        .find(|w| w.first_lines.iter().any(|l| l.contains(&victim_id)))
        .unwrap();
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
