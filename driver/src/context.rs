//! [`Context`]: the entry point of a driver program. It starts executors
//! for the master URL, creates source RDDs, broadcasts and accumulators,
//! and runs the jobs RDD actions submit.

use crate::backend::{Backend, BroadcastStore, ClusterSettings};
use crate::dag::{DagScheduler, JobReport, JobSpec};
use crate::dispatch::{Dispatcher, Event};
use crate::master_url::MasterUrl;
use crossbeam::channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use ember_core::conf::keys;
use ember_core::{BroadcastId, Data, EmberConf, EmberError, RddId, Result, ShuffleId};
use ember_rdd::accumulator::{AccumValue, Accumulator};
use ember_rdd::broadcast::Broadcast;
use ember_rdd::cleanup::Cleanup;
use ember_rdd::job_info;
use ember_rdd::node::Compute;
use ember_rdd::object_file::ObjectFileNode;
use ember_rdd::sources::{
    input_files, whole_text, BinaryFilesNode, EmptyNode, ParallelizeNode, RangeNode, TextFileNode,
};
use ember_rdd::stage::StageRoot;
use ember_rdd::transforms::UnionNode;
use ember_rdd::{JobRunner, Rdd};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Configuration key naming another executable to start as executors
/// (tests use it to check that a mismatched binary is refused).
pub const EXECUTOR_BINARY_KEY: &str = "ember.executor.binary";

/// Builds a [`Context`]: master URL and configuration.
#[derive(Clone, Debug, Default)]
pub struct ContextBuilder {
    conf: EmberConf,
}

impl ContextBuilder {
    /// Sets the master URL (otherwise `EMBER_MASTER` or `local[*]`).
    pub fn master(mut self, url: &str) -> Self {
        self.conf.set(keys::MASTER, url);
        self
    }

    /// Sets the application name.
    pub fn app_name(mut self, name: &str) -> Self {
        self.conf.set(keys::APP_NAME, name);
        self
    }

    /// Sets one configuration value.
    pub fn conf(mut self, key: &str, value: &str) -> Self {
        self.conf.set(key, value);
        self
    }

    /// Applies `key=value` pairs, as given with `--conf`.
    pub fn conf_pairs<'a>(mut self, pairs: impl IntoIterator<Item = &'a String>) -> Result<Self> {
        for p in pairs {
            self.conf.set_pair(p)?;
        }
        Ok(self)
    }

    /// Starts the context: environment (`EMBER_*`) first, then the
    /// builder's settings on top.
    pub fn build(self) -> Result<Context> {
        let mut conf = EmberConf::from_env();
        conf.merge(&self.conf);
        Context::with_conf(conf)
    }
}

/// The state behind a [`Context`], shared with every RDD it made.
pub struct ContextInner {
    conf: EmberConf,
    master: MasterUrl,
    app_dir: PathBuf,
    backend: Mutex<Backend>,
    checkpoint_dir: Mutex<Option<PathBuf>>,
    next_rdd: AtomicU64,
    next_shuffle: AtomicU64,
    default_parallelism: usize,
    app_id: String,
    /// What the cleaner thread shares with the context.
    shared: Arc<Shared>,
    /// Where dropped shuffles, persisted RDDs and broadcasts are queued
    /// for the cleaner thread, and the queue's other end, which a job
    /// drains before it starts; `None` without reference tracking.
    cleaner: Option<(Sender<Cleanup>, Receiver<Cleanup>)>,
}

/// The parts of a context the cleaner and scheduler threads use. They
/// hold these, never the context itself, so the context is still dropped
/// (and stopped: executors ended, event log finished) where its last
/// handle goes.
struct Shared {
    scheduler: Mutex<DagScheduler>,
    broadcasts: BroadcastStore,
    /// The UI, its status store and the event log.
    observers: crate::ui::app::AppObservers,
    stopped: AtomicBool,
}

/// A driver program's connection to its executors.
///
/// ```
/// use ember_driver::prelude::*;
///
/// # fn main() -> ember_driver::Result<()> {
/// let ctx = Context::new("local[2]")?;
/// let evens = ctx.range(0, 10, 1, 2)?.filter(|x| x % 2 == 0);
/// assert_eq!(evens.collect()?, vec![0, 2, 4, 6, 8]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

static NEXT_APP: AtomicU64 = AtomicU64::new(0);

impl Context {
    /// A builder: the master URL (else `EMBER_MASTER`, else `local[*]`)
    /// and configuration, which win over `EMBER_*` variables.
    ///
    /// ```
    /// use ember_driver::prelude::*;
    ///
    /// # fn main() -> ember_driver::Result<()> {
    /// let ctx = Context::builder()
    ///     .master("local[2]")
    ///     .app_name("example")
    ///     .conf("ember.task.maxFailures", "2")
    ///     .build()?;
    /// assert_eq!(ctx.default_parallelism(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// A context for `master` with default configuration.
    pub fn new(master: &str) -> Result<Context> {
        Self::builder().master(master).build()
    }

    /// A context from a full configuration.
    ///
    /// Installs Ember's log output (see [`ember_core::logging::init`])
    /// unless the program installed a global `tracing` subscriber first.
    pub fn with_conf(conf: EmberConf) -> Result<Context> {
        // First, so that warnings about starting up reach the user too.
        ember_core::logging::init(ember_core::logging::DEFAULT_FILTER);
        // Addresses first, so that everything binds and advertises alike.
        let mut conf = conf;
        crate::deploy::client::settle_driver_addresses(&mut conf)?;
        // The UI starts next: a standalone master is told where it is.
        let observers = crate::ui::app::AppObservers::start(&conf)?;
        if let Some(url) = observers.ui_url() {
            let (_, host) = crate::deploy::client::driver_hosts(&conf);
            conf.set(
                crate::deploy::client::APP_UI_ADDRESS_KEY,
                ember_core::net::advertised_url(&url, &host),
            );
        }
        let master = MasterUrl::parse(conf.get(keys::MASTER).unwrap_or("local[*]"))?;
        let max_failures = conf.get_usize(keys::TASK_MAX_FAILURES, 4)?;
        let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let show_progress = conf.get_bool(keys::PROGRESS, on_terminal)?;
        let show_summary = conf.get_bool(keys::JOB_SUMMARY, on_terminal)?;
        let base = conf
            .get(keys::LOCAL_DIR)
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let app_dir = base.join(format!(
            "ember-{}-{}",
            std::process::id(),
            NEXT_APP.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&app_dir)
            .map_err(|e| EmberError::io(&app_dir, "create local dir", e))?;
        let (tx, rx) = unbounded();
        let broadcasts: BroadcastStore = Arc::default();
        let cluster = ClusterSettings {
            executors: match master {
                MasterUrl::LocalCluster { executors, .. } => executors,
                MasterUrl::Local { .. } | MasterUrl::Standalone { .. } => 0,
            },
            cores: match master {
                MasterUrl::LocalCluster { cores, .. } => cores,
                MasterUrl::Local { threads } => threads,
                MasterUrl::Standalone { .. } => 0,
            },
            binary: match conf.get(EXECUTOR_BINARY_KEY) {
                Some(p) => PathBuf::from(p),
                None => std::env::current_exe()
                    .map_err(|e| EmberError::io("current executable", "locate", e))?,
            },
            heartbeat: conf.get_duration(keys::HEARTBEAT_INTERVAL, Duration::from_secs(1))?,
            timeout: conf.get_duration(keys::NETWORK_TIMEOUT, Duration::from_secs(10))?,
            relaunches: 0,
            secret: crate::deploy::client::app_secret(&conf, &master)?,
            conf: conf.clone(),
            memory: match master {
                MasterUrl::LocalCluster { memory_mib, .. } => {
                    conf.get_bytes(keys::EXECUTOR_MEMORY, (memory_mib as u64) << 20)?
                }
                MasterUrl::Standalone { .. } => conf.get_bytes(keys::EXECUTOR_MEMORY, 1 << 30)?,
                MasterUrl::Local { .. } => conf.get_bytes(
                    keys::EXECUTOR_MEMORY,
                    ember_core::conf::physical_memory()
                        .map(|m| m / 2)
                        .unwrap_or(1 << 30),
                )?,
            },
            storage_fraction: conf
                .get(keys::STORAGE_FRACTION)
                .map(|v| {
                    v.parse::<f64>().map_err(|_| EmberError::Conf {
                        key: keys::STORAGE_FRACTION.into(),
                        message: format!("{v:?} is not a number"),
                    })
                })
                .transpose()?
                .unwrap_or(0.5),
        };
        let cluster = ClusterSettings {
            relaunches: conf.get_usize(keys::MAX_RELAUNCHES, 2 * cluster.executors)?,
            ..cluster
        };
        let executor_wait = conf.get_duration(keys::EXECUTOR_WAIT, Duration::from_secs(30))?;
        let backend = match Backend::start(&master, &app_dir, tx, broadcasts.clone(), cluster) {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&app_dir);
                return Err(e);
            }
        };
        // Standalone: the cores that registered, at least 2 (as Spark).
        let cores = match master {
            MasterUrl::Standalone { .. } => backend.total_cores().max(2),
            _ => master.total_cores(),
        };
        let default_parallelism = conf.get_usize(keys::DEFAULT_PARALLELISM, cores)?.max(1);
        let app_id = backend
            .app_id()
            .unwrap_or_else(crate::ui::app::local_app_id);
        let mut dispatcher = Dispatcher::new();
        for ep in &backend.endpoints {
            let _unreachable = dispatcher.add_executor(ep.clone());
        }
        let mut scheduler =
            DagScheduler::new(dispatcher, max_failures, show_progress, executor_wait);
        scheduler.set_show_summary(show_summary);
        let cleaner = conf
            .get_bool(keys::CLEANER_REFERENCE_TRACKING, true)?
            .then(unbounded);
        let inner = ContextInner {
            conf,
            master,
            app_dir,

            backend: Mutex::new(backend),
            checkpoint_dir: Mutex::new(None),
            next_rdd: AtomicU64::new(0),
            next_shuffle: AtomicU64::new(0),
            default_parallelism,
            app_id,
            shared: Arc::new(Shared {
                scheduler: Mutex::new(scheduler),
                broadcasts,
                observers,
                stopped: AtomicBool::new(false),
            }),
            cleaner,
        };
        // Without a UI or an event log nobody listens: the scheduler then
        // publishes nothing.
        if let Some(listener) = inner.shared.observers.begin(
            &inner.app_id,
            inner.conf.get(keys::APP_NAME).unwrap_or("ember"),
            inner.conf.get(keys::MASTER).unwrap_or("local[*]"),
        )? {
            inner
                .shared
                .scheduler
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_listener(listener);
        }
        let inner = Arc::new(inner);
        let shared = inner.shared.clone();
        std::thread::Builder::new()
            .name("ember-scheduler".into())
            .spawn(move || run_scheduler(&shared, rx))
            .map_err(|e| EmberError::Other(format!("cannot start the scheduler thread: {e}")))?;
        if inner.conf.get_bool(keys::DRIVER_INTERRUPT_HANDLER, true)? {
            crate::interrupt::watch(Arc::downgrade(&inner));
        }
        if let Some((_, rx)) = &inner.cleaner {
            let (shared, rx) = (inner.shared.clone(), rx.clone());
            std::thread::Builder::new()
                .name("ember-cleaner".into())
                .spawn(move || run_cleaner(&shared, rx))
                .map_err(|e| EmberError::Other(format!("cannot start the cleaner thread: {e}")))?;
        }
        Ok(Context { inner })
    }

    fn runner(&self) -> Arc<dyn JobRunner> {
        self.inner.clone()
    }

    /// The configuration in force.
    pub fn conf(&self) -> &EmberConf {
        &self.inner.conf
    }

    /// The master URL.
    pub fn master(&self) -> &MasterUrl {
        &self.inner.master
    }

    /// Default number of partitions (total executor cores unless
    /// `ember.default.parallelism` is set).
    pub fn default_parallelism(&self) -> usize {
        self.inner.default_parallelism
    }

    fn slices(&self, n: usize) -> usize {
        if n == 0 {
            self.default_parallelism()
        } else {
            n
        }
    }

    /// `data` as an RDD of `slices` partitions (0: the default).
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let words = ctx.parallelize(vec!["a".to_string(), "b".into(), "c".into()], 2)?;
    /// assert_eq!(words.num_partitions(), 2);
    /// assert_eq!(words.count()?, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn parallelize<T: Data>(&self, data: Vec<T>, slices: usize) -> Result<Rdd<T>> {
        let node = ParallelizeNode::new(self.inner.new_rdd_id(), data, self.slices(slices))?;
        Ok(Rdd::from_node(self.runner(), Arc::new(node)))
    }

    /// `start, start + step, ...` up to `end` (exclusive) in `slices`
    /// partitions (0: the default).
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// assert_eq!(ctx.range(1, 10, 3, 0)?.collect()?, vec![1, 4, 7]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn range(&self, start: i64, end: i64, step: i64, slices: usize) -> Result<Rdd<i64>> {
        let node = RangeNode::new(
            self.inner.new_rdd_id(),
            start,
            end,
            step,
            self.slices(slices),
        )?;
        Ok(Rdd::from_node(self.runner(), Arc::new(node)))
    }

    /// Spark's `emptyRDD`: an RDD with no partitions and no records.
    pub fn empty_rdd<T: Data>(&self) -> Rdd<T> {
        Rdd::from_node(
            self.runner(),
            Arc::new(EmptyNode::<T>::new(self.inner.new_rdd_id())),
        )
    }

    /// Lines of a text file, of every visible file in a folder, or of the
    /// files a `*`/`?` pattern in the last path component matches, split
    /// into at least `min_partitions` byte ranges where the data allows.
    /// A `.gz` file is decompressed, whole in one partition.
    /// Executors read the file themselves: in a cluster the path must be
    /// absolute and visible to every worker.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let dir = std::env::temp_dir().join(format!("ember-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// std::fs::write(dir.join("in.txt"), "one\ntwo\nthree\n").unwrap();
    /// let lines = ctx.text_file(dir.join("in.txt"), 2)?;
    /// assert_eq!(lines.collect()?, vec!["one", "two", "three"]);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn text_file(&self, path: impl AsRef<Path>, min_partitions: usize) -> Result<Rdd<String>> {
        let node = TextFileNode::new(
            self.inner.new_rdd_id(),
            path.as_ref(),
            self.slices(min_partitions),
        )?;
        Ok(Rdd::from_node(self.runner(), Arc::new(node)))
    }

    /// `(path, bytes)` of every visible file in folder `dir`.
    pub fn binary_files(
        &self,
        dir: impl AsRef<Path>,
        min_partitions: usize,
    ) -> Result<Rdd<(String, Vec<u8>)>> {
        let node = BinaryFilesNode::new(
            self.inner.new_rdd_id(),
            dir.as_ref(),
            self.slices(min_partitions),
        )?;
        Ok(Rdd::from_node(self.runner(), Arc::new(node)))
    }

    /// Spark's `wholeTextFiles`: `(path, contents)` of every file of a
    /// folder, a file or a `*`/`?` pattern (see [`Context::text_file`]),
    /// in up to `min_partitions` partitions (0: the default). `.gz` files
    /// are decompressed; bytes that are not UTF-8 are replaced (U+FFFD),
    /// where Spark would keep Hadoop's `Text` bytes.
    pub fn whole_text_files(
        &self,
        path: impl AsRef<Path>,
        min_partitions: usize,
    ) -> Result<Rdd<(String, String)>> {
        let node = BinaryFilesNode::of_files(
            self.inner.new_rdd_id(),
            input_files(path.as_ref())?,
            self.slices(min_partitions),
        )?;
        Ok(Rdd::from_node(self.runner(), Arc::new(node)).map(whole_text))
    }

    /// Spark's `objectFile`: the records `Rdd::save_as_object_file` wrote
    /// to a folder (its `part-*` files), a single such file, or the files
    /// a `*`/`?` pattern matches; one partition per file. Reading a file
    /// of another record type, or a corrupt one, fails the task with an
    /// error naming the file.
    pub fn object_file<T: Data>(&self, path: impl AsRef<Path>) -> Result<Rdd<T>> {
        let files = input_files(path.as_ref())?;
        let node = ObjectFileNode::<T>::new(self.inner.new_rdd_id(), files);
        Ok(Rdd::from_node(self.runner(), Arc::new(node)))
    }

    /// The partitions of all `rdds`, one after another.
    pub fn union<T: Data>(&self, rdds: &[Rdd<T>]) -> Rdd<T> {
        let parents: Vec<Arc<dyn Compute<T>>> = rdds.iter().map(Rdd::compute_node).collect();
        let node = UnionNode::new(self.inner.new_rdd_id(), parents);
        Rdd::from_node(self.runner(), Arc::new(node))
    }

    /// Ships `value` to each executor once, for all tasks to read: pass
    /// the handle as the env of a `*_with` operation.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let names = ctx.broadcast(vec!["zero".to_string(), "one".into(), "two".into()])?;
    /// let named = ctx
    ///     .parallelize(vec![2usize, 0], 2)?
    ///     .map_with(names, |names, i| names.value()[i].clone());
    /// assert_eq!(named.collect()?, vec!["two", "zero"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn broadcast<T: Data>(&self, value: T) -> Result<Broadcast<T>> {
        let (handle, bytes) = Broadcast::create(value)?;
        self.inner.register_broadcast(handle.id(), bytes);
        Ok(handle.with_cleanup(&self.runner()))
    }

    /// Sets the folder reliable checkpoints are written under (created if
    /// missing).
    pub fn set_checkpoint_dir(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| EmberError::io(dir, "create checkpoint folder", e))?;
        *self
            .inner
            .checkpoint_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(dir.to_path_buf());
        Ok(())
    }

    /// An accumulator starting at `initial`: tasks add to it (pass it as
    /// the env of a `*_with` operation), the driver reads the sum.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let sum = ctx.accumulator(0u64);
    /// ctx.range(1, 5, 1, 2)?
    ///     .foreach_with(sum.clone(), |sum, x| sum.add(x as u64))?;
    /// assert_eq!(sum.value(), 10);
    /// # Ok(())
    /// # }
    /// ```
    pub fn accumulator<T: AccumValue>(&self, initial: T) -> Accumulator<T> {
        Accumulator::new(initial)
    }

    /// Puts the jobs this thread starts from now on in group `id`, shown
    /// as `description` (Spark's `setJobGroup`): [`cancel_job_group`]
    /// cancels them together. Per thread, like Spark's local properties;
    /// async actions started on this thread inherit it.
    ///
    /// [`cancel_job_group`]: Context::cancel_job_group
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// ctx.set_job_group("nightly", "count the nightly records");
    /// ctx.range(0, 10, 1, 2)?.count()?;
    /// let report = ctx.job_reports().pop().unwrap();
    /// assert_eq!(report.description, "count the nightly records");
    /// assert_eq!(report.group.as_deref(), Some("nightly"));
    /// ctx.clear_job_group();
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_job_group(&self, id: &str, description: &str) {
        job_info::set_properties(job_info::JobProperties {
            group: Some(id.to_string()),
            description: Some(description.to_string()),
            ..job_info::properties()
        });
    }

    /// Takes this thread's next jobs out of their job group: they are
    /// named by their actions' call sites again.
    pub fn clear_job_group(&self) {
        job_info::set_properties(job_info::JobProperties {
            group: None,
            description: None,
            ..job_info::properties()
        });
    }

    /// Cancels the running jobs of group `id` (from any thread): each
    /// returns [`EmberError::Cancelled`] at once, and its tasks stop at
    /// their next record. Returns how many jobs were cancelled.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// let slow = ctx.range(0, 1_000_000, 1, 2)?.map(|x| {
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    ///     x
    /// });
    /// let worker = ctx.clone();
    /// let job = std::thread::spawn(move || {
    ///     worker.set_job_group("slow", "a job that takes too long");
    ///     slow.count()
    /// });
    /// while ctx.cancel_job_group("slow") == 0 {
    ///     std::thread::sleep(std::time::Duration::from_millis(10));
    /// }
    /// assert!(matches!(job.join().unwrap(), Err(EmberError::Cancelled(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn cancel_job_group(&self, id: &str) -> usize {
        self.inner.shared.cancel(
            |_, spec| spec.group.as_deref() == Some(id),
            &format!("its job group {id:?} was cancelled"),
        )
    }

    /// Cancels every running job (see [`cancel_job_group`]).
    ///
    /// [`cancel_job_group`]: Context::cancel_job_group
    pub fn cancel_all_jobs(&self) -> usize {
        self.inner.cancel_all("every job was cancelled")
    }

    /// What every job so far did (stages run and skipped, tasks).
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// # fn main() -> ember_driver::Result<()> {
    /// # let ctx = Context::new("local[2]")?;
    /// ctx.range(0, 100, 1, 4)?.count()?;
    /// let report = ctx.job_reports().pop().unwrap();
    /// assert_eq!(report.tasks_launched, 4);
    /// # Ok(())
    /// # }
    /// ```
    pub fn job_reports(&self) -> Vec<JobReport> {
        self.inner
            .shared
            .scheduler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reports()
            .to_vec()
    }

    /// The application id: the standalone master's, or `local-<ms>`.
    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// The application UI's address (`http://host:port`), if it runs.
    pub fn ui_url(&self) -> Option<String> {
        let (_, host) = crate::deploy::client::driver_hosts(&self.inner.conf);
        let url = self.inner.shared.observers.ui_url()?;
        Some(ember_core::net::advertised_url(&url, &host))
    }

    /// Live executor processes and their process ids (empty in
    /// `local[N]`).
    pub fn executor_pids(&self) -> Vec<(ember_core::ExecutorId, u32)> {
        self.inner
            .backend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .executor_pids()
    }

    /// Stops the executors and deletes the application's local files.
    /// Also happens when the last handle (context or RDD) is dropped.
    pub fn stop(&self) {
        self.inner.stop();
    }
}

/// The scheduler's event loop (Spark's DAGSchedulerEventProcessLoop): feeds
/// executor events to the scheduler one at a time, holding its lock only
/// while it reacts, and lets it check for lost executors now and then.
/// Ends when the context stops.
fn run_scheduler(shared: &Shared, events: Receiver<Event>) {
    const TICK: Duration = Duration::from_millis(100);
    while !shared.stopped.load(Ordering::SeqCst) {
        let event = events.recv_timeout(TICK);
        let mut sched = shared.scheduler.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Ok(event) => sched.handle(event),
            Err(RecvTimeoutError::Timeout) => sched.tick(),
            Err(RecvTimeoutError::Disconnected) => {
                sched.cancel_jobs(|_, _| true, "the executors' event channel closed");
                return;
            }
        }
    }
}

/// The cleaner thread (Spark's ContextCleaner): removes what dropped
/// handles queued, one item at a time, while the context lives. It holds
/// the scheduler's lock only briefly, as jobs do; a job about to start
/// takes over whatever is still queued. A dropped shuffle or RDD is no
/// running job's: a job holds its whole lineage until it ends.
fn run_cleaner(shared: &Shared, queue: Receiver<Cleanup>) {
    // Ends when the context, which holds the queue's sender, is dropped.
    for what in queue.iter() {
        shared.clean(what);
    }
}

impl Shared {
    /// Cancels the running jobs `which` selects; returns how many.
    fn cancel(&self, which: impl Fn(ember_core::JobId, &JobSpec) -> bool, why: &str) -> usize {
        self.scheduler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cancel_jobs(which, why)
    }

    /// Removes `what` everywhere: the scheduler's records and the
    /// executors' files, blocks and copies.
    fn clean(&self, what: Cleanup) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        tracing::debug!("cleaning up {what:?}");
        match what {
            Cleanup::Rdd(rdd) => self.unpersist(rdd),
            Cleanup::Shuffle(shuffle) => {
                let mut sched = self.scheduler.lock().unwrap_or_else(|p| p.into_inner());
                sched.remove_shuffle(shuffle);
                for ep in sched.dispatcher().endpoints() {
                    ep.remove_shuffle(shuffle);
                }
            }
            Cleanup::Broadcast(id) => {
                self.broadcasts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                ember_rdd::broadcast::forget(id);
                let mut sched = self.scheduler.lock().unwrap_or_else(|p| p.into_inner());
                for ep in sched.dispatcher().endpoints() {
                    ep.remove_broadcast(id);
                }
            }
        }
    }

    /// Forgets where `rdd`'s blocks are and has every executor drop them.
    fn unpersist(&self, rdd: RddId) {
        self.observers
            .emit(&crate::ui::status::EmberEvent::UnpersistRdd {
                rdd_id: rdd.0,
                time: crate::ui::status::now(),
            });
        let mut sched = self.scheduler.lock().unwrap_or_else(|p| p.into_inner());
        sched.forget_cached(rdd);
        for ep in sched.dispatcher().endpoints() {
            ep.remove_rdd(rdd);
        }
    }
}

impl ContextInner {
    /// Cancels every running job.
    pub(crate) fn cancel_all(&self, why: &str) -> usize {
        self.shared.cancel(|_, _| true, why)
    }

    pub(crate) fn stop(&self) {
        if self.shared.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.cancel_all("the context was stopped");
        self.shared.observers.end();
        self.backend
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop();
        let _ = std::fs::remove_dir_all(&self.app_dir);
    }
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl JobRunner for ContextInner {
    fn new_rdd_id(&self) -> RddId {
        RddId(self.next_rdd.fetch_add(1, Ordering::Relaxed))
    }

    fn new_shuffle_id(&self) -> ShuffleId {
        ShuffleId(self.next_shuffle.fetch_add(1, Ordering::Relaxed))
    }

    fn default_parallelism(&self) -> usize {
        self.default_parallelism
    }

    fn run_job(&self, root: Arc<dyn StageRoot>, partitions: Vec<usize>) -> Result<Vec<Vec<u8>>> {
        // What was dropped before this job is removed before it starts: the
        // cleaner thread may be waiting for the scheduler, which a loop of
        // jobs would otherwise hold almost all the time.
        if let Some((_, queue)) = &self.cleaner {
            while let Ok(what) = queue.try_recv() {
                self.shared.clean(what);
            }
        }
        let props = job_info::properties();
        let spec = JobSpec {
            description: props
                .description
                .clone()
                .or_else(|| job_info::call_site().map(|s| s.to_string()))
                .unwrap_or_else(|| "job".to_string()),
            group: props.group.clone(),
            cancel: props.cancel.clone(),
        };
        let (reply, outcome) = bounded(1);
        {
            let mut sched = self
                .shared
                .scheduler
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Checked under the lock `stop` cancels under: no job slips in
            // after it.
            if self.shared.stopped.load(Ordering::SeqCst) {
                return Err(EmberError::Other(format!(
                    "{}: the context was stopped",
                    spec.description
                )));
            }
            sched.submit_job(root, partitions, spec, reply);
        }
        let outcome = outcome.recv().unwrap_or_else(|_| {
            Err(EmberError::Other(
                "the scheduler ended before the job did".into(),
            ))
        });
        crate::interrupt::hold_if_interrupted();
        outcome
    }

    fn cancel_flagged(&self) {
        self.shared.cancel(
            |_, spec| {
                spec.cancel
                    .as_ref()
                    .is_some_and(|c| c.load(Ordering::SeqCst))
            },
            "its async action was cancelled",
        );
    }

    fn unpersist(&self, rdd: RddId) {
        self.shared.unpersist(rdd);
    }

    fn checkpoint_dir(&self) -> Option<PathBuf> {
        self.checkpoint_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn cleanup(&self, what: Cleanup) {
        if let Some((queue, _)) = &self.cleaner {
            // The cleaner thread is gone only once the context is.
            let _ = queue.send(what);
        }
    }

    fn register_broadcast(&self, id: BroadcastId, bytes: Vec<u8>) {
        self.shared
            .broadcasts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(bytes));
    }
}
