//! The chunk format of segments and spill runs, written and read here
//! only: a chunk is a little-endian `u32` length, then a checksummed lz4
//! block of one MessagePack array of records. [`ChunkWriter`] encodes
//! records as they arrive; [`ChunkReader`] reads a run of chunks back one
//! chunk at a time, from bytes in memory or from a stream (a file), every
//! length checked against the bytes left before anything is allocated.

use ember_core::codec::{self, compress_block, decompress_block};
use ember_core::{EmberError, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::io::Read;

/// A chunk is cut once this many encoded bytes accumulate.
const CHUNK_BYTES: usize = 1 << 20;

/// Room kept at the front of the encoded records for the array header
/// written when the chunk is cut (at most 5 bytes).
const HEADER_ROOM: usize = 5;

/// Serializes records of one reduce partition into compressed chunks.
/// Records are encoded as they arrive, so what the writer holds is bytes
/// it can count exactly, not records whose size it would have to guess.
pub struct ChunkWriter<T> {
    /// `HEADER_ROOM` bytes, then the encoded records of the open chunk.
    pending: Vec<u8>,
    pending_records: u32,
    out: Vec<u8>,
    _records: std::marker::PhantomData<fn(T)>,
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
            pending_records: 0,
            out: Vec::new(),
            _records: std::marker::PhantomData,
        }
    }

    /// Adds a record.
    pub fn push(&mut self, record: &T) -> Result<()> {
        if self.pending.is_empty() {
            self.pending.resize(HEADER_ROOM, 0);
        }
        codec::encode_into(&mut self.pending, record)?;
        self.pending_records += 1;
        if self.pending.len() >= CHUNK_BYTES {
            self.flush();
        }
        Ok(())
    }

    /// Memory the writer holds: the open chunk and the finished ones.
    pub fn memory_bytes(&self) -> usize {
        self.pending.capacity() + self.out.capacity()
    }

    fn flush(&mut self) {
        if self.pending_records == 0 {
            return;
        }
        let (header, len) = codec::seq_header(self.pending_records);
        let start = HEADER_ROOM - len;
        self.pending[start..HEADER_ROOM].copy_from_slice(&header[..len]);
        let block = compress_block(&self.pending[start..]);
        self.out
            .extend_from_slice(&(block.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&block);
        self.pending.clear();
        self.pending_records = 0;
    }

    /// The chunks cut so far (the open one stays), for writers that
    /// stream chunks to a file as they are made.
    pub fn take_finished(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The chunks so far, the open one cut; the writer is left empty and
    /// holding no memory (how a spilling map task empties its buffers).
    pub fn take_chunks(&mut self) -> Vec<u8> {
        self.flush();
        self.pending = Vec::new();
        std::mem::take(&mut self.out)
    }

    /// The segment bytes: every chunk, in order.
    pub fn finish(mut self) -> Vec<u8> {
        self.take_chunks()
    }
}

/// Decodes every record of a segment; `what` names it for errors.
pub fn segment_records<T: DeserializeOwned>(segment: &[u8], what: &str) -> Result<Vec<T>> {
    let mut reader = ChunkReader::from_bytes(segment, what);
    let mut out = Vec::new();
    while let Some(mut records) = reader.next_chunk()? {
        out.append(&mut records);
    }
    Ok(out)
}

/// Reads a run of chunks (a segment, a spill run) one chunk at a time:
/// a reader holds one chunk, never the whole run.
pub struct ChunkReader<'a> {
    source: Source<'a>,
    what: String,
}

/// Where a [`ChunkReader`]'s bytes come from.
enum Source<'a> {
    /// The whole run in memory, and the read position.
    Bytes(Cow<'a, [u8]>, usize),
    /// A stream with `left` bytes of the run still to read; `block` is
    /// the last block read (its buffer reused for the next).
    Stream {
        inner: Box<dyn Read + Send>,
        left: u64,
        block: Vec<u8>,
    },
}

impl<'a> ChunkReader<'a> {
    /// The chunks of `bytes` (owned, such as a fetched segment, or
    /// borrowed); `what` names them in errors.
    pub fn from_bytes(bytes: impl Into<Cow<'a, [u8]>>, what: impl Into<String>) -> Self {
        ChunkReader {
            source: Source::Bytes(bytes.into(), 0),
            what: what.into(),
        }
    }

    /// The chunks of the next `len` bytes of `inner` (give it a buffered
    /// reader); `what` names them in errors.
    pub fn from_stream(
        inner: impl Read + Send + 'static,
        len: u64,
        what: impl Into<String>,
    ) -> Self {
        ChunkReader {
            source: Source::Stream {
                inner: Box::new(inner),
                left: len,
                block: Vec::new(),
            },
            what: what.into(),
        }
    }

    /// The records of the next chunk, or `None` at the end of the run. A
    /// truncated or damaged chunk is an error.
    pub fn next_chunk<T: DeserializeOwned>(&mut self) -> Result<Option<Vec<T>>> {
        let what = &self.what;
        let Some(block) = self.source.next_block(what)? else {
            return Ok(None);
        };
        let raw = decompress_block(block, what)?;
        codec::decode(&raw, what).map(Some)
    }
}

impl Source<'_> {
    /// The next chunk's checksummed lz4 block, or `None` at the end.
    fn next_block(&mut self, what: &str) -> Result<Option<&[u8]>> {
        match self {
            Source::Bytes(bytes, pos) => {
                let rest = &bytes[(*pos).min(bytes.len())..];
                if rest.is_empty() {
                    return Ok(None);
                }
                let len = block_len(rest, rest.len() as u64, what)?;
                *pos += 4 + len;
                Ok(Some(&rest[4..4 + len]))
            }
            Source::Stream { inner, left, block } => {
                if *left == 0 {
                    return Ok(None);
                }
                let read_err = |e| EmberError::io(what, "read", e);
                let mut header = [0u8; 4];
                if *left >= 4 {
                    inner.read_exact(&mut header).map_err(read_err)?;
                }
                let len = block_len(&header[..(*left).min(4) as usize], *left, what)?;
                block.resize(len, 0);
                inner.read_exact(block).map_err(read_err)?;
                *left -= 4 + len as u64;
                Ok(Some(block))
            }
        }
    }
}

/// The length of the block whose chunk starts with `header`, checked
/// against the `left` bytes that remain of the run (header included).
fn block_len(header: &[u8], left: u64, what: &str) -> Result<usize> {
    let Some(len) = header.first_chunk::<4>() else {
        return Err(EmberError::codec(what, "truncated chunk header"));
    };
    let len = u32::from_le_bytes(*len) as u64;
    if len > left - 4 {
        return Err(EmberError::codec(what, "truncated chunk"));
    }
    Ok(len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(n: u64) -> Vec<u8> {
        let mut w = ChunkWriter::new();
        for i in 0..n {
            w.push(&(i, format!("{i}"))).unwrap();
        }
        w.finish()
    }

    #[test]
    fn bytes_and_streams_read_the_same_chunks() {
        // About 3 MB of records: several chunks.
        let seg = segment(300_000);
        let read_all = |mut r: ChunkReader| {
            let mut out: Vec<(u64, String)> = Vec::new();
            let mut chunks = 0;
            while let Some(mut c) = r.next_chunk().unwrap() {
                out.append(&mut c);
                chunks += 1;
            }
            (out, chunks)
        };
        let (from_bytes, chunks) = read_all(ChunkReader::from_bytes(&seg[..], "t"));
        assert!(chunks > 1, "{chunks} chunks");
        assert_eq!(from_bytes.len(), 300_000);
        assert!(from_bytes
            .iter()
            .enumerate()
            .all(|(i, (n, s))| *n == i as u64 && *s == format!("{i}")));
        let len = seg.len() as u64;
        let (from_stream, _) = read_all(ChunkReader::from_stream(
            std::io::Cursor::new(seg.clone()),
            len,
            "t",
        ));
        assert_eq!(from_stream, from_bytes);
        // A stream stops at its length, whatever follows.
        let mut two = seg.clone();
        two.extend_from_slice(&seg);
        let (first, _) = read_all(ChunkReader::from_stream(
            std::io::Cursor::new(two),
            len,
            "t",
        ));
        assert_eq!(first, from_bytes);
    }

    #[test]
    fn an_empty_run_has_no_chunks() {
        assert!(ChunkReader::from_bytes(Vec::new(), "t")
            .next_chunk::<u64>()
            .unwrap()
            .is_none());
        let mut r = ChunkReader::from_stream(std::io::empty(), 0, "t");
        assert!(r.next_chunk::<u64>().unwrap().is_none());
    }

    #[test]
    fn truncated_runs_are_errors_in_memory_and_in_streams() {
        let seg = segment(1000);
        for cut in [1, 3, 5, seg.len() - 1] {
            let part = &seg[..cut];
            assert!(
                segment_records::<(u64, String)>(part, "t").is_err(),
                "cut at {cut}"
            );
            let mut r =
                ChunkReader::from_stream(std::io::Cursor::new(part.to_vec()), cut as u64, "t");
            assert!(r.next_chunk::<(u64, String)>().is_err(), "cut at {cut}");
        }
        // A stream shorter than it claims to be.
        let mut r = ChunkReader::from_stream(
            std::io::Cursor::new(seg[..10].to_vec()),
            seg.len() as u64,
            "t",
        );
        assert!(r.next_chunk::<(u64, String)>().is_err());
    }

    #[test]
    fn a_corrupted_segment_is_an_error_not_data() {
        let mut w = ChunkWriter::new();
        for i in 0..100u64 {
            w.push(&i).unwrap();
        }
        let mut seg = w.finish();
        let n = seg.len();
        seg[n / 2] ^= 1;
        assert!(segment_records::<u64>(&seg, "t").is_err());
        assert!(segment_records::<u64>(&seg[..n - 2], "t").is_err());
    }
}
