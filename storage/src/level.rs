//! Storage levels: where and how a persisted RDD keeps its partitions.

use serde::{Deserialize, Serialize};

/// Where and how a persisted RDD keeps its partitions (Spark's levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageLevel {
    /// Deserialized in memory; partitions that do not fit or are evicted
    /// are recomputed from lineage when needed.
    MemoryOnly,
    /// Serialized and lz4-compressed in memory (smaller, slower to read);
    /// recomputed when evicted.
    MemoryOnlySer,
    /// Deserialized in memory; partitions that do not fit or are evicted
    /// go to disk (lz4).
    MemoryAndDisk,
    /// Serialized and lz4-compressed on disk only.
    DiskOnly,
}

impl StorageLevel {
    /// Whether blocks may live in memory.
    pub fn uses_memory(self) -> bool {
        !matches!(self, StorageLevel::DiskOnly)
    }

    /// Whether blocks may live on disk.
    pub fn uses_disk(self) -> bool {
        matches!(self, StorageLevel::MemoryAndDisk | StorageLevel::DiskOnly)
    }

    /// Whether in-memory blocks are kept serialized.
    pub fn serialized(self) -> bool {
        matches!(self, StorageLevel::MemoryOnlySer)
    }
}
