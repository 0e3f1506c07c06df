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

/// Slots of a probe sequence [`CombineTable::prefetch`] follows before
/// giving up on finding the key's entry early.
const PROBES_PREFETCHED: usize = 8;

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

/// Asks the CPU to load every cache line of the `len` bytes at `p`: the
/// first and the last (entries and short keys span at most two lines;
/// a 40-byte entry straddles a line boundary more often than not).
#[inline]
fn prefetch_span<T>(p: *const T, len: usize) {
    prefetch(p);
    prefetch(p.cast::<u8>().wrapping_add(len.saturating_sub(1)));
}

/// Where `key`'s bytes are, and how many, when they are not inline: the
/// buffer of a `String` or `Vec<u8>` (the usual heap-allocated keys),
/// else `None`.
fn heap_bytes<K: 'static>(key: &K) -> Option<(*const u8, usize)> {
    bytes_of(key).map(|b| (b.as_ptr(), b.len()))
}

/// `a == b`, with `String` and `Vec<u8>` keys of up to 16 bytes compared
/// inline. The library `memcmp` reads 32 bytes at once from each key
/// (masking what is past the end), so a short key near the end of a cache
/// line pulls in the next line too: a miss the prefetch did not ask for.
#[inline]
fn keys_equal<K: Eq + 'static>(a: &K, b: &K) -> bool {
    let (a_any, b_any): (&dyn Any, &dyn Any) = (a, b);
    match (bytes_of(a_any), bytes_of(b_any)) {
        (Some(x), Some(y)) => short_bytes_equal(x, y),
        _ => a == b,
    }
}

/// The bytes of a `String` or `Vec<u8>` key.
#[inline]
fn bytes_of(key: &dyn Any) -> Option<&[u8]> {
    if let Some(s) = key.downcast_ref::<String>() {
        return Some(s.as_bytes());
    }
    key.downcast_ref::<Vec<u8>>().map(|v| v.as_slice())
}

/// Byte-slice equality that reads only the slices' own bytes when they
/// are at most 16 long: two overlapping words from each end.
#[inline]
fn short_bytes_equal(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
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
    /// slot; then the entries whose tags match along each probe sequence;
    /// then the bytes of those entries' keys when they live on the heap.
    /// Entries and keys are fetched whole, both cache lines when they
    /// straddle two (before, the second line of an entry missed on every
    /// other lookup).
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
            // Follow the probe sequence (its slots share the first one's
            // cache line, mostly) to the first slot with the key's tag.
            let tag = h >> 32;
            let mut i = h as usize & mask;
            for _ in 0..PROBES_PREFETCHED {
                let slot = self.slots[i];
                if slot == EMPTY {
                    break;
                }
                if slot >> 32 == tag {
                    let index = (slot as u32 - 1) as usize;
                    if let Some(e) = self.entries.get(index) {
                        prefetch_span(e, std::mem::size_of_val(e));
                        *f = index;
                    }
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        for &index in &found[..hashes.len().min(BATCH)] {
            if let Some((p, len)) = self.entries.get(index).and_then(|(k, _)| heap_bytes(k)) {
                prefetch_span(p, len);
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
                if keys_equal(k, &key) {
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

    #[test]
    fn short_keys_compare_like_slices() {
        // Every length up to past the inline limit, equal and with one
        // byte changed at each position.
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            assert!(keys_equal(&a, &a.clone()), "length {n}");
            let text = String::from_utf8(a.clone()).expect("ascii");
            assert!(keys_equal(&text, &text.clone()), "string length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!keys_equal(&a, &b), "length {n}, byte {at} differs");
            }
            let mut longer = a.clone();
            longer.push(b'z');
            assert!(!keys_equal(&a, &longer), "lengths {n} and {}", n + 1);
        }
        assert!(keys_equal(&7u64, &7u64) && !keys_equal(&7u64, &8u64));
    }
}
