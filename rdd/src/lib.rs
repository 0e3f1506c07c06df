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
pub mod aggregate;
pub mod broadcast;
pub mod checkpoint;
pub mod cleanup;
mod map_output;
pub mod node;
pub mod pair;
pub mod rdd;
pub mod runner;
pub mod shuffled;
pub mod sources;
pub mod spill;
pub mod stage;
mod table;
pub mod task;
pub mod transforms;

pub use accumulator::{AccumValue, Accumulator};
pub use broadcast::Broadcast;
pub use ember_core::Data;
pub use ember_storage::StorageLevel;
pub use node::BoxIter;
pub use rdd::Rdd;
pub use runner::JobRunner;
pub use task::{TaskContext, TaskEnv};
