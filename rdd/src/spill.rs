//! Aggregations that never run out of memory: an in-memory map whose
//! estimated size is backed by execution memory from the executor's
//! budget; when the budget says no, the map is sorted by key and spilled
//! to disk as a run of checksummed lz4 chunks, and at the end all runs
//! are merge-streamed in key order.

use crate::node::BoxIter;
use crate::shuffled::Key;
use crate::table::{hash_key, CombineTable, BATCH};
use crate::task::{current_env, record_side_metrics, throw, TaskEnv};
use ember_core::codec;
use ember_core::{Data, EmberError, Result};
use ember_shuffle::{ChunkReader, ChunkWriter};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;

/// How often (in inserted records) the size estimate is checked.
const CHECK_EVERY: usize = 1024;

/// Execution memory held by one aggregation, grown by doubling and given
/// back when dropped.
pub struct MemoryGrant {
    env: Option<Arc<TaskEnv>>,
    granted: u64,
}

impl MemoryGrant {
    /// A grant against the running task's executor (none outside tasks:
    /// then memory is unlimited and nothing spills).
    pub fn for_current_task() -> Self {
        MemoryGrant {
            env: current_env(),
            granted: 0,
        }
    }

    /// Makes sure `needed` bytes are granted; false when the budget cannot
    /// give them (the caller spills).
    pub fn ensure(&mut self, needed: u64) -> Result<bool> {
        let Some(env) = &self.env else {
            return Ok(true);
        };
        if needed <= self.granted {
            return Ok(true);
        }
        let want = (needed - self.granted).max(self.granted).max(1 << 20);
        self.granted += env.blocks.acquire_execution(want)?;
        let peak = self.granted;
        record_side_metrics(|m| m.peak_execution_memory = m.peak_execution_memory.max(peak));
        Ok(needed <= self.granted)
    }

    /// Gives everything back (after a spill).
    pub fn release(&mut self) {
        if let Some(env) = &self.env {
            env.blocks.budget().release_execution(self.granted);
        }
        self.granted = 0;
    }

    /// Where the task's spill files go (none outside tasks).
    pub(crate) fn spill_dir(&self) -> Option<PathBuf> {
        self.env
            .as_ref()
            .map(|e| e.shuffle_files.dir().join("spill"))
    }
}

impl Drop for MemoryGrant {
    fn drop(&mut self) {
        self.release();
    }
}

/// Estimates the memory of a growing collection from the encoded size of
/// sampled records.
#[derive(Default)]
pub struct SizeEstimate {
    sampled: u64,
    sampled_bytes: u64,
}

impl SizeEstimate {
    /// Samples `record` (call on a regular subset of records).
    pub fn sample<T: serde::Serialize>(&mut self, record: &T) {
        self.sampled += 1;
        self.sampled_bytes += codec::encode(record).map(|b| b.len() as u64).unwrap_or(0);
    }

    /// Estimated bytes of `n` records of type `T` in memory: the larger of
    /// the inline size and the sampled encoded size, plus map overhead.
    pub fn bytes<T>(&self, n: usize) -> u64 {
        let avg = self.sampled_bytes.checked_div(self.sampled).unwrap_or(0);
        let per = avg.max(std::mem::size_of::<T>() as u64) * 3 / 2 + 8;
        per * n as u64
    }
}

static NEXT_SPILL: AtomicU64 = AtomicU64::new(0);

/// One sorted run on disk, deleted when dropped.
pub struct SpillFile {
    path: PathBuf,
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl SpillFile {
    /// A new, empty spill file under `dir`, open for writing; it is
    /// deleted when the returned guard is dropped (also when the task
    /// fails or panics).
    pub(crate) fn create(dir: &Path) -> Result<(SpillFile, std::fs::File)> {
        std::fs::create_dir_all(dir).map_err(|e| EmberError::io(dir, "create spill folder", e))?;
        let path = dir.join(format!(
            "spill-{}-{}",
            std::process::id(),
            NEXT_SPILL.fetch_add(1, AtomicOrdering::Relaxed)
        ));
        let f = std::fs::File::create(&path)
            .map_err(|e| EmberError::io(&path, "create spill file", e))?;
        Ok((SpillFile { path }, f))
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `records` (already sorted by key) as a run of chunks of about
/// a megabyte each (so reading a run back holds one such chunk, however
/// large its records are).
pub fn write_run<T: Data>(dir: &Path, records: Vec<T>) -> Result<SpillFile> {
    let (file, f) = SpillFile::create(dir)?;
    let mut w = BufWriter::new(f);
    let mut chunks = ChunkWriter::new();
    let mut written = 0u64;
    let mut write = |bytes: Vec<u8>| -> Result<()> {
        written += bytes.len() as u64;
        w.write_all(&bytes)
            .map_err(|e| EmberError::io(&file.path, "write spill file", e))
    };
    for record in records {
        chunks.push(&record)?;
        let done = chunks.take_finished();
        if !done.is_empty() {
            write(done)?;
        }
    }
    write(chunks.finish())?;
    w.flush()
        .map_err(|e| EmberError::io(&file.path, "write spill file", e))?;
    record_side_metrics(|m| m.spill_disk_bytes += written);
    Ok(file)
}

/// Streams the records of a run back, chunk by chunk.
struct RunReader<T> {
    chunks: ChunkReader<'static>,
    buffer: std::vec::IntoIter<T>,
    _file: SpillFile,
}

impl<T: Data> RunReader<T> {
    fn open(file: SpillFile) -> Result<Self> {
        let open_err = |e| EmberError::io(&file.path, "open spill file", e);
        let f = std::fs::File::open(&file.path).map_err(open_err)?;
        let len = f.metadata().map_err(open_err)?.len();
        Ok(RunReader {
            chunks: ChunkReader::from_stream(
                BufReader::new(f),
                len,
                file.path.display().to_string(),
            ),
            buffer: Vec::new().into_iter(),
            _file: file,
        })
    }

    fn next_record(&mut self) -> Result<Option<T>> {
        loop {
            if let Some(r) = self.buffer.next() {
                return Ok(Some(r));
            }
            match self.chunks.next_chunk()? {
                Some(records) => self.buffer = records.into_iter(),
                None => return Ok(None),
            }
        }
    }
}

/// Merges sorted runs into one stream sorted by key (ties in run order).
pub struct MergedRuns<K, C> {
    readers: Vec<RunReader<(K, C)>>,
    heap: BinaryHeap<Head<K, C>>,
    descending: bool,
}

struct Head<K, C> {
    key: K,
    value: C,
    run: usize,
    descending: bool,
}

impl<K: Ord, C> PartialEq for Head<K, C> {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key && self.run == o.run
    }
}
impl<K: Ord, C> Eq for Head<K, C> {}
impl<K: Ord, C> PartialOrd for Head<K, C> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<K: Ord, C> Ord for Head<K, C> {
    // BinaryHeap is a max-heap: reverse for smallest key, then first run.
    fn cmp(&self, o: &Self) -> Ordering {
        let by_key = if self.descending {
            self.key.cmp(&o.key)
        } else {
            o.key.cmp(&self.key)
        };
        by_key.then(o.run.cmp(&self.run))
    }
}

impl<K: Key, C: Data> MergedRuns<K, C> {
    /// Opens every run (each sorted ascending by key).
    pub fn new(runs: Vec<SpillFile>) -> Result<Self> {
        Self::ordered(runs, false)
    }

    /// Opens every run, each sorted by key in the given direction.
    pub fn ordered(runs: Vec<SpillFile>, descending: bool) -> Result<Self> {
        let mut readers = runs
            .into_iter()
            .map(RunReader::open)
            .collect::<Result<Vec<_>>>()?;
        let mut heap = BinaryHeap::new();
        for (run, r) in readers.iter_mut().enumerate() {
            if let Some((key, value)) = r.next_record()? {
                heap.push(Head {
                    key,
                    value,
                    run,
                    descending,
                });
            }
        }
        Ok(MergedRuns {
            readers,
            heap,
            descending,
        })
    }
}

impl<K: Key, C: Data> Iterator for MergedRuns<K, C> {
    type Item = (K, C);
    fn next(&mut self) -> Option<(K, C)> {
        let head = self.heap.pop()?;
        match self.readers[head.run].next_record() {
            Ok(Some((key, value))) => self.heap.push(Head {
                key,
                value,
                run: head.run,
                descending: self.descending,
            }),
            Ok(None) => {}
            Err(e) => throw(e),
        }
        Some((head.key, head.value))
    }
}

/// A map from keys to combiners that spills sorted runs when execution
/// memory runs out. `merge` folds a value into a combiner or starts one.
pub struct SpillingMap<K, C> {
    table: CombineTable<K, C>,
    grant: MemoryGrant,
    estimate: SizeEstimate,
    inserted: usize,
    runs: Vec<SpillFile>,
}

impl<K: Key, C: Data> Default for SpillingMap<K, C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Key, C: Data> SpillingMap<K, C> {
    /// An empty map backed by the running task's execution memory.
    pub fn new() -> Self {
        SpillingMap {
            table: CombineTable::new(),
            grant: MemoryGrant::for_current_task(),
            estimate: SizeEstimate::default(),
            inserted: 0,
            runs: Vec::new(),
        }
    }

    /// Folds every value of `records` into the combiner of its key with
    /// `merge`, creating it with `create` if absent. Records are looked up
    /// a few at a time, the memory they will touch requested first (cache
    /// misses overlap); the estimated size is checked every 1024 records.
    pub fn insert_all<V>(
        &mut self,
        records: impl Iterator<Item = (K, V)>,
        mut create: impl FnMut(V) -> C,
        mut merge: impl FnMut(C, V) -> C,
    ) -> Result<()> {
        let mut records = records.fuse();
        let mut batch: Vec<(K, V)> = Vec::with_capacity(BATCH);
        let mut hashes: Vec<u64> = Vec::with_capacity(BATCH);
        loop {
            batch.extend(records.by_ref().take(BATCH));
            if batch.is_empty() {
                return Ok(());
            }
            hashes.extend(batch.iter().map(|(k, _)| hash_key(k)));
            self.table.prefetch(&hashes);
            for ((k, v), h) in batch.drain(..).zip(hashes.drain(..)) {
                self.table.upsert(h, k, v, &mut create, &mut merge);
                self.inserted += 1;
                if self.inserted.is_multiple_of(CHECK_EVERY) {
                    // One combiner per key: the size follows the number of keys.
                    if let Some(entry) = self.table.last() {
                        self.estimate.sample(&entry);
                    }
                    let needed = self.estimate.bytes::<(K, C)>(self.table.len());
                    if !self.grant.ensure(needed)? {
                        self.spill(needed)?;
                    }
                }
            }
        }
    }

    fn spill(&mut self, estimated: u64) -> Result<()> {
        let Some(dir) = self.grant.spill_dir() else {
            return Ok(());
        };
        let mut entries: Vec<(K, C)> = self.table.drain().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.runs.push(write_run(&dir, entries)?);
        record_side_metrics(|m| m.spill_memory_bytes += estimated);
        self.inserted = 0;
        self.grant.release();
        Ok(())
    }

    /// Every key with its combiner; equal keys from different runs are
    /// combined with `merge` (in key order when anything spilled).
    pub fn finish(mut self, merge: impl Fn(C, C) -> C + 'static) -> Result<BoxIter<(K, C)>> {
        if self.runs.is_empty() {
            let table = std::mem::replace(&mut self.table, CombineTable::new());
            return Ok(Box::new(table.into_entries()));
        }
        let estimated = self.estimate.bytes::<(K, C)>(self.table.len());
        self.spill(estimated)?;
        let merged = MergedRuns::new(std::mem::take(&mut self.runs))?.peekable();
        Ok(Box::new(CombineAdjacent {
            inner: merged,
            merge,
        }))
    }
}

/// Combines adjacent records with equal keys.
struct CombineAdjacent<I: Iterator, F> {
    inner: std::iter::Peekable<I>,
    merge: F,
}

impl<K: Eq, C, I: Iterator<Item = (K, C)>, F: Fn(C, C) -> C> Iterator for CombineAdjacent<I, F> {
    type Item = (K, C);
    fn next(&mut self) -> Option<(K, C)> {
        let (key, mut acc) = self.inner.next()?;
        while let Some((k, _)) = self.inner.peek() {
            if *k != key {
                break;
            }
            let (_, c) = self.inner.next().expect("peeked");
            acc = (self.merge)(acc, c);
        }
        Some((key, acc))
    }
}

/// Sorts records by key (stable), spilling sorted runs to disk when
/// execution memory runs out and merge-streaming them at the end.
pub fn sort_records<K: Key, V: Data>(
    records: BoxIter<(K, V)>,
    ascending: bool,
) -> Result<BoxIter<(K, V)>> {
    let sort = |v: &mut Vec<(K, V)>| {
        if ascending {
            v.sort_by(|a, b| a.0.cmp(&b.0));
        } else {
            v.sort_by(|a, b| b.0.cmp(&a.0));
        }
    };
    let mut grant = MemoryGrant::for_current_task();
    let mut estimate = SizeEstimate::default();
    let mut buffer: Vec<(K, V)> = Vec::new();
    let mut runs = Vec::new();
    // The size is sampled and checked each time the buffer grew by a
    // tenth (as Spark's SizeTracker): a check per thousand records would
    // let a buffer of whole volumes grow by gigabytes between checks.
    let mut next_check = 0usize;
    for record in records {
        let check = buffer.len() >= next_check;
        if check {
            estimate.sample(&record);
        }
        buffer.push(record);
        if check {
            next_check = buffer.len() + buffer.len() / 10;
            let needed = estimate.bytes::<(K, V)>(buffer.len());
            if !grant.ensure(needed)? {
                if let Some(dir) = grant.spill_dir() {
                    sort(&mut buffer);
                    runs.push(write_run(&dir, std::mem::take(&mut buffer))?);
                    record_side_metrics(|m| m.spill_memory_bytes += needed);
                    grant.release();
                    next_check = 0;
                }
            }
        }
    }
    sort(&mut buffer);
    if runs.is_empty() {
        return Ok(Box::new(buffer.into_iter()));
    }
    if let Some(dir) = grant.spill_dir() {
        runs.push(write_run(&dir, buffer)?);
    }
    Ok(Box::new(MergedRuns::ordered(runs, !ascending)?))
}

/// `(key, f(key, values))` for each run of equal keys of a stream sorted
/// by key, handing `f` the run's values as an iterator over the stream
/// itself (never collected).
pub struct Groups<K, V, F> {
    records: std::iter::Peekable<BoxIter<(K, V)>>,
    f: F,
}

impl<K, V, F> Groups<K, V, F> {
    /// Groups of `sorted`, a stream sorted by key.
    pub fn new(sorted: BoxIter<(K, V)>, f: F) -> Self {
        Groups {
            records: sorted.peekable(),
            f,
        }
    }
}

/// The values of one key, read from the sorted stream as they are asked
/// for.
struct GroupValues<'a, K, V> {
    key: &'a K,
    first: Option<V>,
    records: &'a mut std::iter::Peekable<BoxIter<(K, V)>>,
}

impl<K: Eq, V> Iterator for GroupValues<'_, K, V> {
    type Item = V;
    fn next(&mut self) -> Option<V> {
        if let Some(v) = self.first.take() {
            return Some(v);
        }
        match self.records.peek() {
            Some((k, _)) if k == self.key => self.records.next().map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<K: Eq, V, U, F: Fn(&K, &mut dyn Iterator<Item = V>) -> U> Iterator for Groups<K, V, F> {
    type Item = (K, U);
    fn next(&mut self) -> Option<(K, U)> {
        let (key, first) = self.records.next()?;
        let mut values = GroupValues {
            key: &key,
            first: Some(first),
            records: &mut self.records,
        };
        let out = (self.f)(&key, &mut values);
        // Skip what `f` left unread.
        values.first = None;
        values.for_each(drop);
        Some((key, out))
    }
}
