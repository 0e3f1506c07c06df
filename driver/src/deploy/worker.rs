//! The standalone worker (`ember worker ember://H:P`): offers cores and
//! memory to the master, launches executors as child processes of the
//! application's binary (fetched from the driver by hash, cached), reports
//! their exits, and deletes an application's folder when it ends.
//!
//! Executors get the same variables a `local-cluster` driver gives its
//! own executor processes, so the executor code is the same in both
//! modes; they also get this worker's process id and exit when it dies.

use super::binary::fetch_cached;
use super::conn::Conn;
use super::master::WORKER_TIMEOUT_KEY;
use super::messages::{BinaryRef, FromMaster, ToMaster};
use crate::ui::html::{self, esc, link, now_ms, page, table};
use crate::ui::http::{HttpServer, Request, Response};
use ember_core::auth::{connect_tcp, Secret, SECRET_ENV};
use ember_core::codec::{recv_limited, MAX_CONTROL_FRAME_BYTES};
use ember_core::{EmberConf, EmberError, Result};
use ember_executor::protocol::env_vars;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Interval of worker heartbeats (`ember.worker.heartbeatInterval`,
/// default 1s).
pub const HEARTBEAT_KEY: &str = "ember.worker.heartbeatInterval";
/// Longest wait for the master to answer a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The address of this host's interface toward the master.
fn route_to_master(master: &str) -> Result<String> {
    ember_core::net::route_to(master)
        .map(|ip| ip.to_string())
        .map_err(|e| {
            EmberError::Network(format!(
                "cannot find this host's address toward the master at {master} (give --host): {e}"
            ))
        })
}

/// How to run a worker.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The master's `host:port`.
    pub master: String,
    /// Host the worker's UI and its executors' block servers bind (`None`:
    /// the address of the interface that routes to the master; a wildcard
    /// binds every interface and advertises that address).
    pub host: Option<String>,
    /// Cores offered.
    pub cores: usize,
    /// Memory offered, MiB.
    pub memory_mib: u64,
    /// Folder for binaries and applications' executor folders.
    pub work_dir: PathBuf,
    /// Web UI port (0 picks one; `None`: no UI).
    pub webui_port: Option<u16>,
    /// Configuration: authentication, heartbeat interval.
    pub conf: EmberConf,
}

/// One executor process.
struct ExecRun {
    child: Option<Child>,
    cores: usize,
    memory_mib: u64,
    started_ms: u64,
    state: String,
    dir: PathBuf,
}

struct Shared {
    opts: WorkerOptions,
    /// What the UI and executors bind.
    bind: String,
    /// What the master was last told (the address the worker reached it
    /// from, unless bound to one address).
    advertised: Mutex<String>,
    id: String,
    secret: Option<Secret>,
    executors: Mutex<BTreeMap<(String, String), ExecRun>>,
    master: Mutex<Option<Arc<Conn>>>,
    master_webui: Mutex<String>,
    webui: Mutex<String>,
    stopping: AtomicBool,
}

/// A running worker.
pub struct Worker {
    shared: Arc<Shared>,
    ui: Option<HttpServer>,
}

impl Worker {
    /// Starts the web UI, then registers with the master on a thread that
    /// reconnects whenever the master connection drops.
    pub fn start(mut opts: WorkerOptions) -> Result<Worker> {
        let secret = Secret::from_conf(&opts.conf)?;
        std::fs::create_dir_all(&opts.work_dir)
            .map_err(|e| EmberError::io(&opts.work_dir, "create work dir", e))?;
        // Executors run inside their own folders: paths must not be relative.
        opts.work_dir = std::fs::canonicalize(&opts.work_dir)
            .map_err(|e| EmberError::io(&opts.work_dir, "resolve work dir", e))?;
        let bind = match &opts.host {
            Some(h) => h.clone(),
            None => route_to_master(&opts.master)?,
        };
        let advertised = if ember_core::net::is_wildcard(&bind) {
            route_to_master(&opts.master)?
        } else {
            bind.clone()
        };
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        let id = format!(
            "worker-{}-{}-{}{}",
            html::date(now_ms()).replace(['-', ' ', ':'], ""),
            advertised,
            std::process::id(),
            if n == 0 {
                String::new()
            } else {
                format!("-{n}")
            }
        );
        let shared = Arc::new(Shared {
            opts: opts.clone(),
            bind: bind.clone(),
            advertised: Mutex::new(advertised.clone()),
            id,
            secret,
            executors: Mutex::new(BTreeMap::new()),
            master: Mutex::new(None),
            master_webui: Mutex::new(String::new()),
            webui: Mutex::new(String::new()),
            stopping: AtomicBool::new(false),
        });
        let ui = match opts.webui_port {
            None => None,
            Some(port) => {
                let s = shared.clone();
                let server = HttpServer::start(&bind, port, false, Arc::new(move |r| s.handle(r)))?;
                *shared.webui.lock().unwrap_or_else(|p| p.into_inner()) =
                    ember_core::net::advertised_url(&server.url(), &advertised);
                Some(server)
            }
        };
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ember-worker-master".into())
            .spawn(move || Shared::connect_loop(&s))
            .map_err(|e| EmberError::Other(format!("start worker: {e}")))?;
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ember-worker-reaper".into())
            .spawn(move || s.reap_loop())
            .map_err(|e| EmberError::Other(format!("start worker: {e}")))?;
        Ok(Worker { shared, ui })
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.shared.id
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

    /// Whether the worker is registered with a master now.
    pub fn registered(&self) -> bool {
        self.shared
            .master
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(c) = self
            .shared
            .master
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            c.shutdown();
        }
        self.shared.kill_all();
    }
}

impl Shared {
    fn advertised_host(&self) -> String {
        self.advertised
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn connect_loop(self: &Arc<Self>) {
        let mut announced = false;
        while !self.stopping() {
            match self.session() {
                Ok(reason) => {
                    tracing::warn!(%reason, "lost the master; reconnecting");
                    announced = false;
                }
                Err(e) => {
                    if !announced {
                        tracing::warn!(%e, master = %self.opts.master, "cannot register with the master; retrying");
                        announced = true;
                    }
                }
            }
            *self.master.lock().unwrap_or_else(|p| p.into_inner()) = None;
            // Executors of a master we lost cannot be accounted for.
            self.kill_all();
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// One registration with the master, until the connection ends.
    fn session(self: &Arc<Self>) -> Result<String> {
        let timeout = self
            .opts
            .conf
            .get_duration(WORKER_TIMEOUT_KEY, Duration::from_secs(60))?;
        let from = self.advertised_host();
        let mut stream = ember_core::net::connect(&self.opts.master, CONNECT_TIMEOUT.min(timeout))
            .map_err(|e| {
                EmberError::Network(format!(
                    "cannot reach the master at {} from {from}: {e}",
                    self.opts.master
                ))
            })?;
        // Heartbeats go out every interval: once the master stops
        // acknowledging them for the worker timeout (a cut link), the
        // connection fails and the worker registers again.
        ember_core::net::fail_when_silent(&stream, timeout);
        let _ = stream.set_nodelay(true);
        connect_tcp(&mut stream, self.secret.as_ref())?;
        if ember_core::net::is_wildcard(&self.bind) {
            if let Ok(local) = stream.local_addr() {
                *self.advertised.lock().unwrap_or_else(|p| p.into_inner()) = local.ip().to_string();
            }
        }
        let conn = Conn::new(&stream)?;
        conn.send(&ToMaster::RegisterWorker {
            id: self.id.clone(),
            host: self.advertised_host(),
            cores: self.opts.cores,
            memory_mib: self.opts.memory_mib,
            webui: self.webui.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })?;
        match recv_limited::<FromMaster>(
            &mut stream,
            "registration reply",
            MAX_CONTROL_FRAME_BYTES,
        )? {
            Some(FromMaster::RegisteredWorker { master_webui }) => {
                *self.master_webui.lock().unwrap_or_else(|p| p.into_inner()) = master_webui;
            }
            Some(FromMaster::Refused(why)) => {
                return Err(EmberError::Network(format!(
                    "master refused the worker: {why}"
                )))
            }
            other => {
                return Err(EmberError::Network(format!(
                    "unexpected registration reply {other:?}"
                )))
            }
        }
        println!(
            "ember worker: {} registered with ember://{}",
            self.id, self.opts.master
        );
        *self.master.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        let interval = self
            .opts
            .conf
            .get_duration(HEARTBEAT_KEY, Duration::from_secs(1))?;
        let beat = conn.clone();
        std::thread::Builder::new()
            .name("ember-worker-heartbeat".into())
            .spawn(move || {
                while beat.send(&ToMaster::WorkerHeartbeat).is_ok() {
                    std::thread::sleep(interval);
                }
            })
            .map_err(|e| EmberError::Other(format!("start heartbeats: {e}")))?;
        loop {
            let msg = match recv_limited::<FromMaster>(
                &mut stream,
                "master message",
                MAX_CONTROL_FRAME_BYTES,
            ) {
                Ok(Some(m)) => m,
                Ok(None) => return Ok("the master closed the connection".into()),
                Err(e) => {
                    conn.shutdown();
                    return Ok(e.to_string());
                }
            };
            match msg {
                FromMaster::LaunchExecutor {
                    app,
                    executor,
                    cores,
                    memory_mib,
                    storage_fraction,
                    binary,
                    driver_address,
                    heartbeat_ms,
                    timeout_ms,
                } => {
                    let launch = Launch {
                        app,
                        executor,
                        cores,
                        memory_mib,
                        storage_fraction,
                        binary,
                        driver_address,
                        heartbeat_ms,
                        timeout_ms,
                    };
                    let (s, c) = (self.clone(), conn.clone());
                    let _ = std::thread::Builder::new()
                        .name("ember-worker-launch".into())
                        .spawn(move || s.launch(launch, &c));
                }
                FromMaster::KillExecutor { app, executor } => self.kill(&app, Some(&executor)),
                FromMaster::ApplicationFinished { app } => self.app_finished(&app),
                other => tracing::warn!(?other, "unexpected message from the master"),
            }
        }
    }

    /// Registers the executor, then fetches the binary and starts the
    /// process on its own thread (a fetch may take a while).
    fn launch(&self, l: Launch, conn: &Arc<Conn>) {
        let dir = self
            .opts
            .work_dir
            .join(safe(&l.app))
            .join(safe(&l.executor));
        self.executors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                (l.app.clone(), l.executor.clone()),
                ExecRun {
                    child: None,
                    cores: l.cores,
                    memory_mib: l.memory_mib,
                    started_ms: now_ms(),
                    state: "LAUNCHING".into(),
                    dir: dir.clone(),
                },
            );
        let outcome = self.spawn(&l, &dir);
        let mut execs = self.executors.lock().unwrap_or_else(|p| p.into_inner());
        match (outcome, execs.get_mut(&(l.app.clone(), l.executor.clone()))) {
            (Ok(child), Some(run)) => {
                tracing::info!(app = %l.app, executor = %l.executor, pid = child.id(), "executor started");
                run.child = Some(child);
                run.state = "RUNNING".into();
            }
            (Ok(mut child), None) => {
                // Killed while launching.
                let _ = child.kill();
                let _ = child.wait();
            }
            (Err(e), run) => {
                tracing::warn!(app = %l.app, executor = %l.executor, %e, "executor failed to start");
                if let Some(run) = run {
                    run.state = format!("FAILED ({e})");
                }
                let _ = conn.send(&ToMaster::ExecutorExited {
                    app: l.app.clone(),
                    executor: l.executor.clone(),
                    message: format!("could not start: {e}"),
                });
            }
        }
    }

    fn spawn(&self, l: &Launch, dir: &Path) -> Result<Child> {
        let binary = fetch_cached(
            &l.binary,
            &self.opts.work_dir.join("binaries"),
            self.secret.as_ref(),
        )?;
        std::fs::create_dir_all(dir).map_err(|e| EmberError::io(dir, "create", e))?;
        let log = |name: &str| {
            std::fs::File::create(dir.join(name))
                .map_err(|e| EmberError::io(dir.join(name), "create", e))
        };
        let mut cmd = Command::new(&binary);
        cmd.current_dir(dir)
            .env(env_vars::DRIVER, &l.driver_address)
            .env(env_vars::ID, &l.executor)
            .env(env_vars::CORES, l.cores.to_string())
            .env(env_vars::DIR, dir.join("local"))
            .env(env_vars::HEARTBEAT_MS, l.heartbeat_ms.to_string())
            .env(env_vars::TIMEOUT_MS, l.timeout_ms.to_string())
            .env(env_vars::HOST, &self.bind)
            .env(env_vars::WORKER_PID, std::process::id().to_string())
            .env(env_vars::MEMORY, (l.memory_mib << 20).to_string())
            .env(env_vars::STORAGE_FRACTION, l.storage_fraction.to_string())
            .stdin(Stdio::null())
            .stdout(log("stdout")?)
            .stderr(log("stderr")?);
        match &self.secret {
            Some(s) => cmd.env(SECRET_ENV, s.to_hex()),
            None => cmd.env_remove(SECRET_ENV),
        };
        cmd.spawn()
            .map_err(|e| EmberError::io(&binary, "start executor", e))
    }

    fn reap_loop(&self) {
        while !self.stopping() {
            std::thread::sleep(Duration::from_millis(100));
            let mut exited = Vec::new();
            {
                let mut execs = self.executors.lock().unwrap_or_else(|p| p.into_inner());
                for ((app, exec), run) in execs.iter_mut() {
                    let Some(child) = run.child.as_mut() else {
                        continue;
                    };
                    if let Ok(Some(status)) = child.try_wait() {
                        run.child = None;
                        run.state = format!("EXITED ({status})");
                        exited.push((app.clone(), exec.clone(), status.to_string()));
                    }
                }
            }
            let master = self
                .master
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            for (app, executor, status) in exited {
                tracing::info!(%app, %executor, %status, "executor exited");
                if let Some(m) = &master {
                    let _ = m.send(&ToMaster::ExecutorExited {
                        app,
                        executor,
                        message: status,
                    });
                }
            }
        }
    }

    fn kill(&self, app: &str, executor: Option<&str>) {
        let mut execs = self.executors.lock().unwrap_or_else(|p| p.into_inner());
        for ((a, e), run) in execs.iter_mut() {
            if a == app && executor.is_none_or(|x| x == e) {
                if let Some(child) = run.child.as_mut() {
                    let _ = child.kill();
                }
            }
        }
        if executor.is_some() {
            return;
        }
        // Forget the application's executors once they are gone.
        let keys: Vec<_> = execs.keys().filter(|(a, _)| a == app).cloned().collect();
        for k in keys {
            if let Some(mut run) = execs.remove(&k) {
                if let Some(mut c) = run.child.take() {
                    let _ = c.wait();
                }
            }
        }
    }

    fn app_finished(&self, app: &str) {
        self.kill(app, None);
        let dir = self.opts.work_dir.join(safe(app));
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), %e, "cannot delete an application folder");
            }
        }
        tracing::info!(%app, "application finished; folder deleted");
    }

    fn kill_all(&self) {
        let apps: Vec<String> = self
            .executors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .map(|(a, _)| a.clone())
            .collect();
        for app in apps {
            self.app_finished(&app);
        }
    }

    fn handle(&self, req: &Request) -> Response {
        let execs: Vec<ExecutorRow> = self
            .executors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((app, id), r)| ExecutorRow {
                app: app.clone(),
                id: id.clone(),
                cores: r.cores,
                memory: r.memory_mib,
                state: r.state.clone(),
                started: r.started_ms,
                dir: r.dir.display().to_string(),
            })
            .collect();
        let cores_used: usize = execs
            .iter()
            .filter(|e| e.state == "RUNNING")
            .map(|e| e.cores)
            .sum();
        match req.segments().as_slice() {
            ["json"] => Response::json(&serde_json::json!({
                "id": self.id,
                "host": self.advertised_host(),
                "masterurl": format!("ember://{}", self.opts.master),
                "masterwebuiurl": *self.master_webui.lock().unwrap_or_else(|p| p.into_inner()),
                "registered": self.master.lock().unwrap_or_else(|p| p.into_inner()).is_some(),
                "cores": self.opts.cores,
                "coresused": cores_used,
                "memory": self.opts.memory_mib,
                "executors": execs,
            })),
            ["logPage"] => {
                let (Some(app), Some(exec)) = (req.param("appId"), req.param("executorId")) else {
                    return Response::error(400, "appId and executorId are required");
                };
                let kind = if req.param("logType") == Some("stdout") {
                    "stdout"
                } else {
                    "stderr"
                };
                let Some(row) = execs.iter().find(|e| e.app == app && e.id == exec) else {
                    return Response::not_found(&req.path);
                };
                let text = tail(&Path::new(&row.dir).join(kind), 64 << 10);
                Response::html(page(
                    &format!("{kind} of executor {exec} of {app}"),
                    &[("/", "Worker")],
                    &format!("<pre>{}</pre>", esc(&text)),
                ))
            }
            [] => {
                let master_ui = self
                    .master_webui
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let mut body = format!(
                    "<dl><dt>ID</dt><dd>{}</dd><dt>Master</dt><dd>{}</dd><dt>Cores</dt><dd>{} ({cores_used} used)</dd>\
                     <dt>Memory</dt><dd>{}</dd><dt>Work dir</dt><dd>{}</dd></dl><h2>Executors</h2>",
                    esc(&self.id),
                    if master_ui.is_empty() { esc(&self.opts.master) } else { link(&master_ui, &self.opts.master) },
                    self.opts.cores,
                    html::bytes(self.opts.memory_mib << 20),
                    esc(&self.opts.work_dir.display().to_string()),
                );
                let rows: Vec<Vec<String>> = execs
                    .iter()
                    .map(|e| {
                        let logs = |k: &str| {
                            link(
                                &format!(
                                    "/logPage?appId={}&executorId={}&logType={k}",
                                    e.app, e.id
                                ),
                                k,
                            )
                        };
                        vec![
                            esc(&e.id),
                            esc(&e.app),
                            e.cores.to_string(),
                            format!("{} MiB", e.memory),
                            esc(&e.state),
                            format!("{} {}", logs("stdout"), logs("stderr")),
                        ]
                    })
                    .collect();
                body.push_str(&table(
                    "executors",
                    &[
                        "Executor ID",
                        "Application",
                        "Cores",
                        "Memory",
                        "State",
                        "Logs",
                    ],
                    &rows,
                ));
                Response::html(page(
                    &format!("Ember Worker {}", self.id),
                    &[("/", "Worker"), ("/json", "JSON")],
                    &body,
                ))
            }
            _ => Response::not_found(&req.path),
        }
    }
}

struct Launch {
    app: String,
    executor: String,
    cores: usize,
    memory_mib: u64,
    storage_fraction: f64,
    binary: BinaryRef,
    driver_address: String,
    heartbeat_ms: u64,
    timeout_ms: u64,
}

#[derive(Serialize)]
struct ExecutorRow {
    app: String,
    id: String,
    cores: usize,
    memory: u64,
    state: String,
    started: u64,
    dir: String,
}

/// A name safe as one path component (ids come from the master).
fn safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

fn tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn ids_from_the_network_stay_inside_the_work_dir() {
        assert_eq!(safe("../../etc"), "______etc");
        assert_eq!(safe("app-2024-0001"), "app-2024-0001");
        assert_eq!(safe(""), "_");
    }
}
