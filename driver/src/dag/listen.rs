//! The scheduler's events for the UI and the event log: each `note_*`
//! turns one state transition into an [`EmberEvent`] for the listener, if
//! there is one. The scheduler keeps its state to itself; listeners get
//! copies.

use super::{DagScheduler, Job, StageKey, TaskInfo};
use crate::dispatch::ExecutorEndpoint;
use crate::ui::status::{now, EmberEvent, SchedulerListener, StageShape};
use ember_core::{ExecutorId, Result, ShuffleId, StageId, TaskId};
use ember_rdd::node::RddNode;
use ember_rdd::task::TaskResult;
use ember_storage::BlockId;
use std::collections::HashSet;
use std::sync::Arc;

impl DagScheduler {
    /// Publishes the scheduler's events to `listener` from now on,
    /// starting with the executors already known.
    pub fn set_listener(&mut self, listener: Arc<dyn SchedulerListener>) {
        self.dispatcher.record_launches(true);
        for ep in self.dispatcher.endpoints() {
            listener.on_event(&added(ep.as_ref()));
        }
        self.listener = Some(listener);
    }

    fn emit(&self, event: impl FnOnce() -> EmberEvent) {
        if let Some(l) = &self.listener {
            l.on_event(&event());
        }
    }

    fn stage_name(&self, job: &Job, key: StageKey) -> String {
        match key {
            StageKey::Result => job.spec.description.clone(),
            StageKey::Shuffle(s) => {
                match self.shuffle_stages.get(&s).and_then(|st| st.dep.upgrade()) {
                    Some(dep) => {
                        let rdd = dep.parent();
                        format!("{} (rdd {}) for {s}", rdd.name(), rdd.core().id.0)
                    }
                    None => format!("map stage for {s}"),
                }
            }
        }
    }

    /// The job's stages for the job page's graph: each stage's pipeline
    /// (at most [`MAX_SHAPE_RDDS`] RDDs, nearest the stage's end) and the
    /// stages it reads.
    fn stage_shapes(&self, job: &Job) -> Vec<StageShape> {
        let stage_of = |s: &ShuffleId| self.shuffle_stages.get(s).map(|st| st.id.0);
        let mut shapes = vec![StageShape {
            stage_id: job.result_stage.0,
            rdds: pipeline(job.result_root.parent()),
            parents: job.result_parents.iter().filter_map(stage_of).collect(),
        }];
        let mut seen = HashSet::new();
        let mut stack = job.result_parents.clone();
        while let Some(s) = stack.pop() {
            let Some(st) = self.shuffle_stages.get(&s) else {
                continue;
            };
            if !seen.insert(s) {
                continue;
            }
            shapes.push(StageShape {
                stage_id: st.id.0,
                rdds: st
                    .dep
                    .upgrade()
                    .map(|d| pipeline(d.parent()))
                    .unwrap_or_default(),
                parents: st.parents.iter().filter_map(stage_of).collect(),
            });
            stack.extend(st.parents.iter().copied());
        }
        shapes.sort_by_key(|s| s.stage_id);
        shapes
    }

    pub(super) fn note_job_start(&self, job: &Job) {
        self.emit(|| {
            let mut stage_ids: Vec<u64> = job.ancestors.iter().map(|s| s.0).collect();
            stage_ids.push(job.result_stage.0);
            EmberEvent::JobStart {
                job_id: job.id.0,
                stage_ids,
                name: job.spec.description.clone(),
                group: job.spec.group.clone(),
                stages: self.stage_shapes(job),
                time: now(),
            }
        });
    }

    /// A failed job's running stages fail with it.
    pub(super) fn note_stages_aborted(&self, job: &Job, outcome: &Result<()>) {
        if let Err(e) = outcome {
            for (key, st) in &job.running {
                self.note_stage_completed(
                    self.stage_id(job, *key),
                    st.attempt,
                    Some(format!("job aborted: {e}")),
                );
            }
        }
    }

    pub(super) fn note_job_end(&mut self, job: &Job, outcome: &Result<()>) {
        self.emit(|| EmberEvent::JobEnd {
            job_id: job.id.0,
            succeeded: outcome.is_ok(),
            error: outcome.as_ref().err().map(ToString::to_string),
            skipped_stages: job.report.stages_skipped.iter().map(|s| s.0).collect(),
            time: now(),
        });
    }

    pub(super) fn note_stage_submitted(
        &self,
        job: &Job,
        key: StageKey,
        stage: StageId,
        attempt: usize,
        tasks: usize,
    ) {
        self.emit(|| EmberEvent::StageSubmitted {
            stage_id: stage.0,
            attempt,
            job_id: job.id.0,
            name: self.stage_name(job, key),
            num_tasks: tasks,
            time: now(),
        });
    }

    pub(super) fn note_stage_completed(
        &self,
        stage: StageId,
        attempt: usize,
        failure: Option<String>,
    ) {
        self.emit(|| EmberEvent::StageCompleted {
            stage_id: stage.0,
            attempt,
            failure,
            time: now(),
        });
    }

    /// Tasks the dispatcher started since the last call, of the running
    /// jobs and of `ending`, a job being finished.
    pub(super) fn note_launches(&mut self, ending: Option<&Job>) {
        if self.listener.is_none() {
            return;
        }
        for (task, executor) in self.dispatcher.take_launched() {
            let job = match ending {
                Some(j) if j.tasks.contains_key(&task) => j,
                _ => match self.task_jobs.get(&task).and_then(|j| self.jobs.get(j)) {
                    Some(j) => j,
                    None => continue,
                },
            };
            let Some(info) = job.tasks.get(&task) else {
                continue;
            };
            self.emit(|| EmberEvent::TaskStart {
                task_id: task.0,
                stage_id: self.stage_id(job, info.key).0,
                stage_attempt: info.stage_attempt,
                partition: info.partition,
                executor_id: executor.0.clone(),
                time: now(),
            });
        }
    }

    pub(super) fn note_task_end(
        &self,
        job: &Job,
        info: &TaskInfo,
        task: TaskId,
        executor: Option<&ExecutorId>,
        result: &TaskResult,
    ) {
        self.emit(|| EmberEvent::TaskEnd {
            task_id: task.0,
            stage_id: self.stage_id(job, info.key).0,
            stage_attempt: info.stage_attempt,
            partition: info.partition,
            executor_id: executor.map(|e| e.0.clone()).unwrap_or_default(),
            successful: result.outcome.is_ok(),
            error: result.outcome.as_ref().err().map(ToString::to_string),
            metrics: result.metrics.clone(),
            cached: result
                .stored_blocks
                .iter()
                .map(|b| {
                    let BlockId::Rdd { rdd, partition } = b;
                    (rdd.0, *partition)
                })
                .collect(),
            time: now(),
        });
    }

    /// A running task whose executor was lost.
    pub(super) fn note_task_lost(
        &self,
        job: &Job,
        info: &TaskInfo,
        task: TaskId,
        executor: &ExecutorId,
    ) {
        self.emit(|| EmberEvent::TaskEnd {
            task_id: task.0,
            stage_id: self.stage_id(job, info.key).0,
            stage_attempt: info.stage_attempt,
            partition: info.partition,
            executor_id: executor.0.clone(),
            successful: false,
            error: Some(format!("{executor} lost")),
            metrics: Default::default(),
            cached: Vec::new(),
            time: now(),
        });
    }

    pub(super) fn note_executor_added(&self, endpoint: &dyn ExecutorEndpoint) {
        self.emit(|| added(endpoint));
    }

    pub(super) fn note_executor_removed(&self, executor: &ExecutorId, reason: &str) {
        self.emit(|| EmberEvent::ExecutorRemoved {
            executor_id: executor.0.clone(),
            reason: reason.to_string(),
            time: now(),
        });
    }
}

/// RDDs a stage's graph box lists at most.
const MAX_SHAPE_RDDS: usize = 12;

/// The RDDs of the pipeline ending at `rdd` (it and its narrow ancestors,
/// parents first), as `name (rdd N)`; the nearest [`MAX_SHAPE_RDDS`].
fn pipeline(rdd: Arc<dyn RddNode>) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![rdd];
    while let Some(node) = stack.pop() {
        if out.len() == MAX_SHAPE_RDDS {
            break;
        }
        if !seen.insert(node.core().id) {
            continue;
        }
        out.push(format!("{} (rdd {})", node.name(), node.core().id.0));
        stack.extend(ember_rdd::stage::narrow_parents(node.as_ref()));
    }
    out.reverse();
    out
}

fn added(endpoint: &dyn ExecutorEndpoint) -> EmberEvent {
    EmberEvent::ExecutorAdded {
        executor_id: endpoint.id().0,
        host_port: endpoint.address(),
        cores: endpoint.cores(),
        time: now(),
    }
}
