//! The DAG scheduler.
//!
//! A job is an action's root over an RDD. The scheduler cuts the lineage
//! into stages at shuffle dependencies (narrow dependencies are pipelined
//! inside one task), runs a stage once all the shuffles it reads are
//! complete, and skips shuffle stages whose outputs an earlier job already
//! produced. The scheduler is a state machine: [`DagScheduler::submit_job`],
//! [`DagScheduler::handle`] (one executor [`Event`]),
//! [`DagScheduler::cancel_jobs`] and [`DagScheduler::tick`] are its only
//! transitions, each short. The context runs them under one lock: an
//! event-loop thread feeds it executor events, and an action's thread
//! submits its job and then waits, unlocked, for the job's result on a
//! channel. Jobs therefore run at the same time and share the executors,
//! first in, first out: an earlier job's queued tasks start first.
//!
//! Concurrent jobs: a shuffle's map stage runs for one job at a time
//! (`running_shuffles`); another job that needs it waits for it to
//! complete, or runs it itself if the first job ends without completing
//! it. Cancelling a job (its group, all jobs, its async handle) ends it at
//! once with [`EmberError::Cancelled`], drops its queued tasks and asks the
//! executors to kill its running ones, which stop at their next record;
//! their slots are free when they report their end.
//!
//! Failures: a failed task is retried until it has failed
//! `ember.task.maxFailures` times, then the job fails with the last error,
//! the stage, the partition and the executor. A fetch failure unregisters
//! the missing map output and resubmits the parent stage, then the stage
//! (at most [`MAX_STAGE_ATTEMPTS`] times). A lost executor's map outputs
//! are forgotten and its running tasks rerun elsewhere. A failed task is
//! not retried on an executor where it failed, and an executor where
//! [`MAX_FAILED_TASKS_PER_EXECUTOR`] tasks of a stage attempt failed gets
//! none of its remaining tasks, as long as another executor is alive.
//!
//! What the scheduler keeps, and what clears it (all data structures are
//! cleared when the jobs involving them end):
//! - a job's stages, tasks and results, and the job of each of its tasks
//!   (`jobs`, `task_jobs`) and running shuffle stages
//!   (`running_shuffles`): dropped when the job ends, succeeded, failed or
//!   cancelled; its tasks still running are killed, and their late ends
//!   only free their slots;
//! - tasks of other jobs lost with an executor while one job is handled
//!   (`lost_elsewhere`): relaunched before the transition returns;
//! - a shuffle's stage (`shuffle_stages`, holding its dependency weakly)
//!   and map outputs (`tracker`): kept across jobs for reuse, removed by
//!   [`DagScheduler::remove_shuffle`] when the context's cleaner learns
//!   that no RDD reads the shuffle any more;
//! - where cached partitions are (`cache_locations`): removed by
//!   [`DagScheduler::forget_cached`] on `unpersist` or when the persisted
//!   RDD is dropped, and per executor when one is lost;
//! - job reports: one small record per job, kept for the context's life.
//!
//! Checklist for a new piece of state: say above who clears it and when;
//! a job's part must go in `DagScheduler::finish`, whatever the outcome.

use crate::dispatch::{Dispatcher, Event};
use crate::progress::{ProgressBar, StageProgress};
use crate::ui::status::SchedulerListener;

// Publishing events to the UI and event log (`dag/listen.rs`).
mod listen;
use crossbeam::channel::Sender;
use ember_core::{EmberError, ExecutorId, JobId, RddId, Result, ShuffleId, StageId, TaskId};
use ember_rdd::accumulator::apply_updates;
use ember_rdd::node::{Dependency, RddNode};
use ember_rdd::shuffled::ShuffleDep;
use ember_rdd::stage::{encode_stage, StageBlob, StageRoot};
use ember_rdd::task::TaskMetrics;
use ember_rdd::task::{BlockLocation, TaskDescription, TaskOutput};
use ember_shuffle::MapOutputTracker;
use ember_storage::BlockId;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Consecutive attempts of one stage before the job fails.
pub const MAX_STAGE_ATTEMPTS: usize = 4;

/// Failed tasks of one stage attempt on one executor before the executor
/// gets none of the stage's remaining tasks (Spark's
/// `spark.excludeOnFailure.stage.maxFailedTasksPerExecutor`).
pub const MAX_FAILED_TASKS_PER_EXECUTOR: usize = 2;

/// What one job did, for tests, logs and the UI.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobReport {
    /// The job.
    pub job: Option<JobId>,
    /// What the job is shown as: its group's description, else the call
    /// site of the action (`count at main.rs:12`).
    pub description: String,
    /// Its job group, if one was set.
    pub group: Option<String>,
    /// Stages that ran tasks, in launch order (a stage appears again for
    /// each resubmission).
    pub stages_run: Vec<StageId>,
    /// Shuffle stages the job needed but found complete.
    pub stages_skipped: Vec<StageId>,
    /// Task attempts launched.
    pub tasks_launched: usize,
    /// Task attempts that failed.
    pub tasks_failed: usize,
    /// Wall time, in seconds.
    pub seconds: f64,
    /// Each stage attempt: from its launch to its last task, in seconds.
    pub stage_seconds: Vec<(StageId, f64)>,
    /// Largest shipped pipeline of the job's stages (its nodes' encoded
    /// state, in bytes): what every task of the stage carries.
    pub max_stage_bytes: usize,
    /// Most nodes in one shipped pipeline.
    pub max_stage_nodes: usize,
    /// Metrics of the job's successful tasks, summed.
    pub metrics: TaskMetrics,
}

impl std::fmt::Display for JobReport {
    /// The job summary the driver prints after each job (with
    /// `ember.ui.showJobSummary`): time, stages, tasks, and the summed
    /// task metrics that show what the job moved, cached and spilled.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::ui::html::bytes;
        let m = &self.metrics;
        let job = self
            .job
            .map_or_else(|| "?".to_string(), |j| j.0.to_string());
        write!(
            f,
            "job {job} ({}): {:.3} s, {} stages run, {} skipped, {} tasks ({} failed); \
             input {} records / {}; shuffle write {} records / {}, read {} records / {} ({} remote); \
             cache {} hits ({} remote) / {} misses; spill {} in memory / {} on disk; \
             peak execution memory {}",
            self.description,
            self.seconds,
            self.stages_run.len(),
            self.stages_skipped.len(),
            self.tasks_launched,
            self.tasks_failed,
            m.input_records,
            bytes(m.input_bytes),
            m.shuffle_records_written,
            bytes(m.shuffle_bytes_written),
            m.shuffle_records_read,
            bytes(m.shuffle_bytes_read),
            bytes(m.shuffle_remote_bytes_read),
            m.cache_hits,
            m.cache_remote_hits,
            m.cache_misses,
            bytes(m.spill_memory_bytes),
            bytes(m.spill_disk_bytes),
            bytes(m.peak_execution_memory),
        )
    }
}

struct ShuffleStage {
    id: StageId,
    /// Weak: the RDDs reading the shuffle own it, and when the last of
    /// them is dropped the cleaner removes this stage.
    dep: Weak<dyn ShuffleDep>,
    parents: Vec<ShuffleId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum StageKey {
    Shuffle(ShuffleId),
    Result,
}

struct TaskInfo {
    key: StageKey,
    stage_attempt: usize,
    partition: usize,
}

/// The failed attempts of one task so far.
#[derive(Default)]
struct Failures {
    count: usize,
    /// The last attempt's error: a retry failing the same way is not
    /// described again.
    last: Option<EmberError>,
}

struct RunningStage {
    attempt: usize,
    blob: Arc<StageBlob>,
    pending: BTreeSet<usize>,
    tasks: usize,
    started: Instant,
    /// The RDD whose partitions the stage's tasks compute.
    rdd: Arc<dyn RddNode>,
}

/// What a submitted job is called and what it belongs to.
#[derive(Clone, Debug, Default)]
pub struct JobSpec {
    /// What the job is shown as (UI, reports, progress).
    pub description: String,
    /// The job group (cancelled as a whole).
    pub group: Option<String>,
    /// The cancel flag of the async action that started it.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Where a job's outcome goes: the results, in partition order.
pub type JobReply = Sender<Result<Vec<Vec<u8>>>>;

/// Scheduler state that lives as long as the context.
pub struct DagScheduler {
    dispatcher: Dispatcher,
    tracker: MapOutputTracker,
    shuffle_stages: HashMap<ShuffleId, ShuffleStage>,
    /// Running jobs, oldest first.
    jobs: BTreeMap<JobId, Job>,
    /// The job of each running task.
    task_jobs: HashMap<TaskId, JobId>,
    /// The job running each shuffle's map stage.
    running_shuffles: HashMap<ShuffleId, JobId>,
    /// Tasks of other jobs lost with an executor while handling one job.
    lost_elsewhere: Vec<(JobId, TaskId, ExecutorId)>,
    /// Since when no executor is alive while jobs run.
    no_executors_since: Option<Instant>,
    max_failures: usize,
    next_stage: u64,
    next_job: u64,
    next_task: u64,
    next_blob: u64,
    reports: Vec<JobReport>,
    progress: ProgressBar,
    /// Whether each job's summary is printed to stderr when it ends.
    show_summary: bool,
    executor_wait: Duration,
    /// Where cached partitions live, as executors reported them.
    cache_locations: HashMap<(RddId, usize), ExecutorId>,
    /// Who hears the scheduler's events (the UI, the event log).
    listener: Option<Arc<dyn SchedulerListener>>,
}

/// The shuffle dependencies reached from `rdd` through narrow ones.
fn direct_shuffles(rdd: Arc<dyn RddNode>) -> Vec<Arc<dyn ShuffleDep>> {
    let mut seen = HashSet::new();
    let mut found: Vec<Arc<dyn ShuffleDep>> = Vec::new();
    let mut stack = vec![rdd];
    while let Some(node) = stack.pop() {
        if !seen.insert(node.core().id) {
            continue;
        }
        for dep in ember_rdd::node::lineage_dependencies(node.as_ref()) {
            match dep {
                Dependency::Narrow(p) => stack.push(p),
                Dependency::Shuffle(s) => {
                    if !found.iter().any(|f| f.shuffle_id() == s.shuffle_id()) {
                        found.push(s);
                    }
                }
            }
        }
    }
    found
}

/// One job's progress.
struct Job {
    id: JobId,
    spec: JobSpec,
    reply: JobReply,
    started: Instant,
    /// Shuffle stages the job depends on.
    ancestors: Vec<StageId>,
    result_stage: StageId,
    result_root: Arc<dyn StageRoot>,
    result_parents: Vec<ShuffleId>,
    partitions: Vec<usize>,
    /// Index in `partitions` (and `results`) of each partition.
    slot_of: HashMap<usize, usize>,
    results: Vec<Option<Vec<u8>>>,
    remaining: usize,
    running: HashMap<StageKey, RunningStage>,
    waiting: HashSet<StageKey>,
    tasks: HashMap<TaskId, TaskInfo>,
    /// Failed attempts of each task.
    failures: HashMap<(StageKey, usize), Failures>,
    /// Executors each task failed on.
    failed_on: HashMap<(StageKey, usize), Vec<ExecutorId>>,
    /// Failed tasks per (stage, stage attempt, executor).
    stage_failures: HashMap<(StageKey, usize, ExecutorId), usize>,
    /// Attempts launched per task: the next attempt's number. Failures
    /// alone would give a task rerun after its executor was lost the
    /// number of the attempt that died with the executor.
    launches: HashMap<(StageKey, usize), usize>,
    stage_attempts: HashMap<StageKey, usize>,
    succeeded: HashSet<(StageKey, usize)>,
    report: JobReport,
}

impl DagScheduler {
    /// A scheduler dispatching through `dispatcher`.
    pub fn new(
        dispatcher: Dispatcher,
        max_failures: usize,
        show_progress: bool,
        executor_wait: Duration,
    ) -> Self {
        DagScheduler {
            dispatcher,
            tracker: MapOutputTracker::new(),
            shuffle_stages: HashMap::new(),
            jobs: BTreeMap::new(),
            task_jobs: HashMap::new(),
            running_shuffles: HashMap::new(),
            lost_elsewhere: Vec::new(),
            no_executors_since: None,
            max_failures: max_failures.max(1),
            next_stage: 0,
            next_job: 0,
            next_task: 0,
            next_blob: 0,
            reports: Vec::new(),
            progress: ProgressBar::new(show_progress),
            show_summary: false,
            executor_wait,
            cache_locations: HashMap::new(),
            listener: None,
        }
    }

    /// Prints each job's summary (its [`JobReport`]) to stderr when the
    /// job ends.
    pub fn set_show_summary(&mut self, on: bool) {
        self.show_summary = on;
    }

    /// The dispatcher (for executor housekeeping).
    pub fn dispatcher(&mut self) -> &mut Dispatcher {
        &mut self.dispatcher
    }

    /// Reports of every job so far, oldest first.
    pub fn reports(&self) -> &[JobReport] {
        &self.reports
    }

    fn new_stage_id(&mut self) -> StageId {
        self.next_stage += 1;
        StageId(self.next_stage - 1)
    }

    /// Registers the shuffle stages under `rdd` (iteratively, however deep
    /// the lineage) and returns the shuffles `rdd` reads directly.
    fn register_stages(&mut self, rdd: Arc<dyn RddNode>) -> Vec<ShuffleId> {
        let direct = direct_shuffles(rdd);
        let ids: Vec<ShuffleId> = direct.iter().map(|d| d.shuffle_id()).collect();
        let mut stack = direct;
        while let Some(dep) = stack.pop() {
            let sid = dep.shuffle_id();
            if self.shuffle_stages.contains_key(&sid) {
                continue;
            }
            let parents_deps = direct_shuffles(dep.parent());
            let parents = parents_deps.iter().map(|d| d.shuffle_id()).collect();
            let num_maps = dep.parent().core().partitions;
            self.tracker.register_shuffle(sid, num_maps);
            let id = self.new_stage_id();
            self.shuffle_stages.insert(
                sid,
                ShuffleStage {
                    id,
                    dep: Arc::downgrade(&dep),
                    parents,
                },
            );
            stack.extend(parents_deps);
        }
        ids
    }

    fn parents_of(&self, job: &Job, key: StageKey) -> Vec<ShuffleId> {
        match key {
            StageKey::Result => job.result_parents.clone(),
            StageKey::Shuffle(s) => self
                .shuffle_stages
                .get(&s)
                .map(|st| st.parents.clone())
                .unwrap_or_default(),
        }
    }

    fn stage_id(&self, job: &Job, key: StageKey) -> StageId {
        match key {
            StageKey::Result => job.result_stage,
            StageKey::Shuffle(s) => self.shuffle_stages[&s].id,
        }
    }

    /// Starts a job running `root` over `partitions` of its RDD; its
    /// results, in that order, or its error go to `reply` when it ends.
    pub fn submit_job(
        &mut self,
        root: Arc<dyn StageRoot>,
        partitions: Vec<usize>,
        spec: JobSpec,
        reply: JobReply,
    ) -> JobId {
        let id = JobId(self.next_job);
        self.next_job += 1;
        let result_parents = self.register_stages(root.parent());
        let result_stage = self.new_stage_id();
        let n = partitions.len();
        // The first position of each partition (as a linear search finds).
        let slot_of = partitions
            .iter()
            .enumerate()
            .rev()
            .map(|(i, &p)| (p, i))
            .collect();
        let report = JobReport {
            job: Some(id),
            description: spec.description.clone(),
            group: spec.group.clone(),
            ..JobReport::default()
        };
        let mut job = Job {
            id,
            spec,
            reply,
            started: Instant::now(),
            ancestors: Vec::new(),
            result_stage,
            result_root: root,
            result_parents,
            partitions,
            slot_of,
            results: vec![None; n],
            remaining: n,
            running: HashMap::new(),
            waiting: HashSet::new(),
            tasks: HashMap::new(),
            failures: HashMap::new(),
            failed_on: HashMap::new(),
            stage_failures: HashMap::new(),
            launches: HashMap::new(),
            stage_attempts: HashMap::new(),
            succeeded: HashSet::new(),
            report,
        };
        job.ancestors = self.ancestors(&job);
        self.note_job_start(&job);
        let cancelled = job
            .spec
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst));
        let outcome = if cancelled {
            Err(EmberError::Cancelled(format!(
                "job {} was cancelled before it started",
                id.0
            )))
        } else {
            self.submit(&mut job, StageKey::Result)
        };
        self.settle(job, outcome);
        self.wake_all();
        id
    }

    /// Reacts to one event from the executors.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::TaskEnded { task, result } => {
                let owner = self.task_jobs.remove(&task);
                match owner.and_then(|j| self.jobs.remove(&j)) {
                    Some(mut job) => {
                        let outcome = self.task_ended(&mut job, task, *result);
                        self.settle(job, outcome);
                        // Only now does the freed slot take queued work: a
                        // failure that ended the job has dropped its
                        // queued tasks, so none of them starts.
                        let broken = self.dispatcher.start_queued();
                        self.lose_executors_outside(broken);
                        self.note_launches(None);
                    }
                    None => {
                        // A task of a job that ended: only its slot matters.
                        let (_, broken) = self.dispatcher.finished(task);
                        self.lose_executors_outside(broken);
                    }
                }
            }
            Event::ExecutorAdded(endpoint) => {
                tracing::info!(executor = %endpoint.id(), "executor added");
                self.note_executor_added(endpoint.as_ref());
                let broken = self.dispatcher.add_executor(endpoint);
                self.lose_executors_outside(broken);
            }
            Event::ExecutorLost { executor, reason } => {
                tracing::warn!("{executor} lost: {reason}");
                self.note_executor_removed(&executor, &reason);
                self.lose_executors_outside(vec![executor]);
            }
        }
        self.wake_all();
        self.tick();
    }

    /// Aborts every job if no executor has been alive for the executor
    /// wait (`ember.executor.wait`); call it now and then.
    pub fn tick(&mut self) {
        if self.dispatcher.num_executors() > 0 || self.jobs.is_empty() {
            self.no_executors_since = None;
            return;
        }
        let since = *self.no_executors_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.executor_wait {
            return;
        }
        let wait = self.executor_wait;
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            if let Some(job) = self.jobs.remove(&id) {
                let error = EmberError::Other(format!(
                    "job {} aborted: all executors were lost and none came back within {wait:?}",
                    id.0
                ));
                self.finish(job, Err(error));
            }
        }
    }

    /// Cancels the running jobs `which` selects: each returns
    /// [`EmberError::Cancelled`] with `why` at once; their tasks are
    /// killed. Returns how many were cancelled.
    pub fn cancel_jobs(&mut self, which: impl Fn(JobId, &JobSpec) -> bool, why: &str) -> usize {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(id, job)| which(**id, &job.spec))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some(job) = self.jobs.remove(id) {
                let error = EmberError::Cancelled(format!("job {} was cancelled: {why}", id.0));
                self.finish(job, Err(error));
            }
        }
        // Jobs that waited for a cancelled job's stages run them now.
        self.wake_all();
        ids.len()
    }

    /// Ids of the running jobs, oldest first.
    pub fn running_jobs(&self) -> Vec<JobId> {
        self.jobs.keys().copied().collect()
    }

    /// Puts a job back after a transition, or ends it: with `outcome`'s
    /// error, or with its results once every partition has one.
    fn settle(&mut self, job: Job, outcome: Result<()>) {
        match outcome {
            Err(e) => self.finish(job, Err(e)),
            Ok(()) if job.remaining == 0 => self.finish(job, Ok(())),
            Ok(()) => {
                self.jobs.insert(job.id, job);
            }
        }
        self.note_launches(None);
    }

    /// Ends a job: forgets everything it kept, kills its running tasks,
    /// records its report and sends its outcome.
    fn finish(&mut self, mut job: Job, outcome: Result<()>) {
        self.note_launches(Some(&job));
        self.note_stages_aborted(&job, &outcome);
        self.progress.clear();
        for (key, stage) in &job.running {
            self.dispatcher.forget_stage(stage.blob.id);
            if let StageKey::Shuffle(s) = key {
                self.running_shuffles.remove(s);
            }
        }
        for task in job.tasks.keys() {
            self.task_jobs.remove(task);
            self.dispatcher.kill(*task);
        }
        self.lost_elsewhere.retain(|(j, _, _)| *j != job.id);
        let run: HashSet<StageId> = job.report.stages_run.iter().copied().collect();
        job.report.stages_skipped = std::mem::take(&mut job.ancestors)
            .into_iter()
            .filter(|s| !run.contains(s))
            .collect();
        job.report.seconds = job.started.elapsed().as_secs_f64();
        tracing::info!(job = job.id.0, "{}", job.report);
        if self.show_summary {
            eprintln!("{}", job.report);
        }
        self.note_job_end(&job, &outcome);
        self.reports.push(std::mem::take(&mut job.report));
        let reply = outcome.map(|()| {
            job.results
                .into_iter()
                .map(|r| r.unwrap_or_default())
                .collect()
        });
        // The action's thread may be gone (its context was stopped).
        let _ = job.reply.send(reply);
    }

    /// After a transition: jobs whose tasks were lost with an executor
    /// relaunch them, and waiting stages whose parents are now complete
    /// (or no longer run by another job) are submitted.
    fn wake_all(&mut self) {
        loop {
            let ids: Vec<JobId> = self.jobs.keys().copied().collect();
            for id in ids {
                let Some(mut job) = self.jobs.remove(&id) else {
                    continue;
                };
                let outcome = self.wake(&mut job);
                self.settle(job, outcome);
            }
            let jobs = &self.jobs;
            self.lost_elsewhere.retain(|(j, _, _)| jobs.contains_key(j));
            if self.lost_elsewhere.is_empty() {
                return;
            }
        }
    }

    fn wake(&mut self, job: &mut Job) -> Result<()> {
        let (mine, others) = std::mem::take(&mut self.lost_elsewhere)
            .into_iter()
            .partition(|(j, _, _)| *j == job.id);
        self.lost_elsewhere = others;
        for (_, task, executor) in mine {
            self.relaunch_lost(job, task, &executor)?;
        }
        let waiting: Vec<StageKey> = job.waiting.iter().copied().collect();
        for w in waiting {
            self.submit(job, w)?;
        }
        Ok(())
    }

    /// Stage ids of every shuffle stage the job depends on.
    fn ancestors(&self, job: &Job) -> Vec<StageId> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = job.result_parents.clone();
        while let Some(s) = stack.pop() {
            if seen.insert(s) {
                if let Some(st) = self.shuffle_stages.get(&s) {
                    out.push(st.id);
                    stack.extend(st.parents.iter().copied());
                }
            }
        }
        out.sort();
        out
    }

    /// A task of `job` ended.
    fn task_ended(
        &mut self,
        job: &mut Job,
        task: TaskId,
        result: ember_rdd::task::TaskResult,
    ) -> Result<()> {
        self.draw_progress(job);
        if matches!(&result.outcome, Err(e) if !matches!(e, EmberError::FetchFailed { .. })) {
            // Before its slot takes another task.
            self.note_failure_placement(job, task);
        }
        // The slot is refilled by the caller once this end is settled.
        let executor = self.dispatcher.release(task);
        let Some(info) = job.tasks.remove(&task) else {
            return Ok(());
        };
        self.note_task_end(job, &info, task, executor.as_ref(), &result);
        let current = job
            .running
            .get(&info.key)
            .is_some_and(|r| r.attempt == info.stage_attempt);
        if !current {
            return Ok(());
        }
        let executor = executor.unwrap_or_else(|| ExecutorId("unknown".into()));
        match result.outcome {
            Ok(output) => {
                if job.succeeded.insert((info.key, info.partition)) {
                    apply_updates(&result.accum_updates)?;
                    job.report.metrics.add(&result.metrics);
                }
                for BlockId::Rdd { rdd, partition } in &result.stored_blocks {
                    self.cache_locations
                        .insert((*rdd, *partition), executor.clone());
                }
                self.task_succeeded(job, info, output)
            }
            Err(EmberError::FetchFailed {
                shuffle,
                map,
                executor: holder,
                message,
                ..
            }) => {
                job.report.tasks_failed += 1;
                self.fetch_failed(job, info.key, shuffle, map, &holder, &message)
            }
            Err(e) => {
                job.report.tasks_failed += 1;
                self.task_failed(job, info, executor, e)
            }
        }
    }

    /// Submits a stage, its missing parents first.
    fn submit(&mut self, job: &mut Job, key: StageKey) -> Result<()> {
        let mut stack = vec![key];
        while let Some(k) = stack.pop() {
            if job.running.contains_key(&k) {
                continue;
            }
            if let StageKey::Shuffle(s) = k {
                // Complete, or another job computes it: the stages that
                // need it wait ([`Self::wake_all`] looks again).
                if self.tracker.is_complete(s)
                    || self.running_shuffles.get(&s).is_some_and(|j| *j != job.id)
                {
                    continue;
                }
            }
            let missing: Vec<ShuffleId> = self
                .parents_of(job, k)
                .into_iter()
                .filter(|p| !self.tracker.is_complete(*p))
                .collect();
            if missing.is_empty() {
                job.waiting.remove(&k);
                self.launch_stage(job, k)?;
            } else {
                job.waiting.insert(k);
                for p in missing {
                    if !job.running.contains_key(&StageKey::Shuffle(p)) {
                        stack.push(StageKey::Shuffle(p));
                    }
                }
            }
        }
        Ok(())
    }

    fn launch_stage(&mut self, job: &mut Job, key: StageKey) -> Result<()> {
        let (root, todo): (Arc<dyn StageRoot>, Vec<usize>) = match key {
            StageKey::Result => (
                job.result_root.clone(),
                job.partitions
                    .iter()
                    .zip(&job.results)
                    .filter(|(_, r)| r.is_none())
                    .map(|(p, _)| *p)
                    .collect(),
            ),
            StageKey::Shuffle(s) => (
                // The job's lineage holds the shuffle while the job runs.
                self.shuffle_stages[&s]
                    .dep
                    .upgrade()
                    .ok_or_else(|| {
                        EmberError::Other(format!(
                            "internal: {s} was cleaned up while a job needed it"
                        ))
                    })?
                    .write_root(),
                self.tracker.missing(s),
            ),
        };
        let mut shuffle_inputs = HashMap::new();
        for p in self.parents_of(job, key) {
            let statuses = self.tracker.statuses(p).ok_or_else(|| {
                EmberError::Other(format!(
                    "internal: {p} was incomplete when its child stage launched"
                ))
            })?;
            shuffle_inputs.insert(p, statuses);
        }
        self.next_blob += 1;
        let blob = Arc::new(StageBlob {
            id: self.next_blob,
            nodes: encode_stage(root.as_ref())?,
            shuffle_inputs,
            cached_blocks: self.cached_blocks_of(root.parent()),
        });
        let attempt = *job.stage_attempts.get(&key).unwrap_or(&0);
        let stage = self.stage_id(job, key);
        let bytes: usize = blob.nodes.iter().map(|n| n.body.bytes.len()).sum();
        job.report.max_stage_bytes = job.report.max_stage_bytes.max(bytes);
        job.report.max_stage_nodes = job.report.max_stage_nodes.max(blob.nodes.len());
        job.report.stages_run.push(stage);
        tracing::debug!(%stage, attempt, tasks = todo.len(), "stage submitted");
        self.note_stage_submitted(job, key, stage, attempt, todo.len());
        if let StageKey::Shuffle(s) = key {
            self.running_shuffles.insert(s, job.id);
        }
        job.running.insert(
            key,
            RunningStage {
                attempt,
                blob: blob.clone(),
                pending: todo.iter().copied().collect(),
                tasks: todo.len(),
                started: Instant::now(),
                rdd: root.parent(),
            },
        );
        for p in todo {
            self.launch_task(job, key, p)?;
        }
        // A stage with nothing to do (an empty partition list) is done.
        if job.running.get(&key).is_some_and(|r| r.pending.is_empty()) {
            self.stage_done(job, key)?;
        }
        Ok(())
    }

    fn launch_task(&mut self, job: &mut Job, key: StageKey, partition: usize) -> Result<()> {
        let Some(stage) = job.running.get(&key) else {
            return Ok(());
        };
        let task = TaskId(self.next_task);
        self.next_task += 1;
        let launches = job.launches.entry((key, partition)).or_insert(0);
        let attempt = *launches;
        *launches += 1;
        let desc = TaskDescription {
            task_id: task,
            stage: self.stage_id(job, key),
            blob: stage.blob.id,
            partition,
            attempt,
        };
        job.tasks.insert(
            task,
            TaskInfo {
                key,
                stage_attempt: stage.attempt,
                partition,
            },
        );
        job.report.tasks_launched += 1;
        self.task_jobs.insert(task, job.id);
        let blob = stage.blob.clone();
        let preferred = self.preferred_executor(&stage.rdd, partition);
        let avoid = job
            .failed_on
            .get(&(key, partition))
            .cloned()
            .unwrap_or_default();
        let broken = self
            .dispatcher
            .submit_avoiding(job.id, desc, blob, preferred, avoid);
        self.lose_executors(job, broken)
    }

    fn task_succeeded(&mut self, job: &mut Job, info: TaskInfo, output: TaskOutput) -> Result<()> {
        match (info.key, output) {
            (StageKey::Shuffle(s), TaskOutput::Map(status)) => {
                self.tracker.register_map_output(s, info.partition, status)
            }
            (StageKey::Result, TaskOutput::Result(bytes)) => {
                if let Some(&i) = job.slot_of.get(&info.partition) {
                    if job.results[i].is_none() {
                        job.results[i] = Some(bytes);
                        job.remaining -= 1;
                    }
                }
            }
            _ => {
                return Err(EmberError::Other(
                    "internal: a task returned the wrong kind of output".into(),
                ))
            }
        }
        let done = match job.running.get_mut(&info.key) {
            Some(stage) => {
                stage.pending.remove(&info.partition);
                stage.pending.is_empty()
            }
            None => false,
        };
        if done {
            self.stage_done(job, info.key)?;
        }
        Ok(())
    }

    fn stage_done(&mut self, job: &mut Job, key: StageKey) -> Result<()> {
        if let StageKey::Shuffle(s) = key {
            self.running_shuffles.remove(&s);
        }
        if let Some(stage) = job.running.remove(&key) {
            self.dispatcher.forget_stage(stage.blob.id);
            let id = self.stage_id(job, key);
            self.note_stage_completed(id, stage.attempt, None);
            job.report
                .stage_seconds
                .push((id, stage.started.elapsed().as_secs_f64()));
        }
        if let StageKey::Shuffle(s) = key {
            if !self.tracker.is_complete(s) {
                // Outputs were lost while the stage ran: run the missing ones.
                return self.submit(job, key);
            }
        }
        let ready: Vec<StageKey> = job
            .waiting
            .iter()
            .copied()
            .filter(|w| {
                self.parents_of(job, *w)
                    .iter()
                    .all(|p| self.tracker.is_complete(*p))
            })
            .collect();
        for w in ready {
            job.waiting.remove(&w);
            self.launch_stage(job, w)?;
        }
        Ok(())
    }

    /// Notes where a task of the current stage attempt failed: its retry
    /// avoids that executor, and the executor is excluded from the rest of
    /// the stage attempt after [`MAX_FAILED_TASKS_PER_EXECUTOR`] failures.
    fn note_failure_placement(&mut self, job: &mut Job, task: TaskId) {
        let (Some(info), Some(executor)) =
            (job.tasks.get(&task), self.dispatcher.executor_of(task))
        else {
            return;
        };
        let Some(blob) = job
            .running
            .get(&info.key)
            .filter(|r| r.attempt == info.stage_attempt)
            .map(|r| r.blob.id)
        else {
            return;
        };
        let executor = executor.clone();
        job.failed_on
            .entry((info.key, info.partition))
            .or_default()
            .push(executor.clone());
        let failed = job
            .stage_failures
            .entry((info.key, info.stage_attempt, executor.clone()))
            .or_insert(0);
        *failed += 1;
        if *failed == MAX_FAILED_TASKS_PER_EXECUTOR {
            let stage = self.stage_id(job, info.key);
            // With no other executor the exclusion changes nothing yet
            // (local[N]): not worth a warning.
            if self.dispatcher.num_executors() > 1 {
                tracing::warn!("{executor} gets no more tasks of {stage}: {MAX_FAILED_TASKS_PER_EXECUTOR} of them failed there");
            }
            self.dispatcher.exclude(blob, executor);
        }
    }

    fn task_failed(
        &mut self,
        job: &mut Job,
        info: TaskInfo,
        executor: ExecutorId,
        error: EmberError,
    ) -> Result<()> {
        let stage = self.stage_id(job, info.key);
        let failures = job.failures.entry((info.key, info.partition)).or_default();
        failures.count += 1;
        let attempts = failures.count;
        if attempts >= self.max_failures {
            // Not logged: the job's error says it all, once.
            return Err(EmberError::JobFailed {
                job: job.id,
                stage,
                partition: info.partition,
                executor,
                attempts,
                message: error.to_string(),
            });
        }
        let warning = RetryWarning {
            stage,
            partition: info.partition,
            attempt: attempts,
            max_failures: self.max_failures,
            executor: &executor,
            error: &error,
            previous: failures.last.as_ref(),
        };
        tracing::warn!("{warning}");
        failures.last = Some(error);
        self.launch_task(job, info.key, info.partition)
    }

    fn fetch_failed(
        &mut self,
        job: &mut Job,
        key: StageKey,
        shuffle: ShuffleId,
        map: usize,
        holder: &ExecutorId,
        message: &str,
    ) -> Result<()> {
        // As in Spark, a failed fetch makes every output of that shuffle on
        // the holder suspect (a lost or damaged disk, a dead process), not
        // only the one the reducer reached first: reducers stop at the
        // first bad segment, so rerunning one map per stage attempt could
        // use up the attempts before all damaged outputs are found.
        self.tracker.unregister_map_output(shuffle, map);
        self.tracker.remove_shuffle_outputs_on(shuffle, holder);
        if let StageKey::Shuffle(s) = key {
            self.running_shuffles.remove(&s);
        }
        if let Some(stage) = job.running.remove(&key) {
            self.dispatcher.forget_stage(stage.blob.id);
            let failure = format!("fetch failed: {shuffle} map {map} on {holder}: {message}");
            self.note_stage_completed(self.stage_id(job, key), stage.attempt, Some(failure));
        }
        let attempts = job.stage_attempts.entry(key).or_insert(0);
        *attempts += 1;
        if *attempts >= MAX_STAGE_ATTEMPTS {
            let stage = self.stage_id(job, key);
            return Err(EmberError::Other(format!(
                "job {} aborted: {stage} failed {MAX_STAGE_ATTEMPTS} times because map outputs of {shuffle} could not be fetched; last: map {map} on {holder}: {message}",
                job.id.0
            )));
        }
        self.submit(job, key)
    }

    /// Forgets lost executors: their cached blocks and map outputs; the
    /// tasks they ran are relaunched (`job`'s now, other jobs' by
    /// [`Self::wake_all`]).
    fn lose_executors(&mut self, job: &mut Job, lost: Vec<ExecutorId>) -> Result<()> {
        for executor in lost {
            for task in self.forget_executor(&executor) {
                match self.task_jobs.remove(&task) {
                    Some(j) if j == job.id => self.relaunch_lost(job, task, &executor)?,
                    Some(j) => self.lost_elsewhere.push((j, task, executor.clone())),
                    None => {}
                }
            }
            // Waiting stages may now miss parents that were complete.
            let waiting: Vec<StageKey> = job.waiting.iter().copied().collect();
            for w in waiting {
                self.submit(job, w)?;
            }
        }
        Ok(())
    }

    /// [`Self::lose_executors`] outside any job's transition.
    fn lose_executors_outside(&mut self, lost: Vec<ExecutorId>) {
        for executor in lost {
            for task in self.forget_executor(&executor) {
                if let Some(j) = self.task_jobs.remove(&task) {
                    self.lost_elsewhere.push((j, task, executor.clone()));
                }
            }
        }
    }

    /// Removes a lost executor everywhere; returns the tasks it ran.
    fn forget_executor(&mut self, executor: &ExecutorId) -> Vec<TaskId> {
        self.cache_locations.retain(|_, e| e != executor);
        self.note_executor_removed(executor, "lost");
        let tasks = self.dispatcher.remove_executor(executor);
        self.tracker.remove_outputs_on(executor);
        tasks
    }

    /// Runs again a task of `job` that was lost with its executor.
    fn relaunch_lost(&mut self, job: &mut Job, task: TaskId, executor: &ExecutorId) -> Result<()> {
        if let Some(info) = job.tasks.remove(&task) {
            self.note_task_lost(job, &info, task, executor);
            if job
                .running
                .get(&info.key)
                .is_some_and(|r| r.attempt == info.stage_attempt)
            {
                self.launch_task(job, info.key, info.partition)?;
            }
        }
        Ok(())
    }

    fn draw_progress(&mut self, job: &Job) {
        if !self.progress.due() {
            return;
        }
        let mut stages: Vec<(StageId, StageProgress)> = job
            .running
            .iter()
            .map(|(k, st)| {
                let running = job
                    .tasks
                    .values()
                    .filter(|t| t.key == *k && t.stage_attempt == st.attempt)
                    .count();
                let done = st.tasks - st.pending.len();
                (
                    self.stage_id(job, *k),
                    StageProgress {
                        total: st.tasks,
                        done,
                        running: running.min(st.pending.len()),
                    },
                )
            })
            .collect();
        stages.sort_by_key(|(id, _)| *id);
        self.progress.update(&stages);
    }

    /// The executor holding a cached copy of `partition` of `rdd` or of an
    /// RDD it reads one-to-one (a chain of single narrow parents with the
    /// same partition count), if any.
    fn preferred_executor(&self, rdd: &Arc<dyn RddNode>, partition: usize) -> Option<ExecutorId> {
        if self.cache_locations.is_empty() {
            return None;
        }
        let mut node = rdd.clone();
        loop {
            if let Some(e) = self.cache_locations.get(&(node.core().id, partition)) {
                return Some(e.clone());
            }
            let deps = ember_rdd::node::lineage_dependencies(node.as_ref());
            let [Dependency::Narrow(parent)] = deps.as_slice() else {
                return None;
            };
            if parent.core().partitions != node.core().partitions {
                return None;
            }
            node = parent.clone();
        }
    }

    /// Where partitions of the persisted RDDs of a stage over `rdd` (it
    /// and its narrow ancestors) are cached, for tasks that run elsewhere.
    fn cached_blocks_of(&self, rdd: Arc<dyn RddNode>) -> Vec<(BlockId, BlockLocation)> {
        if self.cache_locations.is_empty() {
            return Vec::new();
        }
        let mut persisted = HashSet::new();
        let mut seen = HashSet::new();
        let mut stack = vec![rdd];
        while let Some(node) = stack.pop() {
            if !seen.insert(node.core().id) {
                continue;
            }
            if node.core().storage_level().is_some() {
                persisted.insert(node.core().id);
            }
            stack.extend(ember_rdd::stage::narrow_parents(node.as_ref()));
        }
        let mut blocks: Vec<(BlockId, BlockLocation)> = self
            .cache_locations
            .iter()
            .filter(|((rdd, _), _)| persisted.contains(rdd))
            .filter_map(|((rdd, partition), executor)| {
                let address = self.dispatcher.address_of(executor)?;
                let block = BlockId::Rdd {
                    rdd: *rdd,
                    partition: *partition,
                };
                let executor = executor.clone();
                Some((block, BlockLocation { executor, address }))
            })
            .collect();
        blocks.sort_by_key(|(b, _)| *b);
        blocks
    }

    /// Forgets where an RDD's partitions are cached.
    pub fn forget_cached(&mut self, rdd: RddId) {
        self.cache_locations.retain(|(r, _), _| *r != rdd);
    }

    /// Forgets a shuffle's outputs (its files are deleted by the caller).
    pub fn remove_shuffle(&mut self, shuffle: ShuffleId) {
        self.tracker.remove_shuffle(shuffle);
        self.shuffle_stages.remove(&shuffle);
    }
}

/// The warning for a failed task attempt that will be retried: one short
/// line. The job's error, if the task fails on every attempt, carries the
/// full cause, so the warning describes a cause only when it is news: not
/// again when a retry fails the same way (a deterministic error would
/// otherwise be printed once per attempt), and not for a panic, whose
/// hook already printed the message where the task ran.
struct RetryWarning<'a> {
    stage: StageId,
    partition: usize,
    /// The failed attempt, counted from 1.
    attempt: usize,
    max_failures: usize,
    executor: &'a ExecutorId,
    error: &'a EmberError,
    /// The error of the previous failed attempt of the task.
    previous: Option<&'a EmberError>,
}

/// Characters of a cause a retry warning shows at most.
const WARNING_CAUSE_CHARS: usize = 200;

impl std::fmt::Display for RetryWarning<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let RetryWarning {
            stage,
            partition,
            attempt,
            max_failures,
            executor,
            error,
            previous,
        } = self;
        write!(
            f,
            "{stage} partition {partition} failed on attempt {attempt} of {max_failures} ({executor}); retrying"
        )?;
        if previous == &Some(*error) {
            return f.write_str(" (the same error)");
        }
        if let EmberError::TaskFailed { .. } = error {
            return f.write_str(" (the task panicked)");
        }
        let text = error.to_string();
        let first = text.lines().next().unwrap_or_default();
        let mut cause: String = first.chars().take(WARNING_CAUSE_CHARS).collect();
        if cause.len() < text.len() {
            cause.push_str(" [...]");
        }
        write!(f, ": {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(error: &EmberError, previous: Option<&EmberError>) -> String {
        RetryWarning {
            stage: StageId(2),
            partition: 5,
            attempt: 2,
            max_failures: 4,
            executor: &ExecutorId("1".into()),
            error,
            previous,
        }
        .to_string()
    }

    #[test]
    fn a_retry_warning_names_the_task_and_a_new_cause_in_one_short_line() {
        let io = EmberError::Other("disk on fire".into());
        assert_eq!(
            warning(&io, None),
            "stage 2 partition 5 failed on attempt 2 of 4 (executor 1); retrying: disk on fire"
        );
        let long = EmberError::Other(format!("{}\nsecond line", "x".repeat(500)));
        let text = warning(&long, None);
        assert!(!text.contains('\n') && text.ends_with(" [...]"), "{text}");
        assert!(text.len() < 300, "{text}");
        let multi = EmberError::Other("first\nsecond".into());
        assert!(warning(&multi, None).ends_with(": first [...]"));
    }

    #[test]
    fn a_repeated_cause_or_a_panic_message_is_not_printed_again() {
        let io = EmberError::Other("disk on fire".into());
        assert_eq!(
            warning(&io, Some(&io)),
            "stage 2 partition 5 failed on attempt 2 of 4 (executor 1); retrying (the same error)"
        );
        let other = EmberError::Other("disk flooded".into());
        assert!(warning(&other, Some(&io)).ends_with(": disk flooded"));
        let panic = EmberError::TaskFailed {
            message: "user code rejects 4".into(),
        };
        let text = warning(&panic, None);
        assert!(!text.contains("rejects"), "{text}");
        assert!(text.ends_with("(the task panicked)"), "{text}");
    }
}
