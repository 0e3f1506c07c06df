//! Starting executors for a master URL: task threads in this process for
//! `local[N]`, executor processes of this binary for `local-cluster`.

use crate::dispatch::{Event, ExecutorEndpoint};
use crate::master_url::MasterUrl;
use crossbeam::channel::Sender;
use ember_core::codec::{recv, send};
use ember_core::conf::usable_memory;
use ember_core::{BroadcastId, BuildId, EmberError, ExecutorId, RddId, Result, ShuffleId, TaskId};
use ember_executor::protocol::{env_vars, DriverMessage, ExecutorMessage};
use ember_executor::Executor;
// Standalone mode and authentication (the seam: `Cluster::standalone`).
use crate::deploy::client::{driver_hosts, AppClient};
use ember_core::auth::{Secret, SECRET_ENV};
use ember_core::EmberConf;
use ember_rdd::stage::StageBlob;
use ember_rdd::task::TaskDescription;
use ember_rdd::TaskEnv;
use ember_shuffle::ShuffleFiles;
use ember_storage::{BlockManager, MemoryBudget};
use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long executor processes may take to register.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Broadcast values the driver serves to executor processes.
pub type BroadcastStore = Arc<Mutex<HashMap<BroadcastId, Arc<Vec<u8>>>>>;

/// Executors started for a context, and what is needed to stop them.
pub struct Backend {
    /// The executors registered at start.
    pub endpoints: Vec<Arc<dyn ExecutorEndpoint>>,
    cluster: Option<Arc<Cluster>>,
}

impl Backend {
    /// Starts the executors `url` asks for, reporting to `events`.
    pub fn start(
        url: &MasterUrl,
        app_dir: &Path,
        events: Sender<Event>,
        broadcasts: BroadcastStore,
        cluster: ClusterSettings,
    ) -> Result<Backend> {
        match url {
            MasterUrl::Local { threads } => {
                let env = Arc::new(TaskEnv {
                    executor_id: ExecutorId::driver(),
                    blocks: Arc::new(BlockManager::new(
                        app_dir.join("driver").join("blocks"),
                        Arc::new(MemoryBudget::new(
                            usable_memory(cluster.memory),
                            cluster.storage_fraction,
                        )),
                    )),
                    shuffle_files: ShuffleFiles::new(app_dir.join("driver")),
                    block_address: None,
                    fetcher: None,
                });
                let sink = Arc::new(move |task, result| {
                    let _ = events.send(Event::TaskEnded {
                        task,
                        result: Box::new(result),
                    });
                });
                let executor = Executor::start(env, *threads, sink);
                let endpoint: Arc<dyn ExecutorEndpoint> = Arc::new(LocalEndpoint {
                    executor,
                    cores: *threads,
                });
                Ok(Backend {
                    endpoints: vec![endpoint],
                    cluster: None,
                })
            }
            MasterUrl::LocalCluster { .. } => {
                start_local_cluster(cluster, app_dir, events, broadcasts)
            }
            MasterUrl::Standalone { address } => {
                start_cluster(cluster, app_dir, events, broadcasts, Some(address))
            }
        }
    }

    /// Stops every executor and waits for executor processes to exit.
    pub fn stop(&mut self) {
        let Some(cluster) = self.cluster.take() else {
            return;
        };
        // The master must not relaunch executors that are being stopped.
        if let Some(client) = cluster.client.get() {
            client.unregister();
        }
        cluster
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for (_, conn) in cluster
            .last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        // Wake the acceptor so it sees `stopping`.
        let _ = TcpStream::connect(&cluster.address);
        let mut children =
            std::mem::take(&mut *cluster.children.lock().unwrap_or_else(|p| p.into_inner()));
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in children.values_mut() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Task slots of the executors registered at start.
    pub fn total_cores(&self) -> usize {
        self.endpoints.iter().map(|e| e.cores()).sum()
    }

    /// The application id a standalone master gave this application.
    pub fn app_id(&self) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        cluster.client.get().map(|c| c.app_id.clone())
    }

    /// Process ids of live executor processes by executor id (for
    /// fault-injection tests).
    pub fn executor_pids(&self) -> Vec<(ExecutorId, u32)> {
        match &self.cluster {
            None => Vec::new(),
            Some(c) => {
                let mut v: Vec<(ExecutorId, u32)> = c
                    .children
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .map(|(id, ch)| (id.clone(), ch.id()))
                    .collect();
                v.sort();
                v
            }
        }
    }
}

/// The in-process executor of `local[N]`.
struct LocalEndpoint {
    executor: Arc<Executor>,
    cores: usize,
}

impl ExecutorEndpoint for LocalEndpoint {
    fn id(&self) -> ExecutorId {
        ExecutorId::driver()
    }
    fn cores(&self) -> usize {
        self.cores
    }
    fn send_stage(&self, blob: &StageBlob) -> Result<()> {
        self.executor.add_stage(blob);
        Ok(())
    }
    fn launch(&self, desc: TaskDescription) -> Result<()> {
        self.executor.launch(desc);
        Ok(())
    }
    fn kill_task(&self, task: TaskId) {
        self.executor.kill_task(task);
    }
    fn forget_stage(&self, blob: u64) {
        self.executor.forget_stage(blob);
    }
    fn remove_rdd(&self, rdd: RddId) {
        self.executor.env().blocks.remove_rdd(rdd);
    }
    fn remove_shuffle(&self, shuffle: ShuffleId) {
        self.executor.env().shuffle_files.remove_shuffle(shuffle);
    }
    fn remove_broadcast(&self, _: BroadcastId) {
        // Threads in the driver share its copy, which the cleaner drops.
    }
    fn shutdown(&self) {}
}

/// An executor process, reached over its connection.
struct RemoteEndpoint {
    id: ExecutorId,
    cores: usize,
    writer: Arc<Mutex<TcpStream>>,
    block_address: String,
}

impl RemoteEndpoint {
    fn send(&self, msg: &DriverMessage) -> Result<()> {
        send(
            &mut *self.writer.lock().unwrap_or_else(|p| p.into_inner()),
            msg,
        )
    }
}

impl ExecutorEndpoint for RemoteEndpoint {
    fn id(&self) -> ExecutorId {
        self.id.clone()
    }
    fn cores(&self) -> usize {
        self.cores
    }
    fn send_stage(&self, blob: &StageBlob) -> Result<()> {
        self.send(&DriverMessage::Stage(blob.clone()))
    }
    fn launch(&self, desc: TaskDescription) -> Result<()> {
        self.send(&DriverMessage::Launch(desc))
    }
    fn kill_task(&self, task: TaskId) {
        let _ = self.send(&DriverMessage::KillTask(task));
    }
    fn forget_stage(&self, blob: u64) {
        let _ = self.send(&DriverMessage::ForgetStage(blob));
    }
    fn remove_rdd(&self, rdd: RddId) {
        let _ = self.send(&DriverMessage::RemoveRdd(rdd));
    }
    fn remove_shuffle(&self, shuffle: ShuffleId) {
        let _ = self.send(&DriverMessage::RemoveShuffle(shuffle));
    }
    fn remove_broadcast(&self, id: BroadcastId) {
        let _ = self.send(&DriverMessage::RemoveBroadcast(id));
    }
    fn shutdown(&self) {
        let _ = self.send(&DriverMessage::Shutdown);
    }
    fn address(&self) -> Option<String> {
        Some(self.block_address.clone())
    }
}

/// Settings of a local cluster's executor processes.
pub struct ClusterSettings {
    /// Executor processes.
    pub executors: usize,
    /// Task threads each.
    pub cores: usize,
    /// Executable to start (the driver's own unless a test says otherwise).
    pub binary: PathBuf,
    /// Milliseconds between executor heartbeats.
    pub heartbeat: Duration,
    /// Silence after which an executor counts as lost.
    pub timeout: Duration,
    /// How many lost executors are replaced over the application's life.
    pub relaunches: usize,
    /// Shared secret every executor connection must prove (`None`: no
    /// authentication).
    pub secret: Option<Secret>,
    /// The application's configuration (standalone mode reads its
    /// resource requests from it).
    pub conf: EmberConf,
    /// Memory of each executor, bytes.
    pub memory: u64,
    /// Share of usable memory protected for caching.
    pub storage_fraction: f64,
}

/// What the acceptor, readers and monitor threads of a local cluster share.
struct Cluster {
    settings: ClusterSettings,
    address: String,
    app_dir: PathBuf,
    events: Sender<Event>,
    broadcasts: BroadcastStore,
    children: Mutex<HashMap<ExecutorId, Child>>,
    last_seen: Mutex<HashMap<ExecutorId, (Instant, TcpStream)>>,
    next_id: std::sync::atomic::AtomicUsize,
    relaunches_left: std::sync::atomic::AtomicUsize,
    stopping: std::sync::atomic::AtomicBool,
    /// Standalone mode: a master launches the executors, not this driver.
    standalone: bool,
    /// The registration with the standalone master.
    client: OnceLock<Arc<AppClient>>,
}

impl Cluster {
    fn spawn_executor(&self) -> Result<()> {
        if self.standalone {
            return Ok(());
        }
        let i = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = ExecutorId(i.to_string());
        let child = Command::new(&self.settings.binary)
            .env(env_vars::DRIVER, &self.address)
            .env(env_vars::ID, &id.0)
            .env(env_vars::CORES, self.settings.cores.to_string())
            .env(env_vars::DIR, self.app_dir.join(format!("executor-{i}")))
            .env(
                env_vars::HEARTBEAT_MS,
                self.settings.heartbeat.as_millis().to_string(),
            )
            .env(
                env_vars::TIMEOUT_MS,
                self.settings.timeout.as_millis().to_string(),
            )
            .env(env_vars::MEMORY, self.settings.memory.to_string())
            .env(
                env_vars::STORAGE_FRACTION,
                self.settings.storage_fraction.to_string(),
            )
            .stdin(Stdio::null())
            .envs(
                self.settings
                    .secret
                    .as_ref()
                    .map(|s| (SECRET_ENV, s.to_hex())),
            )
            .spawn()
            .map_err(|e| EmberError::io(&self.settings.binary, "start executor", e))?;
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, child);
        Ok(())
    }

    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Cuts an executor's connection (its reader then reports it lost):
    /// the standalone master says it is gone.
    fn cut(&self, id: &ExecutorId) {
        if let Some((_, conn)) = self
            .last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Called when an executor's connection ends: reap it and, budget
    /// permitting, start a replacement.
    fn executor_ended(&self, id: &ExecutorId, reason: String) {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(mut child) = self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.stopping() {
            return;
        }
        let _ = self.events.send(Event::ExecutorLost {
            executor: id.clone(),
            reason,
        });
        if self.standalone {
            return; // the master relaunches
        }
        let budget = self.relaunches_left.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        if budget.is_ok() {
            if let Err(e) = self.spawn_executor() {
                tracing::warn!(%e, "could not replace a lost executor");
            }
        }
    }
}

/// Starts `settings.executors` executor processes of this binary and waits
/// until they have registered; later registrations (replacements) arrive
/// as [`Event::ExecutorAdded`].
pub fn start_local_cluster(
    settings: ClusterSettings,
    app_dir: &Path,
    events: Sender<Event>,
    broadcasts: BroadcastStore,
) -> Result<Backend> {
    start_cluster(settings, app_dir, events, broadcasts, None)
}

/// Starts executors that register with this driver: processes of this
/// binary (`master` is `None`), or executors a standalone master at
/// `master` (`host:port`) places on its workers. Waits for the first ones;
/// later registrations arrive as [`Event::ExecutorAdded`].
pub fn start_cluster(
    settings: ClusterSettings,
    app_dir: &Path,
    events: Sender<Event>,
    broadcasts: BroadcastStore,
    master: Option<&str>,
) -> Result<Backend> {
    let (bind, advertised) = driver_hosts(&settings.conf);
    let listener = TcpListener::bind((bind.as_str(), 0))
        .map_err(|e| EmberError::Network(format!("bind driver port on {bind}: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| EmberError::Network(e.to_string()))?
        .port();
    let address = ember_core::net::join(&advertised, port);
    let n = settings.executors;
    let cluster = Arc::new(Cluster {
        relaunches_left: std::sync::atomic::AtomicUsize::new(settings.relaunches),
        settings,
        address: address.clone(),
        app_dir: app_dir.to_path_buf(),
        events,
        broadcasts,
        children: Mutex::new(HashMap::new()),
        last_seen: Mutex::new(HashMap::new()),
        next_id: std::sync::atomic::AtomicUsize::new(0),
        stopping: std::sync::atomic::AtomicBool::new(false),
        standalone: master.is_some(),
        client: OnceLock::new(),
    });
    let mut backend = Backend {
        endpoints: Vec::new(),
        cluster: Some(cluster.clone()),
    };
    let n = match master {
        None => n,
        Some(master) => {
            let weak = Arc::downgrade(&cluster);
            let client = AppClient::register(
                master,
                &cluster.settings.conf,
                cluster.settings.secret.clone(),
                &cluster.settings.binary,
                &address,
                (cluster.settings.heartbeat, cluster.settings.timeout),
                Arc::new(move |id, _why| {
                    if let Some(c) = weak.upgrade() {
                        c.cut(&id);
                    }
                }),
            )?;
            let n = client.executors;
            let _ = cluster.client.set(client);
            n
        }
    };
    for _ in 0..n {
        if let Err(e) = cluster.spawn_executor() {
            backend.stop();
            return Err(e);
        }
    }
    // The first registrations are awaited here; the acceptor thread takes
    // every later one.
    listener
        .set_nonblocking(true)
        .map_err(|e| EmberError::Network(e.to_string()))?;
    let deadline = Instant::now() + REGISTRATION_TIMEOUT;
    while backend.endpoints.len() < n {
        match listener.accept() {
            Ok((conn, _)) => match register(conn, &cluster) {
                Ok(ep) => backend.endpoints.push(ep),
                Err(e @ EmberError::BuildMismatch { .. }) => {
                    backend.stop();
                    return Err(e);
                }
                // A stray or unauthenticated connection is not an executor.
                Err(e) => tracing::warn!(%e, "executor registration failed"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let exited = cluster
                    .children
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values_mut()
                    .any(|c| matches!(c.try_wait(), Ok(Some(_))));
                if let Some(why) = cluster.client.get().and_then(|c| c.failure()) {
                    backend.stop();
                    return Err(EmberError::Network(format!(
                        "standalone master ember://{}: {why}",
                        master.unwrap_or_default()
                    )));
                }
                if exited || Instant::now() > deadline {
                    backend.stop();
                    let why = if exited {
                        "exited before registering"
                    } else {
                        "timed out"
                    };
                    return Err(EmberError::Network(format!(
                        "only {} of {n} executor processes registered with the driver at {address}: an executor process of {} {why}",
                        backend.endpoints.len(),
                        cluster.settings.binary.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => {
                backend.stop();
                return Err(EmberError::Network(format!("accept executor: {e}")));
            }
        }
    }
    listener
        .set_nonblocking(false)
        .map_err(|e| EmberError::Network(e.to_string()))?;
    {
        let cluster = cluster.clone();
        std::thread::Builder::new()
            .name("ember-driver-acceptor".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if cluster.stopping() {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    // Each registration on its own thread: a slow or
                    // hostile peer must not hold up the others.
                    let cluster = cluster.clone();
                    let _ = std::thread::Builder::new()
                        .name("ember-driver-register".into())
                        .spawn(move || match register(conn, &cluster) {
                            Ok(ep) => {
                                let _ = cluster.events.send(Event::ExecutorAdded(ep));
                            }
                            Err(e) => tracing::warn!(%e, "executor registration failed"),
                        });
                }
            })
            .map_err(|e| EmberError::Network(format!("start acceptor: {e}")))?;
    }
    {
        let cluster = cluster.clone();
        std::thread::Builder::new()
            .name("ember-driver-heartbeats".into())
            .spawn(move || monitor_heartbeats(&cluster))
            .map_err(|e| EmberError::Network(format!("start heartbeat monitor: {e}")))?;
    }
    Ok(backend)
}

/// Cuts the connection of executors silent for longer than the timeout;
/// their reader threads then report them lost.
fn monitor_heartbeats(cluster: &Cluster) {
    let period =
        (cluster.settings.timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
    while !cluster.stopping() {
        std::thread::sleep(period);
        let seen = cluster.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        for (id, (at, conn)) in seen.iter() {
            if at.elapsed() > cluster.settings.timeout {
                tracing::warn!(%id, "no heartbeat for {:?}", at.elapsed());
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Completes one executor's registration and starts reading its messages.
fn register(conn: TcpStream, cluster: &Arc<Cluster>) -> Result<Arc<dyn ExecutorEndpoint>> {
    let mut reader = conn;
    reader
        .set_nonblocking(false)
        .map_err(|e| EmberError::Network(e.to_string()))?;
    ember_core::auth::accept_tcp(&mut reader, cluster.settings.secret.as_ref())?;
    // A cut link must fail sends to the executor, not block them.
    ember_core::net::fail_when_silent(&reader, cluster.settings.timeout);
    let _ = reader.set_nodelay(true);
    let _ = reader.set_read_timeout(Some(REGISTRATION_TIMEOUT));
    let writer = Arc::new(Mutex::new(
        reader
            .try_clone()
            .map_err(|e| EmberError::Network(e.to_string()))?,
    ));
    let (id, build, cores, block_address) =
        match recv::<ExecutorMessage>(&mut reader, "executor registration")? {
            Some(ExecutorMessage::Register {
                id,
                build,
                cores,
                block_address,
                ..
            }) => (id, build, cores, block_address),
            other => {
                return Err(EmberError::Network(format!(
                    "expected a registration, got {other:?}"
                )))
            }
        };
    let ours = BuildId::current();
    if &build != ours {
        let err = EmberError::BuildMismatch {
            executor: id,
            executor_build: build.0,
            driver_build: ours.0.clone(),
        };
        let _ = send(
            &mut *writer.lock().unwrap_or_else(|p| p.into_inner()),
            &DriverMessage::Refused(err.clone()),
        );
        return Err(err);
    }
    send(
        &mut *writer.lock().unwrap_or_else(|p| p.into_inner()),
        &DriverMessage::Registered,
    )?;
    let _ = reader.set_read_timeout(None);
    let watch = reader
        .try_clone()
        .map_err(|e| EmberError::Network(e.to_string()))?;
    cluster
        .last_seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), (Instant::now(), watch));
    let endpoint = Arc::new(RemoteEndpoint {
        id: id.clone(),
        cores,
        writer: writer.clone(),
        block_address,
    });
    let cluster = cluster.clone();
    std::thread::Builder::new()
        .name(format!("ember-driver-{id}"))
        .spawn(move || {
            let reason = read_executor(&mut reader, &id, &writer, &cluster);
            cluster.executor_ended(&id, reason);
        })
        .map_err(|e| EmberError::Network(format!("start executor reader: {e}")))?;
    Ok(endpoint)
}

/// Handles one executor's messages until its connection ends; returns why.
fn read_executor(
    reader: &mut TcpStream,
    id: &ExecutorId,
    writer: &Mutex<TcpStream>,
    cluster: &Cluster,
) -> String {
    loop {
        let msg = match recv::<ExecutorMessage>(reader, "executor message") {
            Ok(Some(m)) => m,
            Ok(None) => return "connection closed".to_string(),
            Err(e) => return e.to_string(),
        };
        if let Some(seen) = cluster
            .last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            seen.0 = Instant::now();
        }
        match msg {
            ExecutorMessage::Status(task, result) => {
                let _ = cluster.events.send(Event::TaskEnded {
                    task,
                    result: Box::new(result),
                });
            }
            ExecutorMessage::GetBroadcast(bid) => {
                let bytes = cluster
                    .broadcasts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&bid)
                    .cloned();
                let reply = bytes
                    .map(|b| serde_bytes::ByteBuf::from(b.as_ref().clone()))
                    .ok_or_else(|| EmberError::Other(format!("{bid} is not known to the driver")));
                let _ = send(
                    &mut *writer.lock().unwrap_or_else(|p| p.into_inner()),
                    &DriverMessage::Broadcast(bid, reply),
                );
            }
            ExecutorMessage::Heartbeat => {}
            other => return format!("unexpected message {other:?}"),
        }
    }
}
