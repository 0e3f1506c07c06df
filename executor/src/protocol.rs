//! Messages between the driver and an executor process, one frame each
//! over one persistent TCP connection.

use ember_core::{BroadcastId, BuildId, EmberError, ExecutorId, RddId, ShuffleId, TaskId};
use ember_rdd::stage::StageBlob;
use ember_rdd::task::{TaskDescription, TaskResult};
use serde::{Deserialize, Serialize};

/// Environment variables that turn a process into an executor.
pub mod env_vars {
    /// Driver address (`host:port`).
    pub const DRIVER: &str = "EMBER__EXECUTOR_DRIVER";
    /// Executor id.
    pub const ID: &str = "EMBER__EXECUTOR_ID";
    /// Task threads.
    pub const CORES: &str = "EMBER__EXECUTOR_CORES";
    /// Local folder for shuffle files.
    pub const DIR: &str = "EMBER__EXECUTOR_DIR";
    /// Executor memory in bytes.
    pub const MEMORY: &str = "EMBER__EXECUTOR_MEMORY";
    /// Share of usable memory protected for caching.
    pub const STORAGE_FRACTION: &str = "EMBER__EXECUTOR_STORAGE_FRACTION";
    /// Milliseconds between heartbeats.
    pub const HEARTBEAT_MS: &str = "EMBER__EXECUTOR_HEARTBEAT_MS";
    /// Host the block server binds: unset, the address this executor
    /// reached the driver from; a wildcard binds every interface and
    /// advertises that address.
    pub const HOST: &str = "EMBER__EXECUTOR_HOST";
    /// Milliseconds after which a silent driver or block server counts as
    /// gone (the driver's `ember.network.timeout`).
    pub const TIMEOUT_MS: &str = "EMBER__EXECUTOR_TIMEOUT_MS";
    /// Process id of the worker that launched this executor: the executor
    /// exits when that process is gone (standalone mode).
    pub const WORKER_PID: &str = "EMBER__EXECUTOR_WORKER_PID";
}

/// From driver to executor.
#[derive(Debug, Serialize, Deserialize)]
pub enum DriverMessage {
    /// Registration accepted.
    Registered,
    /// Registration refused; the executor exits with this message.
    Refused(EmberError),
    /// A stage's pipeline, sent before its first task.
    Stage(StageBlob),
    /// Run a task.
    Launch(TaskDescription),
    /// Kill a task (its job was cancelled): it stops at its next record
    /// and reports [`EmberError::Cancelled`].
    KillTask(TaskId),
    /// A stage is over: drop its pipeline.
    ForgetStage(u64),
    /// Drop the cached blocks of an RDD.
    RemoveRdd(RddId),
    /// Delete a shuffle's files.
    RemoveShuffle(ShuffleId),
    /// Drop this process's copy of a broadcast value.
    RemoveBroadcast(BroadcastId),
    /// A broadcast value the executor asked for.
    Broadcast(BroadcastId, Result<serde_bytes::ByteBuf, EmberError>),
    /// Exit.
    Shutdown,
}

/// From executor to driver.
#[derive(Debug, Serialize, Deserialize)]
pub enum ExecutorMessage {
    /// The first message: who this executor is.
    Register {
        /// Its id.
        id: ExecutorId,
        /// The build id of its binary.
        build: BuildId,
        /// Task threads.
        cores: usize,
        /// Address of its shuffle block server.
        block_address: String,
        /// Its process id.
        pid: u32,
    },
    /// A task ended.
    Status(TaskId, TaskResult),
    /// Asks for a broadcast value.
    GetBroadcast(BroadcastId),
    /// Still alive.
    Heartbeat,
}
