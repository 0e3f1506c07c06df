//! Task dispatch: which executor runs which task. Keeps the free task
//! slots of every executor and a queue of tasks waiting for one (jobs
//! first in, first out); owned by the scheduler, so it needs no locks of
//! its own.

use ember_core::{BroadcastId, ExecutorId, JobId, RddId, Result, ShuffleId, TaskId};
use ember_rdd::stage::StageBlob;
use ember_rdd::task::{TaskDescription, TaskResult};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// What the scheduler hears from executors.
pub enum Event {
    /// A task ended (successfully or not).
    TaskEnded {
        /// The task.
        task: TaskId,
        /// Its result (boxed: it is most of the event's size).
        result: Box<TaskResult>,
    },
    /// An executor registered after the context started (a replacement).
    ExecutorAdded(Arc<dyn ExecutorEndpoint>),
    /// An executor died or disconnected.
    ExecutorLost {
        /// Which one.
        executor: ExecutorId,
        /// Why, as far as the driver knows.
        reason: String,
    },
}

/// The driver's handle on one executor.
pub trait ExecutorEndpoint: Send + Sync {
    /// The executor's id.
    fn id(&self) -> ExecutorId;
    /// Its task slots.
    fn cores(&self) -> usize;
    /// Sends a stage's pipeline.
    fn send_stage(&self, blob: &StageBlob) -> Result<()>;
    /// Starts a task.
    fn launch(&self, desc: TaskDescription) -> Result<()>;
    /// Kills a running task (it ends with `EmberError::Cancelled`).
    fn kill_task(&self, task: TaskId);
    /// Drops a stage's pipeline.
    fn forget_stage(&self, blob: u64);
    /// Drops an RDD's cached blocks.
    fn remove_rdd(&self, rdd: RddId);
    /// Deletes a shuffle's files.
    fn remove_shuffle(&self, shuffle: ShuffleId);
    /// Drops the executor's copy of a broadcast value.
    fn remove_broadcast(&self, id: BroadcastId);
    /// Stops the executor.
    fn shutdown(&self);
    /// Where it serves shuffle blocks (`host:port`), for the UI.
    fn address(&self) -> Option<String> {
        None
    }
}

/// A task waiting for a slot.
struct Queued {
    /// The job it belongs to: earlier jobs' tasks are served first.
    job: JobId,
    desc: TaskDescription,
    blob: Arc<StageBlob>,
    /// Where its input is cached, if anywhere.
    preferred: Option<ExecutorId>,
    /// Executors where this task already failed.
    avoid: Vec<ExecutorId>,
    /// When it was queued.
    since: std::time::Instant,
}

/// How long a task waits for the executor caching its input before it
/// runs elsewhere (Spark's `spark.locality.wait`).
const LOCALITY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

struct Slot {
    endpoint: Arc<dyn ExecutorEndpoint>,
    free: usize,
    stages: HashSet<u64>,
}

/// Free slots, queued tasks and where each running task runs.
#[derive(Default)]
pub struct Dispatcher {
    executors: BTreeMap<ExecutorId, Slot>,
    queue: VecDeque<Queued>,
    /// Queued tasks that prefer an executor (skip the scan when none do).
    preferring: usize,
    /// Queued tasks that avoid an executor (likewise).
    avoiding: usize,
    /// Executors excluded from the remaining tasks of a stage, by the
    /// stage's pipeline (blob) id.
    excluded: HashMap<u64, HashSet<ExecutorId>>,
    running: HashMap<TaskId, ExecutorId>,
    /// Tasks started since the scheduler last asked, when it listens.
    launched: Option<Vec<(TaskId, ExecutorId)>>,
}

impl Dispatcher {
    /// An empty dispatcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an executor with all its slots free and starts queued tasks
    /// on it; returns executors that could not be reached.
    pub fn add_executor(&mut self, endpoint: Arc<dyn ExecutorEndpoint>) -> Vec<ExecutorId> {
        let free = endpoint.cores().max(1);
        self.executors.insert(
            endpoint.id(),
            Slot {
                endpoint,
                free,
                stages: HashSet::new(),
            },
        );
        self.dispatch()
    }

    /// Removes an executor; returns the tasks that were running on it.
    pub fn remove_executor(&mut self, id: &ExecutorId) -> Vec<TaskId> {
        self.executors.remove(id);
        let lost: Vec<TaskId> = self
            .running
            .iter()
            .filter(|(_, e)| *e == id)
            .map(|(t, _)| *t)
            .collect();
        for t in &lost {
            self.running.remove(t);
        }
        lost
    }

    /// Number of live executors.
    pub fn num_executors(&self) -> usize {
        self.executors.len()
    }

    /// The live executors.
    pub fn endpoints(&self) -> Vec<Arc<dyn ExecutorEndpoint>> {
        self.executors
            .values()
            .map(|s| s.endpoint.clone())
            .collect()
    }

    /// The block server address of a live executor.
    pub fn address_of(&self, id: &ExecutorId) -> Option<String> {
        self.executors.get(id)?.endpoint.address()
    }

    /// Queues a task that must not run on the executors in `avoid` (where
    /// it already failed) while another executor is alive, and starts what
    /// fits.
    ///
    /// Jobs are served first in, first out: the task goes behind every
    /// queued task of its job and of earlier jobs, ahead of later jobs'.
    pub fn submit_avoiding(
        &mut self,
        job: JobId,
        desc: TaskDescription,
        blob: Arc<StageBlob>,
        preferred: Option<ExecutorId>,
        avoid: Vec<ExecutorId>,
    ) -> Vec<ExecutorId> {
        self.preferring += usize::from(preferred.is_some());
        self.avoiding += usize::from(!avoid.is_empty());
        let at = self
            .queue
            .iter()
            .rposition(|q| q.job <= job)
            .map_or(0, |i| i + 1);
        self.queue.insert(
            at,
            Queued {
                job,
                desc,
                blob,
                preferred,
                avoid,
                since: std::time::Instant::now(),
            },
        );
        self.dispatch()
    }

    /// Tells the executor running `task` to kill it; its slot is freed
    /// when it reports its end.
    pub fn kill(&self, task: TaskId) {
        if let Some(slot) = self.running.get(&task).and_then(|e| self.executors.get(e)) {
            slot.endpoint.kill_task(task);
        }
    }

    /// Gives none of the remaining tasks of a stage's pipeline `blob` to
    /// `executor` while another executor is alive.
    pub fn exclude(&mut self, blob: u64, executor: ExecutorId) {
        self.excluded.entry(blob).or_default().insert(executor);
    }

    /// Frees the slot of a finished task, starts what fits, and returns
    /// the executor it ran on plus executors that failed to take work.
    pub fn finished(&mut self, task: TaskId) -> (Option<ExecutorId>, Vec<ExecutorId>) {
        let exec = self.release(task);
        (exec, self.dispatch())
    }

    /// Frees the slot of a finished task without starting anything yet
    /// (the caller first settles what the task's end means, then calls
    /// [`start_queued`](Self::start_queued)); returns the executor it ran on.
    pub fn release(&mut self, task: TaskId) -> Option<ExecutorId> {
        let exec = self.running.remove(&task);
        if let Some(slot) = exec.as_ref().and_then(|e| self.executors.get_mut(e)) {
            slot.free += 1;
        }
        exec
    }

    /// Starts queued tasks on free slots; returns executors that could
    /// not be reached (to be treated as lost).
    pub fn start_queued(&mut self) -> Vec<ExecutorId> {
        self.dispatch()
    }

    /// Starts (or stops) noting which task starts on which executor.
    pub fn record_launches(&mut self, on: bool) {
        self.launched = on.then(Vec::new);
    }

    /// Tasks started since the last call, with their executors (empty
    /// unless [`record_launches`](Self::record_launches) is on).
    pub fn take_launched(&mut self) -> Vec<(TaskId, ExecutorId)> {
        self.launched
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Where a running task runs.
    pub fn executor_of(&self, task: TaskId) -> Option<&ExecutorId> {
        self.running.get(&task)
    }

    /// Tells every executor that has a stage's pipeline to drop it, and
    /// drops its queued tasks (their job ended or their attempt is stale).
    pub fn forget_stage(&mut self, blob: u64) {
        self.queue.retain(|q| q.blob.id != blob);
        self.preferring = self.queue.iter().filter(|q| q.preferred.is_some()).count();
        self.avoiding = self.queue.iter().filter(|q| !q.avoid.is_empty()).count();
        self.excluded.remove(&blob);
        for slot in self.executors.values_mut() {
            if slot.stages.remove(&blob) {
                slot.endpoint.forget_stage(blob);
            }
        }
    }

    /// Whether queued task `q` may run on executor `id`: not where it
    /// already failed nor where its stage excludes, unless every live
    /// executor is such a place (Spark's `excludeOnFailure`, without
    /// aborting the stage).
    fn may_run(&self, q: &Queued, id: &ExecutorId) -> bool {
        let excluded = self.excluded.get(&q.blob.id);
        let barred =
            |e: &ExecutorId| q.avoid.contains(e) || excluded.is_some_and(|x| x.contains(e));
        !barred(id) || self.executors.keys().all(barred)
    }

    /// Picks the next (executor, queue position): a task whose preferred
    /// executor has a free slot first; else, on the executor with the most
    /// free slots, the oldest task that prefers no live executor or has
    /// waited longer than [`LOCALITY_WAIT`] for its own (delay scheduling:
    /// a busy preferred executor frees a slot soon). A task never goes to
    /// an executor it may not run on ([`may_run`](Self::may_run)); then
    /// other executors with free slots are tried.
    fn pick(&self) -> Option<(ExecutorId, usize)> {
        if self.queue.is_empty() {
            return None;
        }
        let (free_id, _) = self
            .executors
            .iter()
            .filter(|(_, s)| s.free > 0)
            .max_by_key(|(_, s)| s.free)?;
        if self.preferring == 0 && self.avoiding == 0 && self.excluded.is_empty() {
            return Some((free_id.clone(), 0));
        }
        let local = self.queue.iter().enumerate().find_map(|(i, q)| {
            let p = q.preferred.as_ref()?;
            self.executors
                .get(p)
                .filter(|s| s.free > 0 && self.may_run(q, p))
                .map(|_| (p.clone(), i))
        });
        if local.is_some() {
            return local;
        }
        let ready = |q: &Queued| match &q.preferred {
            Some(p) => {
                !self.executors.contains_key(p)
                    || !self.may_run(q, p)
                    || q.since.elapsed() > LOCALITY_WAIT
            }
            None => true,
        };
        let others = self
            .executors
            .iter()
            .filter(|(id, s)| s.free > 0 && *id != free_id)
            .map(|(id, _)| id);
        std::iter::once(free_id).chain(others).find_map(|id| {
            self.queue
                .iter()
                .position(|q| ready(q) && self.may_run(q, id))
                .map(|i| (id.clone(), i))
        })
    }

    /// Starts queued tasks on free slots. Returns executors that could not
    /// be reached (to be treated as lost).
    fn dispatch(&mut self) -> Vec<ExecutorId> {
        let mut broken = Vec::new();
        while let Some((id, i)) = self.pick() {
            let q = self.queue.remove(i).expect("picked a queued task");
            self.preferring -= usize::from(q.preferred.is_some());
            self.avoiding -= usize::from(!q.avoid.is_empty());
            let slot = self.executors.get_mut(&id).expect("executor exists");
            let task = q.desc.task_id;
            let sent = if slot.stages.insert(q.blob.id) {
                slot.endpoint.send_stage(&q.blob)
            } else {
                Ok(())
            };
            match sent.and_then(|()| slot.endpoint.launch(q.desc.clone())) {
                Ok(()) => {
                    slot.free -= 1;
                    if let Some(l) = self.launched.as_mut() {
                        l.push((task, id.clone()));
                    }
                    self.running.insert(task, id);
                }
                Err(_) => {
                    // Requeue the task and stop using this executor.
                    self.preferring += usize::from(q.preferred.is_some());
                    self.avoiding += usize::from(!q.avoid.is_empty());
                    self.queue.push_front(q);
                    self.executors.remove(&id);
                    broken.push(id);
                }
            }
        }
        broken
    }
}
