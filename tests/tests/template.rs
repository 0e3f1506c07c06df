//! `examples/template` is a driver program in its own Cargo project, as a
//! user's would be: this builds it with cargo, the way its README section
//! says, and runs it unchanged in `local[2]` (master from `--master`) and
//! `local-cluster[2,1,512]` (from `EMBER_MASTER`).
//!
//! It builds into the workspace's own target folder, with the workspace's
//! release profile, so the compiled registry dependencies are shared and
//! only Ember's crates and the template are compiled again (cargo hashes a
//! path dependency by its path from the workspace root, which differs):
//! about 2 minutes on 2 cores instead of about 4 in a folder of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A build that takes longer than this is stuck (a lock, the network).
const BUILD_LIMIT: Duration = Duration::from_secs(15 * 60);

/// What the template prints for its built-in text.
const EXPECTED: &str =
    "brown\t1\ndog\t2\nfox\t3\nhill\t1\njumps\t1\nlazy\t1\nquick\t2\nruns\t1\nsleeps\t1\n";

fn template_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/template")
}

/// The workspace's target folder (`CARGO_TARGET_TMPDIR` is its `tmp`).
fn workspace_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .to_path_buf()
}

/// Builds the template with `cargo build --release` and returns its binary.
fn build_template() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = workspace_target();
    let started = Instant::now();
    let mut child = Command::new(cargo)
        .args(["build", "--release", "--manifest-path"])
        .arg(template_dir().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cargo starts");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BUILD_LIMIT {
            let _ = child.kill();
            panic!("building the template took over {BUILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "cargo build of the template failed");
    eprintln!("template built in {:.0?}", started.elapsed());
    target.join("release/ember-template")
}

fn run(binary: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .env_remove("EMBER_MASTER")
        .env_remove("RUST_LOG")
        .env_remove("EMBER_LOG")
        .env("EMBER_UI_ENABLED", "false");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("the template runs")
}

#[test]
fn the_template_builds_out_of_tree_and_runs_unchanged_in_local_and_local_cluster() {
    let binary = build_template();
    for (args, vars) in [
        (vec!["--master", "local[2]"], vec![]),
        (vec![], vec![("EMBER_MASTER", "local-cluster[2,1,512]")]),
    ] {
        let out = run(&binary, &args, &vars);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?} {vars:?}: {stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            EXPECTED,
            "{args:?} {vars:?}"
        );
        // The default filter is `warn`: a clean run logs nothing below it.
        for level in [" INFO ", " DEBUG ", " TRACE "] {
            assert!(!stderr.contains(level), "{args:?} {vars:?}: {stderr}");
        }
    }
    // A file argument, in a cluster.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "Ember runs; Ember scales.\nthe end and over\n").unwrap();
    let out = run(
        &binary,
        &["--master=local-cluster[2,1,512]", input.to_str().unwrap()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ember\t2\nend\t1\nruns\t1\nscales\t1\n"
    );
}
