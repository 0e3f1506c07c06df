//! The map side of a shuffle under a memory budget: records are encoded
//! into one buffer of checksummed lz4 chunks per reduce partition; the
//! buffers are execution memory, and when the task's grant cannot cover
//! them they are appended to one temporary spill file (each partition's
//! chunks as one piece) and emptied. At the end the task writes its one
//! data file and index file, each reduce partition's segment being its
//! spilled pieces in spill order followed by what is still in memory, so
//! readers see the same format whether the task spilled or not.

use crate::spill::{MemoryGrant, SpillFile};
use crate::task::record_side_metrics;
use ember_core::{EmberError, Result, ShuffleId};
use ember_shuffle::{ChunkWriter, ShuffleFiles};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

/// Buffers smaller than this are never spilled (as Spark's initial spill
/// threshold): a task whose budget is exhausted by others still writes
/// spill pieces of a useful size.
const SPILL_FLOOR: u64 = 1 << 20;

/// Write buffer of the spill file.
const SPILL_BUFFER_BYTES: usize = 1 << 20;

/// The output of one map task while it is being produced.
pub(crate) struct MapOutputBuffer<T> {
    writers: Vec<ChunkWriter<T>>,
    /// Memory the writers hold (the sum of their `memory_bytes`).
    held: u64,
    grant: MemoryGrant,
    spill: Option<Spilled>,
}

/// What went to the spill file.
struct Spilled {
    /// Deletes the file when the task ends, however it ends.
    file: SpillFile,
    out: BufWriter<File>,
    written: u64,
    /// `pieces[s][r]`: offset and length of reduce partition `r`'s chunks
    /// in spill `s`.
    pieces: Vec<Vec<(u64, u64)>>,
}

impl<T: Serialize> MapOutputBuffer<T> {
    /// Buffers for `reduces` partitions, backed by the running task's
    /// execution memory.
    pub(crate) fn new(reduces: usize) -> Self {
        MapOutputBuffer {
            writers: (0..reduces).map(|_| ChunkWriter::new()).collect(),
            held: 0,
            grant: MemoryGrant::for_current_task(),
            spill: None,
        }
    }

    /// Adds a record for reduce partition `reduce`, spilling every buffer
    /// if execution memory cannot hold them.
    pub(crate) fn push(&mut self, reduce: usize, record: &T) -> Result<()> {
        let w = &mut self.writers[reduce];
        let before = w.memory_bytes() as u64;
        w.push(record)?;
        self.held = self.held - before + w.memory_bytes() as u64;
        if self.held >= SPILL_FLOOR && !self.grant.ensure(self.held)? {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<()> {
        let Some(dir) = self.grant.spill_dir() else {
            return Ok(());
        };
        if self.spill.is_none() {
            let (file, f) = SpillFile::create(&dir)?;
            self.spill = Some(Spilled {
                file,
                out: BufWriter::with_capacity(SPILL_BUFFER_BYTES, f),
                written: 0,
                pieces: Vec::new(),
            });
        }
        let sp = self.spill.as_mut().expect("spill file opened above");
        let start = sp.written;
        let mut pieces = Vec::with_capacity(self.writers.len());
        for w in &mut self.writers {
            let chunks = w.take_chunks();
            sp.out
                .write_all(&chunks)
                .map_err(|e| EmberError::io(sp.file.path(), "write spill file", e))?;
            pieces.push((sp.written, chunks.len() as u64));
            sp.written += chunks.len() as u64;
        }
        sp.pieces.push(pieces);
        let (memory, disk) = (self.held, sp.written - start);
        record_side_metrics(|m| {
            m.spill_memory_bytes += memory;
            m.spill_disk_bytes += disk;
        });
        self.held = self.writers.iter().map(|w| w.memory_bytes() as u64).sum();
        self.grant.release();
        Ok(())
    }

    /// Writes the map output file and its index; returns each reduce
    /// partition's segment size.
    pub(crate) fn write(
        mut self,
        files: &ShuffleFiles,
        shuffle: ShuffleId,
        map: usize,
        attempt: u64,
    ) -> Result<Vec<u64>> {
        let mut spilled = match self.spill.take() {
            Some(mut sp) => {
                sp.out
                    .flush()
                    .map_err(|e| EmberError::io(sp.file.path(), "write spill file", e))?;
                let reader = File::open(sp.file.path())
                    .map_err(|e| EmberError::io(sp.file.path(), "open spill file", e))?;
                Some((sp, reader))
            }
            None => None,
        };
        let writers = &mut self.writers;
        files.write_map_output_with(shuffle, map, attempt, writers.len(), |r, out| {
            if let Some((sp, reader)) = &mut spilled {
                for spill in &sp.pieces {
                    let (offset, len) = spill[r];
                    copy_range(reader, offset, len, out).map_err(|e| {
                        std::io::Error::new(
                            e.kind(),
                            format!("copying from spill file {}: {e}", sp.file.path().display()),
                        )
                    })?;
                }
            }
            out.write_all(&writers[r].take_chunks())
        })
    }
}

/// Copies `len` bytes at `offset` of `from` to `to`.
fn copy_range(from: &mut File, offset: u64, len: u64, to: &mut dyn Write) -> std::io::Result<()> {
    from.seek(SeekFrom::Start(offset))?;
    let copied = std::io::copy(&mut (&mut *from).take(len), to)?;
    if copied < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("{copied} of {len} bytes"),
        ));
    }
    Ok(())
}
