//! Concurrent jobs on one context and cancelling them: jobs from two
//! threads share the executors at the same time; a cancelled job group
//! returns `Cancelled` promptly and its executors go to the other job;
//! async actions can be waited on or cancelled; jobs are named by their
//! action's call site. Ctrl-C is tested on the `wordcount` example
//! (`examples/tests/interrupt.rs`).

use ember_driver::prelude::*;
use std::path::Path;
use std::time::{Duration, Instant};

const MODES: [&str; 2] = ["local[4]", "local-cluster[2,1,512]"];

/// Sleeps 50 ms per record.
fn slow(x: i64) -> i64 {
    std::thread::sleep(Duration::from_millis(50));
    x
}

/// Marks (a file in folder `dir`) that a task reached record `x`, then
/// sleeps 100 ms: a task of 100 records takes 10 s unless killed.
fn marked_slow(dir: &String, x: i64) -> i64 {
    let _ = std::fs::write(Path::new(dir).join(format!("started-{x}")), "");
    std::thread::sleep(Duration::from_millis(100));
    x
}

fn started(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Waits until a task of the slow job wrote its marker.
fn wait_started(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !started(dir) {
        assert!(Instant::now() < deadline, "the slow job never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn report_of(ctx: &Context, group: &str) -> ember_driver::dag::JobReport {
    ctx.job_reports()
        .into_iter()
        .find(|r| r.group.as_deref() == Some(group))
        .unwrap_or_else(|| panic!("no job of group {group}"))
}

#[test]
fn jobs_of_two_threads_run_at_the_same_time_on_local_4() {
    let ctx = Context::new("local[4]").unwrap();
    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|group| {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                ctx.set_job_group(group, &format!("job {group}"));
                // 2 tasks of 8 records: 400 ms each, time enough for the
                // other thread to submit its job on a busy machine.
                ctx.range(0, 16, 1, 2).unwrap().map(slow).count().unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 16);
    }
    let (a, b) = (report_of(&ctx, "a").metrics, report_of(&ctx, "b").metrics);
    for m in [&a, &b] {
        assert!(m.start_unix_micros > 0 && m.end_unix_micros > m.start_unix_micros);
    }
    // One job's tasks ran while the other's did: their spans overlap.
    assert!(
        a.start_unix_micros < b.end_unix_micros && b.start_unix_micros < a.end_unix_micros,
        "the jobs ran one after the other: a {}..{}, b {}..{}",
        a.start_unix_micros,
        a.end_unix_micros,
        b.start_unix_micros,
        b.end_unix_micros
    );
}

/// A job of group `slow` whose tasks sleep takes every slot; a quick job
/// waits behind it (first in, first out); cancelling the group from
/// another thread returns `Cancelled` at once and the quick job runs on
/// the freed slots long before the slow tasks would have ended.
fn cancelled_group_frees_its_executors(master: &str) {
    let ctx = Context::new(master).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().display().to_string();
    // 100 records of 100 ms per task: 10 s unless killed.
    let slow_rdd = ctx
        .range(0, 400, 1, 4)
        .unwrap()
        .map_with(marks, marked_slow);
    let slow_job = {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            ctx.set_job_group("slow", "sleeps in every task");
            let begun = Instant::now();
            (slow_rdd.count(), begun.elapsed())
        })
    };
    wait_started(dir.path());
    let quick_rdd = ctx.range(0, 100, 1, 4).unwrap().map(|x| x * 2);
    let quick_job = {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            ctx.set_job_group("quick", "sums doubles");
            let begun = Instant::now();
            (quick_rdd.reduce(|a, b| a + b), begun.elapsed())
        })
    };
    // The quick job is queued behind the slow one's running tasks.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!quick_job.is_finished(), "{master}: no slot should be free");
    let cancelled_at = Instant::now();
    assert_eq!(ctx.cancel_job_group("slow"), 1, "{master}");
    let (outcome, _) = slow_job.join().unwrap();
    let returned = cancelled_at.elapsed();
    assert!(
        matches!(outcome, Err(EmberError::Cancelled(_))),
        "{master}: {outcome:?}"
    );
    assert!(returned < Duration::from_secs(1), "{master}: {returned:?}");
    let (sum, quick_took) = quick_job.join().unwrap();
    assert_eq!(sum.unwrap(), Some(9900), "{master}");
    // The slow tasks had 9 s or more to go: the quick job did not wait
    // for them.
    assert!(
        quick_took < Duration::from_secs(4),
        "{master}: the quick job took {quick_took:?}"
    );
    assert!(report_of(&ctx, "quick").tasks_failed == 0);
    // The context runs jobs as before.
    assert_eq!(ctx.range(0, 10, 1, 2).unwrap().count().unwrap(), 10);
}

#[test]
fn a_cancelled_job_group_returns_promptly_and_frees_executors_in_local_4() {
    cancelled_group_frees_its_executors(MODES[0]);
}

#[test]
fn a_cancelled_job_group_returns_promptly_and_frees_executors_in_local_cluster() {
    cancelled_group_frees_its_executors(MODES[1]);
}

#[test]
fn async_actions_can_be_waited_on_or_cancelled() {
    let ctx = Context::new("local[4]").unwrap();
    let count = ctx.range(0, 1000, 1, 4).unwrap().count_async().unwrap();
    let collect = ctx.range(0, 5, 1, 2).unwrap().collect_async().unwrap();
    let foreach = ctx
        .range(1, 5, 1, 2)
        .unwrap()
        .map(|x| x as u64)
        .foreach_async(|_| {})
        .unwrap();
    assert_eq!(count.get().unwrap(), 1000);
    assert_eq!(collect.get().unwrap(), vec![0, 1, 2, 3, 4]);
    foreach.get().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().display().to_string();
    let slow = ctx
        .range(0, 400, 1, 4)
        .unwrap()
        .map_with(marks, marked_slow)
        .collect_async()
        .unwrap();
    wait_started(dir.path());
    assert!(!slow.is_done());
    let cancelled_at = Instant::now();
    slow.cancel();
    let outcome = slow.get();
    assert!(
        matches!(outcome, Err(EmberError::Cancelled(_))),
        "{outcome:?}"
    );
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
}

#[test]
fn cancel_all_jobs_cancels_jobs_of_every_group() {
    let ctx = Context::new("local[4]").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().display().to_string();
    let rdd = ctx
        .range(0, 400, 1, 4)
        .unwrap()
        .map_with(marks, marked_slow);
    let handles: Vec<_> = (0..2).map(|_| rdd.count_async().unwrap()).collect();
    wait_started(dir.path());
    // Both jobs are submitted once their threads run them.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut cancelled = 0;
    while cancelled < 2 && Instant::now() < deadline {
        cancelled += ctx.cancel_all_jobs();
        std::thread::sleep(Duration::from_millis(20));
    }
    for h in handles {
        assert!(matches!(h.get(), Err(EmberError::Cancelled(_))));
    }
}

#[test]
fn concurrent_jobs_over_one_shuffle_run_its_map_stage_once() {
    for master in MODES {
        let ctx = Context::new(master).unwrap();
        let sums = ctx
            .range(0, 40, 1, 4)
            .unwrap()
            .map(|x| (x % 10, slow(x / 4)))
            .reduce_by_key(|a, b| a + b);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let sums = sums.clone();
                std::thread::spawn(move || {
                    let mut v = sums.collect().unwrap();
                    v.sort();
                    v
                })
            })
            .collect();
        let expected: Vec<(i64, i64)> = (0..10)
            .map(|k| (k, (0..40).filter(|x| x % 10 == k).map(|x| x / 4).sum()))
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), expected, "{master}");
        }
        let reports = ctx.job_reports();
        let map_tasks: usize = reports.iter().map(|r| r.tasks_launched).sum::<usize>()
            - reports.len() * sums.num_partitions();
        assert_eq!(map_tasks, 4, "{master}: {reports:?}");
    }
}

#[test]
fn a_job_is_named_by_its_action_call_site_unless_its_group_describes_it() {
    let ctx = Context::new("local[2]").unwrap();
    let line = line!() + 1;
    ctx.range(0, 10, 1, 2).unwrap().count().unwrap();
    // `first` runs `take`'s jobs: the outer action names them.
    ctx.range(0, 10, 1, 2).unwrap().first().unwrap();
    let reports = ctx.job_reports();
    assert_eq!(
        reports[0].description,
        format!("count at concurrency.rs:{line}")
    );
    assert_eq!(
        reports[1].description,
        format!("first at concurrency.rs:{}", line + 2)
    );
    let line = line!() + 1;
    let handle = ctx.range(0, 10, 1, 2).unwrap().count_async().unwrap();
    handle.get().unwrap();
    assert_eq!(
        ctx.job_reports().last().unwrap().description,
        format!("count_async at concurrency.rs:{line}")
    );
    ctx.set_job_group("g", "a described job");
    ctx.range(0, 10, 1, 2).unwrap().count().unwrap();
    assert_eq!(
        ctx.job_reports().last().unwrap().description,
        "a described job"
    );
}
