//! What an application did, as events and as a status store.
//!
//! The DAG scheduler publishes [`EmberEvent`]s to a [`SchedulerListener`]
//! as it launches and finishes jobs, stages and tasks; it shares none of
//! its own state. [`StatusStore`] folds events into the snapshot the
//! application UI and its JSON API read, and the event log writes the same
//! events as JSON lines, so `ember history` rebuilds the same snapshot by
//! replaying a log.

use ember_rdd::task::TaskMetrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One thing that happened in an application (one JSON line in the event
/// log). Times are milliseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "Event")]
pub enum EmberEvent {
    /// The context started.
    ApplicationStart {
        /// Application id.
        app_id: String,
        /// Application name.
        app_name: String,
        /// Master URL.
        master: String,
        /// The user running the driver.
        user: String,
        /// When.
        time: u64,
    },
    /// The context stopped.
    ApplicationEnd {
        /// When.
        time: u64,
    },
    /// An executor joined.
    ExecutorAdded {
        /// Executor id.
        executor_id: String,
        /// Its block server's `host:port`, if it has one.
        host_port: Option<String>,
        /// Task slots.
        cores: usize,
        /// When.
        time: u64,
    },
    /// An executor was lost.
    ExecutorRemoved {
        /// Executor id.
        executor_id: String,
        /// Why.
        reason: String,
        /// When.
        time: u64,
    },
    /// An action started a job.
    JobStart {
        /// Job id.
        job_id: u64,
        /// Every stage the job needs (ancestors first, result stage last).
        stage_ids: Vec<u64>,
        /// What the job is shown as: its description, else the call site
        /// of its action (`count at main.rs:12`).
        name: String,
        /// Its job group, if set.
        #[serde(default)]
        group: Option<String>,
        /// Its stages, for the job page's graph.
        #[serde(default)]
        stages: Vec<StageShape>,
        /// When.
        time: u64,
    },
    /// A job ended.
    JobEnd {
        /// Job id.
        job_id: u64,
        /// Whether it succeeded.
        succeeded: bool,
        /// Why it failed.
        error: Option<String>,
        /// Stages it found complete.
        skipped_stages: Vec<u64>,
        /// When.
        time: u64,
    },
    /// A stage attempt was submitted.
    StageSubmitted {
        /// Stage id.
        stage_id: u64,
        /// Attempt (0 first).
        attempt: usize,
        /// The job that submitted it.
        job_id: u64,
        /// What the stage computes.
        name: String,
        /// Tasks in this attempt.
        num_tasks: usize,
        /// When.
        time: u64,
    },
    /// A stage attempt ended.
    StageCompleted {
        /// Stage id.
        stage_id: u64,
        /// Attempt.
        attempt: usize,
        /// Why it failed, if it did.
        failure: Option<String>,
        /// When.
        time: u64,
    },
    /// A task started on an executor.
    TaskStart {
        /// Task id.
        task_id: u64,
        /// Stage id.
        stage_id: u64,
        /// Stage attempt.
        stage_attempt: usize,
        /// Partition.
        partition: usize,
        /// Executor.
        executor_id: String,
        /// When.
        time: u64,
    },
    /// A task ended.
    TaskEnd {
        /// Task id.
        task_id: u64,
        /// Stage id.
        stage_id: u64,
        /// Stage attempt.
        stage_attempt: usize,
        /// Partition.
        partition: usize,
        /// Executor.
        executor_id: String,
        /// Whether it succeeded.
        successful: bool,
        /// Why it failed.
        error: Option<String>,
        /// What it measured.
        #[serde(default)]
        metrics: TaskMetrics,
        /// Partitions it cached on its executor: (rdd, partition).
        #[serde(default)]
        cached: Vec<(u64, usize)>,
        /// When.
        time: u64,
    },
    /// The program unpersisted an RDD.
    UnpersistRdd {
        /// The RDD.
        rdd_id: u64,
        /// When.
        time: u64,
    },
}

/// Hears the scheduler's events. Implementations must be quick: they run
/// on the scheduler's thread.
pub trait SchedulerListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: &EmberEvent);
}

/// Several listeners as one.
#[derive(Default, Clone)]
pub struct ListenerBus {
    listeners: Vec<Arc<dyn SchedulerListener>>,
}

impl ListenerBus {
    /// Adds a listener.
    pub fn add(&mut self, l: Arc<dyn SchedulerListener>) {
        self.listeners.push(l);
    }

    /// Whether nobody listens.
    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

impl SchedulerListener for ListenerBus {
    fn on_event(&self, event: &EmberEvent) {
        for l in &self.listeners {
            l.on_event(event);
        }
    }
}

/// Milliseconds since the epoch, now (event times).
pub fn now() -> u64 {
    super::html::now_ms()
}

/// Status of a job or stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Running.
    Running,
    /// Finished well.
    Succeeded,
    /// Failed.
    Failed,
    /// Not needed: its output existed.
    Skipped,
}

/// One application.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AppData {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Master URL.
    pub master: String,
    /// User.
    pub user: String,
    /// Start, ms since the epoch.
    pub start: u64,
    /// End, ms since the epoch.
    pub end: Option<u64>,
    /// Last event, ms since the epoch.
    pub last_updated: u64,
}

/// A stage of a job's graph: the RDDs its tasks compute (a pipeline,
/// parents first) and the stages whose shuffles it reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageShape {
    /// Stage id.
    pub stage_id: u64,
    /// Its RDDs, as `name (rdd N)`, parents first.
    pub rdds: Vec<String>,
    /// The stages it reads from.
    pub parents: Vec<u64>,
}

/// One job.
#[derive(Clone, Debug, Serialize)]
pub struct JobData {
    /// Id.
    pub id: u64,
    /// What it is shown as (description or call site).
    pub name: String,
    /// Its job group, if set.
    pub group: Option<String>,
    /// Its stage graph.
    pub stages: Vec<StageShape>,
    /// Its stages.
    pub stage_ids: Vec<u64>,
    /// Status.
    pub status: Status,
    /// Submission, ms since the epoch.
    pub submitted: u64,
    /// Completion, ms since the epoch.
    pub completed: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Stages it found complete.
    pub skipped_stages: Vec<u64>,
}

/// One task attempt.
#[derive(Clone, Debug, Serialize)]
pub struct TaskData {
    /// Task id.
    pub task_id: u64,
    /// Partition.
    pub partition: usize,
    /// Executor.
    pub executor_id: String,
    /// Launch, ms since the epoch.
    pub launched: u64,
    /// Duration, ms (when ended).
    pub duration: Option<u64>,
    /// `RUNNING`, `SUCCESS` or `FAILED`.
    pub status: &'static str,
    /// Why it failed.
    pub error: Option<String>,
    /// What it measured.
    pub metrics: TaskMetrics,
}

/// Tasks kept per stage attempt for the stage page.
pub const MAX_TASKS_KEPT: usize = 2000;
/// Finished jobs and stage attempts kept (Spark's `retainedJobs`,
/// `retainedStages`); older ones are dropped, oldest first.
pub const MAX_RETAINED: usize = 1000;

/// One stage attempt.
#[derive(Clone, Debug, Serialize)]
pub struct StageData {
    /// Stage id.
    pub id: u64,
    /// Attempt.
    pub attempt: usize,
    /// The job that ran it.
    pub job_id: u64,
    /// What it computes.
    pub name: String,
    /// Tasks.
    pub num_tasks: usize,
    /// Running tasks.
    pub active: usize,
    /// Succeeded tasks.
    pub complete: usize,
    /// Failed tasks.
    pub failed: usize,
    /// Status.
    pub status: Status,
    /// Submission, ms since the epoch.
    pub submitted: u64,
    /// Completion, ms since the epoch.
    pub completed: Option<u64>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Sum of task run times, ms.
    pub executor_run_ms: u64,
    /// Sums of the tasks' metrics.
    pub metrics: TaskMetrics,
    /// Task attempts, by task id (at most [`MAX_TASKS_KEPT`]).
    pub tasks: BTreeMap<u64, TaskData>,
}

/// One executor.
#[derive(Clone, Debug, Serialize)]
pub struct ExecutorData {
    /// Id.
    pub id: String,
    /// Block server `host:port`.
    pub host_port: Option<String>,
    /// Task slots.
    pub cores: usize,
    /// Running tasks.
    pub active: usize,
    /// Succeeded tasks.
    pub completed: usize,
    /// Failed tasks.
    pub failed: usize,
    /// Sum of task run times, ms.
    pub total_ms: u64,
    /// Joined, ms since the epoch.
    pub added: u64,
    /// Left, ms since the epoch.
    pub removed: Option<u64>,
    /// Why it left.
    pub removed_reason: Option<String>,
}

/// The application's state as the UI shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AppStatus {
    /// The application.
    pub app: AppData,
    /// Jobs by id.
    pub jobs: BTreeMap<u64, JobData>,
    /// Stage attempts by (stage, attempt).
    pub stages: BTreeMap<(u64, usize), StageData>,
    /// Executors by id.
    pub executors: BTreeMap<String, ExecutorData>,
    /// Cached partitions: rdd to partition to the executor holding it.
    pub rdds: BTreeMap<u64, BTreeMap<usize, String>>,
    /// Running tasks: task id to (stage, attempt).
    #[serde(skip)]
    running: BTreeMap<u64, (u64, usize)>,
}

impl AppStatus {
    /// Folds one event in.
    pub fn apply(&mut self, e: &EmberEvent) {
        match e {
            EmberEvent::ApplicationStart {
                app_id,
                app_name,
                master,
                user,
                time,
            } => {
                self.app = AppData {
                    id: app_id.clone(),
                    name: app_name.clone(),
                    master: master.clone(),
                    user: user.clone(),
                    start: *time,
                    end: None,
                    last_updated: *time,
                };
            }
            EmberEvent::ApplicationEnd { time } => self.app.end = Some(*time),
            EmberEvent::UnpersistRdd { rdd_id, .. } => {
                self.rdds.remove(rdd_id);
            }
            EmberEvent::ExecutorAdded {
                executor_id,
                host_port,
                cores,
                time,
            } => {
                self.executors.insert(
                    executor_id.clone(),
                    ExecutorData {
                        id: executor_id.clone(),
                        host_port: host_port.clone(),
                        cores: *cores,
                        active: 0,
                        completed: 0,
                        failed: 0,
                        total_ms: 0,
                        added: *time,
                        removed: None,
                        removed_reason: None,
                    },
                );
            }
            EmberEvent::ExecutorRemoved {
                executor_id,
                reason,
                time,
            } => {
                if let Some(x) = self.executors.get_mut(executor_id) {
                    x.removed.get_or_insert(*time);
                    x.removed_reason.get_or_insert_with(|| reason.clone());
                    x.active = 0;
                }
                for parts in self.rdds.values_mut() {
                    parts.retain(|_, e| e != executor_id);
                }
                self.rdds.retain(|_, parts| !parts.is_empty());
            }
            EmberEvent::JobStart {
                job_id,
                stage_ids,
                name,
                group,
                stages,
                time,
            } => {
                self.jobs.insert(
                    *job_id,
                    JobData {
                        id: *job_id,
                        name: name.clone(),
                        group: group.clone(),
                        stages: stages.clone(),
                        stage_ids: stage_ids.clone(),
                        status: Status::Running,
                        submitted: *time,
                        completed: None,
                        error: None,
                        skipped_stages: Vec::new(),
                    },
                );
            }
            EmberEvent::JobEnd {
                job_id,
                succeeded,
                error,
                skipped_stages,
                time,
            } => {
                if let Some(j) = self.jobs.get_mut(job_id) {
                    j.status = if *succeeded {
                        Status::Succeeded
                    } else {
                        Status::Failed
                    };
                    j.completed = Some(*time);
                    j.error = error.clone();
                    j.skipped_stages = skipped_stages.clone();
                }
            }
            EmberEvent::StageSubmitted {
                stage_id,
                attempt,
                job_id,
                name,
                num_tasks,
                time,
            } => {
                self.stages.insert(
                    (*stage_id, *attempt),
                    StageData {
                        id: *stage_id,
                        attempt: *attempt,
                        job_id: *job_id,
                        name: name.clone(),
                        num_tasks: *num_tasks,
                        active: 0,
                        complete: 0,
                        failed: 0,
                        status: Status::Running,
                        submitted: *time,
                        completed: None,
                        failure: None,
                        executor_run_ms: 0,
                        metrics: TaskMetrics::default(),
                        tasks: BTreeMap::new(),
                    },
                );
            }
            EmberEvent::StageCompleted {
                stage_id,
                attempt,
                failure,
                time,
            } => {
                if let Some(s) = self.stages.get_mut(&(*stage_id, *attempt)) {
                    s.completed = Some(*time);
                    s.failure = failure.clone();
                    s.status = if failure.is_some() {
                        Status::Failed
                    } else {
                        Status::Succeeded
                    };
                }
            }
            EmberEvent::TaskStart {
                task_id,
                stage_id,
                stage_attempt,
                partition,
                executor_id,
                time,
            } => {
                self.running.insert(*task_id, (*stage_id, *stage_attempt));
                if let Some(s) = self.stages.get_mut(&(*stage_id, *stage_attempt)) {
                    s.active += 1;
                    if s.tasks.len() < MAX_TASKS_KEPT {
                        s.tasks.insert(
                            *task_id,
                            TaskData {
                                task_id: *task_id,
                                partition: *partition,
                                executor_id: executor_id.clone(),
                                launched: *time,
                                duration: None,
                                status: "RUNNING",
                                error: None,
                                metrics: TaskMetrics::default(),
                            },
                        );
                    }
                }
                if let Some(x) = self.executors.get_mut(executor_id) {
                    x.active += 1;
                }
            }
            EmberEvent::TaskEnd {
                task_id,
                stage_id,
                stage_attempt,
                executor_id,
                successful,
                error,
                metrics,
                cached,
                time,
                ..
            } => {
                if *successful {
                    for (rdd, part) in cached {
                        self.rdds
                            .entry(*rdd)
                            .or_default()
                            .insert(*part, executor_id.clone());
                    }
                }
                let was_running = self.running.remove(task_id).is_some();
                let run_ms = metrics.run_micros / 1000;
                if let Some(s) = self.stages.get_mut(&(*stage_id, *stage_attempt)) {
                    if was_running {
                        s.active = s.active.saturating_sub(1);
                    }
                    if *successful {
                        s.complete += 1;
                        add_metrics(&mut s.metrics, metrics);
                    } else {
                        s.failed += 1;
                    }
                    s.executor_run_ms += run_ms;
                    if let Some(t) = s.tasks.get_mut(task_id) {
                        t.duration = Some(time.saturating_sub(t.launched));
                        t.status = if *successful { "SUCCESS" } else { "FAILED" };
                        t.error = error.clone();
                        t.metrics = metrics.clone();
                    }
                }
                if let Some(x) = self.executors.get_mut(executor_id) {
                    if was_running {
                        x.active = x.active.saturating_sub(1);
                    }
                    if *successful {
                        x.completed += 1;
                    } else {
                        x.failed += 1;
                    }
                    x.total_ms += run_ms;
                }
            }
        }
        if let Some(t) = event_time(e) {
            self.app.last_updated = self.app.last_updated.max(t);
        }
        if matches!(e, EmberEvent::JobEnd { .. }) {
            self.retain();
        }
    }

    /// Drops the oldest finished jobs and stages beyond [`MAX_RETAINED`].
    fn retain(&mut self) {
        while self.jobs.len() > MAX_RETAINED {
            let Some(id) = self
                .jobs
                .values()
                .find(|j| j.status != Status::Running)
                .map(|j| j.id)
            else {
                break;
            };
            self.jobs.remove(&id);
        }
        while self.stages.len() > MAX_RETAINED {
            let Some(key) = self
                .stages
                .iter()
                .find(|(_, s)| s.status != Status::Running)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.stages.remove(&key);
        }
    }

    /// Stages of a job with their status, skipped ones included.
    pub fn job_stages(&self, job: &JobData) -> Vec<(u64, Status)> {
        job.stage_ids
            .iter()
            .map(|id| {
                let latest = self.stages.range((*id, 0)..=(*id, usize::MAX)).next_back();
                let status = match latest {
                    Some((_, s)) if s.job_id == job.id || !job.skipped_stages.contains(id) => {
                        s.status
                    }
                    _ if job.skipped_stages.contains(id) => Status::Skipped,
                    _ => Status::Running,
                };
                (*id, status)
            })
            .collect()
    }
}

fn add_metrics(sum: &mut TaskMetrics, m: &TaskMetrics) {
    sum.add(m);
}

fn event_time(e: &EmberEvent) -> Option<u64> {
    Some(match e {
        EmberEvent::ApplicationStart { time, .. }
        | EmberEvent::ApplicationEnd { time }
        | EmberEvent::ExecutorAdded { time, .. }
        | EmberEvent::ExecutorRemoved { time, .. }
        | EmberEvent::JobStart { time, .. }
        | EmberEvent::JobEnd { time, .. }
        | EmberEvent::StageSubmitted { time, .. }
        | EmberEvent::StageCompleted { time, .. }
        | EmberEvent::TaskStart { time, .. }
        | EmberEvent::TaskEnd { time, .. }
        | EmberEvent::UnpersistRdd { time, .. } => *time,
    })
}

/// [`AppStatus`] behind a lock: the listener the live UI reads.
#[derive(Default)]
pub struct StatusStore {
    state: Mutex<AppStatus>,
}

impl StatusStore {
    /// An empty store.
    pub fn new() -> Arc<StatusStore> {
        Arc::new(StatusStore::default())
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> AppStatus {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the state without copying it.
    pub fn with<R>(&self, f: impl FnOnce(&AppStatus) -> R) -> R {
        f(&self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl SchedulerListener for StatusStore {
    fn on_event(&self, event: &EmberEvent) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[EmberEvent]) -> AppStatus {
        let mut s = AppStatus::default();
        for e in events {
            s.apply(e);
        }
        s
    }

    #[test]
    fn tasks_move_stage_and_executor_counts() {
        let s = run(&[
            EmberEvent::ExecutorAdded {
                executor_id: "0".into(),
                host_port: None,
                cores: 2,
                time: 1,
            },
            EmberEvent::JobStart {
                job_id: 0,
                stage_ids: vec![0, 1],
                name: "collect".into(),
                group: None,
                stages: Vec::new(),
                time: 2,
            },
            EmberEvent::StageSubmitted {
                stage_id: 0,
                attempt: 0,
                job_id: 0,
                name: "map".into(),
                num_tasks: 2,
                time: 3,
            },
            EmberEvent::TaskStart {
                task_id: 0,
                stage_id: 0,
                stage_attempt: 0,
                partition: 0,
                executor_id: "0".into(),
                time: 4,
            },
            EmberEvent::TaskStart {
                task_id: 1,
                stage_id: 0,
                stage_attempt: 0,
                partition: 1,
                executor_id: "0".into(),
                time: 4,
            },
            EmberEvent::TaskEnd {
                task_id: 0,
                stage_id: 0,
                stage_attempt: 0,
                partition: 0,
                executor_id: "0".into(),
                successful: true,
                error: None,
                metrics: TaskMetrics::default(),
                cached: vec![(3, 0)],
                time: 9,
            },
        ]);
        assert_eq!(s.rdds[&3][&0], "0");
        let st = &s.stages[&(0, 0)];
        assert_eq!((st.active, st.complete, st.failed), (1, 1, 0));
        assert_eq!(st.tasks[&0].duration, Some(5));
        let x = &s.executors["0"];
        assert_eq!((x.active, x.completed), (1, 1));
        assert_eq!(s.jobs[&0].status, Status::Running);
    }

    #[test]
    fn cached_partitions_go_with_their_executor_or_an_unpersist() {
        let end = |task: u64, exec: &str, rdd: u64| EmberEvent::TaskEnd {
            task_id: task,
            stage_id: 0,
            stage_attempt: 0,
            partition: task as usize,
            executor_id: exec.into(),
            successful: true,
            error: None,
            metrics: TaskMetrics::default(),
            cached: vec![(rdd, task as usize)],
            time: 1,
        };
        let mut s = run(&[end(0, "a", 1), end(1, "b", 1), end(2, "b", 2)]);
        assert_eq!(s.rdds[&1].len(), 2);
        s.apply(&EmberEvent::ExecutorRemoved {
            executor_id: "b".into(),
            reason: "lost".into(),
            time: 2,
        });
        assert_eq!(s.rdds[&1].len(), 1);
        assert!(!s.rdds.contains_key(&2));
        s.apply(&EmberEvent::UnpersistRdd { rdd_id: 1, time: 3 });
        assert!(s.rdds.is_empty());
    }

    #[test]
    fn events_round_trip_as_json_lines() {
        let e = EmberEvent::JobEnd {
            job_id: 3,
            succeeded: false,
            error: Some("boom".into()),
            skipped_stages: vec![1],
            time: 7,
        };
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.starts_with("{\"Event\":\"JobEnd\""), "{line}");
        assert_eq!(serde_json::from_str::<EmberEvent>(&line).unwrap(), e);
    }
}
