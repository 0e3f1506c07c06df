//! The DAG scheduler and its failure paths: long lineages, shuffle reuse
//! across jobs, task retries, job failure with a useful message, bad
//! configuration and inputs, and the executor build check.

use ember_driver::prelude::*;
use std::path::Path;

/// Panics the first time any task reaches record `at` (a marker file
/// records that it happened), so one task fails once and then succeeds.
fn panic_once_at(env: &(String, u64), x: u64) -> u64 {
    let (marker, at) = env;
    if x == *at
        && std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(marker)
            .is_ok()
    {
        panic!("injected failure at record {x}");
    }
    x
}

/// Appends a line to the log file for every attempt that reaches record
/// `at`, then panics: that partition fails every time.
fn always_panic_at(env: &(String, u64), x: u64) -> u64 {
    use std::io::Write;
    let (log, at) = env;
    if x == *at {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        writeln!(f, "attempt").unwrap();
        panic!("record {x} is poisoned");
    }
    x
}

fn thousand_maps(ctx: &Context) -> Rdd<u64> {
    let mut r = ctx.parallelize((0..100u64).collect(), 4).unwrap();
    for _ in 0..1000 {
        r = r.map(|x| x + 1);
    }
    r
}

#[test]
fn a_lineage_of_1000_maps_runs_locally() {
    let ctx = Context::new("local[2]").unwrap();
    let r = thousand_maps(&ctx);
    assert_eq!(r.collect().unwrap(), (1000..1100u64).collect::<Vec<_>>());
}

#[test]
fn a_lineage_of_1000_maps_around_a_shuffle_runs_in_local_cluster() {
    let ctx = Context::new("local-cluster[2,1,512]").unwrap();
    let r = thousand_maps(&ctx);
    assert_eq!(r.collect().unwrap(), (1000..1100u64).collect::<Vec<_>>());
    // The same depth again on the reduce side of a shuffle.
    let mut s = r.map(|x| (x % 10, x)).reduce_by_key(|a, b| a + b);
    for _ in 0..1000 {
        s = s.map_values(|v| v + 1);
    }
    let mut got = s.collect().unwrap();
    got.sort();
    let expected: Vec<(u64, u64)> = (0..10)
        .map(|k| {
            (
                k,
                (1000..1100u64).filter(|x| x % 10 == k).sum::<u64>() + 1000,
            )
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn a_second_job_reuses_the_shuffle_an_earlier_job_wrote() {
    let ctx = Context::new("local[2]").unwrap();
    let sums = ctx
        .parallelize((0..1000u64).collect(), 8)
        .unwrap()
        .map(|x| (x % 5, x))
        .reduce_by_key_into(|a, b| a + b, 3);
    assert_eq!(sums.count().unwrap(), 5);
    let mut got = sums.collect().unwrap();
    got.sort();
    let expected: Vec<(u64, u64)> = (0..5)
        .map(|k| (k, (0..1000u64).filter(|x| x % 5 == k).sum()))
        .collect();
    assert_eq!(got, expected);
    let reports = ctx.job_reports();
    let (first, second) = (&reports[reports.len() - 2], &reports[reports.len() - 1]);
    assert_eq!(
        first.stages_run.len(),
        2,
        "map stage and result stage: {first:?}"
    );
    assert!(first.stages_skipped.is_empty(), "{first:?}");
    let map_stage = first.stages_run[0];
    assert_eq!(second.stages_skipped, vec![map_stage], "{second:?}");
    assert!(!second.stages_run.contains(&map_stage), "{second:?}");
    assert_eq!(first.tasks_launched, 8 + 3);
    assert_eq!(second.tasks_launched, 3, "only the result stage's tasks");
}

#[test]
fn a_task_that_panics_once_is_retried_and_the_job_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("failed").display().to_string();
    let ctx = Context::new("local[2]").unwrap();
    let total = ctx
        .parallelize((0..100u64).collect(), 4)
        .unwrap()
        .map_with((marker.clone(), 30u64), panic_once_at)
        .reduce(|a, b| a + b)
        .unwrap();
    assert_eq!(total, Some((0..100u64).sum()));
    assert!(Path::new(&marker).exists(), "the failure happened");
    let report = ctx.job_reports().pop().unwrap();
    assert_eq!(report.tasks_failed, 1, "{report:?}");
    assert_eq!(report.tasks_launched, 5, "4 tasks and 1 retry: {report:?}");
}

#[test]
fn a_map_task_that_panics_once_in_an_executor_process_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("failed").display().to_string();
    let ctx = Context::new("local-cluster[2,1,512]").unwrap();
    let mut got = ctx
        .parallelize((0..100u64).collect(), 4)
        .unwrap()
        .map_with((marker.clone(), 55u64), panic_once_at)
        .map(|x| (x % 3, 1u64))
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap();
    got.sort();
    assert_eq!(got, vec![(0, 34), (1, 33), (2, 33)]);
    assert!(Path::new(&marker).exists(), "the failure happened");
    assert_eq!(ctx.job_reports().pop().unwrap().tasks_failed, 1);
}

#[test]
fn a_task_that_always_panics_fails_the_job_naming_message_stage_and_partition() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts").display().to_string();
    let ctx = Context::new("local[2]").unwrap();
    // Record 70 is in partition 2 of 4.
    let err = ctx
        .parallelize((0..100u64).collect(), 4)
        .unwrap()
        .map_with((log.clone(), 70u64), always_panic_at)
        .collect()
        .expect_err("the job fails");
    let report = ctx.job_reports().pop().unwrap();
    let result_stage = *report.stages_run.last().unwrap();
    match &err {
        EmberError::JobFailed {
            stage,
            partition,
            attempts,
            message,
            executor,
            ..
        } => {
            assert_eq!(*stage, result_stage);
            assert_eq!(executor.0, "driver");
            assert_eq!(*partition, 2);
            assert_eq!(*attempts, 4, "the default ember.task.maxFailures");
            assert!(message.contains("record 70 is poisoned"), "{message}");
        }
        other => panic!("expected JobFailed, got {other:?}"),
    }
    let text = err.to_string();
    for part in [
        "record 70 is poisoned",
        "partition 2",
        &result_stage.to_string(),
        "executor driver",
    ] {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 4);
}

#[test]
fn max_failures_sets_the_number_of_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts").display().to_string();
    let ctx = Context::builder()
        .master("local[2]")
        .conf("ember.task.maxFailures", "2")
        .build()
        .unwrap();
    let err = ctx
        .parallelize((0..10u64).collect(), 1)
        .unwrap()
        .map_with((log.clone(), 3u64), always_panic_at)
        .count()
        .expect_err("the job fails");
    assert!(
        matches!(err, EmberError::JobFailed { attempts: 2, .. }),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        2,
        "exactly two attempts ran"
    );
    let report = ctx.job_reports().pop().unwrap();
    assert_eq!(
        (report.tasks_launched, report.tasks_failed),
        (2, 2),
        "{report:?}"
    );
}

#[test]
fn a_context_keeps_working_after_a_failed_job() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attempts").display().to_string();
    let ctx = Context::builder()
        .master("local[2]")
        .conf("ember.task.maxFailures", "1")
        .build()
        .unwrap();
    let r = ctx.parallelize((0..40u64).collect(), 4).unwrap();
    assert!(r.map_with((log, 5u64), always_panic_at).count().is_err());
    assert_eq!(
        r.map(|x| x * 2).reduce(|a, b| a + b).unwrap(),
        Some((0..40u64).map(|x| x * 2).sum())
    );
}

/// Appends the record to the log file in `dir` (one line per record).
fn log_record(log: &String, x: u64) -> u64 {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    writeln!(f, "{x}").unwrap();
    x
}

#[test]
fn the_queued_tasks_of_a_failed_job_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let poison = dir.path().join("attempts").display().to_string();
    let log = dir.path().join("records").display().to_string();
    // One task slot: partition 0 runs first and fails the job while the
    // other 19 partitions wait in the queue.
    let ctx = Context::builder()
        .master("local[1]")
        .conf("ember.task.maxFailures", "1")
        .build()
        .unwrap();
    let r = ctx.parallelize((0..20u64).collect(), 20).unwrap();
    let failing = r
        .map_with((poison, 0u64), always_panic_at)
        .map_with(log.clone(), log_record);
    assert!(failing.count().is_err());
    assert_eq!(r.count().unwrap(), 20, "the context still works");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        logged.lines().count(),
        0,
        "tasks of the failed job ran later: {logged:?}"
    );
}

#[test]
fn a_bad_master_url_lists_the_accepted_forms() {
    for url in [
        "lokal",
        "local[x]",
        "local[0]",
        "local-cluster[2,1]",
        "local-cluster[a,b,c]",
        "yarn",
        "",
    ] {
        let err = Context::new(url)
            .err()
            .unwrap_or_else(|| panic!("{url:?} is accepted"));
        let text = err.to_string();
        for form in ["local[N]", "local[*]", "local-cluster[N,C,M]"] {
            assert!(text.contains(form), "{url:?}: {text}");
        }
        assert!(
            text.contains(&format!("{url:?}")),
            "the message quotes the URL: {text}"
        );
    }
}

#[test]
fn a_missing_input_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::new("local[1]").unwrap();
    let missing = dir.path().join("nope.txt");
    let err = ctx
        .text_file(&missing, 2)
        .err()
        .expect("a missing file is an error");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    let err = ctx
        .binary_files(&missing, 2)
        .err()
        .expect("a missing folder is an error");
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_file_where_a_folder_is_expected_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain.txt");
    std::fs::write(&file, "x\n").unwrap();
    let ctx = Context::new("local[1]").unwrap();
    let err = ctx
        .binary_files(&file, 2)
        .err()
        .expect("binary_files needs a folder");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
    let err = ctx
        .parallelize(vec![1u64], 1)
        .unwrap()
        .save_as_text_file(&file)
        .expect_err("the output exists");
    assert!(
        err.to_string().contains(&file.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "x\n",
        "left untouched"
    );
}

#[test]
fn a_folder_where_a_file_is_expected_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = Context::builder()
        .master("local-cluster[1,1,512]")
        .conf("ember.executor.binary", &dir.path().display().to_string())
        .build()
        .err()
        .expect("a folder is not an executable");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn an_input_file_deleted_before_the_job_fails_it_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone.txt");
    std::fs::write(&path, "a\nb\n").unwrap();
    let ctx = Context::builder()
        .master("local[1]")
        .conf("ember.task.maxFailures", "1")
        .build()
        .unwrap();
    let r = ctx.text_file(&path, 1).unwrap();
    std::fs::remove_file(&path).unwrap();
    let err = r.collect().expect_err("the file is gone");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn an_unreadable_file_is_an_error_naming_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret.txt");
    std::fs::write(&path, "hidden\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&path).is_ok() {
        eprintln!("skipped: this user (root?) can read a file with mode 000");
        return;
    }
    let ctx = Context::new("local[1]").unwrap();
    let err = ctx
        .text_file(&path, 1)
        .err()
        .expect("an unreadable file is an error");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let err = ctx
        .binary_files(dir.path(), 1)
        .err()
        .expect("an unreadable file is an error");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn an_executor_binary_that_is_not_an_ember_program_is_an_error_naming_it() {
    let not_ember = Path::new("/bin/true");
    if !not_ember.exists() {
        eprintln!("skipped: no /bin/true here");
        return;
    }
    let err = Context::builder()
        .master("local-cluster[1,1,512]")
        .conf("ember.executor.binary", "/bin/true")
        .build()
        .err()
        .expect("/bin/true never registers");
    assert!(err.to_string().contains("/bin/true"), "{err}");
}

/// A copy of this test binary with one byte appended: it still runs (and
/// becomes an executor), but its build id differs. Copied by child
/// processes, so no file descriptor open for writing can leak into an
/// executor started concurrently by another test (which would make
/// executing the copy fail with "text file busy").
fn altered_copy_of_this_binary(dir: &Path) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let copy = dir.join("altered-executor");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"cp "$0" "$1" && printf '\0' >> "$1" && chmod +x "$1""#)
        .arg(&exe)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success(), "copying {}", exe.display());
    copy
}

#[test]
fn an_executor_binary_that_differs_from_the_driver_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let copy = altered_copy_of_this_binary(dir.path());
    let err = Context::builder()
        .master("local-cluster[1,1,512]")
        .conf("ember.executor.binary", &copy.display().to_string())
        .build()
        .err()
        .expect("the executor is refused");
    assert!(matches!(err, EmberError::BuildMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("different binary"), "{err}");
}
