//! The block manager of one executor: cached RDD partitions by block id.

use dashmap::DashMap;
use ember_core::RddId;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::Arc;

/// Where and how a persisted RDD keeps its partitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageLevel {
    /// Deserialized in memory; evicted partitions are recomputed.
    MemoryOnly,
}

/// The name of a stored block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlockId {
    /// Partition `partition` of RDD `rdd`.
    Rdd {
        /// The RDD.
        rdd: RddId,
        /// The partition.
        partition: usize,
    },
}

/// A stored block: the partition's records as `Arc<Vec<T>>`, type-erased.
pub type StoredBlock = Arc<dyn Any + Send + Sync>;

/// Cached blocks of one executor.
#[derive(Default)]
pub struct BlockManager {
    blocks: DashMap<BlockId, StoredBlock>,
}

impl BlockManager {
    /// An empty block manager.
    pub fn new() -> Self {
        Self::default()
    }

    /// The block, if stored here.
    pub fn get(&self, id: &BlockId) -> Option<StoredBlock> {
        self.blocks.get(id).map(|b| b.value().clone())
    }

    /// Stores `block` under `id`, replacing an older copy.
    pub fn put(&self, id: BlockId, block: StoredBlock) {
        self.blocks.insert(id, block);
    }

    /// Drops every block of `rdd`; returns how many were dropped.
    pub fn remove_rdd(&self, rdd: RddId) -> usize {
        let before = self.blocks.len();
        self.blocks
            .retain(|id, _| !matches!(id, BlockId::Rdd { rdd: r, .. } if *r == rdd));
        before - self.blocks.len()
    }

    /// The ids of all stored blocks.
    pub fn block_ids(&self) -> Vec<BlockId> {
        self.blocks.iter().map(|e| *e.key()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_stored_and_removed_by_rdd() {
        let bm = BlockManager::new();
        let a = BlockId::Rdd {
            rdd: RddId(1),
            partition: 0,
        };
        let b = BlockId::Rdd {
            rdd: RddId(2),
            partition: 0,
        };
        bm.put(a, Arc::new(vec![1u32, 2, 3]));
        bm.put(b, Arc::new(vec![4u32]));
        let got = bm.get(&a).unwrap();
        assert_eq!(got.downcast_ref::<Vec<u32>>().unwrap(), &vec![1, 2, 3]);
        assert_eq!(bm.remove_rdd(RddId(1)), 1);
        assert!(bm.get(&a).is_none());
        assert!(bm.get(&b).is_some());
    }
}
