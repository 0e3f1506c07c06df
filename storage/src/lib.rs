//! `ember-storage`: the block manager that keeps cached RDD partitions.

pub mod block_manager;

pub use block_manager::{BlockId, BlockManager, StorageLevel};
