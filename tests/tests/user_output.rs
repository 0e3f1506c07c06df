//! What a user sees on stderr when tasks fail: driver programs
//! (`src/bin/failing_job.rs`) run as child processes, in `local[2]` and
//! `local-cluster[2,1,512]`, with `RUST_BACKTRACE=1` as many shells set it.
//!
//! A retried task is a warning (Ember's log output is on by default, at
//! `warn`, in the driver and in executor processes) and `EMBER_LOG=error`
//! silences it; a job that fails is one line naming the job, stage,
//! partition, attempt and executor, with no panic text unless the user's
//! own code panicked, and then Ember does not repeat the panic message.

use ember_driver::prelude::*;
use ember_driver::rdd::task::throw;
use std::process::{Command, Output};

const MODES: [&str; 2] = ["local[2]", "local-cluster[2,1,512]"];

/// Runs `failing_job ARGS` with `vars` set and no log filter inherited.
fn run(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_failing_job"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("EMBER_LOG");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("failing_job runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_retried_task_is_a_warning_by_default_and_silent_at_ember_log_error() {
    for master in MODES {
        let dir = tempfile::tempdir().unwrap();
        let out = run(&[master, "once", &dir.path().display().to_string()], &[]);
        let err = stderr(&out);
        assert!(out.status.success(), "{master}: {err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "sum 56\n");
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains(" WARN ")).collect();
        assert!(
            warnings.iter().any(|l| l
                .contains("stage 0 partition 1 failed on attempt 1 of 4 (executor ")
                && l.ends_with("; retrying: injected failure of the first attempt")),
            "{master}: the driver's warning is missing:\n{err}"
        );
        // In local-cluster mode the task ran in an executor process.
        assert!(
            warnings
                .iter()
                .any(|l| l.ends_with("a user's warning from a task")),
            "{master}: the task's warning is missing:\n{err}"
        );
        assert_eq!(warnings.len(), 2, "{master}:\n{err}");

        let dir = tempfile::tempdir().unwrap();
        let out = run(
            &[master, "once", &dir.path().display().to_string()],
            &[("EMBER_LOG", "error")],
        );
        assert!(out.status.success(), "{master}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{master}: nothing at EMBER_LOG=error");
        assert!(dir.path().join("failed").exists(), "the task did fail once");
    }
}

#[test]
fn rust_log_wins_over_ember_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["local[2]", "once", &dir.path().display().to_string()],
        &[("RUST_LOG", "error"), ("EMBER_LOG", "warn")],
    );
    assert!(out.status.success());
    assert_eq!(stderr(&out), "");
}

#[test]
fn a_failed_job_is_one_line_naming_where_with_no_panic_text() {
    for master in MODES {
        let out = run(&[master, "always"], &[("RUST_BACKTRACE", "1")]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{master}: the program fails");
        for banned in [
            "panicked at",
            "Box<dyn Any>",
            "stack backtrace",
            "RUST_BACKTRACE",
        ] {
            assert!(!err.contains(banned), "{master}: {banned:?} in:\n{err}");
        }
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("Error: ")).collect();
        let [line] = errors.as_slice() else {
            panic!("{master}: one error line expected:\n{err}");
        };
        assert!(
            line.starts_with(
                "Error: job 0 aborted: stage 0 partition 1 failed on attempt 4 of 4 (executor "
            ) && line.ends_with("): /no/such/input.txt: open: entity not found"),
            "{master}: {line}"
        );
        // Each retry is a short warning; the cause is described once
        // there (the first failure) and once in the error.
        let retries: Vec<&str> = err.lines().filter(|l| l.contains("; retrying")).collect();
        assert_eq!(retries.len(), 3, "{master}:\n{err}");
        assert_eq!(
            err.matches("/no/such/input.txt").count(),
            2,
            "{master}:\n{err}"
        );
        assert!(
            retries[1..].iter().all(|l| l.ends_with("(the same error)")),
            "{master}:\n{err}"
        );
        assert!(
            err.lines().all(|l| !l.is_empty() && l.len() < 300),
            "{master}:\n{err}"
        );
    }
}

#[test]
fn a_user_panic_is_printed_by_its_hook_and_not_repeated_by_ember() {
    for master in MODES {
        let out = run(&[master, "panic"], &[("RUST_BACKTRACE", "1")]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{master}: the program fails");
        // The default hook's output is the user's: one per attempt.
        assert_eq!(err.matches("panicked at").count(), 4, "{master}:\n{err}");
        let message = "user code rejects 4";
        let repeated: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(message) && l.trim() != message)
            .collect();
        let [line] = repeated.as_slice() else {
            panic!("{master}: the message once besides the hook's:\n{err}");
        };
        assert!(
            line.starts_with("Error: job 0 aborted: stage 0 partition 1 failed on attempt 4 of 4")
                && line.ends_with(message),
            "{master}: {line}"
        );
    }
}

fn fail_at_four(x: u64) -> u64 {
    if x == 4 {
        throw(EmberError::Other("four is not allowed".into()));
    }
    x
}

#[test]
fn a_failed_jobs_error_names_job_stage_partition_attempt_and_executor() {
    let ctx = Context::builder()
        .master("local[2]")
        .conf("ember.ui.enabled", "false")
        .conf("ember.task.maxFailures", "2")
        .build()
        .unwrap();
    // A first job, so that the failing one is not job 0.
    assert_eq!(ctx.range(0, 4, 1, 2).unwrap().count().unwrap(), 4);
    let err = ctx
        .parallelize((0..8u64).collect(), 2)
        .unwrap()
        .map(fail_at_four)
        .collect()
        .expect_err("the job fails");
    let report = ctx.job_reports().pop().unwrap();
    let stage = *report.stages_run.last().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "job 1 aborted: {stage} partition 1 failed on attempt 2 of 2 (executor driver): four is not allowed"
        )
    );
    assert_eq!(format!("{err:?}"), err.to_string(), "what main prints");
}
