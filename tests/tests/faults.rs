//! Fault tolerance under real process kills: executors of
//! `local-cluster` are killed with SIGKILL (or stopped with SIGSTOP) at
//! chosen points of a job — during a map stage, between a shuffle's map
//! outputs and the reducers that fetch them, during a reduce — and at
//! random moments of a multi-stage job; tasks fail on chosen attempts; an
//! executor fails every task it gets; every executor dies. Each job's
//! result must equal the clean run's (computed in `local[2]`), and only
//! the lost work may be redone.

use ember_driver::prelude::*;
use harness::{kill, mark, poll, read_log, stall, wait_for_mark, with_injector};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Killing executors at chosen points, and what tasks use to say where
/// they ran. Tasks run in executor processes, so they talk to the test
/// through files: a marker names the process that wrote it, a log gets
/// one line per task run.
mod harness {
    use ember_driver::prelude::*;
    use std::io::Write;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Longest a stalled task waits to be killed: a kill that never
    /// comes makes the test fail instead of hang.
    pub const STALL_LIMIT: Duration = Duration::from_secs(30);
    /// Longest a job under injection may run before the test binary is
    /// stopped (an engine that hangs must not hang CI).
    pub const JOB_LIMIT: Duration = Duration::from_secs(90);

    /// A context on `local-cluster[executors,1,512]` with `conf` on top
    /// (no UI, no progress bar).
    pub fn cluster(executors: usize, conf: &[(&str, &str)]) -> Context {
        let mut b = Context::builder()
            .master(&format!("local-cluster[{executors},1,512]"))
            .conf("ember.ui.enabled", "false")
            .conf("ember.ui.showConsoleProgress", "false");
        for (k, v) in conf {
            b = b.conf(k, v);
        }
        b.build().unwrap()
    }

    /// Creates `path` holding this process's id unless it exists; whether
    /// this call created it. Readers never see it empty (hard link of a
    /// complete file), and of racing writers exactly one wins.
    pub fn mark(path: &Path) -> bool {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let tmp = path.with_extension(format!(
            "tmp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, std::process::id().to_string()).unwrap();
        let created = std::fs::hard_link(&tmp, path).is_ok();
        let _ = std::fs::remove_file(&tmp);
        created
    }

    /// Appends `line` to the log at `path` in one write, so lines from
    /// concurrent tasks and processes do not interleave.
    pub fn log(path: &Path, line: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(format!("{line}\n").as_bytes()).unwrap();
    }

    /// The lines of a log, each split at spaces into numbers.
    pub fn read_log(path: &Path) -> Vec<Vec<u64>> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').map(|w| w.parse().unwrap()).collect())
            .collect()
    }

    /// Holds the calling task until its process is killed (at most
    /// [`STALL_LIMIT`]).
    pub fn stall() {
        let start = Instant::now();
        while start.elapsed() < STALL_LIMIT {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `cond` every 10 ms for up to `within`; whether it held.
    pub fn poll(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        loop {
            if cond() {
                return true;
            }
            if start.elapsed() > within {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the marker at `path` and returns the process id in it.
    pub fn wait_for_mark(path: &Path) -> u32 {
        let mut pid = None;
        let found = poll(Duration::from_secs(30), || {
            pid = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.parse().ok());
            pid.is_some()
        });
        assert!(found, "no task wrote {}", path.display());
        pid.unwrap()
    }

    /// Sends `signal` (`KILL`, `STOP`) to process `pid`.
    pub fn kill(pid: u32, signal: &str) {
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {signal} {pid}");
    }

    /// The executor processes' ids.
    pub fn pids(ctx: &Context) -> Vec<u32> {
        ctx.executor_pids().into_iter().map(|(_, p)| p).collect()
    }

    /// Runs `job` on this thread while `inject` runs on another; returns
    /// both results. Exits the test binary if `job` outlives
    /// [`JOB_LIMIT`].
    pub fn with_injector<T, U: Send>(
        job: impl FnOnce() -> T,
        inject: impl FnOnce() -> U + Send,
    ) -> (T, U) {
        let (done, watch) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(JOB_LIMIT) {
                eprintln!("a job under fault injection ran longer than {JOB_LIMIT:?}: hung");
                std::process::exit(3);
            }
        });
        let (t, u) = std::thread::scope(|s| {
            let injector = s.spawn(inject);
            let t = job();
            (t, injector.join())
        });
        drop(done);
        (t, u.unwrap_or_else(|p| std::panic::resume_unwind(p)))
    }
}

// ---- the jobs under injection ----

const RECORDS: u64 = 3000;
const MAP_PARTITIONS: usize = 6;
const REDUCE_PARTITIONS: usize = 4;
/// A partition number that no task has: no stall.
const NONE: usize = usize::MAX;

/// Where the map side logs and which map partition stalls on its first
/// run (waiting to be killed); the accumulator counts records mapped.
type MapEnv = (String, usize, Accumulator<u64>);

/// Logs `partition pid` for every run, stalls where told, counts records.
fn tracked_map(env: &Arc<MapEnv>, p: usize, it: BoxIter<u64>) -> BoxIter<u64> {
    let (dir, stall_at, seen) = &**env;
    let dir = Path::new(dir);
    harness::log(
        &dir.join("maps.log"),
        &format!("{p} {}", std::process::id()),
    );
    if p == *stall_at && mark(&dir.join("map-stall")) {
        stall();
    }
    let seen = seen.clone();
    Box::new(it.inspect(move |_| seen.add(1)))
}

/// Where the reduce side logs and which reduce partition stalls on
/// attempt 0.
type ReduceEnv = (String, usize);

/// Logs `partition attempt pid` for every run, stalls where told.
fn tracked_reduce(
    env: &Arc<ReduceEnv>,
    tc: &TaskContext,
    it: BoxIter<(u64, u64)>,
) -> Vec<(u64, u64)> {
    let (dir, stall_at) = &**env;
    let dir = Path::new(dir);
    harness::log(
        &dir.join("reduces.log"),
        &format!("{} {} {}", tc.partition, tc.attempt, std::process::id()),
    );
    if tc.partition == *stall_at && tc.attempt == 0 && mark(&dir.join("reduce-stall")) {
        stall();
    }
    it.collect()
}

/// Per-key sums of `0..RECORDS` by `x % 13`, through one shuffle.
fn sums(ctx: &Context, env: MapEnv) -> Rdd<(u64, u64)> {
    ctx.parallelize((0..RECORDS).collect(), MAP_PARTITIONS)
        .unwrap()
        .map_partitions_with_env(env, tracked_map)
        .map(|x| (x % 13, x))
        .reduce_by_key_into(|a, b| a + b, REDUCE_PARTITIONS)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// The clean run's sums, in `local[2]`.
fn clean_sums() -> Vec<(u64, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::new("local[2]").unwrap();
    let env = (path_string(dir.path()), NONE, ctx.accumulator(0u64));
    sorted(sums(&ctx, env).collect().unwrap())
}

fn path_string(p: &Path) -> String {
    p.display().to_string()
}

/// The pids that ran each map partition, in the order of the runs.
fn map_runs(dir: &Path) -> Vec<Vec<u32>> {
    let mut runs = vec![Vec::new(); MAP_PARTITIONS];
    for line in read_log(&dir.join("maps.log")) {
        runs[line[0] as usize].push(line[1] as u32);
    }
    runs
}

/// Checks that exactly the map partitions whose output was on `victim`
/// ran again, once, elsewhere; returns how many did.
fn assert_only_lost_maps_reran(runs: &[Vec<u32>], victim: u32) -> usize {
    let mut rerun = 0;
    for (p, pids) in runs.iter().enumerate() {
        if pids[0] == victim {
            assert_eq!(pids.len(), 2, "partition {p} lost with {victim}: {runs:?}");
            assert_ne!(pids[1], victim, "partition {p}: {runs:?}");
            rerun += 1;
        } else {
            assert_eq!(pids.len(), 1, "partition {p} was not lost: {runs:?}");
        }
    }
    rerun
}

// ---- injection points ----

#[test]
fn killing_an_executor_during_a_map_stage_gives_the_clean_result() {
    let expected = clean_sums();
    let dir = tempfile::tempdir().unwrap();
    let ctx = harness::cluster(3, &[]);
    let seen = ctx.accumulator(0u64);
    // Partition 5 starts in the second wave (three slots), so its
    // executor also holds an output it completed earlier.
    let env = (path_string(dir.path()), 5, seen.clone());
    let job = sums(&ctx, env);
    let start = Instant::now();
    let (got, victim) = with_injector(
        || job.collect().unwrap(),
        || {
            let pid = wait_for_mark(&dir.path().join("map-stall"));
            kill(pid, "KILL");
            pid
        },
    );
    println!("map-stage kill: {:.2}s", start.elapsed().as_secs_f64());
    assert_eq!(sorted(got), expected);
    let runs = map_runs(dir.path());
    assert_eq!(
        runs[5][0], victim,
        "the stalled partition ran on the victim"
    );
    let rerun = assert_only_lost_maps_reran(&runs, victim);
    assert!(
        rerun >= 2,
        "the stalled partition and an output the victim completed: {runs:?}"
    );
    assert_eq!(
        seen.value(),
        RECORDS,
        "a recomputed partition's accumulator updates count once"
    );
    assert!(!harness::pids(&ctx).contains(&victim));
    assert!(
        poll(Duration::from_secs(20), || harness::pids(&ctx).len() == 3),
        "a replacement executor starts: {:?}",
        ctx.executor_pids()
    );
}

#[test]
fn map_outputs_lost_before_the_reducers_fetch_them_are_recomputed() {
    let expected = clean_sums();
    let dir = tempfile::tempdir().unwrap();
    let ctx = harness::cluster(3, &[]);
    let env = (path_string(dir.path()), NONE, ctx.accumulator(0u64));
    let sums = sums(&ctx, env);
    // Job 1 writes the shuffle's map outputs (and reads them).
    assert_eq!(sums.count().unwrap(), 13);
    let first = map_runs(dir.path());
    let victim = first[0][0];
    kill(victim, "KILL");
    assert!(
        poll(Duration::from_secs(10), || !harness::pids(&ctx)
            .contains(&victim)),
        "the driver reaps the killed executor"
    );
    // Job 2 reads the same shuffle: its map stage is complete as far as
    // the scheduler knows, so the reducers find outputs gone.
    let got = sums.map_values(|v| v).collect().unwrap();
    assert_eq!(sorted(got), expected);
    let rerun = assert_only_lost_maps_reran(&map_runs(dir.path()), victim);
    assert!(rerun >= 1);
    let reports = ctx.job_reports();
    let map_stage = reports[0].stages_run[0];
    let second = reports.last().unwrap();
    assert!(
        second.stages_run.contains(&map_stage),
        "the map stage reran for the lost outputs: {second:?}"
    );
    println!(
        "lost {rerun} of {MAP_PARTITIONS} map outputs; job 2: {} tasks, {} failed, {:.2}s",
        second.tasks_launched, second.tasks_failed, second.seconds
    );
}

#[test]
fn killing_an_executor_during_a_reduce_gives_the_clean_result() {
    let expected = clean_sums();
    let dir = tempfile::tempdir().unwrap();
    let ctx = harness::cluster(3, &[]);
    let env = (path_string(dir.path()), NONE, ctx.accumulator(0u64));
    let stalling = 3;
    let renv = (path_string(dir.path()), stalling);
    let job = sums(&ctx, env);
    let partitions: Vec<usize> = (0..REDUCE_PARTITIONS).collect();
    let start = Instant::now();
    let (got, victim) = with_injector(
        || job.run_job(renv, tracked_reduce, partitions).unwrap(),
        || {
            let pid = wait_for_mark(&dir.path().join("reduce-stall"));
            kill(pid, "KILL");
            pid
        },
    );
    println!("reduce kill: {:.2}s", start.elapsed().as_secs_f64());
    assert_eq!(sorted(got.concat()), expected);
    // The victim's map outputs went with it: exactly those reran.
    assert_only_lost_maps_reran(&map_runs(dir.path()), victim);
    let stalled: Vec<u32> = read_log(&dir.path().join("reduces.log"))
        .into_iter()
        .filter(|l| l[0] == stalling as u64)
        .map(|l| l[2] as u32)
        .collect();
    assert_eq!(stalled.len(), 2, "the killed reduce ran again: {stalled:?}");
    assert_eq!(stalled[0], victim);
    assert_ne!(stalled[1], victim);
}

/// Records each run's attempt number; partition 0 stalls on attempt 0.
fn attempt_logger(env: &Arc<String>, tc: &TaskContext, it: BoxIter<u64>) -> u64 {
    let dir = Path::new(env.as_str());
    harness::log(
        &dir.join("attempts.log"),
        &format!("{} {} {}", tc.partition, tc.attempt, std::process::id()),
    );
    if tc.partition == 0 && tc.attempt == 0 && mark(&dir.join("stall")) {
        stall();
    }
    it.sum()
}

#[test]
fn a_task_rerun_after_its_executor_died_is_a_new_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = harness::cluster(2, &[]);
    let data = ctx.parallelize((0..40u64).collect(), 2).unwrap();
    let (got, victim) = with_injector(
        || {
            data.run_job(path_string(dir.path()), attempt_logger, vec![0, 1])
                .unwrap()
        },
        || {
            let pid = wait_for_mark(&dir.path().join("stall"));
            kill(pid, "KILL");
            pid
        },
    );
    assert_eq!(got, vec![(0..20).sum::<u64>(), (20..40).sum::<u64>()]);
    let runs: Vec<(u64, u32)> = read_log(&dir.path().join("attempts.log"))
        .into_iter()
        .filter(|l| l[0] == 0)
        .map(|l| (l[1], l[2] as u32))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0], (0, victim));
    assert_eq!(
        runs[1].0, 1,
        "the rerun is attempt 1, not a second attempt 0: {runs:?}"
    );
}

#[test]
fn an_executor_that_stops_answering_is_cut_after_the_network_timeout() {
    let expected = clean_sums();
    let dir = tempfile::tempdir().unwrap();
    let ctx = harness::cluster(
        2,
        &[
            ("ember.executor.heartbeatInterval", "200ms"),
            ("ember.network.timeout", "2s"),
        ],
    );
    let env = (path_string(dir.path()), 1, ctx.accumulator(0u64));
    let job = sums(&ctx, env);
    let (got, cut_after) = with_injector(
        || job.collect().unwrap(),
        || {
            let pid = wait_for_mark(&dir.path().join("map-stall"));
            // Stopped, not killed: its connection stays open and silent.
            kill(pid, "STOP");
            let stopped = Instant::now();
            let cut = poll(Duration::from_secs(15), || {
                !harness::pids(&ctx).contains(&pid)
            });
            if !cut {
                kill(pid, "KILL"); // let the job finish; the test fails below
            }
            cut.then(|| stopped.elapsed())
        },
    );
    assert_eq!(sorted(got), expected);
    let cut_after = cut_after.expect("the silent executor was never cut");
    println!("a stopped executor was cut after {cut_after:?}");
    assert!(
        cut_after >= Duration::from_secs(1) && cut_after < Duration::from_secs(10),
        "cut by the 2s heartbeat timeout, not by anything else: {cut_after:?}"
    );
}

// ---- task failures ----

/// Fails partition `p` of a map stage on its first `k` runs (a run's
/// number is how many `fail-p-i` markers exist: map functions see no
/// attempt number) and logs the pid of each failing run.
fn fail_map_runs(env: &Arc<(String, usize, usize)>, p: usize, it: BoxIter<u64>) -> BoxIter<u64> {
    let (dir, partition, k) = &**env;
    if p == *partition {
        let dir = Path::new(dir);
        if let Some(i) = (0..*k).find(|i| mark(&dir.join(format!("fail-{p}-{i}")))) {
            harness::log(&dir.join("failed.log"), &std::process::id().to_string());
            panic!("injected map failure of partition {p}, run {i}");
        }
    }
    it
}

/// Fails reduce partition `p` while its attempt number is below `k`.
fn fail_reduce_attempts(
    env: &Arc<(usize, usize)>,
    tc: &TaskContext,
    it: BoxIter<(u64, u64)>,
) -> Vec<(u64, u64)> {
    let (partition, k) = **env;
    if tc.partition == partition && tc.attempt < k {
        panic!(
            "injected reduce failure of partition {partition}, attempt {}",
            tc.attempt
        );
    }
    it.collect()
}

fn failing_sums(ctx: &Context, dir: &Path, k: usize) -> Result<Vec<(u64, u64)>, EmberError> {
    let env = (path_string(dir), 2, k);
    let parts = ctx
        .parallelize((0..RECORDS).collect(), MAP_PARTITIONS)?
        .map_partitions_with_env(env, fail_map_runs)
        .map(|x| (x % 13, x))
        .reduce_by_key_into(|a, b| a + b, REDUCE_PARTITIONS)
        .run_job(
            (1, k),
            fail_reduce_attempts,
            (0..REDUCE_PARTITIONS).collect(),
        )?;
    Ok(sorted(parts.concat()))
}

#[test]
fn tasks_that_fail_on_their_first_attempts_are_retried_to_the_clean_result() {
    let expected = clean_sums();
    let dir = tempfile::tempdir().unwrap();
    let ctx = harness::cluster(3, &[]);
    // Attempts 0..3 of a map task and of a reduce task fail; the 4th
    // (ember.task.maxFailures = 4) succeeds.
    let k = 3;
    assert_eq!(failing_sums(&ctx, dir.path(), k).unwrap(), expected);
    let report = ctx.job_reports().pop().unwrap();
    assert_eq!(report.tasks_failed, 2 * k, "{report:?}");
    assert_eq!(
        report.tasks_launched,
        MAP_PARTITIONS + REDUCE_PARTITIONS + 2 * k,
        "{report:?}"
    );
    // A task does not retry where it failed while other executors live.
    let failed_on = read_log(&dir.path().join("failed.log"));
    let mut distinct: Vec<u64> = failed_on.iter().map(|l| l[0]).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        k,
        "three failures on three executors: {failed_on:?}"
    );
}

#[test]
fn a_task_failing_max_failures_times_fails_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = harness::cluster(2, &[]);
    let err = failing_sums(&ctx, dir.path(), 4).expect_err("four failures of four attempts");
    match &err {
        EmberError::JobFailed {
            partition,
            attempts,
            message,
            ..
        } => {
            assert_eq!((*partition, *attempts), (2, 4), "{err}");
            assert!(message.contains("injected map failure"), "{message}");
        }
        other => panic!("expected JobFailed, got {other:?}"),
    }
}

// ---- exclusion of failing executors ----

/// Partition 0 fails on its first run (logging the pid), partition 1
/// keeps its executor busy for a while.
fn fail_once_beside_busy(env: &Arc<String>, p: usize, it: BoxIter<u64>) -> BoxIter<u64> {
    let dir = Path::new(env.as_str());
    let pid = std::process::id().to_string();
    if p == 0 {
        if mark(&dir.join("failed")) {
            panic!("injected failure");
        }
        harness::log(&dir.join("retried.log"), &pid);
    } else {
        std::thread::sleep(Duration::from_millis(800)); // work
    }
    it
}

#[test]
fn a_failed_task_is_retried_on_another_executor() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = harness::cluster(2, &[]);
    // The only free slot after the failure is the failing executor's.
    let total = ctx
        .parallelize((0..10u64).collect(), 2)
        .unwrap()
        .map_partitions_with_env(path_string(dir.path()), fail_once_beside_busy)
        .reduce(|a, b| a + b)
        .unwrap();
    assert_eq!(total, Some(45));
    let failed_pid: u32 = std::fs::read_to_string(dir.path().join("failed"))
        .unwrap()
        .parse()
        .unwrap();
    let retried = read_log(&dir.path().join("retried.log"));
    assert_eq!(retried.len(), 1);
    assert_ne!(
        retried[0][0] as u32, failed_pid,
        "the retry ran where the task had failed"
    );
}

/// Fails every task on process `bad`; elsewhere works a little and logs
/// `partition pid`.
fn fail_on_bad_executor(env: &Arc<(String, u32)>, p: usize, it: BoxIter<u64>) -> BoxIter<u64> {
    let (dir, bad) = &**env;
    let dir = Path::new(dir);
    let pid = std::process::id();
    if pid == *bad {
        harness::log(&dir.join("bad.log"), &p.to_string());
        panic!("bad executor");
    }
    std::thread::sleep(Duration::from_millis(100)); // work
    harness::log(&dir.join("ok.log"), &format!("{p} {pid}"));
    it
}

#[test]
fn an_executor_that_keeps_failing_tasks_is_excluded_from_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = harness::cluster(3, &[]);
    let bad = harness::pids(&ctx)[0];
    // Without exclusion the bad executor, always the first to free its
    // slot, would take task after task and fail one four times.
    let total = ctx
        .parallelize((0..120u64).collect(), 12)
        .unwrap()
        .map_partitions_with_env((path_string(dir.path()), bad), fail_on_bad_executor)
        .reduce(|a, b| a + b)
        .unwrap();
    assert_eq!(total, Some((0..120u64).sum()));
    let report = ctx.job_reports().pop().unwrap();
    let failed = read_log(&dir.path().join("bad.log"));
    assert_eq!(
        failed.len(),
        dag_max_failed_per_executor(),
        "excluded after two failed tasks: {failed:?}"
    );
    assert_eq!(report.tasks_failed, failed.len(), "{report:?}");
    let ok = read_log(&dir.path().join("ok.log"));
    assert_eq!(ok.len(), 12, "each partition succeeded once: {ok:?}");
    assert!(ok.iter().all(|l| l[1] as u32 != bad));
}

fn dag_max_failed_per_executor() -> usize {
    ember_driver::dag::MAX_FAILED_TASKS_PER_EXECUTOR
}

// ---- losing everything ----

/// Partition 0 stalls (to be killed); the others pass through.
fn stall_first(env: &Arc<String>, p: usize, it: BoxIter<u64>) -> BoxIter<u64> {
    if p == 0 && mark(&Path::new(env.as_str()).join("stall")) {
        stall();
    }
    it
}

#[test]
fn losing_every_executor_fails_the_job_after_the_wait_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = harness::cluster(
        2,
        &[
            ("ember.executor.maxRelaunches", "0"),
            ("ember.scheduler.executorWaitTimeout", "2s"),
        ],
    );
    let job = ctx
        .parallelize((0..100u64).collect(), 4)
        .unwrap()
        .map_partitions_with_env(path_string(dir.path()), stall_first);
    let (outcome, killed_at) = with_injector(
        || (job.count(), Instant::now()),
        || {
            wait_for_mark(&dir.path().join("stall"));
            for pid in harness::pids(&ctx) {
                kill(pid, "KILL");
            }
            Instant::now()
        },
    );
    let (result, ended) = outcome;
    let err = result.expect_err("no executor is left");
    let took = ended - killed_at;
    println!("all executors lost: the job failed {took:?} after the kills: {err}");
    assert!(err.to_string().contains("all executors were lost"), "{err}");
    assert!(
        took < Duration::from_secs(10),
        "bounded by the 2s wait: {took:?}"
    );
    assert!(harness::pids(&ctx).is_empty());
}

// ---- random kills ----

/// splitmix64: a small seeded generator (the tests crate has no `rand`).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const VOCABULARY: u64 = 40;

fn word(i: u64) -> String {
    format!("w{i:02}")
}

/// Lines of words, skewed towards low word numbers.
fn text(rng: &mut Rng) -> Vec<String> {
    (0..600)
        .map(|_| {
            (0..8)
                .map(|_| {
                    let range = 1 + rng.below(VOCABULARY);
                    word(rng.below(range))
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Simulated work: each task of the stage takes `ms` milliseconds.
fn busy<T: Data>(ms: &Arc<u64>, _: usize, it: BoxIter<T>) -> BoxIter<T> {
    std::thread::sleep(Duration::from_millis(**ms));
    it
}

type Buckets = Vec<(u64, Vec<(String, u64, usize)>)>;

/// Word count, joined with word lengths, grouped by count modulo 5:
/// four shuffles, five stages.
fn multi_stage(ctx: &Context, lines: Vec<String>) -> Result<Buckets, EmberError> {
    const WORK_MS: u64 = 30;
    let counts = ctx
        .parallelize(lines, 12)?
        .map_partitions_with_env(WORK_MS, busy)
        .flat_map(|l: String| {
            l.split(' ')
                .map(|w| (w.to_string(), 1u64))
                .collect::<Vec<_>>()
        })
        .reduce_by_key_into(|a, b| a + b, 6);
    let lengths = ctx
        .parallelize((0..VOCABULARY).map(word).collect(), 4)?
        .map(|w: String| {
            let n = w.len();
            (w, n)
        });
    let mut out = counts
        .join(&lengths)
        .map_partitions_with_env(WORK_MS, busy)
        .map(|(w, (c, n)): (String, (u64, usize))| (c % 5, (w, c, n)))
        .group_by_key_into(3)
        .map_partitions_with_env(WORK_MS, busy)
        .map_values(sorted::<(String, u64, usize)>)
        .collect()?;
    out.sort();
    Ok(out)
}

#[test]
fn twenty_random_executor_kills_during_a_multi_stage_job_all_give_the_clean_result() {
    let seed = std::env::var("EMBER_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("seed {seed} (rerun with EMBER_FAULT_SEED={seed})");
    let mut rng = Rng(seed);
    let lines = text(&mut rng);
    let expected = multi_stage(&Context::new("local[2]").unwrap(), lines.clone()).unwrap();
    // The clean run's duration on the cluster bounds the kill moments.
    let clean = {
        let ctx = harness::cluster(3, &[]);
        assert_eq!(multi_stage(&ctx, lines.clone()).unwrap(), expected);
        ctx.job_reports().last().unwrap().clone()
    };
    println!(
        "clean: {:.3}s, {} tasks, stages {:?}",
        clean.seconds, clean.tasks_launched, clean.stages_run
    );
    let window = (clean.seconds * 1000.0) as u64;
    let start = Instant::now();
    let mut during = 0;
    for run in 0..20 {
        let delay = Duration::from_millis(rng.below(window.max(1)));
        let pick = rng.next();
        let ctx = harness::cluster(3, &[]);
        let job_start = Instant::now();
        let ((got, ended), (victim, killed)) = with_injector(
            || (multi_stage(&ctx, lines.clone()), Instant::now()),
            || {
                std::thread::sleep(delay); // a random moment, not a wait for an event
                let pids = harness::pids(&ctx);
                let victim = pids[(pick % pids.len() as u64) as usize];
                kill(victim, "KILL");
                (victim, Instant::now())
            },
        );
        let got = got.unwrap_or_else(|e| panic!("run {run} (seed {seed}): {e}"));
        let report = ctx.job_reports().last().unwrap().clone();
        let mid_job = killed < ended;
        during += usize::from(mid_job);
        println!(
            "run {run:2}: kill pid {victim} at {:4} ms{}: {:.3}s, {} tasks ({} failed), stages {:?}",
            delay.as_millis(),
            if mid_job { "" } else { " (after the job)" },
            (ended - job_start).as_secs_f64(),
            report.tasks_launched,
            report.tasks_failed,
            report.stages_run,
        );
        assert_eq!(got, expected, "run {run} (seed {seed})");
    }
    println!(
        "20 runs in {:.1}s, {during} kills during the job",
        start.elapsed().as_secs_f64()
    );
    assert!(
        during >= 5,
        "most kills should land mid-job: {during} of 20"
    );
}
