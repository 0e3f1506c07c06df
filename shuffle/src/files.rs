//! The on-disk layout of map outputs and the chunk format of segments.

use ember_core::codec::{self, compress_block, decompress_block};
use ember_core::{EmberError, Result, ShuffleId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Records per chunk are flushed once this many raw bytes accumulate.
const CHUNK_BYTES: usize = 1 << 20;

/// Serializes records of one reduce partition into compressed chunks.
pub struct ChunkWriter<T> {
    pending: Vec<T>,
    pending_bytes: usize,
    out: Vec<u8>,
}

impl<T: Serialize> Default for ChunkWriter<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Serialize> ChunkWriter<T> {
    /// An empty writer.
    pub fn new() -> Self {
        ChunkWriter {
            pending: Vec::new(),
            pending_bytes: 0,
            out: Vec::new(),
        }
    }

    /// Adds a record; `approx_bytes` is the caller's size estimate, used
    /// only to decide when to cut a chunk.
    pub fn push(&mut self, record: T, approx_bytes: usize) -> Result<()> {
        self.pending.push(record);
        self.pending_bytes += approx_bytes;
        if self.pending_bytes >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let raw = codec::encode(&self.pending)?;
        let block = compress_block(&raw);
        self.out
            .extend_from_slice(&(block.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&block);
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// The segment bytes: every chunk, in order.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.flush()?;
        Ok(self.out)
    }
}

/// Decodes every record of a segment; `what` names it for errors.
pub fn segment_records<T: DeserializeOwned>(segment: &[u8], what: &str) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut rest = segment;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(EmberError::codec(what, "truncated chunk header"));
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        rest = &rest[4..];
        if rest.len() < len {
            return Err(EmberError::codec(what, "truncated chunk"));
        }
        let raw = decompress_block(&rest[..len], what)?;
        let mut records: Vec<T> = codec::decode(&raw, what)?;
        out.append(&mut records);
        rest = &rest[len..];
    }
    Ok(out)
}

/// The shuffle files of one executor, under its local folder.
#[derive(Clone, Debug)]
pub struct ShuffleFiles {
    dir: PathBuf,
}

impl ShuffleFiles {
    /// Shuffle files under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ShuffleFiles { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data_path(&self, shuffle: ShuffleId, map: usize) -> PathBuf {
        self.dir.join(format!("shuffle_{}_{}.data", shuffle.0, map))
    }

    fn index_path(&self, shuffle: ShuffleId, map: usize) -> PathBuf {
        self.dir
            .join(format!("shuffle_{}_{}.index", shuffle.0, map))
    }

    /// Writes the output of one map task: `segments[r]` for reduce
    /// partition `r`. Both files are written under temporary names and
    /// renamed, so a reader never sees half an output. Returns the size of
    /// each segment.
    pub fn write_map_output(
        &self,
        shuffle: ShuffleId,
        map: usize,
        segments: &[Vec<u8>],
        attempt: u64,
    ) -> Result<Vec<u64>> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| EmberError::io(&self.dir, "create shuffle folder", e))?;
        let data = self.data_path(shuffle, map);
        let index = self.index_path(shuffle, map);
        let tmp_data = data.with_extension(format!("data.tmp{attempt}"));
        let tmp_index = index.with_extension(format!("index.tmp{attempt}"));
        let mut offsets = Vec::with_capacity(segments.len() + 1);
        let mut pos = 0u64;
        offsets.push(pos);
        {
            let mut f =
                File::create(&tmp_data).map_err(|e| EmberError::io(&tmp_data, "create", e))?;
            for s in segments {
                f.write_all(s)
                    .map_err(|e| EmberError::io(&tmp_data, "write", e))?;
                pos += s.len() as u64;
                offsets.push(pos);
            }
        }
        let index_bytes: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        std::fs::write(&tmp_index, index_bytes)
            .map_err(|e| EmberError::io(&tmp_index, "write", e))?;
        std::fs::rename(&tmp_index, &index).map_err(|e| EmberError::io(&index, "rename", e))?;
        std::fs::rename(&tmp_data, &data).map_err(|e| EmberError::io(&data, "rename", e))?;
        Ok(segments.iter().map(|s| s.len() as u64).collect())
    }

    /// Reads the segment of reduce partition `reduce` from a map output
    /// written here.
    pub fn read_segment(&self, shuffle: ShuffleId, map: usize, reduce: usize) -> Result<Vec<u8>> {
        read_segment(
            &self.index_path(shuffle, map),
            &self.data_path(shuffle, map),
            reduce,
        )
    }

    /// Deletes the files of `shuffle`.
    pub fn remove_shuffle(&self, shuffle: ShuffleId) {
        let prefix = format!("shuffle_{}_", shuffle.0);
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Reads one reduce partition's segment through an index file.
pub fn read_segment(index: &Path, data: &Path, reduce: usize) -> Result<Vec<u8>> {
    let mut idx = File::open(index).map_err(|e| EmberError::io(index, "open", e))?;
    let mut pair = [0u8; 16];
    idx.seek(SeekFrom::Start(reduce as u64 * 8))
        .and_then(|_| idx.read_exact(&mut pair))
        .map_err(|e| EmberError::io(index, "read", e))?;
    let start = u64::from_le_bytes(pair[..8].try_into().expect("8 bytes"));
    let end = u64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
    if end < start {
        return Err(EmberError::codec(
            index.display().to_string(),
            "index offsets decrease",
        ));
    }
    let mut f = File::open(data).map_err(|e| EmberError::io(data, "open", e))?;
    let mut buf = vec![0u8; (end - start) as usize];
    f.seek(SeekFrom::Start(start))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|e| EmberError::io(data, "read", e))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_outputs_round_trip_per_reduce_partition() {
        let dir = tempfile::tempdir().unwrap();
        let files = ShuffleFiles::new(dir.path());
        let mut segs = Vec::new();
        for r in 0..3u32 {
            let mut w = ChunkWriter::new();
            for i in 0..(r * 1000) {
                w.push((r, i), 8).unwrap();
            }
            segs.push(w.finish().unwrap());
        }
        let sizes = files.write_map_output(ShuffleId(1), 0, &segs, 0).unwrap();
        assert_eq!(sizes[0], 0);
        for r in 0..3u32 {
            let seg = files.read_segment(ShuffleId(1), 0, r as usize).unwrap();
            let recs: Vec<(u32, u32)> = segment_records(&seg, "t").unwrap();
            assert_eq!(recs.len(), (r * 1000) as usize);
            assert!(recs.iter().all(|(k, _)| *k == r));
        }
        files.remove_shuffle(ShuffleId(1));
        assert!(files.read_segment(ShuffleId(1), 0, 0).is_err());
    }

    #[test]
    fn a_corrupted_segment_is_an_error_not_data() {
        let mut w = ChunkWriter::new();
        for i in 0..100u64 {
            w.push(i, 8).unwrap();
        }
        let mut seg = w.finish().unwrap();
        let n = seg.len();
        seg[n / 2] ^= 1;
        assert!(segment_records::<u64>(&seg, "t").is_err());
        assert!(segment_records::<u64>(&seg[..n - 2], "t").is_err());
    }
}
