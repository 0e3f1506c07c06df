//! The in-memory table of [`crate::spill::SpillingMap`]: combiners by key,
//! stored densely in insertion order and found through an open-addressing
//! index, with records looked up in small batches whose index slots are
//! prefetched first.
//!
//! An aggregation over many distinct keys (a word count over a large
//! vocabulary) is bound by cache misses, not by hashing: a rare key's
//! slot, entry and key bytes are each a miss, one after the other. Here
//! a whole batch's slots are requested before the first lookup, then the
//! entries those slots point to, then (for `String` and `Vec<u8>` keys)
//! the bytes of those entries' keys, so the misses of a batch overlap. Dense entries also keep the keys
//! that arrive first, which are usually the frequent ones, close together.

use crate::aggregate::FoldHasher;
use std::any::Any;
use std::hash::{BuildHasher, BuildHasherDefault, Hash};

/// Records looked up together: enough misses in flight to hide most of
/// the memory latency, few enough that the prefetched lines (three per
/// record at most) stay in the L1 cache until their lookup (64 beat 16
/// and 32 on a 100k-word count).
pub(crate) const BATCH: usize = 64;

/// An empty slot; a used slot holds the top 32 bits of its key's hash
/// (the tag) above the entry index plus one.
const EMPTY: u64 = 0;

/// Combiners by key in insertion order (so iteration is the same in every
/// run and mode).
pub(crate) struct CombineTable<K, C> {
    /// Open-addressing index (linear probing, at most half full); its
    /// length is zero or a power of two.
    slots: Vec<u64>,
    /// `None` only for the moment a combiner is being merged.
    entries: Vec<(K, Option<C>)>,
}

/// The hash every table uses for `key`.
pub(crate) fn hash_key<K: Hash>(key: &K) -> u64 {
    BuildHasherDefault::<FoldHasher>::default().hash_one(key)
}

/// Asks the CPU to start loading the cache line at `p` (a hint only).
#[inline]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes no memory, whatever the
    // address; SSE is part of every x86_64 target.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Where `key`'s bytes are when they are not inline: the buffer of a
/// `String` or `Vec<u8>` (the usual heap-allocated keys), else `None`.
fn heap_bytes<K: 'static>(key: &K) -> Option<*const u8> {
    let key: &dyn Any = key;
    if let Some(s) = key.downcast_ref::<String>() {
        return Some(s.as_ptr());
    }
    key.downcast_ref::<Vec<u8>>().map(|v| v.as_ptr())
}

impl<K: Hash + Eq + 'static, C> CombineTable<K, C> {
    /// An empty table (allocates on the first insert).
    pub(crate) fn new() -> Self {
        CombineTable {
            slots: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Distinct keys held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The most recently added entry, if any.
    pub(crate) fn last(&self) -> Option<(&K, &C)> {
        self.entries
            .last()
            .map(|(k, c)| (k, c.as_ref().expect("combiner present between merges")))
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Starts loading what looking up `hashes` (at most [`BATCH`]) will
    /// read, level by level so each level's misses overlap: every first
    /// slot; then the entries whose tags match; then the bytes of those
    /// entries' keys when they live on the heap.
    pub(crate) fn prefetch(&self, hashes: &[u64]) {
        if self.slots.is_empty() {
            return;
        }
        let mask = self.mask();
        for &h in hashes {
            prefetch(&self.slots[h as usize & mask]);
        }
        let mut found = [usize::MAX; BATCH];
        for (f, &h) in found.iter_mut().zip(hashes) {
            let slot = self.slots[h as usize & mask];
            if slot != EMPTY && slot >> 32 == h >> 32 {
                let index = (slot as u32 - 1) as usize;
                if let Some(e) = self.entries.get(index) {
                    prefetch(e);
                    *f = index;
                }
            }
        }
        for &index in &found[..hashes.len().min(BATCH)] {
            if let Some(p) = self.entries.get(index).and_then(|(k, _)| heap_bytes(k)) {
                prefetch(p);
            }
        }
    }

    /// Folds `value` into `key`'s combiner with `merge`, or starts the
    /// combiner with `create`; `hash` is [`hash_key`] of `key`.
    pub(crate) fn upsert<V>(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        create: impl FnOnce(V) -> C,
        merge: impl FnOnce(C, V) -> C,
    ) {
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.mask();
        let tag = hash >> 32;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                let index = u32::try_from(self.entries.len() + 1)
                    .expect("fewer than 2^32 keys in one in-memory table");
                self.slots[i] = tag << 32 | index as u64;
                self.entries.push((key, Some(create(value))));
                return;
            }
            if slot >> 32 == tag {
                let (k, c) = &mut self.entries[(slot as u32 - 1) as usize];
                if *k == key {
                    let old = c.take().expect("combiner present between merges");
                    *c = Some(merge(old, value));
                    return;
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Doubles the index (at least 64 slots) and re-inserts every entry.
    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(64);
        self.slots.clear();
        self.slots.resize(len, EMPTY);
        let mask = len - 1;
        for (n, (k, _)) in self.entries.iter().enumerate() {
            let h = hash_key(k);
            let mut i = h as usize & mask;
            while self.slots[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = (h >> 32) << 32 | (n as u64 + 1);
        }
    }

    /// Removes and returns every entry in insertion order; the index keeps
    /// its size for what is inserted next.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (K, C)> + '_ {
        self.slots.fill(EMPTY);
        self.entries
            .drain(..)
            .map(|(k, c)| (k, c.expect("combiner present between merges")))
    }

    /// Every entry in insertion order.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (K, C)> {
        self.entries
            .into_iter()
            .map(|(k, c)| (k, c.expect("combiner present between merges")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts `words` in batches as the spilling map does.
    fn count(table: &mut CombineTable<String, u64>, words: &[String]) {
        for batch in words.chunks(BATCH) {
            let hashes: Vec<u64> = batch.iter().map(hash_key).collect();
            table.prefetch(&hashes);
            for (w, h) in batch.iter().zip(hashes) {
                table.upsert(h, w.clone(), 1u64, |v| v, |c, v| c + v);
            }
        }
    }

    #[test]
    fn counts_like_a_hash_map_in_first_seen_order() {
        // Skewed keys across many growths, including the empty key.
        let words: Vec<String> = (0..50_000u64)
            .map(|i| format!("w{}", (i * i) % 7919 % (1 + i % 3000)))
            .chain(std::iter::once(String::new()))
            .collect();
        let mut table = CombineTable::new();
        count(&mut table, &words);
        let mut expected: Vec<(String, u64)> = Vec::new();
        let mut at = std::collections::HashMap::new();
        for w in &words {
            let i = *at.entry(w.clone()).or_insert_with(|| {
                expected.push((w.clone(), 0));
                expected.len() - 1
            });
            expected[i].1 += 1;
        }
        assert_eq!(table.len(), expected.len());
        assert_eq!(
            table.last().map(|(k, c)| (k.clone(), *c)),
            expected.last().cloned()
        );
        assert_eq!(table.into_entries().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn drain_empties_and_the_table_is_reusable() {
        let words: Vec<String> = (0..1000).map(|i| format!("k{}", i % 300)).collect();
        let mut table = CombineTable::new();
        count(&mut table, &words);
        let drained: Vec<(String, u64)> = table.drain().collect();
        assert_eq!(drained.len(), 300);
        assert!(drained.iter().all(|(_, c)| *c > 0));
        assert_eq!(table.len(), 0);
        count(&mut table, &words[..10]);
        assert_eq!(
            table.into_entries().collect::<Vec<_>>(),
            (0..10).map(|i| (format!("k{i}"), 1)).collect::<Vec<_>>()
        );
    }
}
