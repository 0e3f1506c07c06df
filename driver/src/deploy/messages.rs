//! Messages of the standalone cluster: workers and drivers talking to the
//! master, one MessagePack frame each (at most
//! [`MAX_CONTROL_FRAME_BYTES`](ember_core::codec::MAX_CONTROL_FRAME_BYTES))
//! over a persistent, authenticated connection.

use serde::{Deserialize, Serialize};

/// An application binary, named by content: workers fetch it from
/// `source` (the driver's file server) and check its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryRef {
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// File name on the driver (for logs and the UI).
    pub name: String,
    /// `host:port` of the driver's file server.
    pub source: String,
}

/// What a driver asks of the master for its application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppDescription {
    /// Application name.
    pub name: String,
    /// Cores over all executors (`ember.cores.max`; `None`: all there are).
    pub max_cores: Option<usize>,
    /// Cores per executor (`ember.executor.cores`).
    pub executor_cores: usize,
    /// Memory per executor, MiB (`ember.executor.memory`).
    pub executor_memory_mib: u64,
    /// Where executors register with the driver (`host:port`).
    pub driver_address: String,
    /// The binary executors run.
    pub binary: BinaryRef,
    /// Executor heartbeat interval, milliseconds.
    pub heartbeat_ms: u64,
    /// Silence after which an executor gives up on the driver,
    /// milliseconds (`ember.network.timeout`).
    pub timeout_ms: u64,
    /// Share of executor memory protected for caching.
    pub storage_fraction: f64,
    /// The user who started the driver.
    pub user: String,
    /// The driver's web UI, if it serves one.
    pub ui_url: Option<String>,
}

/// From a worker or a driver to the master.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToMaster {
    /// A worker's first message.
    RegisterWorker {
        /// Worker id (unique per worker process).
        id: String,
        /// Host its executors bind to.
        host: String,
        /// Cores it offers.
        cores: usize,
        /// Memory it offers, MiB.
        memory_mib: u64,
        /// Its web UI.
        webui: String,
    },
    /// A worker is alive.
    WorkerHeartbeat,
    /// An executor process on a worker ended (or could not start).
    ExecutorExited {
        /// Application id.
        app: String,
        /// Executor id.
        executor: String,
        /// Why, as far as the worker knows.
        message: String,
    },
    /// A driver's first message.
    RegisterApplication(AppDescription),
    /// The driver is done; its executors may go.
    UnregisterApplication,
}

/// From the master to a worker or a driver.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FromMaster {
    /// The worker is registered.
    RegisteredWorker {
        /// The master's web UI.
        master_webui: String,
    },
    /// The application is registered and executors were asked for.
    RegisteredApplication {
        /// Its id.
        app_id: String,
        /// Executors launched at once for it.
        executors: usize,
        /// Their cores in all.
        cores: usize,
    },
    /// Registration refused.
    Refused(String),
    /// To a worker: start an executor.
    LaunchExecutor {
        /// Application id.
        app: String,
        /// Executor id (unique within the application).
        executor: String,
        /// Task threads.
        cores: usize,
        /// Memory, MiB.
        memory_mib: u64,
        /// Share of memory protected for caching.
        storage_fraction: f64,
        /// The binary to run.
        binary: BinaryRef,
        /// Where the executor registers.
        driver_address: String,
        /// Heartbeat interval, milliseconds.
        heartbeat_ms: u64,
        /// Silence after which the executor gives up on the driver,
        /// milliseconds.
        timeout_ms: u64,
    },
    /// To a worker: stop an executor.
    KillExecutor {
        /// Application id.
        app: String,
        /// Executor id.
        executor: String,
    },
    /// To a worker: an application ended; stop its executors, delete its
    /// folder.
    ApplicationFinished {
        /// Application id.
        app: String,
    },
    /// To a driver: an executor was placed on a worker.
    ExecutorAdded {
        /// Executor id.
        executor: String,
        /// Worker id.
        worker: String,
        /// Worker host.
        host: String,
        /// Cores.
        cores: usize,
    },
    /// To a driver: executors keep failing to start; the master gave up
    /// launching them (`ember.deploy.maxExecutorRetries`).
    ApplicationFailed {
        /// Why, with the last executor's failure.
        message: String,
    },
    /// To a driver: an executor is gone (exited, or its worker was lost).
    ExecutorRemoved {
        /// Executor id.
        executor: String,
        /// Why.
        message: String,
    },
}

/// A request to a driver's file server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileRequest {
    /// SHA-256 of the wanted binary, hex.
    pub sha256: String,
}
