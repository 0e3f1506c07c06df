//! Task threads over one task environment, and the stages they run.

use crossbeam::channel::{unbounded, Sender};
use ember_core::{EmberError, TaskId};
use ember_rdd::stage::{decode_stage, DecodedStage, StageBlob};
use ember_rdd::task::{run_task, TaskDescription, TaskMetrics, TaskResult};
use ember_rdd::TaskEnv;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Stack size of task threads: deep lineages nest iterators.
const TASK_STACK_BYTES: usize = 256 << 20;

/// Called with each finished task's result.
pub type ResultSink = Arc<dyn Fn(TaskId, TaskResult) + Send + Sync>;

type StageEntry = std::result::Result<Arc<DecodedStage>, EmberError>;

/// Runs tasks on `cores` threads.
pub struct Executor {
    env: Arc<TaskEnv>,
    stages: Mutex<HashMap<u64, StageEntry>>,
    queue: Sender<TaskDescription>,
    /// The kill flag of each queued or running task.
    kill_flags: Mutex<HashMap<TaskId, Arc<AtomicBool>>>,
}

impl Executor {
    /// Starts `cores` task threads that report to `sink`.
    pub fn start(env: Arc<TaskEnv>, cores: usize, sink: ResultSink) -> Arc<Executor> {
        let (tx, rx) = unbounded::<TaskDescription>();
        let exec = Arc::new(Executor {
            env,
            stages: Mutex::new(HashMap::new()),
            queue: tx,
            kill_flags: Mutex::new(HashMap::new()),
        });
        for i in 0..cores.max(1) {
            let rx = rx.clone();
            let weak = Arc::downgrade(&exec);
            let sink = sink.clone();
            std::thread::Builder::new()
                .name(format!("ember-task-{i}"))
                .stack_size(TASK_STACK_BYTES)
                .spawn(move || {
                    while let Ok(desc) = rx.recv() {
                        let Some(exec) = weak.upgrade() else { break };
                        let result = exec.run(&desc);
                        drop(exec);
                        sink(desc.task_id, result);
                    }
                })
                .expect("spawning a task thread");
        }
        exec
    }

    /// The executor's environment.
    pub fn env(&self) -> &Arc<TaskEnv> {
        &self.env
    }

    /// Decodes a stage's pipeline for the tasks that will follow.
    pub fn add_stage(&self, blob: &StageBlob) {
        let entry = decode_stage(blob).map(Arc::new);
        self.stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(blob.id, entry);
    }

    /// Forgets a stage's pipeline.
    pub fn forget_stage(&self, blob: u64) {
        self.stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&blob);
    }

    /// Queues a task.
    pub fn launch(&self, desc: TaskDescription) {
        self.kill_flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(desc.task_id, Arc::default());
        // The receiving threads live as long as the executor.
        let _ = self.queue.send(desc);
    }

    /// Kills a queued or running task: it stops at its next record and
    /// ends with [`EmberError::Cancelled`]. Unknown tasks (already ended)
    /// are ignored.
    pub fn kill_task(&self, task: TaskId) {
        if let Some(flag) = self
            .kill_flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&task)
        {
            flag.store(true, Ordering::Relaxed);
        }
    }

    fn run(&self, desc: &TaskDescription) -> TaskResult {
        let flag = self
            .kill_flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&desc.task_id)
            .cloned()
            .unwrap_or_default();
        let result = self.run_stage_task(desc, flag);
        self.kill_flags
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&desc.task_id);
        result
    }

    fn run_stage_task(&self, desc: &TaskDescription, killed: Arc<AtomicBool>) -> TaskResult {
        if killed.load(Ordering::Relaxed) {
            return failed(EmberError::Cancelled(format!(
                "task {} was killed before it started",
                desc.task_id.0
            )));
        }
        let stage = self
            .stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&desc.blob)
            .cloned();
        match stage {
            Some(Ok(stage)) => run_task(&stage, desc, self.env.clone(), killed),
            Some(Err(e)) => failed(e),
            None => failed(EmberError::Other(format!(
                "stage pipeline {} was never received",
                desc.blob
            ))),
        }
    }
}

fn failed(e: EmberError) -> TaskResult {
    TaskResult {
        outcome: Err(e),
        accum_updates: Vec::new(),
        metrics: TaskMetrics::default(),
        stored_blocks: Vec::new(),
    }
}
