//! The standalone master (`ember master`): registers workers, places
//! applications' executors on them by free cores and memory, relaunches
//! executors that die while their application runs, notices lost workers
//! and tells the drivers concerned, and serves a web UI with the workers
//! and applications.
//!
//! All state sits behind one lock; each connection's reader thread and the
//! heartbeat monitor take it for one short transition at a time, and
//! messages out are sent on the peers' own connections.

use super::conn::{accept_loop, Conn};
use super::messages::{AppDescription, FromMaster, ToMaster};
use crate::ui::html::now_ms;
use crate::ui::http::HttpServer;
use ember_core::auth::Secret;
use ember_core::codec::{recv_limited, MAX_CONTROL_FRAME_BYTES};
use ember_core::{EmberConf, EmberError, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Silence after which a worker is lost (`ember.worker.timeout`, default 60s).
pub const WORKER_TIMEOUT_KEY: &str = "ember.worker.timeout";
/// Executor failures of one application after which the master stops
/// relaunching while the application has no executor left
/// (`ember.deploy.maxExecutorRetries`, default 10, as in Spark).
pub const MAX_EXECUTOR_RETRIES_KEY: &str = "ember.deploy.maxExecutorRetries";

/// How to run a master.
#[derive(Clone, Debug)]
pub struct MasterOptions {
    /// Host to bind (127.0.0.1 unless told otherwise; a wildcard binds
    /// every interface and advertises this machine's first non-loopback
    /// address).
    pub host: String,
    /// Port for workers and drivers (7077; 0 picks one).
    pub port: u16,
    /// Web UI port (8080; 0 picks one; `None`: no UI).
    pub webui_port: Option<u16>,
    /// Configuration: authentication, timeouts.
    pub conf: EmberConf,
}

/// A worker as the master sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum WorkerState {
    /// Registered and heard from.
    Alive,
    /// Lost (connection closed or heartbeats stopped).
    Dead,
}

/// An application as the master sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AppState {
    /// Registered, no executor yet.
    Waiting,
    /// Has executors.
    Running,
    /// The driver unregistered or disconnected.
    Finished,
}

struct WorkerEntry {
    id: String,
    host: String,
    cores: usize,
    memory_mib: u64,
    cores_used: usize,
    memory_used: u64,
    webui: String,
    state: WorkerState,
    last_heartbeat: Instant,
    registered_ms: u64,
    conn: Arc<Conn>,
    executors: BTreeSet<(String, String)>,
}

struct ExecEntry {
    worker: String,
    host: String,
    cores: usize,
    memory_mib: u64,
    started_ms: u64,
}

struct AppEntry {
    id: String,
    desc: AppDescription,
    state: AppState,
    submitted_ms: u64,
    ended_ms: Option<u64>,
    conn: Option<Arc<Conn>>,
    executors: BTreeMap<String, ExecEntry>,
    removed: Vec<(String, String, String)>,
    next_executor: usize,
    failures: usize,
}

impl AppEntry {
    fn cores_granted(&self) -> usize {
        self.executors.values().map(|e| e.cores).sum()
    }
    fn active(&self) -> bool {
        self.state != AppState::Finished
    }
}

#[derive(Default)]
struct State {
    workers: BTreeMap<String, WorkerEntry>,
    apps: BTreeMap<String, AppEntry>,
    next_app: u64,
}

struct Shared {
    state: Mutex<State>,
    url: String,
    webui: Mutex<String>,
    started_ms: u64,
    worker_timeout: Duration,
    max_retries: usize,
    stopping: Arc<AtomicBool>,
}

/// A running master; stops accepting when dropped.
pub struct Master {
    shared: Arc<Shared>,
    ui: Option<HttpServer>,
}

impl Master {
    /// Binds, starts the acceptor, heartbeat monitor and web UI.
    pub fn start(opts: MasterOptions) -> Result<Master> {
        let secret = Secret::from_conf(&opts.conf)?;
        let listener = TcpListener::bind((opts.host.as_str(), opts.port)).map_err(|e| {
            EmberError::Network(format!("bind master on {}:{}: {e}", opts.host, opts.port))
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| EmberError::Network(e.to_string()))?
            .port();
        let advertised = ember_core::net::advertised_host(&opts.host, None)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            url: format!("ember://{}", ember_core::net::join(&advertised, port)),
            webui: Mutex::new(String::new()),
            started_ms: now_ms(),
            worker_timeout: opts
                .conf
                .get_duration(WORKER_TIMEOUT_KEY, Duration::from_secs(60))?,
            max_retries: opts.conf.get_usize(MAX_EXECUTOR_RETRIES_KEY, 10)?,
            stopping: Arc::new(AtomicBool::new(false)),
        });
        let ui = match opts.webui_port {
            None => None,
            Some(port) => {
                let s = shared.clone();
                let server = HttpServer::start(
                    &opts.host,
                    port,
                    false,
                    Arc::new(move |req| super::master_ui::handle(&s.snapshot(), req)),
                )?;
                *shared.webui.lock().unwrap_or_else(|p| p.into_inner()) =
                    ember_core::net::advertised_url(&server.url(), &advertised);
                Some(server)
            }
        };
        let s = shared.clone();
        accept_loop(
            "ember-master",
            listener,
            secret,
            shared.stopping.clone(),
            Arc::new(move |conn| s.serve(conn)),
        )?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ember-master-monitor".into())
            .spawn(move || s.monitor())
            .map_err(|e| EmberError::Network(format!("start monitor: {e}")))?;
        tracing::info!(url = %shared.url, "master started");
        Ok(Master { shared, ui })
    }

    /// `ember://host:port`.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The web UI's `http://host:port`, if any.
    pub fn webui_url(&self) -> Option<String> {
        self.ui.as_ref().map(|_| {
            self.shared
                .webui
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }

    /// What the UI shows.
    pub fn snapshot(&self) -> MasterSnapshot {
        self.shared.snapshot()
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One authenticated connection: a worker or a driver, by its first
    /// message.
    fn serve(&self, mut stream: TcpStream) {
        let Ok(conn) = Conn::new(&stream) else { return };
        let first = recv_limited::<ToMaster>(&mut stream, "first message", MAX_CONTROL_FRAME_BYTES);
        match first {
            Ok(Some(ToMaster::RegisterWorker {
                id,
                host,
                cores,
                memory_mib,
                webui,
            })) => {
                // A worker whose link is cut stops acknowledging; its
                // connection then fails instead of waiting for the kernel.
                ember_core::net::fail_when_silent(&stream, self.worker_timeout);
                if let Err(why) = self.add_worker(&id, host, cores, memory_mib, webui, &conn) {
                    let _ = conn.send(&FromMaster::Refused(why));
                    return;
                }
                let reason = self.read_worker(&mut stream, &id);
                self.worker_lost(&id, &conn, &reason);
            }
            Ok(Some(ToMaster::RegisterApplication(desc))) => {
                let Some(app) = self.add_app(desc, &conn) else {
                    return;
                };
                let reason = self.read_app(&mut stream);
                tracing::info!(%app, %reason, "application ended");
                self.finish_app(&app);
            }
            Ok(Some(other)) => {
                let _ = conn.send(&FromMaster::Refused(format!(
                    "expected a registration, got {}",
                    variant(&other)
                )));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(peer = %conn.peer, %e, "bad first message"),
        }
    }

    fn add_worker(
        &self,
        id: &str,
        host: String,
        cores: usize,
        memory_mib: u64,
        webui: String,
        conn: &Arc<Conn>,
    ) -> std::result::Result<(), String> {
        if cores == 0 {
            return Err("a worker must offer at least one core".into());
        }
        let mut st = self.lock();
        if let Some(old) = st.workers.get(id).filter(|w| w.state == WorkerState::Alive) {
            // A worker whose link came back registers again before its old
            // connection timed out here: the new registration replaces the
            // old one (whose executors are gone), so no core counts twice.
            if old.host != host {
                return Err(format!(
                    "a worker with id {id} is already registered from {}",
                    old.host
                ));
            }
            let old_conn = old.conn.clone();
            drop(st);
            self.worker_lost(id, &old_conn, "registered again");
            st = self.lock();
        }
        st.workers.insert(
            id.to_string(),
            WorkerEntry {
                id: id.to_string(),
                host: host.clone(),
                cores,
                memory_mib,
                cores_used: 0,
                memory_used: 0,
                webui,
                state: WorkerState::Alive,
                last_heartbeat: Instant::now(),
                registered_ms: now_ms(),
                conn: conn.clone(),
                executors: BTreeSet::new(),
            },
        );
        let webui = self.webui.lock().unwrap_or_else(|p| p.into_inner()).clone();
        conn.send(&FromMaster::RegisteredWorker {
            master_webui: webui,
        })
        .map_err(|e| e.to_string())?;
        tracing::info!(worker = id, %host, cores, memory_mib, "worker registered");
        self.schedule(&mut st);
        Ok(())
    }

    fn read_worker(&self, stream: &mut TcpStream, id: &str) -> String {
        loop {
            match recv_limited::<ToMaster>(stream, "worker message", MAX_CONTROL_FRAME_BYTES) {
                Ok(Some(msg)) => {
                    let mut st = self.lock();
                    if let Some(w) = st.workers.get_mut(id) {
                        w.last_heartbeat = Instant::now();
                    }
                    match msg {
                        ToMaster::WorkerHeartbeat => {}
                        ToMaster::ExecutorExited {
                            app,
                            executor,
                            message,
                        } => self.executor_exited(&mut st, &app, &executor, &message),
                        other => return format!("unexpected {} from a worker", variant(&other)),
                    }
                }
                Ok(None) => return "connection closed".into(),
                Err(e) => return e.to_string(),
            }
        }
    }

    fn read_app(&self, stream: &mut TcpStream) -> String {
        // A driver says nothing after registering but goodbye.
        match recv_limited::<ToMaster>(stream, "driver message", MAX_CONTROL_FRAME_BYTES) {
            Ok(Some(ToMaster::UnregisterApplication)) => "unregistered".into(),
            Ok(Some(other)) => format!("unexpected {} from a driver", variant(&other)),
            Ok(None) => "driver disconnected".into(),
            Err(e) => e.to_string(),
        }
    }

    fn add_app(&self, desc: AppDescription, conn: &Arc<Conn>) -> Option<String> {
        let mut st = self.lock();
        st.next_app += 1;
        let id = format!(
            "app-{}-{:04}",
            crate::ui::html::date(now_ms())
                .replace(['-', ' ', ':'], "")
                .get(..14)
                .unwrap_or("0"),
            st.next_app
        );
        tracing::info!(app = %id, name = %desc.name, "application registered");
        st.apps.insert(
            id.clone(),
            AppEntry {
                id: id.clone(),
                desc,
                state: AppState::Waiting,
                submitted_ms: now_ms(),
                ended_ms: None,
                conn: Some(conn.clone()),
                executors: BTreeMap::new(),
                removed: Vec::new(),
                next_executor: 0,
                failures: 0,
            },
        );
        // Place executors first, so the reply says how many to wait for;
        // the driver reads ExecutorAdded messages only after the reply.
        let launched = self.place(&mut st, &id);
        let (executors, cores) = st
            .apps
            .get(&id)
            .map(|a| (a.executors.len(), a.cores_granted()))
            .unwrap_or_default();
        let reply = FromMaster::RegisteredApplication {
            app_id: id.clone(),
            executors,
            cores,
        };
        if conn.send(&reply).is_err() {
            drop(st);
            self.finish_app(&id);
            return None;
        }
        for msg in launched {
            let _ = conn.send(&msg);
        }
        Some(id)
    }

    /// Places executors of every waiting or running application that wants
    /// more, in submission order.
    fn schedule(&self, st: &mut State) {
        let ids: Vec<String> = st
            .apps
            .values()
            .filter(|a| a.active())
            .map(|a| a.id.clone())
            .collect();
        for id in ids {
            let msgs = self.place(st, &id);
            if let Some(conn) = st.apps.get(&id).and_then(|a| a.conn.clone()) {
                for m in msgs {
                    let _ = conn.send(&m);
                }
            }
        }
    }

    /// Places executors for one application, spreading them over workers
    /// (Spark's default `spreadOut`); returns the `ExecutorAdded` messages
    /// for its driver.
    fn place(&self, st: &mut State, app_id: &str) -> Vec<FromMaster> {
        let mut out = Vec::new();
        loop {
            let Some(app) = st.apps.get(app_id) else {
                return out;
            };
            if !app.active() || app.failures > self.max_retries {
                return out;
            }
            let left = app
                .desc
                .max_cores
                .map_or(usize::MAX, |m| m.saturating_sub(app.cores_granted()));
            let fixed = app.desc.executor_cores;
            let mem = app.desc.executor_memory_mib;
            let want = if fixed > 0 { fixed } else { 1 };
            if left < want {
                return out;
            }
            let on = |w: &WorkerEntry| w.executors.iter().filter(|(a, _)| a == app_id).count();
            let Some(worker) = st
                .workers
                .values()
                .filter(|w| {
                    w.state == WorkerState::Alive
                        && w.cores - w.cores_used >= want
                        && w.memory_mib - w.memory_used >= mem
                        // Without a fixed size, one executor per worker
                        // takes all its free cores, as in Spark.
                        && (fixed > 0 || on(w) == 0)
                })
                .min_by_key(|w| (on(w), std::cmp::Reverse(w.cores - w.cores_used)))
                .map(|w| w.id.clone())
            else {
                return out;
            };
            let w = st.workers.get_mut(&worker).expect("worker exists");
            let cores = if fixed > 0 {
                fixed
            } else {
                (w.cores - w.cores_used).min(left)
            };
            let app = st.apps.get_mut(app_id).expect("app exists");
            let executor = app.next_executor.to_string();
            app.next_executor += 1;
            let launch = FromMaster::LaunchExecutor {
                app: app_id.to_string(),
                executor: executor.clone(),
                cores,
                memory_mib: mem,
                storage_fraction: app.desc.storage_fraction,
                binary: app.desc.binary.clone(),
                driver_address: app.desc.driver_address.clone(),
                heartbeat_ms: app.desc.heartbeat_ms,
                timeout_ms: app.desc.timeout_ms,
            };
            if let Err(e) = w.conn.send(&launch) {
                tracing::warn!(worker = %w.id, %e, "cannot reach worker");
                w.state = WorkerState::Dead;
                w.conn.shutdown();
                continue;
            }
            tracing::info!(app = app_id, %executor, worker = %w.id, cores, "executor launched");
            w.cores_used += cores;
            w.memory_used += mem;
            w.executors.insert((app_id.to_string(), executor.clone()));
            app.executors.insert(
                executor.clone(),
                ExecEntry {
                    worker: w.id.clone(),
                    host: w.host.clone(),
                    cores,
                    memory_mib: mem,
                    started_ms: now_ms(),
                },
            );
            app.state = AppState::Running;
            out.push(FromMaster::ExecutorAdded {
                executor,
                worker: w.id.clone(),
                host: w.host.clone(),
                cores,
            });
        }
    }

    /// Forgets one executor and frees its resources; returns whether it
    /// was known.
    fn remove_executor(&self, st: &mut State, app_id: &str, executor: &str, why: &str) -> bool {
        let Some(app) = st.apps.get_mut(app_id) else {
            return false;
        };
        let Some(e) = app.executors.remove(executor) else {
            return false;
        };
        app.removed
            .push((executor.to_string(), e.worker.clone(), why.to_string()));
        if app.active() {
            if let Some(conn) = &app.conn {
                let _ = conn.send(&FromMaster::ExecutorRemoved {
                    executor: executor.to_string(),
                    message: why.to_string(),
                });
            }
        }
        if let Some(w) = st.workers.get_mut(&e.worker) {
            w.cores_used = w.cores_used.saturating_sub(e.cores);
            w.memory_used = w.memory_used.saturating_sub(e.memory_mib);
            w.executors
                .remove(&(app_id.to_string(), executor.to_string()));
        }
        true
    }

    fn executor_exited(&self, st: &mut State, app: &str, executor: &str, message: &str) {
        let why = format!("executor exited: {message}");
        if self.remove_executor(st, app, executor, &why) {
            if let Some(a) = st.apps.get_mut(app) {
                if a.active() {
                    a.failures += 1;
                    tracing::warn!(
                        app,
                        executor,
                        message,
                        "executor exited; relaunching if possible"
                    );
                    if a.failures > self.max_retries {
                        let message = format!(
                            "{} executors failed; no more are launched (ember.deploy.maxExecutorRetries); last: {message}",
                            a.failures
                        );
                        tracing::warn!(app, %message, "giving up on the application's executors");
                        if let Some(c) = &a.conn {
                            let _ = c.send(&FromMaster::ApplicationFailed { message });
                        }
                    }
                }
            }
            self.schedule(st);
        }
    }

    fn worker_lost(&self, id: &str, conn: &Arc<Conn>, reason: &str) {
        let mut st = self.lock();
        let Some(w) = st.workers.get_mut(id) else {
            return;
        };
        if !Arc::ptr_eq(&w.conn, conn) {
            return; // a newer registration under the same id
        }
        conn.shutdown();
        if w.state == WorkerState::Dead && w.executors.is_empty() {
            return;
        }
        tracing::warn!(worker = id, reason, "worker lost");
        w.state = WorkerState::Dead;
        let execs: Vec<(String, String)> = w.executors.iter().cloned().collect();
        for (app, exec) in execs {
            self.remove_executor(&mut st, &app, &exec, &format!("worker {id} lost: {reason}"));
        }
        self.schedule(&mut st);
    }

    fn finish_app(&self, id: &str) {
        let mut st = self.lock();
        let Some(app) = st.apps.get_mut(id) else {
            return;
        };
        if !app.active() {
            return;
        }
        app.state = AppState::Finished;
        app.ended_ms = Some(now_ms());
        if let Some(c) = app.conn.take() {
            c.shutdown();
        }
        let execs: Vec<String> = app.executors.keys().cloned().collect();
        let mut workers = BTreeSet::new();
        for e in execs {
            if let Some(x) = st.apps.get(id).and_then(|a| a.executors.get(&e)) {
                workers.insert(x.worker.clone());
            }
            self.remove_executor(&mut st, id, &e, "application finished");
        }
        for w in st.workers.values() {
            if w.state == WorkerState::Alive && workers.contains(&w.id) {
                let _ = w
                    .conn
                    .send(&FromMaster::ApplicationFinished { app: id.into() });
            }
        }
        self.schedule(&mut st);
    }

    fn monitor(&self) {
        let period =
            (self.worker_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        while !self.stopping.load(Ordering::SeqCst) {
            std::thread::sleep(period);
            let silent: Vec<(String, Arc<Conn>)> = self
                .lock()
                .workers
                .values()
                .filter(|w| {
                    w.state == WorkerState::Alive
                        && w.last_heartbeat.elapsed() > self.worker_timeout
                })
                .map(|w| (w.id.clone(), w.conn.clone()))
                .collect();
            for (id, conn) in silent {
                self.worker_lost(
                    &id,
                    &conn,
                    &format!("no heartbeat for {:?}", self.worker_timeout),
                );
            }
        }
    }

    fn snapshot(&self) -> MasterSnapshot {
        let st = self.lock();
        MasterSnapshot {
            url: self.url.clone(),
            started_ms: self.started_ms,
            workers: st
                .workers
                .values()
                .map(|w| WorkerInfo {
                    id: w.id.clone(),
                    host: w.host.clone(),
                    webuiaddress: w.webui.clone(),
                    cores: w.cores,
                    coresused: w.cores_used,
                    coresfree: w.cores - w.cores_used,
                    memory: w.memory_mib,
                    memoryused: w.memory_used,
                    memoryfree: w.memory_mib - w.memory_used,
                    state: w.state.clone(),
                    lastheartbeat: now_ms()
                        .saturating_sub(w.last_heartbeat.elapsed().as_millis() as u64),
                    registered: w.registered_ms,
                    executors: w.executors.len(),
                })
                .collect(),
            apps: st
                .apps
                .values()
                .map(|a| ApplicationInfo {
                    id: a.id.clone(),
                    name: a.desc.name.clone(),
                    cores: a.desc.max_cores,
                    cores_granted: a.cores_granted(),
                    cores_per_executor: a.desc.executor_cores,
                    memoryperslave: a.desc.executor_memory_mib,
                    submitdate: crate::ui::html::api_date(a.submitted_ms),
                    starttime: a.submitted_ms,
                    endtime: a.ended_ms,
                    duration: a
                        .ended_ms
                        .unwrap_or_else(now_ms)
                        .saturating_sub(a.submitted_ms),
                    user: a.desc.user.clone(),
                    state: a.state.clone(),
                    driver_ui: a.desc.ui_url.clone(),
                    binary: a.desc.binary.name.clone(),
                    binary_sha256: a.desc.binary.sha256.clone(),
                    executors: a
                        .executors
                        .iter()
                        .map(|(id, e)| ExecutorInfo {
                            id: id.clone(),
                            worker: e.worker.clone(),
                            host: e.host.clone(),
                            cores: e.cores,
                            memory: e.memory_mib,
                            state: "RUNNING".into(),
                            since: e.started_ms,
                        })
                        .chain(a.removed.iter().map(|(id, w, why)| ExecutorInfo {
                            id: id.clone(),
                            worker: w.clone(),
                            host: String::new(),
                            cores: 0,
                            memory: 0,
                            state: format!("EXITED ({why})"),
                            since: 0,
                        }))
                        .collect(),
                })
                .collect(),
        }
    }
}

fn variant(m: &ToMaster) -> &'static str {
    match m {
        ToMaster::RegisterWorker { .. } => "RegisterWorker",
        ToMaster::WorkerHeartbeat => "WorkerHeartbeat",
        ToMaster::ExecutorExited { .. } => "ExecutorExited",
        ToMaster::RegisterApplication(_) => "RegisterApplication",
        ToMaster::UnregisterApplication => "UnregisterApplication",
    }
}

/// The master's state for its UI and JSON (Spark's `/json` field names).
#[derive(Clone, Debug, Serialize)]
pub struct MasterSnapshot {
    /// `ember://host:port`.
    pub url: String,
    /// When the master started, ms since the epoch.
    pub started_ms: u64,
    /// Every worker ever registered.
    pub workers: Vec<WorkerInfo>,
    /// Every application.
    pub apps: Vec<ApplicationInfo>,
}

/// One worker.
#[derive(Clone, Debug, Serialize)]
pub struct WorkerInfo {
    /// Worker id.
    pub id: String,
    /// Host.
    pub host: String,
    /// Its web UI.
    pub webuiaddress: String,
    /// Cores offered.
    pub cores: usize,
    /// Cores given to executors.
    pub coresused: usize,
    /// Cores free.
    pub coresfree: usize,
    /// Memory offered, MiB.
    pub memory: u64,
    /// Memory given to executors, MiB.
    pub memoryused: u64,
    /// Memory free, MiB.
    pub memoryfree: u64,
    /// Alive or dead.
    pub state: WorkerState,
    /// Last heartbeat, ms since the epoch.
    pub lastheartbeat: u64,
    /// Registration time, ms since the epoch.
    pub registered: u64,
    /// Executors running on it.
    pub executors: usize,
}

/// One application.
#[derive(Clone, Debug, Serialize)]
pub struct ApplicationInfo {
    /// Application id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Cores asked for (`None`: as many as there are).
    pub cores: Option<usize>,
    /// Cores of its executors now.
    pub cores_granted: usize,
    /// Cores per executor (0: all of a worker's free cores).
    pub cores_per_executor: usize,
    /// Memory per executor, MiB.
    pub memoryperslave: u64,
    /// Submission time, Spark's API form.
    pub submitdate: String,
    /// Submission time, ms since the epoch.
    pub starttime: u64,
    /// End time, ms since the epoch.
    pub endtime: Option<u64>,
    /// Milliseconds run so far.
    pub duration: u64,
    /// Who started the driver.
    pub user: String,
    /// Waiting, running or finished.
    pub state: AppState,
    /// The driver's web UI.
    pub driver_ui: Option<String>,
    /// Binary file name.
    pub binary: String,
    /// Binary SHA-256.
    pub binary_sha256: String,
    /// Executors, live ones first.
    pub executors: Vec<ExecutorInfo>,
}

/// One executor of an application.
#[derive(Clone, Debug, Serialize)]
pub struct ExecutorInfo {
    /// Executor id.
    pub id: String,
    /// Worker id.
    pub worker: String,
    /// Host.
    pub host: String,
    /// Cores.
    pub cores: usize,
    /// Memory, MiB.
    pub memory: u64,
    /// `RUNNING` or `EXITED (why)`.
    pub state: String,
    /// Launch time, ms since the epoch.
    pub since: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_core::codec::send;

    /// Registers a worker of 2 cores as `id` from `host`; returns its
    /// connection and the master's reply.
    fn register(master: &Master, id: &str, host: &str) -> (TcpStream, Option<FromMaster>) {
        let addr = master.url().trim_start_matches("ember://");
        let mut s = TcpStream::connect(addr).unwrap();
        let msg = ToMaster::RegisterWorker {
            id: id.into(),
            host: host.into(),
            cores: 2,
            memory_mib: 1024,
            webui: String::new(),
        };
        send(&mut s, &msg).unwrap();
        let reply = recv_limited::<FromMaster>(&mut s, "reply", MAX_CONTROL_FRAME_BYTES).unwrap();
        (s, reply)
    }

    #[test]
    fn a_returning_worker_id_replaces_its_registration_and_counts_its_cores_once() {
        let master = Master::start(MasterOptions {
            host: "127.0.0.1".into(),
            port: 0,
            webui_port: None,
            conf: EmberConf::new(),
        })
        .unwrap();
        let (_old, first) = register(&master, "w1", "10.77.0.2");
        assert!(matches!(first, Some(FromMaster::RegisteredWorker { .. })));
        // Its link came back before the old connection timed out here.
        let (_new, again) = register(&master, "w1", "10.77.0.2");
        assert!(matches!(again, Some(FromMaster::RegisteredWorker { .. })));
        let workers = master.snapshot().workers;
        assert_eq!(workers.len(), 1);
        assert_eq!(workers[0].state, WorkerState::Alive);
        assert_eq!(workers[0].cores, 2);
        // Another host cannot take the id over.
        let (_other, refused) = register(&master, "w1", "10.77.0.3");
        assert!(matches!(refused, Some(FromMaster::Refused(why)) if why.contains("10.77.0.2")));
    }
}
