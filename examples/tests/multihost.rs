//! The example programs on a standalone cluster spread over test hosts
//! (network namespaces of this machine, `scripts/testnet.sh`): master,
//! two workers and the driver each on a host of its own, with no address
//! given anywhere but the master URL. Outputs match `local[2]`, also when
//! a worker's link is cut in the middle of a job; the worker rejoins when
//! its link is back and serves the next application. No host ever tries
//! to reach an address other than the test hosts' and loopback.
//!
//! Needs root and iproute2 (as CI has): without them the tests fail,
//! saying why. `ember` is the `ember-driver` package's binary, built
//! beside the examples by `cargo test --workspace`.

use ember_tests::testnet::TestNet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../driver/tests/support/daemon.rs"]
mod daemon;
use daemon::Daemon;

#[path = "support/jobs.rs"]
mod jobs;
use jobs::{assert_same_outputs, check, ember, neuro_local, phantom, SMALL};

const MASTER: usize = 1;
const WORKERS: [usize; 2] = [2, 3];
const DRIVER: usize = 4;

fn testnet() -> TestNet {
    TestNet::up(4).unwrap_or_else(|e| panic!("{e}"))
}

/// A master on host 1 and a worker on each of hosts 2 and 3.
struct Cluster {
    url: String,
    ui: String,
    _workers: Vec<Daemon>,
    _master: Daemon,
}

impl Cluster {
    /// `conf`: extra `--conf` pairs for every daemon; `worker_host`: the
    /// workers' `--host`, if any.
    fn start(
        net: &TestNet,
        dir: &Path,
        cores: usize,
        conf: &[&str],
        worker_host: Option<&str>,
    ) -> Cluster {
        let mut cmd = net.command(MASTER, ember());
        // Every interface: the master advertises its host's address.
        cmd.args(["master", "--host", "0.0.0.0"]);
        for c in conf {
            cmd.args(["--conf", c]);
        }
        let mut master = Daemon::start(cmd);
        let url = master.word_after("listening on ");
        assert_eq!(url, format!("ember://{}:7077", net.addr(MASTER)));
        let ui = master.word_after("web UI at ");
        assert_eq!(ui, format!("http://{}:8080", net.addr(MASTER)));
        let workers = WORKERS
            .iter()
            .map(|&h| {
                let mut cmd = net.command(h, ember());
                cmd.args(["worker", &url, "--cores", &cores.to_string()])
                    .args(["--memory", "2g", "--work-dir"])
                    .arg(dir.join(format!("worker-{h}")));
                if let Some(host) = worker_host {
                    cmd.args(["--host", host]);
                }
                for c in conf {
                    cmd.args(["--conf", c]);
                }
                let mut w = Daemon::start(cmd);
                w.line("registered with");
                w
            })
            .collect();
        Cluster {
            url,
            ui,
            _workers: workers,
            _master: master,
        }
    }

    /// The master's `/json`, asked from the driver's host.
    fn json(&self, net: &TestNet) -> serde_json::Value {
        self.json_from(net, DRIVER)
    }

    /// The master's `/json`, asked from host `from`.
    fn json_from(&self, net: &TestNet, from: usize) -> serde_json::Value {
        let body = get(net, from, &self.ui, "/json").expect("the master's UI answers");
        serde_json::from_str(&body).unwrap()
    }

    /// `ember submit` on the driver's host, only the master URL given.
    fn submit(&self, net: &TestNet, extra: &[&str], app: &str) -> Command {
        let mut cmd = net.command(DRIVER, ember());
        cmd.args(["submit", "--master", &self.url])
            .args(extra)
            .arg(Path::new(env!("CARGO_BIN_EXE_wordcount")).with_file_name(app));
        cmd
    }
}

/// GET `base` + `path` from host `from`; `None` if it does not answer 200.
fn get(net: &TestNet, from: usize, base: &str, path: &str) -> Option<String> {
    let addr = base.trim_start_matches("http://").to_string();
    let path = path.to_string();
    net.within(from, move || {
        match ember_driver::ui::http::get(&addr, &path) {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    })
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
        "the",
        "of",
        "diffusion",
        "shell",
        "ember",
        "shuffle",
    ];
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut text = String::new();
    for line in 0..6000 {
        for _ in 0..(line % 13) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            text.push_str(words[(s % words.len() as u64) as usize]);
            text.push(' ');
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

fn wordcount_local(text: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wordcount"))
        .args(["--master", "local[2]"])
        .arg(text)
        .output()
        .unwrap();
    String::from_utf8(check(out, "wordcount in local[2]").stdout).unwrap()
}

/// A phantom whose denoising takes a few seconds even in release builds,
/// so that a link can be cut while tasks run.
const MEDIUM: [&str; 5] = ["48", "48", "32", "2", "12"];

/// Only loopback and the test subnet are routed, and nothing tried to
/// reach anything else.
fn assert_traffic_stayed_on_the_test_hosts(net: &TestNet) {
    for i in 1..=net.hosts() {
        let routes = net.routes(i);
        for r in routes.lines() {
            assert!(
                r.contains("10.77.0.") || r.contains(" lo ") || r.contains("127."),
                "host {i} has a route elsewhere: {r}\n{routes}"
            );
        }
    }
    assert_eq!(
        net.sends_outside(),
        vec![],
        "(host, packets) sent towards an address that is neither a test host's nor loopback"
    );
}

/// The master's entry of the running application, once a stage of it has
/// tasks running on two executors (so both registered with the driver).
fn wait_for_tasks_on_both_executors(
    net: &TestNet,
    cluster: &Cluster,
    submit: &mut std::process::Child,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no job ever ran on both workers");
        assert!(
            submit.try_wait().unwrap().is_none(),
            "the application ended before a link could be cut"
        );
        let master = cluster.json(net);
        let app = &master["activeapps"][0];
        if let (Some(id), Some(ui)) = (app["id"].as_str(), app["driver_ui"].as_str()) {
            let path = format!("/api/v1/applications/{id}/stages?status=active");
            if let Some(body) = get(net, DRIVER, ui, &path) {
                let stages: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let busy = stages.as_array().is_some_and(|s| {
                    s.iter()
                        .any(|s| s["status"] == "ACTIVE" && s["numActiveTasks"].as_u64() >= Some(2))
                });
                if busy {
                    return app.clone();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The workers of the application named `name` that ran its executors.
fn workers_of(master: &serde_json::Value, name: &str) -> std::collections::BTreeSet<String> {
    let apps = master["completedapps"].as_array().unwrap();
    let app = apps
        .iter()
        .rev()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no completed {name}: {master}"));
    app["executors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["worker"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn wordcount_and_neuro_submitted_across_four_hosts_match_local_mode() {
    let net = testnet();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&net, dir.path(), 1, &[], None);

    // Each worker advertises the address it reaches the master from.
    let master = cluster.json(&net);
    let mut hosts: Vec<&str> = master["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["host"].as_str().unwrap())
        .collect();
    hosts.sort();
    assert_eq!(hosts, [net.addr(2), net.addr(3)], "{master}");
    let worker_ui = master["workers"][0]["webuiaddress"].as_str().unwrap();
    assert!(
        get(&net, DRIVER, worker_ui, "/json").is_some(),
        "a worker's UI at {worker_ui} is not reachable from the driver's host"
    );

    let text = dir.path().join("book.txt");
    write_text(&text);
    let local = wordcount_local(&text);
    let submitted = check(
        cluster
            .submit(&net, &[], "wordcount")
            .arg(&text)
            .output()
            .unwrap(),
        "ember submit wordcount from the driver's host",
    );
    assert!(!local.is_empty());
    assert_eq!(String::from_utf8_lossy(&submitted.stdout), local);

    let subject = phantom(&dir.path().join("phantom"), SMALL);
    let local_out = dir.path().join("local");
    neuro_local(&subject, &local_out);
    let out = dir.path().join("cluster");
    check(
        cluster
            .submit(&net, &[], "neuro")
            .args(["run", "--out"])
            .arg(&out)
            .arg(&subject)
            .output()
            .unwrap(),
        "ember submit neuro from the driver's host",
    );
    assert_same_outputs(&local_out, &out);

    // Both applications ran on both workers, and the master was told the
    // driver's UI at the driver host's address.
    let master = cluster.json(&net);
    for app in ["wordcount", "neuro"] {
        assert_eq!(workers_of(&master, app).len(), 2, "{app}: {master}");
    }
    let driver_ui = master["completedapps"][0]["driver_ui"]
        .as_str()
        .unwrap_or("");
    assert!(
        driver_ui.starts_with(&format!("http://{}:", net.addr(DRIVER))),
        "driver UI advertised as {driver_ui:?}"
    );
    drop(cluster);
    assert_traffic_stayed_on_the_test_hosts(&net);
}

#[test]
fn a_worker_cut_off_mid_job_is_replaced_and_rejoins_when_its_link_is_back() {
    let net = testnet();
    let dir = tempfile::tempdir().unwrap();
    // Short timeouts, so that the cut is noticed within seconds.
    let conf = [
        "ember.worker.timeout=3s",
        "ember.worker.heartbeatInterval=500ms",
    ];
    let cluster = Cluster::start(&net, dir.path(), 2, &conf, None);
    let subject = phantom(&dir.path().join("phantom"), MEDIUM);
    let local = dir.path().join("local");
    neuro_local(&subject, &local);
    let out = dir.path().join("cluster");
    let events = dir.path().join("events");
    // One 1-core executor per worker: the survivor has room for a
    // relaunched one.
    let mut submit = cluster
        .submit(
            &net,
            &[
                "--executor-cores",
                "1",
                "--total-executor-cores",
                "2",
                "--conf",
                "ember.network.timeout=4s",
                "--conf",
                "ember.eventLog.enabled=true",
                "--conf",
                &format!("ember.eventLog.dir={}", events.display()),
            ],
            "neuro",
        )
        .args(["run", "--out"])
        .arg(&out)
        .arg(&subject)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Once tasks run on both executors, cut the link of executor 0's
    // worker.
    let app = wait_for_tasks_on_both_executors(&net, &cluster, &mut submit);
    let exec0 = app["executors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "0" && e["state"] == "RUNNING")
        .expect("executor 0 runs");
    let victim = exec0["host"].as_str().unwrap().to_string();
    let victim = (1..=net.hosts())
        .find(|&h| net.addr(h) == victim)
        .unwrap_or_else(|| panic!("executor 0 is on {victim}, not a worker host"));
    assert!(WORKERS.contains(&victim));
    net.cut(victim);
    let cut_at = Instant::now();

    let status = submit.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(submit.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "neuro failed after a worker's link was cut:\n{err}"
    );
    assert_same_outputs(&local, &out);
    let log = std::fs::read_dir(&events)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.to_string_lossy().ends_with(".inprogress"))
        .expect("a finished event log");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("\"ExecutorRemoved\""), "no executor was lost");

    // The master declared the cut worker lost.
    let alive = |m: &serde_json::Value| -> Vec<String> {
        m["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["state"] == "ALIVE")
            .map(|w| w["host"].as_str().unwrap().to_string())
            .collect()
    };
    let lost_by = cut_at + Duration::from_secs(20);
    while alive(&cluster.json(&net)).contains(&net.addr(victim)) {
        assert!(Instant::now() < lost_by, "the cut worker was never lost");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The link comes back: the worker registers again within 30 s, once.
    net.restore(victim);
    let restored = Instant::now();
    let master = loop {
        let m = cluster.json(&net);
        if alive(&m).contains(&net.addr(victim)) {
            break m;
        }
        assert!(
            restored.elapsed() < Duration::from_secs(30),
            "the worker did not rejoin within 30 s: {m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut hosts = alive(&master);
    hosts.sort();
    assert_eq!(hosts, [net.addr(2), net.addr(3)], "{master}");
    assert_eq!(master["cores"], 4, "no core counted twice: {master}");

    // The next application runs on both workers again.
    let text = dir.path().join("book.txt");
    write_text(&text);
    let expected = wordcount_local(&text);
    let again = check(
        cluster
            .submit(&net, &[], "wordcount")
            .arg(&text)
            .output()
            .unwrap(),
        "wordcount after the worker rejoined",
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), expected);
    let master = cluster.json(&net);
    assert_eq!(workers_of(&master, "wordcount").len(), 2, "{master}");
    drop(cluster);
    assert_traffic_stayed_on_the_test_hosts(&net);
}

#[test]
fn executors_cut_off_from_their_driver_exit_and_the_driver_finishes_when_its_link_is_back() {
    let net = testnet();
    let dir = tempfile::tempdir().unwrap();
    // Workers and driver bound to every interface still advertise their
    // host's address.
    let cluster = Cluster::start(&net, dir.path(), 1, &[], Some("0.0.0.0"));
    let master = cluster.json(&net);
    let mut hosts: Vec<&str> = master["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["host"].as_str().unwrap())
        .collect();
    hosts.sort();
    assert_eq!(hosts, [net.addr(2), net.addr(3)], "{master}");
    let subject = phantom(&dir.path().join("phantom"), MEDIUM);
    let local = dir.path().join("local");
    neuro_local(&subject, &local);
    let out = dir.path().join("cluster");
    let mut submit = cluster
        .submit(
            &net,
            &[
                "--conf",
                "ember.network.timeout=4s",
                "--conf",
                "ember.driver.bindAddress=0.0.0.0",
            ],
            "neuro",
        )
        .args(["run", "--out"])
        .arg(&out)
        .arg(&subject)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once tasks run on both executors, the driver's host loses its link.
    let app = wait_for_tasks_on_both_executors(&net, &cluster, &mut submit);
    let driver_ui = app["driver_ui"].as_str().unwrap_or("");
    assert!(
        driver_ui.starts_with(&format!("http://{}:", net.addr(DRIVER))),
        "driver UI advertised as {driver_ui:?}"
    );
    let app = app["id"].as_str().unwrap().to_string();
    net.cut(DRIVER);
    let cut_at = Instant::now();
    // The executors notice the silence and exit by themselves: the
    // master, which still hears their workers, lists them as exited.
    loop {
        let master = cluster.json_from(&net, MASTER);
        let execs = master["activeapps"][0]["executors"].as_array().cloned();
        let exited = |id: &str| {
            execs.iter().flatten().any(|e| {
                e["id"] == id && e["state"].as_str().is_some_and(|s| s.starts_with("EXITED"))
            })
        };
        if exited("0") && exited("1") {
            break;
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(20),
            "executors cut off from their driver still run: {master}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for h in WORKERS {
        let stderr = dir.path().join(format!("worker-{h}")).join(&app);
        let said = std::fs::read_dir(&stderr)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("stderr")).ok())
            .any(|text| text.contains(&format!("lost the driver at {}", net.addr(DRIVER))));
        assert!(said, "no executor on host {h} said it lost the driver");
    }
    // The link comes back: the driver, which kept running, gets new
    // executors from the master and finishes with the same outputs.
    net.restore(DRIVER);
    let status = submit.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(submit.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "neuro failed after its link came back:\n{err}"
    );
    assert_same_outputs(&local, &out);
    drop(cluster);
    assert_traffic_stayed_on_the_test_hosts(&net);
}
