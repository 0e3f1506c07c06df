//! The unified memory budget of one executor: one pool shared by storage
//! (cached blocks) and execution (aggregation and sort buffers), as in
//! Spark's `UnifiedMemoryManager`.

use std::sync::Mutex;

/// Memory accounting of one executor. Storage takes what is free;
/// execution takes what is free and may also reclaim storage memory above
/// the protected storage floor (the block manager evicts to give it back).
#[derive(Debug)]
pub struct MemoryBudget {
    total: u64,
    storage_floor: u64,
    used: Mutex<Used>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Used {
    storage: u64,
    execution: u64,
}

impl MemoryBudget {
    /// A budget of `total` bytes whose storage share below
    /// `storage_fraction × total` cannot be reclaimed by execution.
    pub fn new(total: u64, storage_fraction: f64) -> Self {
        let storage_floor = (total as f64 * storage_fraction.clamp(0.0, 1.0)) as u64;
        MemoryBudget {
            total,
            storage_floor,
            used: Mutex::new(Used::default()),
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, Used> {
        self.used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The whole pool.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes held by cached blocks.
    pub fn storage_used(&self) -> u64 {
        self.used().storage
    }

    /// Bytes held by execution.
    pub fn execution_used(&self) -> u64 {
        self.used().execution
    }

    /// Takes `bytes` for storage if they are free.
    pub fn try_acquire_storage(&self, bytes: u64) -> bool {
        let mut u = self.used();
        if u.storage + u.execution + bytes <= self.total {
            u.storage += bytes;
            true
        } else {
            false
        }
    }

    /// Returns storage bytes.
    pub fn release_storage(&self, bytes: u64) {
        let mut u = self.used();
        u.storage = u.storage.saturating_sub(bytes);
    }

    /// Storage bytes execution could reclaim by eviction right now.
    pub fn reclaimable_storage(&self) -> u64 {
        self.used().storage.saturating_sub(self.storage_floor)
    }

    /// Takes up to `bytes` for execution from free memory; returns what
    /// was granted.
    pub fn acquire_execution(&self, bytes: u64) -> u64 {
        let mut u = self.used();
        let free = self.total.saturating_sub(u.storage + u.execution);
        let granted = bytes.min(free);
        u.execution += granted;
        granted
    }

    /// Returns execution bytes.
    pub fn release_execution(&self, bytes: u64) {
        let mut u = self.used();
        u.execution = u.execution.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_and_execution_share_one_pool() {
        let b = MemoryBudget::new(100, 0.5);
        assert!(b.try_acquire_storage(70));
        assert_eq!(b.acquire_execution(50), 30, "only what is free");
        assert_eq!(b.reclaimable_storage(), 20, "storage above the floor of 50");
        assert!(!b.try_acquire_storage(1));
        b.release_execution(30);
        b.release_storage(70);
        assert_eq!(b.acquire_execution(100), 100);
    }
}
