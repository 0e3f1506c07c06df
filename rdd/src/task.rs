//! Running one task: the context a task sees, the services of the
//! executor it runs on, and turning panics and errors into results.

use crate::accumulator;
use ember_core::{AccumulatorId, EmberError, ExecutorId, Result, ShuffleId, StageId, TaskId};
use ember_shuffle::{MapStatus, ShuffleFiles};
use ember_storage::{BlockId, BlockManager};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Fetches shuffle segments and cached blocks from another executor's
/// block server.
pub trait RemoteFetcher: Send + Sync {
    /// Segment `reduce` of each map output in `maps`, in that order, from
    /// the executor at `address`.
    fn fetch(
        &self,
        address: &str,
        shuffle: ShuffleId,
        maps: &[usize],
        reduce: usize,
    ) -> Result<Vec<Vec<u8>>>;
    /// Cached block `block` (as `ember_storage::block_manager::encode_block`
    /// bytes) from the executor at `address`; `None` if it no longer has it.
    fn fetch_block(&self, address: &str, block: BlockId) -> Result<Option<Vec<u8>>>;
}

/// Where a cached partition lives on another executor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockLocation {
    /// The executor caching it.
    pub executor: ExecutorId,
    /// Its block server.
    pub address: String,
}

/// The services of the executor a task runs on.
pub struct TaskEnv {
    /// Which executor this is.
    pub executor_id: ExecutorId,
    /// Cached partitions (also served to other executors).
    pub blocks: Arc<BlockManager>,
    /// This executor's shuffle files.
    pub shuffle_files: ShuffleFiles,
    /// Address of this executor's block server (`None` in `local[N]`).
    pub block_address: Option<String>,
    /// Reads shuffle segments held by other executors.
    pub fetcher: Option<Arc<dyn RemoteFetcher>>,
}

/// What a running task knows about itself.
pub struct TaskContext {
    /// The stage.
    pub stage: StageId,
    /// The partition.
    pub partition: usize,
    /// The attempt number of this task (0 first).
    pub attempt: usize,
    /// The task id (unique per attempt).
    pub task_id: TaskId,
    /// The executor's services.
    pub env: Arc<TaskEnv>,
    /// Where the map outputs of every shuffle this stage reads are.
    pub shuffle_inputs: Arc<HashMap<ShuffleId, Vec<MapStatus>>>,
    /// Where partitions of the RDDs this stage caches are cached on other
    /// executors, as the driver knew when the stage was sent.
    pub cached_elsewhere: Arc<HashMap<BlockId, BlockLocation>>,
    /// What the task measured so far.
    pub metrics: std::cell::RefCell<TaskMetrics>,
    /// Blocks the task cached on this executor.
    pub stored_blocks: std::cell::RefCell<Vec<BlockId>>,
    /// Set when the driver kills the task: its iterators stop at the next
    /// record (see [`TaskContext::check_cancelled`]).
    pub cancelled: Arc<AtomicBool>,
}

impl TaskContext {
    /// Updates the task's metrics.
    pub fn record(&self, f: impl FnOnce(&mut TaskMetrics)) {
        f(&mut self.metrics.borrow_mut());
    }

    /// Fails the task with [`EmberError::Cancelled`] if it was killed:
    /// called between records, so a cancelled task stops at the next
    /// record boundary and its guards (memory grants, spill files) drop.
    pub fn check_cancelled(&self) {
        if self.cancelled.load(Ordering::Relaxed) {
            throw(EmberError::Cancelled(format!(
                "task {} ({} partition {}) was killed",
                self.task_id.0, self.stage, self.partition
            )));
        }
    }
}

/// A stage's root: what a task of the stage does with its partition.
pub trait TaskRoot: Send + Sync {
    /// Runs the task for `tc.partition`.
    fn run(&self, tc: &TaskContext) -> Result<TaskOutput>;
}

/// What a successful task produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TaskOutput {
    /// A shuffle map task's output location and sizes.
    Map(MapStatus),
    /// A result task's serialized value.
    Result(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// Measurements of one task (or, summed, of a stage or job).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    /// Wall time running the task, in microseconds.
    pub run_micros: u64,
    /// Records read by source RDDs (collections, ranges, lines, files).
    #[serde(default)]
    pub input_records: u64,
    /// Bytes read by source RDDs (file bytes; a collection's encoded
    /// slice).
    #[serde(default)]
    pub input_bytes: u64,
    /// Partitions read from the block manager (this executor's or
    /// another's).
    pub cache_hits: u64,
    /// Of those, partitions fetched from another executor.
    #[serde(default)]
    pub cache_remote_hits: u64,
    /// Persisted partitions that had to be computed.
    pub cache_misses: u64,
    /// Records written to shuffle files.
    pub shuffle_records_written: u64,
    /// Bytes written to shuffle files (compressed).
    pub shuffle_bytes_written: u64,
    /// Records read from shuffles.
    pub shuffle_records_read: u64,
    /// Bytes read from shuffles (compressed), local and remote.
    pub shuffle_bytes_read: u64,
    /// Bytes fetched from other executors.
    pub shuffle_remote_bytes_read: u64,
    /// In-memory size of data spilled by aggregations and sorts.
    pub spill_memory_bytes: u64,
    /// Bytes of spill files written.
    pub spill_disk_bytes: u64,
    /// Most execution memory held at once.
    pub peak_execution_memory: u64,
    /// When the task started, in microseconds since the Unix epoch (summed
    /// metrics: the earliest start).
    #[serde(default)]
    pub start_unix_micros: u64,
    /// When the task ended, likewise (summed metrics: the latest end).
    #[serde(default)]
    pub end_unix_micros: u64,
}

impl TaskMetrics {
    /// Adds `other` (peaks take the maximum).
    pub fn add(&mut self, o: &TaskMetrics) {
        self.run_micros += o.run_micros;
        self.input_records += o.input_records;
        self.input_bytes += o.input_bytes;
        self.cache_hits += o.cache_hits;
        self.cache_remote_hits += o.cache_remote_hits;
        self.cache_misses += o.cache_misses;
        self.shuffle_records_written += o.shuffle_records_written;
        self.shuffle_bytes_written += o.shuffle_bytes_written;
        self.shuffle_records_read += o.shuffle_records_read;
        self.shuffle_bytes_read += o.shuffle_bytes_read;
        self.shuffle_remote_bytes_read += o.shuffle_remote_bytes_read;
        self.spill_memory_bytes += o.spill_memory_bytes;
        self.spill_disk_bytes += o.spill_disk_bytes;
        self.peak_execution_memory = self.peak_execution_memory.max(o.peak_execution_memory);
        if o.start_unix_micros != 0 {
            self.start_unix_micros = match self.start_unix_micros {
                0 => o.start_unix_micros,
                s => s.min(o.start_unix_micros),
            };
        }
        self.end_unix_micros = self.end_unix_micros.max(o.end_unix_micros);
    }
}

/// The outcome of one task attempt, sent back to the driver.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskResult {
    /// The output, or why the task failed.
    pub outcome: std::result::Result<TaskOutput, EmberError>,
    /// Accumulator updates made by the task (applied only on success).
    pub accum_updates: Vec<(AccumulatorId, Vec<u8>)>,
    /// Measurements.
    pub metrics: TaskMetrics,
    /// Blocks the task cached on its executor.
    pub stored_blocks: Vec<BlockId>,
}

/// Which task to run: everything but the stage's pipeline, which is sent
/// once per stage attempt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskDescription {
    /// Unique id of this attempt.
    pub task_id: TaskId,
    /// The stage.
    pub stage: StageId,
    /// The stage's encoded pipeline (see [`crate::stage::StageBlob`]).
    pub blob: u64,
    /// The partition.
    pub partition: usize,
    /// Attempt number.
    pub attempt: usize,
}

/// A stage rebuilt on an executor, reused by all its tasks there.
pub struct DecodedStage {
    /// What each task runs.
    pub root: Arc<dyn TaskRoot>,
    /// Map output locations of the shuffles the stage reads.
    pub shuffle_inputs: Arc<HashMap<ShuffleId, Vec<MapStatus>>>,
    /// Where cached partitions of the stage's RDDs live.
    pub cached_elsewhere: Arc<HashMap<BlockId, BlockLocation>>,
}

/// Runs one task of a decoded stage on `env`, catching panics: a panic's
/// message becomes the failure, and an [`EmberError`] thrown with
/// [`throw`] (how iterators report I/O and fetch failures)
/// keeps its kind. Setting `cancelled` kills the task at its next record.
pub fn run_task(
    stage: &DecodedStage,
    desc: &TaskDescription,
    env: Arc<TaskEnv>,
    cancelled: Arc<AtomicBool>,
) -> TaskResult {
    let start = Instant::now();
    let start_unix_micros = unix_micros();
    let tc = TaskContext {
        stage: desc.stage,
        partition: desc.partition,
        attempt: desc.attempt,
        task_id: desc.task_id,
        env,
        shuffle_inputs: stage.shuffle_inputs.clone(),
        cached_elsewhere: stage.cached_elsewhere.clone(),
        metrics: Default::default(),
        stored_blocks: Default::default(),
        cancelled,
    };
    accumulator::begin_task();
    CURRENT_ENV.with(|c| *c.borrow_mut() = Some(tc.env.clone()));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| stage.root.run(&tc)))
        .unwrap_or_else(|payload| Err(panic_to_error(payload)));
    CURRENT_ENV.with(|c| c.borrow_mut().take());
    let accum_updates = accumulator::end_task();
    let mut metrics = tc.metrics.take();
    metrics.add(&SIDE_METRICS.with(|m| m.take()));
    metrics.run_micros = start.elapsed().as_micros() as u64;
    metrics.start_unix_micros = start_unix_micros;
    metrics.end_unix_micros = unix_micros();
    TaskResult {
        outcome,
        accum_updates,
        metrics,
        stored_blocks: tc.stored_blocks.take(),
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

thread_local! {
    /// The environment of the task running on this thread, for code that
    /// gets no `TaskContext` (aggregations inside `map_partitions`).
    static CURRENT_ENV: std::cell::RefCell<Option<Arc<TaskEnv>>> = const { std::cell::RefCell::new(None) };
    /// Metrics recorded by such code, folded into the task's at its end.
    static SIDE_METRICS: std::cell::RefCell<TaskMetrics> = std::cell::RefCell::new(TaskMetrics::default());
}

/// The environment of the task running on this thread, if any.
pub fn current_env() -> Option<Arc<TaskEnv>> {
    CURRENT_ENV.with(|c| c.borrow().clone())
}

/// Records metrics for the task running on this thread.
pub fn record_side_metrics(f: impl FnOnce(&mut TaskMetrics)) {
    SIDE_METRICS.with(|m| f(&mut m.borrow_mut()));
}

/// The message of a panic payload.
pub fn panic_to_error(payload: Box<dyn std::any::Any + Send>) -> EmberError {
    if let Some(e) = payload.downcast_ref::<EmberError>() {
        return e.clone();
    }
    let message = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "task panicked with a non-string payload".to_string()
    };
    EmberError::TaskFailed { message }
}

/// Turns errors met while iterating into a panic the task runner catches;
/// iterators cannot return `Result`, so this is how they fail a task.
pub fn throw(err: EmberError) -> ! {
    // resume_unwind skips the panic hook: a thrown error is a task failure
    // the runner reports, not a bug, so no "panicked at" text or backtrace.
    std::panic::resume_unwind(Box::new(err))
}
