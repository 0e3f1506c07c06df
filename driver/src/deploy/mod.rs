//! Standalone mode: the master daemon, the worker daemon, and the
//! driver's client of the master.
//!
//! Who talks to whom: workers keep one connection to the master; a driver
//! keeps one to the master for its application; executors (started by
//! workers) register with their driver as in `local-cluster`, and workers
//! fetch the application's binary from the driver's file server. Every
//! connection authenticates first when `ember.authenticate` is on.

pub mod binary;
pub mod client;
pub mod conn;
pub mod master;
pub mod master_ui;
pub mod messages;
pub mod worker;

pub use master::{Master, MasterOptions};
pub use worker::{Worker, WorkerOptions};
