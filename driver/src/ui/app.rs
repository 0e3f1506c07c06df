//! What a context runs beside its scheduler for people to watch: the
//! status store, the application UI (`ember.ui.enabled`, `ember.ui.port`)
//! and the event log (`ember.eventLog.*`), fed by one listener bus.

use super::app_ui::{environment, handle_live};
use super::event_log::{EventLogWriter, DIR_KEY, ENABLED_KEY};
use super::http::HttpServer;
use super::status::{now, EmberEvent, ListenerBus, SchedulerListener, StatusStore};
use ember_core::{EmberConf, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Whether the driver serves its UI (default true).
pub const UI_ENABLED_KEY: &str = "ember.ui.enabled";
/// The UI's first port to try (default 4040; the next 15 if taken).
pub const UI_PORT_KEY: &str = "ember.ui.port";
/// Host the UI binds (default 127.0.0.1).
pub const UI_HOST_KEY: &str = "ember.ui.host";

/// The UI, the status behind it and the event log of one application.
pub struct AppObservers {
    status: Arc<StatusStore>,
    server: Option<HttpServer>,
    log: Mutex<Option<Arc<EventLogWriter>>>,
    bus: Mutex<ListenerBus>,
    log_dir: Option<PathBuf>,
    ended: AtomicBool,
    /// The listeners, once the application began.
    live: Mutex<Option<Arc<ListenerBus>>>,
}

static NEXT_LOCAL_APP: AtomicU64 = AtomicU64::new(0);

/// An application id for a context without a standalone master, as
/// Spark's `local-<epoch ms>` (with a counter after the first in a
/// process).
pub fn local_app_id() -> String {
    let n = NEXT_LOCAL_APP.fetch_add(1, Ordering::Relaxed);
    if n == 0 {
        format!("local-{}", now())
    } else {
        format!("local-{}-{n}", now())
    }
}

impl AppObservers {
    /// Starts the UI server if enabled (a UI that cannot bind is a
    /// warning, not a failure).
    pub fn start(conf: &EmberConf) -> Result<AppObservers> {
        let status = StatusStore::new();
        let server = if conf.get_bool(UI_ENABLED_KEY, true)? {
            let port = conf.get_usize(UI_PORT_KEY, 4040)?.min(u16::MAX as usize) as u16;
            let host = conf.get(UI_HOST_KEY).unwrap_or("127.0.0.1").to_string();
            let env = environment(conf);
            let st = status.clone();
            let handler =
                Arc::new(move |req: &super::http::Request| st.with(|s| handle_live(s, req, &env)));
            match HttpServer::start(&host, port, true, handler) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(%e, "the application UI is off");
                    None
                }
            }
        } else {
            None
        };
        let log_dir = if conf.get_bool(ENABLED_KEY, false)? {
            Some(PathBuf::from(
                conf.get(DIR_KEY).unwrap_or("/tmp/ember-events"),
            ))
        } else {
            None
        };
        let mut bus = ListenerBus::default();
        bus.add(status.clone());
        Ok(AppObservers {
            status,
            server,
            log: Mutex::new(None),
            bus: Mutex::new(bus),
            log_dir,
            ended: AtomicBool::new(false),
            live: Mutex::new(None),
        })
    }

    /// The UI's address, if it runs.
    pub fn ui_url(&self) -> Option<String> {
        self.server.as_ref().map(HttpServer::url)
    }

    /// The status the UI shows.
    pub fn status(&self) -> &Arc<StatusStore> {
        &self.status
    }

    /// Opens the event log (if enabled) and announces the application;
    /// returns the listener the scheduler publishes to, if anyone listens
    /// (a UI or an event log).
    pub fn begin(
        &self,
        app_id: &str,
        app_name: &str,
        master: &str,
    ) -> Result<Option<Arc<dyn SchedulerListener>>> {
        if self.server.is_none() && self.log_dir.is_none() {
            return Ok(None);
        }
        if let Some(dir) = &self.log_dir {
            let w = Arc::new(EventLogWriter::create(dir, app_id)?);
            self.bus
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(w.clone());
            *self.log.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
        }
        let bus = Arc::new(self.bus.lock().unwrap_or_else(|p| p.into_inner()).clone());
        bus.on_event(&EmberEvent::ApplicationStart {
            app_id: app_id.to_string(),
            app_name: app_name.to_string(),
            master: master.to_string(),
            user: user(),
            time: now(),
        });
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(bus.clone());
        Ok(Some(bus))
    }

    /// Publishes an event of the driver program (not the scheduler), such
    /// as an unpersist, if anyone listens.
    pub fn emit(&self, event: &EmberEvent) {
        if let Some(bus) = self.live.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            bus.on_event(event);
        }
    }

    /// Announces the end, finishes the event log and stops the UI; once.
    pub fn end(&self) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let bus = self.bus.lock().unwrap_or_else(|p| p.into_inner()).clone();
        bus.on_event(&EmberEvent::ApplicationEnd { time: now() });
        if let Some(w) = self.log.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if let Err(e) = w.finish() {
                tracing::warn!(%e, "event log");
            }
        }
        if let Some(s) = &self.server {
            s.stop();
        }
    }
}

/// The user running this process: `$USER`, `$LOGNAME`, else `uid N`.
pub fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self")
                .map(|m| format!("uid {}", m.uid()))
                .unwrap_or_else(|_| "unknown".into())
        })
}
