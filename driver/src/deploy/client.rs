//! The driver's side of standalone mode: registers the application with
//! the master, serves the driver's binary to workers by hash, hears which
//! executors the master placed or lost, and unregisters at the end.
//!
//! Only the driver talks to the master about its application; executors
//! register with the driver exactly as in `local-cluster`.

use super::binary::FileServer;
use super::conn::Conn;
use super::messages::{AppDescription, FromMaster, ToMaster};
use ember_core::auth::{connect_tcp, Secret};
use ember_core::codec::{recv_limited, MAX_CONTROL_FRAME_BYTES};
use ember_core::conf::keys;
use ember_core::{EmberConf, EmberError, ExecutorId, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Cores over all executors of the application (default: all there are).
pub const CORES_MAX_KEY: &str = "ember.cores.max";
/// Cores per executor (default: all free cores of a worker, one executor
/// per worker, as in Spark's standalone mode).
pub const EXECUTOR_CORES_KEY: &str = "ember.executor.cores";
/// Host the driver advertises to executors and workers (its executor
/// port, file server and UI), and binds unless
/// [`DRIVER_BIND_ADDRESS_KEY`] says otherwise. Unset or a wildcard in
/// standalone mode: the address of the interface that routes to the
/// master; in the local modes: 127.0.0.1.
pub const DRIVER_HOST_KEY: &str = "ember.driver.host";
/// Host the driver binds (default: [`DRIVER_HOST_KEY`]; `0.0.0.0` binds
/// every interface), as Spark's `spark.driver.bindAddress`.
pub const DRIVER_BIND_ADDRESS_KEY: &str = "ember.driver.bindAddress";
/// The driver's web UI, as told to the master (set by the context).
pub const APP_UI_ADDRESS_KEY: &str = "ember.driver.appUIAddress";

/// Settles where the driver binds and what it advertises, before anything
/// binds: sets [`DRIVER_BIND_ADDRESS_KEY`] and [`DRIVER_HOST_KEY`] (as
/// Spark sets `spark.driver.host`), and the UI's host to the bind address
/// unless `ember.ui.host` is set. Told nothing in standalone mode, the
/// driver binds and advertises the address of its interface that routes
/// to the master, never 127.0.0.1 when the master is elsewhere.
pub fn settle_driver_addresses(conf: &mut EmberConf) -> Result<()> {
    let master = crate::MasterUrl::parse(conf.get(keys::MASTER).unwrap_or("local[*]"))?;
    let peer = match &master {
        crate::MasterUrl::Standalone { address } => Some(address.clone()),
        _ => None,
    };
    let toward_master = || -> Result<String> {
        match &peer {
            Some(p) => ember_core::net::route_to(p)
                .map(|ip| ip.to_string())
                .map_err(|e| {
                    EmberError::Network(format!(
                        "cannot find this host's address toward the master at {p} (set {DRIVER_HOST_KEY}): {e}"
                    ))
                }),
            None => Ok("127.0.0.1".into()),
        }
    };
    let told = conf
        .get(DRIVER_HOST_KEY)
        .filter(|h| !ember_core::net::is_wildcard(h))
        .map(str::to_string);
    let bind = match (conf.get(DRIVER_BIND_ADDRESS_KEY), conf.get(DRIVER_HOST_KEY)) {
        (Some(b), _) => b.to_string(),
        (None, Some(h)) => h.to_string(),
        (None, None) => toward_master()?,
    };
    let advertised = match told {
        Some(h) => h,
        None if !ember_core::net::is_wildcard(&bind) => bind.clone(),
        None => toward_master()?,
    };
    if conf.get(crate::ui::app::UI_HOST_KEY).is_none() {
        conf.set(crate::ui::app::UI_HOST_KEY, bind.clone());
    }
    conf.set(DRIVER_BIND_ADDRESS_KEY, bind);
    conf.set(DRIVER_HOST_KEY, advertised);
    Ok(())
}

/// The driver's bind and advertised hosts, as settled by
/// [`settle_driver_addresses`] (127.0.0.1 for a configuration never
/// settled).
pub fn driver_hosts(conf: &EmberConf) -> (String, String) {
    let advertised = conf.get(DRIVER_HOST_KEY).unwrap_or("127.0.0.1").to_string();
    let bind = conf
        .get(DRIVER_BIND_ADDRESS_KEY)
        .map(str::to_string)
        .unwrap_or_else(|| advertised.clone());
    (bind, advertised)
}

/// Called when the master reports an executor gone: executor, why.
pub type RemovedCallback = Arc<dyn Fn(ExecutorId, String) + Send + Sync>;

/// A registered application.
pub struct AppClient {
    conn: Arc<Conn>,
    /// The id the master gave the application.
    pub app_id: String,
    /// Executors the master launched at registration.
    pub executors: usize,
    /// Their cores.
    pub cores: usize,
    _files: FileServer,
    done: AtomicBool,
    failure: std::sync::Mutex<Option<String>>,
}

impl AppClient {
    /// Registers with the master at `master` (`host:port`): executors of
    /// `binary` are to register at `driver_address`, send heartbeats every
    /// `link.0` and give up on a driver silent for `link.1`.
    pub fn register(
        master: &str,
        conf: &EmberConf,
        secret: Option<Secret>,
        binary: &Path,
        driver_address: &str,
        link: (Duration, Duration),
        on_removed: RemovedCallback,
    ) -> Result<Arc<AppClient>> {
        let (heartbeat, timeout) = link;
        let (bind, advertised) = driver_hosts(conf);
        let files = FileServer::start(binary, &bind, &advertised, secret.clone())?;
        let memory = conf.get_bytes(keys::EXECUTOR_MEMORY, 1 << 30)?;
        let desc = AppDescription {
            name: conf.get(keys::APP_NAME).unwrap_or("ember").to_string(),
            max_cores: match conf.get(CORES_MAX_KEY) {
                None => None,
                Some(_) => Some(conf.get_usize(CORES_MAX_KEY, 0)?),
            },
            executor_cores: conf.get_usize(EXECUTOR_CORES_KEY, 0)?,
            executor_memory_mib: (memory >> 20).max(1),
            driver_address: driver_address.to_string(),
            binary: files.binary.clone(),
            heartbeat_ms: heartbeat.as_millis() as u64,
            timeout_ms: timeout.as_millis() as u64,
            storage_fraction: conf
                .get("ember.memory.storageFraction")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.5),
            user: crate::ui::app::user(),
            ui_url: conf.get(APP_UI_ADDRESS_KEY).map(str::to_string),
        };
        let mut stream = ember_core::net::connect(master, timeout).map_err(|e| {
            EmberError::Network(format!(
                "cannot reach the master at {master} from {advertised}: {e}"
            ))
        })?;
        let _ = stream.set_nodelay(true);
        connect_tcp(&mut stream, secret.as_ref())?;
        let conn = Conn::new(&stream)?;
        conn.send(&ToMaster::RegisterApplication(desc))?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let reply = recv_limited::<FromMaster>(
            &mut stream,
            "application registration",
            MAX_CONTROL_FRAME_BYTES,
        )?;
        let _ = stream.set_read_timeout(None);
        let (app_id, executors, cores) = match reply {
            Some(FromMaster::RegisteredApplication {
                app_id,
                executors,
                cores,
            }) => (app_id, executors, cores),
            Some(FromMaster::Refused(why)) => {
                return Err(EmberError::Network(format!(
                    "master ember://{master} refused the application: {why}"
                )))
            }
            other => {
                return Err(EmberError::Network(format!(
                    "unexpected reply from master ember://{master}: {other:?}"
                )))
            }
        };
        tracing::info!(%app_id, executors, cores, "registered with the master");
        let client = Arc::new(AppClient {
            conn,
            app_id,
            executors,
            cores,
            _files: files,
            done: AtomicBool::new(false),
            failure: std::sync::Mutex::new(None),
        });
        let weak = Arc::downgrade(&client);
        std::thread::Builder::new()
            .name("ember-app-client".into())
            .spawn(move || {
                loop {
                    match recv_limited::<FromMaster>(&mut stream, "master message", MAX_CONTROL_FRAME_BYTES) {
                        Ok(Some(FromMaster::ExecutorAdded {
                            executor,
                            worker,
                            host,
                            cores,
                        })) => {
                            tracing::info!(%executor, %worker, %host, cores, "master placed an executor")
                        }
                        Ok(Some(FromMaster::ExecutorRemoved { executor, message })) => {
                            tracing::warn!(%executor, %message, "master reports an executor lost");
                            on_removed(ExecutorId(executor), message);
                        }
                        Ok(Some(FromMaster::ApplicationFailed { message })) => {
                            tracing::error!(%message, "the master gave up launching executors");
                            if let Some(c) = weak.upgrade() {
                                *c.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
                            }
                        }
                        Ok(Some(other)) => tracing::warn!(?other, "unexpected message from the master"),
                        Ok(None) | Err(_) => break,
                    }
                }
                if weak.upgrade().is_some_and(|c| !c.done.load(Ordering::SeqCst)) {
                    tracing::warn!("lost the connection to the master; running executors go on");
                }
            })
            .map_err(|e| EmberError::Network(format!("start master reader: {e}")))?;
        Ok(client)
    }

    /// Why the master gave up launching executors, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Tells the master the application is done (its executors may go).
    pub fn unregister(&self) {
        if !self.done.swap(true, Ordering::SeqCst) {
            let _ = self.conn.send(&ToMaster::UnregisterApplication);
            self.conn.shutdown();
        }
    }
}

impl Drop for AppClient {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The secret this application's connections use: the configured one; a
/// fresh random one for a `local-cluster` that authenticates without one
/// (only its own processes need it); `None` without authentication.
pub fn app_secret(conf: &EmberConf, master: &crate::MasterUrl) -> Result<Option<Secret>> {
    let on = conf.get_bool(ember_core::auth::keys::AUTHENTICATE, false)?;
    let given = conf.get(ember_core::auth::keys::SECRET).is_some()
        || conf.get(ember_core::auth::keys::SECRET_FILE).is_some();
    if on && !given && matches!(master, crate::MasterUrl::LocalCluster { .. }) {
        return Ok(Some(Secret::generate()));
    }
    Secret::from_conf(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(pairs: &[(&str, &str)]) -> (String, String, String) {
        let mut conf = EmberConf::new();
        for (k, v) in pairs {
            conf.set(k, v.to_string());
        }
        settle_driver_addresses(&mut conf).unwrap();
        let (bind, advertised) = driver_hosts(&conf);
        let ui = conf.get(crate::ui::app::UI_HOST_KEY).unwrap().to_string();
        (bind, advertised, ui)
    }

    #[test]
    fn told_nothing_the_driver_binds_and_advertises_its_address_toward_the_master() {
        let master = ("ember.master", "ember://127.0.0.1:7077");
        let lo = "127.0.0.1".to_string();
        assert_eq!(settled(&[master]), (lo.clone(), lo.clone(), lo.clone()));
        assert_eq!(
            settled(&[("ember.master", "local[2]")]),
            (lo.clone(), lo.clone(), lo.clone())
        );
        // A wildcard binds every interface and advertises the route.
        let any = "0.0.0.0".to_string();
        assert_eq!(
            settled(&[master, (DRIVER_HOST_KEY, "0.0.0.0")]),
            (any.clone(), lo.clone(), any.clone())
        );
        assert_eq!(
            settled(&[master, (DRIVER_BIND_ADDRESS_KEY, "0.0.0.0")]),
            (any.clone(), lo.clone(), any)
        );
        // What the user says is what is advertised.
        assert_eq!(
            settled(&[
                master,
                (DRIVER_HOST_KEY, "node-4"),
                ("ember.ui.host", "127.0.0.1")
            ]),
            ("node-4".into(), "node-4".into(), lo)
        );
    }
}
