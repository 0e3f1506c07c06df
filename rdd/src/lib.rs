//! `ember-rdd`: resilient distributed datasets.
//!
//! An [`Rdd<T>`] is a lazy, typed description of partitioned data: a node
//! in a lineage graph whose edges are narrow dependencies (a partition
//! needs a few parent partitions, pipelined in one task) or shuffle
//! dependencies (a partition needs every parent partition; the scheduler
//! cuts stages there). Actions hand the graph to a [`JobRunner`] (the
//! driver's `Context`).
//!
//! Nodes ship to executors one by one (see [`stage`]): each node encodes
//! only its own state plus the offset of its decoder, so neither shipping
//! nor decoding recurses through the lineage.

pub mod accumulator;
pub mod actions;
pub mod aggregate;
pub mod approx;
pub mod async_action;
pub mod broadcast;
pub mod checkpoint;
pub mod cleanup;
pub mod job_info;
mod map_output;
pub mod node;
pub mod numeric;
pub mod object_file;
pub mod pair;
pub mod pipe;
pub mod rdd;
pub mod runner;
pub mod sample;
pub mod set_ops;
pub mod shuffled;
pub mod sorted;
pub mod sources;
pub mod spill;
pub mod stage;
mod table;
pub mod task;
pub mod transforms;
pub mod zip;

pub use accumulator::{AccumValue, Accumulator};
pub use actions::LocalIterator;
pub use approx::HyperLogLog;
pub use async_action::JobHandle;
pub use broadcast::Broadcast;
pub use ember_core::Data;
pub use ember_storage::StorageLevel;
pub use node::BoxIter;
pub use numeric::{Buckets, Numeric, StatCounter};
pub use rdd::Rdd;
pub use runner::JobRunner;
pub use task::{TaskContext, TaskEnv};
