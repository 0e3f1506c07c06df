//! `ember-executor`: where tasks run.
//!
//! An [`Executor`] runs tasks on a fixed number of threads against one
//! [`TaskEnv`](ember_rdd::TaskEnv). In `local[N]` it lives inside the
//! driver; in `local-cluster` and standalone mode it lives in an executor
//! process ([`process`]) — the driver's own binary, started with the
//! executor variables set, which a constructor diverts into the executor
//! loop before the program's `main` runs.

pub mod block_server;
pub mod executor;
pub mod process;
pub mod protocol;
pub mod worker_watch;

pub use executor::Executor;
