//! `ember-storage`: where an executor keeps cached RDD partitions, and the
//! memory budget that caching shares with execution (aggregations, sorts).
//!
//! [`BlockManager`] stores blocks at a [`StorageLevel`]: deserialized or
//! serialized (lz4) in memory, on disk (lz4), or in memory spilling to disk.
//! Memory blocks are evicted least-recently-used first, never those of the
//! RDD being stored. [`MemoryBudget`] is Spark's unified memory model:
//! storage and execution share one pool; execution may take free storage
//! memory and evict cached blocks down to a protected floor.

pub mod block_manager;
pub mod budget;
pub mod level;

pub use block_manager::{BlockId, BlockManager, StoreOutcome};
pub use budget::MemoryBudget;
pub use level::StorageLevel;
