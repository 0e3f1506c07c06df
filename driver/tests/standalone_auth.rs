//! Standalone mode with `ember.authenticate` on: a master and two workers
//! run as `ember` processes on loopback; clients without the secret are
//! refused while the daemons go on serving the others; garbage and
//! oversized frames sent to the master, a worker and an executor bring
//! none of them down. The driver is this test process; its executors are
//! this test binary, shipped to the workers by hash.

use ember_core::auth::{connect_tcp, Secret};
use ember_core::codec::write_frame;
use ember_driver::prelude::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const SECRET: &str = "correct horse battery staple";

mod support {
    pub mod daemon;
}
use support::daemon::Daemon;

fn ember(args: &[&str]) -> Daemon {
    Daemon::spawn(std::path::Path::new(env!("CARGO_BIN_EXE_ember")), args)
}

fn http_get(base: &str, path: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let (status, body) = ember_driver::ui::http::get(addr, path).unwrap();
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn auth_conf() -> Vec<&'static str> {
    vec![
        "--conf",
        "ember.authenticate=true",
        "--conf",
        "ember.authenticate.secret=correct horse battery staple",
    ]
}

fn start_cluster(work: &std::path::Path) -> (Daemon, Vec<Daemon>, String, String) {
    let mut args = vec!["master", "--port", "0", "--webui-port", "0"];
    args.extend(auth_conf());
    let mut master = ember(&args);
    let url = master.word_after("listening on ");
    let ui = master.word_after("web UI at ");
    let mut workers = Vec::new();
    for i in 0..2 {
        let dir = work.join(format!("worker-{i}"));
        let dir = dir.to_str().unwrap().to_string();
        let mut args = vec![
            "worker",
            url.as_str(),
            "--cores",
            "1",
            "--memory",
            "1g",
            "--webui-port",
            "0",
            "--work-dir",
            dir.as_str(),
        ];
        args.extend(auth_conf());
        let mut w = ember(&args);
        w.line("registered with");
        workers.push(w);
    }
    (master, workers, url, ui)
}

fn alive_workers(master_ui: &str) -> u64 {
    let json: serde_json::Value = serde_json::from_str(&http_get(master_ui, "/json")).unwrap();
    json["aliveworkers"].as_u64().unwrap()
}

fn square_sum(ctx: &Context) -> u64 {
    ctx.parallelize((1..=1000u64).collect(), 4)
        .unwrap()
        .map(|x| (x % 7, x * x))
        .reduce_by_key(|a, b| a + b)
        .map(|(_, v)| v)
        .reduce(|a, b| a + b)
        .unwrap()
        .unwrap()
}

/// Sends junk: random bytes, a frame of announced length 4 GiB, and a
/// message that does not decode; each on its own connection.
fn send_garbage(addr: &str, secret: Option<&Secret>) {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for payload in [
        &junk[..],
        &u32::MAX.to_le_bytes()[..],
        &(64u32 << 20).to_le_bytes()[..],
    ] {
        let Ok(mut c) = TcpStream::connect(addr) else {
            continue;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        if secret.is_some() && connect_tcp(&mut c, secret).is_err() {
            continue;
        }
        let _ = c.write_all(payload);
        let _ = c.write_all(&[0u8; 64]);
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut buf = [0u8; 64];
        let _ = c.read(&mut buf);
    }
    // A well-framed message that is not one the daemon knows.
    if let Ok(mut c) = TcpStream::connect(addr) {
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        if secret.is_none() || connect_tcp(&mut c, secret).is_ok() {
            let _ = write_frame(&mut c, &junk[..1000]);
            let _ = c.shutdown(std::net::Shutdown::Write);
            let mut buf = [0u8; 64];
            let _ = c.read(&mut buf);
        }
    }
}

#[test]
fn strangers_are_refused_and_junk_brings_no_daemon_down() {
    let work = tempfile::tempdir().unwrap();
    let (mut master, mut workers, url, master_ui) = start_cluster(work.path());
    let address = url.trim_start_matches("ember://").to_string();
    let secret = Secret::new(SECRET).unwrap();
    assert_eq!(alive_workers(&master_ui), 2);

    // A worker without the secret is refused and does not register.
    let stray_dir = work.path().join("stray");
    let mut stray = ember(&[
        "worker",
        &url,
        "--cores",
        "1",
        "--webui-port",
        "0",
        "--work-dir",
        stray_dir.to_str().unwrap(),
    ]);
    assert!(stray
        .wait_for("registered with", Duration::from_secs(2))
        .is_none());
    drop(stray);

    // A client with a wrong secret fails the handshake.
    let mut c = TcpStream::connect(&address).unwrap();
    let wrong = Secret::new("guess").unwrap();
    assert!(connect_tcp(&mut c, Some(&wrong)).is_err());

    // A driver without the secret cannot register an application.
    let refused = Context::builder()
        .master(&url)
        .conf("ember.ui.enabled", "false")
        .conf("ember.network.timeout", "5s")
        .build();
    assert!(
        refused.is_err(),
        "an application without the secret was accepted"
    );

    // Junk at the master, before and after authenticating.
    send_garbage(&address, None);
    send_garbage(&address, Some(&secret));
    // Junk at a worker's web UI.
    let worker_ui = http_get(&master_ui, "/json");
    let worker_ui: serde_json::Value = serde_json::from_str(&worker_ui).unwrap();
    let wui = worker_ui["workers"][0]["webuiaddress"]
        .as_str()
        .unwrap()
        .to_string();
    send_garbage(wui.trim_start_matches("http://"), None);
    send_garbage(master_ui.trim_start_matches("http://"), None);
    assert_eq!(alive_workers(&master_ui), 2);

    // An authenticated application runs, twice, around junk sent to its
    // executors' block servers.
    let ctx = Context::builder()
        .master(&url)
        .app_name("auth-test")
        .conf("ember.authenticate", "true")
        .conf("ember.authenticate.secret", SECRET)
        .conf("ember.ui.port", "0")
        .build()
        .unwrap();
    let expected: u64 = (1..=1000u64).map(|x| x * x).sum();
    assert_eq!(square_sum(&ctx), expected);
    let ui = ctx.ui_url().expect("the application UI runs");
    let execs: serde_json::Value = serde_json::from_str(&http_get(
        &ui,
        &format!("/api/v1/applications/{}/executors", ctx.app_id()),
    ))
    .unwrap();
    let execs = execs.as_array().unwrap();
    assert_eq!(execs.len(), 2, "{execs:?}");
    for e in execs {
        let block_server = e["hostPort"].as_str().unwrap();
        send_garbage(block_server, None);
        send_garbage(block_server, Some(&secret));
    }
    assert_eq!(square_sum(&ctx), expected);
    ctx.stop();

    assert!(master.alive(), "the master died");
    for w in &mut workers {
        assert!(w.alive(), "a worker died");
    }
    assert_eq!(alive_workers(&master_ui), 2);
    let apps: serde_json::Value =
        serde_json::from_str(&http_get(&master_ui, "/api/v1/applications")).unwrap();
    assert!(apps
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "auth-test" && a["attempts"][0]["completed"] == true));
}
