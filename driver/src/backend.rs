//! Starting executors for a master URL: task threads in this process for
//! `local[N]`, executor processes of this binary for `local-cluster`.

use crate::dispatch::{Event, ExecutorEndpoint};
use crate::master_url::MasterUrl;
use crossbeam::channel::Sender;
use ember_core::codec::{recv, send};
use ember_core::{BroadcastId, BuildId, EmberError, ExecutorId, RddId, Result, ShuffleId};
use ember_executor::protocol::{env_vars, DriverMessage, ExecutorMessage};
use ember_executor::Executor;
use ember_rdd::stage::StageBlob;
use ember_rdd::task::TaskDescription;
use ember_rdd::TaskEnv;
use ember_shuffle::ShuffleFiles;
use ember_storage::BlockManager;
use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long executor processes may take to register.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Broadcast values the driver serves to executor processes.
pub type BroadcastStore = Arc<Mutex<HashMap<BroadcastId, Arc<Vec<u8>>>>>;

/// Executors started for a context, and what is needed to stop them.
pub struct Backend {
    /// Their endpoints.
    pub endpoints: Vec<Arc<dyn ExecutorEndpoint>>,
    children: Vec<Child>,
}

impl Backend {
    /// Starts the executors `url` asks for, reporting to `events`.
    pub fn start(
        url: &MasterUrl,
        app_dir: &Path,
        events: Sender<Event>,
        broadcasts: BroadcastStore,
        executor_binary: Option<PathBuf>,
    ) -> Result<Backend> {
        match url {
            MasterUrl::Local { threads } => {
                let env = Arc::new(TaskEnv {
                    executor_id: ExecutorId::driver(),
                    blocks: BlockManager::new(),
                    shuffle_files: ShuffleFiles::new(app_dir.join("driver")),
                    block_address: None,
                    fetcher: None,
                });
                let sink = Arc::new(move |task, result| {
                    let _ = events.send(Event::TaskEnded { task, result });
                });
                let executor = Executor::start(env, *threads, sink);
                let endpoint: Arc<dyn ExecutorEndpoint> = Arc::new(LocalEndpoint { executor, cores: *threads });
                Ok(Backend { endpoints: vec![endpoint], children: Vec::new() })
            }
            MasterUrl::LocalCluster { executors, cores, .. } => {
                start_local_cluster(*executors, *cores, app_dir, events, broadcasts, executor_binary)
            }
        }
    }

    /// Stops every executor and waits for executor processes to exit.
    pub fn stop(&mut self) {
        for e in &self.endpoints {
            e.shutdown();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }

    /// Process ids of executor processes (for fault-injection tests).
    pub fn executor_pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
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
    fn forget_stage(&self, blob: u64) {
        self.executor.forget_stage(blob);
    }
    fn remove_rdd(&self, rdd: RddId) {
        self.executor.env().blocks.remove_rdd(rdd);
    }
    fn remove_shuffle(&self, shuffle: ShuffleId) {
        self.executor.env().shuffle_files.remove_shuffle(shuffle);
    }
    fn shutdown(&self) {}
}

/// An executor process, reached over its connection.
struct RemoteEndpoint {
    id: ExecutorId,
    cores: usize,
    writer: Arc<Mutex<TcpStream>>,
}

impl RemoteEndpoint {
    fn send(&self, msg: &DriverMessage) -> Result<()> {
        send(&mut *self.writer.lock().unwrap_or_else(|p| p.into_inner()), msg)
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
    fn forget_stage(&self, blob: u64) {
        let _ = self.send(&DriverMessage::ForgetStage(blob));
    }
    fn remove_rdd(&self, rdd: RddId) {
        let _ = self.send(&DriverMessage::RemoveRdd(rdd));
    }
    fn remove_shuffle(&self, shuffle: ShuffleId) {
        let _ = self.send(&DriverMessage::RemoveShuffle(shuffle));
    }
    fn shutdown(&self) {
        let _ = self.send(&DriverMessage::Shutdown);
    }
}

fn start_local_cluster(
    n: usize,
    cores: usize,
    app_dir: &Path,
    events: Sender<Event>,
    broadcasts: BroadcastStore,
    executor_binary: Option<PathBuf>,
) -> Result<Backend> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| EmberError::Network(format!("bind driver port: {e}")))?;
    let addr = listener.local_addr().map_err(|e| EmberError::Network(e.to_string()))?.to_string();
    let exe = match executor_binary {
        Some(p) => p,
        None => std::env::current_exe().map_err(|e| EmberError::io("current executable", "locate", e))?,
    };
    let mut children = Vec::new();
    for i in 0..n {
        let child = Command::new(&exe)
            .env(env_vars::DRIVER, &addr)
            .env(env_vars::ID, i.to_string())
            .env(env_vars::CORES, cores.to_string())
            .env(env_vars::DIR, app_dir.join(format!("executor-{i}")))
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| EmberError::io(&exe, "start executor", e))?;
        children.push(child);
    }
    let mut backend = Backend { endpoints: Vec::new(), children };
    listener.set_nonblocking(true).map_err(|e| EmberError::Network(e.to_string()))?;
    let deadline = Instant::now() + REGISTRATION_TIMEOUT;
    while backend.endpoints.len() < n {
        match listener.accept() {
            Ok((conn, _)) => match register(conn, events.clone(), broadcasts.clone()) {
                Ok(ep) => backend.endpoints.push(ep),
                Err(e) => {
                    backend.stop();
                    return Err(e);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let exited = backend.children.iter_mut().any(|c| matches!(c.try_wait(), Ok(Some(_))));
                if exited || Instant::now() > deadline {
                    backend.stop();
                    return Err(EmberError::Network(format!(
                        "only {} of {n} executor processes registered with the driver at {addr}",
                        backend.endpoints.len()
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
    Ok(backend)
}

/// Completes one executor's registration and starts reading its messages.
fn register(conn: TcpStream, events: Sender<Event>, broadcasts: BroadcastStore) -> Result<Arc<dyn ExecutorEndpoint>> {
    let mut reader = conn;
    reader.set_nonblocking(false).map_err(|e| EmberError::Network(e.to_string()))?;
    let _ = reader.set_nodelay(true);
    let _ = reader.set_read_timeout(Some(REGISTRATION_TIMEOUT));
    let writer = Arc::new(Mutex::new(reader.try_clone().map_err(|e| EmberError::Network(e.to_string()))?));
    let (id, build, cores) = match recv::<ExecutorMessage>(&mut reader, "executor registration")? {
        Some(ExecutorMessage::Register { id, build, cores, .. }) => (id, build, cores),
        other => return Err(EmberError::Network(format!("expected a registration, got {other:?}"))),
    };
    let ours = BuildId::current();
    if &build != ours {
        let err = EmberError::BuildMismatch { executor: id, executor_build: build.0, driver_build: ours.0.clone() };
        let _ = send(&mut *writer.lock().unwrap_or_else(|p| p.into_inner()), &DriverMessage::Refused(err.clone()));
        return Err(err);
    }
    send(&mut *writer.lock().unwrap_or_else(|p| p.into_inner()), &DriverMessage::Registered)?;
    let _ = reader.set_read_timeout(None);
    let endpoint = Arc::new(RemoteEndpoint { id: id.clone(), cores, writer: writer.clone() });
    std::thread::Builder::new()
        .name(format!("ember-driver-{id}"))
        .spawn(move || {
            let reason = loop {
                match recv::<ExecutorMessage>(&mut reader, "executor message") {
                    Ok(Some(ExecutorMessage::Status(task, result))) => {
                        let _ = events.send(Event::TaskEnded { task, result });
                    }
                    Ok(Some(ExecutorMessage::GetBroadcast(bid))) => {
                        let bytes = broadcasts.lock().unwrap_or_else(|p| p.into_inner()).get(&bid).cloned();
                        let reply = bytes
                            .map(|b| serde_bytes::ByteBuf::from(b.as_ref().clone()))
                            .ok_or_else(|| EmberError::Other(format!("{bid} is not known to the driver")));
                        let _ = send(&mut *writer.lock().unwrap_or_else(|p| p.into_inner()), &DriverMessage::Broadcast(bid, reply));
                    }
                    Ok(Some(other)) => break format!("unexpected message {other:?}"),
                    Ok(None) => break "connection closed".to_string(),
                    Err(e) => break e.to_string(),
                }
            };
            let _ = events.send(Event::ExecutorLost { executor: id, reason });
        })
        .map_err(|e| EmberError::Network(format!("start executor reader: {e}")))?;
    Ok(endpoint)
}
