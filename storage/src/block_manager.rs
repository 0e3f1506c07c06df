//! The block manager of one executor: cached partitions in memory
//! (least-recently-used eviction by bytes) or on disk, by storage level.

use crate::budget::MemoryBudget;
use crate::level::StorageLevel;
use ember_core::codec::{self, compress_block, decompress_block};
use ember_core::{Data, EmberError, RddId, Result};
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The name of a stored block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BlockId {
    /// Partition `partition` of RDD `rdd`.
    Rdd {
        /// The RDD.
        rdd: RddId,
        /// The partition.
        partition: usize,
    },
}

impl BlockId {
    fn rdd(&self) -> RddId {
        match self {
            BlockId::Rdd { rdd, .. } => *rdd,
        }
    }

    fn file_name(&self) -> String {
        match self {
            BlockId::Rdd { rdd, partition } => format!("rdd_{}_{}", rdd.0, partition),
        }
    }
}

/// Where a block ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    /// In memory.
    Memory,
    /// On disk.
    Disk,
    /// Not stored (a memory-only level without room); it will be
    /// recomputed from lineage when needed.
    NotStored,
}

/// Encodes a deserialized block (for disk when it is evicted, or for
/// another executor that asks for it).
type EncodeFn = Arc<dyn Fn() -> Result<Vec<u8>> + Send + Sync>;

enum MemValue {
    /// Records as `Arc<Vec<T>>`, and how to encode them.
    Deserialized(Arc<dyn Any + Send + Sync>, EncodeFn),
    /// A compressed block (see [`encode_block`]).
    Serialized(Arc<Vec<u8>>),
}

/// What [`BlockManager::find`] found.
enum Found {
    /// Records in memory, and how to encode them.
    Records(Arc<dyn Any + Send + Sync>, EncodeFn),
    /// An encoded block in memory.
    Encoded(Arc<Vec<u8>>),
    /// A file in the block folder.
    OnDisk,
}

struct MemEntry {
    value: MemValue,
    bytes: u64,
    last_use: u64,
    /// Whether eviction writes the block to disk (`MEMORY_AND_DISK`).
    spills: bool,
}

#[derive(Default)]
struct State {
    memory: HashMap<BlockId, MemEntry>,
    disk: HashSet<BlockId>,
    clock: u64,
}

/// Cached blocks of one executor.
pub struct BlockManager {
    dir: PathBuf,
    budget: Arc<MemoryBudget>,
    state: Mutex<State>,
}

/// Serializes records into one checksummed lz4 block.
pub fn encode_block<T: Data>(records: &[T]) -> Result<Vec<u8>> {
    Ok(compress_block(&codec::encode(records)?))
}

/// Decodes a block made by [`encode_block`]; `what` names it in errors.
pub fn decode_block<T: Data>(bytes: &[u8], what: &str) -> Result<Vec<T>> {
    codec::decode(&decompress_block(bytes, what)?, what)
}

/// Estimated memory of `records`: the encoded size of an even sample,
/// scaled up, and never less than the records' inline size.
pub fn estimate_size<T: Data>(records: &[T]) -> u64 {
    let n = records.len();
    if n == 0 {
        return 64;
    }
    let samples = n.min(32);
    let mut encoded = 0usize;
    for i in 0..samples {
        encoded += codec::encode(&records[i * n / samples])
            .map(|b| b.len())
            .unwrap_or(0);
    }
    let per_record = (encoded / samples).max(std::mem::size_of::<T>());
    (per_record * n) as u64 + 64
}

impl BlockManager {
    /// A block manager spilling to `dir` within `budget`.
    pub fn new(dir: impl Into<PathBuf>, budget: Arc<MemoryBudget>) -> Self {
        BlockManager {
            dir: dir.into(),
            budget,
            state: Mutex::new(State::default()),
        }
    }

    /// The memory budget shared with execution.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// The folder blocks spill to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: &BlockId) -> PathBuf {
        self.dir.join(id.file_name())
    }

    /// Where block `id`'s data is, looked up under the lock; `touch`
    /// marks it as just used (for LRU order).
    fn find(&self, id: &BlockId, touch: bool) -> Option<Found> {
        let mut st = self.state();
        if touch {
            st.clock += 1;
        }
        let now = st.clock;
        if let Some(e) = st.memory.get_mut(id) {
            if touch {
                e.last_use = now;
            }
            return Some(match &e.value {
                MemValue::Deserialized(v, encode) => Found::Records(v.clone(), encode.clone()),
                MemValue::Serialized(b) => Found::Encoded(b.clone()),
            });
        }
        st.disk.contains(id).then_some(Found::OnDisk)
    }

    /// The records of block `id`, from memory or disk; `None` if absent.
    pub fn get<T: Data>(&self, id: &BlockId) -> Result<Option<Arc<Vec<T>>>> {
        match self.find(id, true) {
            None => Ok(None),
            Some(Found::Records(any, _)) => Ok(any.downcast::<Vec<T>>().ok()),
            Some(Found::Encoded(bytes)) => {
                Ok(Some(Arc::new(decode_block(&bytes, &id.file_name())?)))
            }
            Some(Found::OnDisk) => {
                let path = self.path(id);
                let bytes = std::fs::read(&path)
                    .map_err(|e| EmberError::io(&path, "read cached block", e))?;
                Ok(Some(Arc::new(decode_block(
                    &bytes,
                    &path.display().to_string(),
                )?)))
            }
        }
    }

    /// Block `id` as [`encode_block`] bytes, from memory or disk, for
    /// another executor; `None` if absent. Does not count as a use.
    pub fn get_encoded(&self, id: &BlockId) -> Result<Option<Vec<u8>>> {
        match self.find(id, false) {
            None => Ok(None),
            // Encoded outside the lock: a volume takes a while.
            Some(Found::Records(_, encode)) => encode().map(Some),
            Some(Found::Encoded(bytes)) => Ok(Some(bytes.to_vec())),
            Some(Found::OnDisk) => {
                let path = self.path(id);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    // Removed since (unpersist): as if absent.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(EmberError::io(&path, "read cached block", e)),
                }
            }
        }
    }

    /// Stores `records` as block `id` at `level`, evicting older blocks of
    /// other RDDs if memory is short.
    pub fn put<T: Data>(
        &self,
        id: BlockId,
        level: StorageLevel,
        records: Arc<Vec<T>>,
    ) -> Result<StoreOutcome> {
        match level {
            StorageLevel::MemoryOnly | StorageLevel::MemoryAndDisk => {
                let bytes = estimate_size(&records);
                let encode: EncodeFn = {
                    let r = records.clone();
                    Arc::new(move || encode_block(&r))
                };
                let spills = level == StorageLevel::MemoryAndDisk;
                let value = MemValue::Deserialized(records.clone(), encode);
                if self.insert_memory(id, value, bytes, spills)? {
                    Ok(StoreOutcome::Memory)
                } else if level == StorageLevel::MemoryAndDisk {
                    self.write_disk(&id, &encode_block(&records)?)?;
                    Ok(StoreOutcome::Disk)
                } else {
                    Ok(StoreOutcome::NotStored)
                }
            }
            StorageLevel::MemoryOnlySer => {
                let block = encode_block(&records)?;
                let bytes = block.len() as u64;
                if self.insert_memory(id, MemValue::Serialized(Arc::new(block)), bytes, false)? {
                    Ok(StoreOutcome::Memory)
                } else {
                    Ok(StoreOutcome::NotStored)
                }
            }
            StorageLevel::DiskOnly => {
                self.write_disk(&id, &encode_block(&records)?)?;
                Ok(StoreOutcome::Disk)
            }
        }
    }

    /// Reserves `bytes` of storage (evicting least-recently-used blocks of
    /// other RDDs as needed) and inserts the entry; false if it cannot fit.
    fn insert_memory(
        &self,
        id: BlockId,
        value: MemValue,
        bytes: u64,
        spills: bool,
    ) -> Result<bool> {
        if bytes > self.budget.total() {
            return Ok(false);
        }
        let mut evicted = Vec::new();
        let mut st = self.state();
        if let Some(old) = st.memory.remove(&id) {
            self.budget.release_storage(old.bytes);
        }
        let mut acquired = self.budget.try_acquire_storage(bytes);
        while !acquired {
            let victim = st
                .memory
                .iter()
                .filter(|(b, _)| b.rdd() != id.rdd())
                .min_by_key(|(_, e)| e.last_use)
                .map(|(b, _)| *b);
            let Some(victim) = victim else { break };
            let entry = st.memory.remove(&victim).expect("victim is present");
            self.budget.release_storage(entry.bytes);
            evicted.push((victim, entry));
            acquired = self.budget.try_acquire_storage(bytes);
        }
        if acquired {
            st.clock += 1;
            let last_use = st.clock;
            st.memory.insert(
                id,
                MemEntry {
                    value,
                    bytes,
                    last_use,
                    spills,
                },
            );
        }
        drop(st);
        self.spill_evicted(evicted)?;
        Ok(acquired)
    }

    /// Writes evicted blocks that may live on disk there.
    fn spill_evicted(&self, evicted: Vec<(BlockId, MemEntry)>) -> Result<()> {
        for (id, entry) in evicted {
            tracing::debug!(block = ?id, bytes = entry.bytes, "evicted");
            if let (true, MemValue::Deserialized(_, encode)) = (entry.spills, &entry.value) {
                self.write_disk(&id, &encode()?)?;
            }
        }
        Ok(())
    }

    fn write_disk(&self, id: &BlockId, bytes: &[u8]) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| EmberError::io(&self.dir, "create block folder", e))?;
        let path = self.path(id);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).map_err(|e| EmberError::io(&tmp, "write block", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| EmberError::io(&path, "rename block", e))?;
        self.state().disk.insert(*id);
        Ok(())
    }

    /// Takes up to `bytes` of execution memory, evicting cached blocks down
    /// to the protected storage floor if free memory is short. Returns what
    /// was granted; give it back with `budget().release_execution`.
    pub fn acquire_execution(&self, bytes: u64) -> Result<u64> {
        let mut granted = self.budget.acquire_execution(bytes);
        if granted < bytes && self.budget.reclaimable_storage() > 0 {
            let mut evicted = Vec::new();
            {
                let mut st = self.state();
                let mut freed = 0;
                while freed < bytes - granted && self.budget.reclaimable_storage() > 0 {
                    let victim = st
                        .memory
                        .iter()
                        .min_by_key(|(_, e)| e.last_use)
                        .map(|(b, _)| *b);
                    let Some(victim) = victim else { break };
                    let entry = st.memory.remove(&victim).expect("victim is present");
                    self.budget.release_storage(entry.bytes);
                    freed += entry.bytes;
                    evicted.push((victim, entry));
                }
            }
            self.spill_evicted(evicted)?;
            granted += self.budget.acquire_execution(bytes - granted);
        }
        Ok(granted)
    }

    /// Drops every block of `rdd` (memory and disk); returns how many.
    pub fn remove_rdd(&self, rdd: RddId) -> usize {
        let mut st = self.state();
        let mem: Vec<BlockId> = st
            .memory
            .keys()
            .filter(|b| b.rdd() == rdd)
            .copied()
            .collect();
        for b in &mem {
            if let Some(e) = st.memory.remove(b) {
                self.budget.release_storage(e.bytes);
            }
        }
        let disk: Vec<BlockId> = st.disk.iter().filter(|b| b.rdd() == rdd).copied().collect();
        for b in &disk {
            st.disk.remove(b);
            let _ = std::fs::remove_file(self.path(b));
        }
        mem.len() + disk.len()
    }

    /// Blocks in memory, least recently used first.
    pub fn memory_blocks(&self) -> Vec<BlockId> {
        let st = self.state();
        let mut v: Vec<(u64, BlockId)> = st.memory.iter().map(|(b, e)| (e.last_use, *b)).collect();
        v.sort();
        v.into_iter().map(|(_, b)| b).collect()
    }

    /// Blocks on disk.
    pub fn disk_blocks(&self) -> Vec<BlockId> {
        let mut v: Vec<BlockId> = self.state().disk.iter().copied().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(rdd: u64, partition: usize) -> BlockId {
        BlockId::Rdd {
            rdd: RddId(rdd),
            partition,
        }
    }

    fn manager(total: u64) -> (tempfile::TempDir, BlockManager) {
        let dir = tempfile::tempdir().unwrap();
        let bm = BlockManager::new(
            dir.path().join("blocks"),
            Arc::new(MemoryBudget::new(total, 0.5)),
        );
        (dir, bm)
    }

    fn records(n: usize) -> Arc<Vec<u64>> {
        Arc::new((0..n as u64).map(|i| i * 1_000_003).collect())
    }

    #[test]
    fn eviction_follows_lru_order() {
        let one = estimate_size(&records(1000));
        let (_d, bm) = manager(3 * one + 10);
        for p in 0..3 {
            assert_eq!(
                bm.put(block(p, 0), StorageLevel::MemoryOnly, records(1000))
                    .unwrap(),
                StoreOutcome::Memory
            );
        }
        // Touch rdd 0 so rdd 1 is the least recently used.
        assert!(bm.get::<u64>(&block(0, 0)).unwrap().is_some());
        bm.put(block(9, 0), StorageLevel::MemoryOnly, records(1000))
            .unwrap();
        let in_memory = bm.memory_blocks();
        assert!(
            !in_memory.contains(&block(1, 0)),
            "LRU block evicted: {in_memory:?}"
        );
        assert!(in_memory.contains(&block(0, 0)) && in_memory.contains(&block(2, 0)));
        assert!(
            bm.get::<u64>(&block(1, 0)).unwrap().is_none(),
            "memory-only blocks are gone"
        );
    }

    #[test]
    fn blocks_of_the_rdd_being_stored_are_not_evicted() {
        let one = estimate_size(&records(1000));
        let (_d, bm) = manager(2 * one + 10);
        bm.put(block(5, 0), StorageLevel::MemoryOnly, records(1000))
            .unwrap();
        bm.put(block(5, 1), StorageLevel::MemoryOnly, records(1000))
            .unwrap();
        let third = bm
            .put(block(5, 2), StorageLevel::MemoryOnly, records(1000))
            .unwrap();
        assert_eq!(third, StoreOutcome::NotStored);
        assert_eq!(bm.memory_blocks().len(), 2);
    }

    #[test]
    fn memory_and_disk_blocks_come_back_from_disk_after_eviction() {
        let one = estimate_size(&records(1000));
        let (_d, bm) = manager(one + 10);
        bm.put(block(1, 0), StorageLevel::MemoryAndDisk, records(1000))
            .unwrap();
        bm.put(block(2, 0), StorageLevel::MemoryAndDisk, records(1000))
            .unwrap();
        assert_eq!(bm.disk_blocks(), vec![block(1, 0)]);
        assert_eq!(
            *bm.get::<u64>(&block(1, 0)).unwrap().unwrap(),
            *records(1000)
        );
        assert_eq!(bm.remove_rdd(RddId(1)), 1);
        assert!(
            std::fs::read_dir(bm.dir()).unwrap().next().is_none(),
            "files removed"
        );
    }

    #[test]
    fn serialized_and_disk_levels_round_trip() {
        let (_d, bm) = manager(1 << 20);
        bm.put(block(1, 0), StorageLevel::MemoryOnlySer, records(500))
            .unwrap();
        bm.put(block(2, 0), StorageLevel::DiskOnly, records(500))
            .unwrap();
        assert_eq!(
            *bm.get::<u64>(&block(1, 0)).unwrap().unwrap(),
            *records(500)
        );
        assert_eq!(
            *bm.get::<u64>(&block(2, 0)).unwrap().unwrap(),
            *records(500)
        );
    }

    #[test]
    fn blocks_are_served_encoded_at_every_level() {
        let (_d, bm) = manager(1 << 20);
        let levels = [
            StorageLevel::MemoryOnly,
            StorageLevel::MemoryOnlySer,
            StorageLevel::MemoryAndDisk,
            StorageLevel::DiskOnly,
        ];
        for (rdd, level) in levels.into_iter().enumerate() {
            bm.put(block(rdd as u64, 0), level, records(300)).unwrap();
            let bytes = bm.get_encoded(&block(rdd as u64, 0)).unwrap().unwrap();
            let back: Vec<u64> = decode_block(&bytes, "served").unwrap();
            assert_eq!(back, *records(300), "{level:?}");
        }
        assert!(bm.get_encoded(&block(9, 0)).unwrap().is_none());
    }

    #[test]
    fn a_corrupted_disk_block_is_an_error_not_data() {
        let (_d, bm) = manager(1 << 20);
        bm.put(block(3, 0), StorageLevel::DiskOnly, records(500))
            .unwrap();
        let path = bm.dir().join("rdd_3_0");
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = bm.get::<u64>(&block(3, 0)).unwrap_err();
        assert!(err.to_string().contains("rdd_3_0"), "{err}");
    }

    #[test]
    fn an_unwritable_dir_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let bm = BlockManager::new(
            file.join("blocks"),
            Arc::new(MemoryBudget::new(1 << 20, 0.5)),
        );
        let err = bm
            .put(block(1, 0), StorageLevel::DiskOnly, records(10))
            .unwrap_err();
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[test]
    fn execution_evicts_cached_blocks_down_to_the_floor() {
        let one = estimate_size(&records(1000));
        let (_d, bm) = manager(4 * one);
        for p in 0..4 {
            bm.put(block(p, 0), StorageLevel::MemoryOnly, records(1000))
                .unwrap();
        }
        let granted = bm.acquire_execution(4 * one).unwrap();
        assert!(
            granted >= 2 * one - 64 && granted <= 2 * one + 64,
            "granted {granted} of {}",
            4 * one
        );
        assert_eq!(bm.memory_blocks().len(), 2, "half the pool stays protected");
    }
}
