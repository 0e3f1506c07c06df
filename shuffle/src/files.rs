//! The on-disk layout of map outputs: one data file of segments (one
//! per reduce partition, each a run of chunks, see `chunks.rs`) and one
//! index file of their offsets per map task.

use crate::chunks::ChunkReader;
use ember_core::{EmberError, Result, ShuffleId};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
    /// partition `r`. Returns the size of each segment.
    pub fn write_map_output(
        &self,
        shuffle: ShuffleId,
        map: usize,
        segments: &[Vec<u8>],
        attempt: u64,
    ) -> Result<Vec<u64>> {
        self.write_map_output_with(shuffle, map, attempt, segments.len(), |r, out| {
            out.write_all(&segments[r])
        })
    }

    /// Writes the output of one map task whose `reduces` segments are
    /// produced by `segment(r, out)`, in order, each written to `out`.
    /// Both files are written under temporary names and renamed, so a
    /// reader never sees half an output; the temporary files are removed
    /// if writing fails (or panics). Returns the size of each segment.
    pub fn write_map_output_with(
        &self,
        shuffle: ShuffleId,
        map: usize,
        attempt: u64,
        reduces: usize,
        mut segment: impl FnMut(usize, &mut dyn Write) -> std::io::Result<()>,
    ) -> Result<Vec<u64>> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| EmberError::io(&self.dir, "create shuffle folder", e))?;
        let data = self.data_path(shuffle, map);
        let index = self.index_path(shuffle, map);
        let tmp = TempFiles(vec![
            data.with_extension(format!("data.tmp{attempt}")),
            index.with_extension(format!("index.tmp{attempt}")),
        ]);
        let (tmp_data, tmp_index) = (&tmp.0[0], &tmp.0[1]);
        let mut offsets = Vec::with_capacity(reduces + 1);
        offsets.push(0u64);
        {
            let f = File::create(tmp_data).map_err(|e| EmberError::io(tmp_data, "create", e))?;
            let mut w = Counting {
                inner: std::io::BufWriter::with_capacity(1 << 20, f),
                written: 0,
            };
            for r in 0..reduces {
                segment(r, &mut w).map_err(|e| EmberError::io(tmp_data, "write", e))?;
                offsets.push(w.written);
            }
            w.inner
                .flush()
                .map_err(|e| EmberError::io(tmp_data, "write", e))?;
        }
        let index_bytes: Vec<u8> = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        std::fs::write(tmp_index, index_bytes)
            .map_err(|e| EmberError::io(tmp_index, "write", e))?;
        std::fs::rename(tmp_index, &index).map_err(|e| EmberError::io(&index, "rename", e))?;
        std::fs::rename(tmp_data, &data).map_err(|e| EmberError::io(&data, "rename", e))?;
        Ok(offsets.windows(2).map(|w| w[1] - w[0]).collect())
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

    /// Opens the segment of reduce partition `reduce` of a map output
    /// written here, to be read one chunk at a time.
    pub fn open_segment(
        &self,
        shuffle: ShuffleId,
        map: usize,
        reduce: usize,
    ) -> Result<ChunkReader<'static>> {
        let index = self.index_path(shuffle, map);
        let data = self.data_path(shuffle, map);
        let (start, end) = segment_range(&index, reduce)?;
        let mut f = File::open(&data).map_err(|e| EmberError::io(&data, "open", e))?;
        f.seek(SeekFrom::Start(start))
            .map_err(|e| EmberError::io(&data, "read", e))?;
        let what = data.display().to_string();
        Ok(ChunkReader::from_stream(
            std::io::BufReader::with_capacity(1 << 16, f),
            end - start,
            what,
        ))
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

/// Files removed when dropped (those already renamed are gone anyway).
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A writer that counts the bytes through it.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The byte range of reduce partition `reduce`'s segment, from an index
/// file.
fn segment_range(index: &Path, reduce: usize) -> Result<(u64, u64)> {
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
    Ok((start, end))
}

/// Reads one reduce partition's segment through an index file.
pub fn read_segment(index: &Path, data: &Path, reduce: usize) -> Result<Vec<u8>> {
    let (start, end) = segment_range(index, reduce)?;
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
    use crate::chunks::{segment_records, ChunkWriter};

    #[test]
    fn map_outputs_round_trip_per_reduce_partition() {
        let dir = tempfile::tempdir().unwrap();
        let files = ShuffleFiles::new(dir.path());
        let mut segs = Vec::new();
        for r in 0..3u32 {
            let mut w = ChunkWriter::new();
            for i in 0..(r * 1000) {
                w.push(&(r, i)).unwrap();
            }
            segs.push(w.finish());
        }
        let sizes = files.write_map_output(ShuffleId(1), 0, &segs, 0).unwrap();
        assert_eq!(sizes[0], 0);
        for r in 0..3u32 {
            let seg = files.read_segment(ShuffleId(1), 0, r as usize).unwrap();
            let recs: Vec<(u32, u32)> = segment_records(&seg, "t").unwrap();
            assert_eq!(recs.len(), (r * 1000) as usize);
            assert!(recs.iter().all(|(k, _)| *k == r));
            // Read chunk by chunk from the file, the same records.
            let mut reader = files.open_segment(ShuffleId(1), 0, r as usize).unwrap();
            let mut chunked: Vec<(u32, u32)> = Vec::new();
            while let Some(mut chunk) = reader.next_chunk().unwrap() {
                chunked.append(&mut chunk);
            }
            assert_eq!(chunked, recs);
        }
        files.remove_shuffle(ShuffleId(1));
        assert!(files.read_segment(ShuffleId(1), 0, 0).is_err());
    }

    #[test]
    fn a_segment_may_be_written_in_pieces() {
        // A spilling map task writes a reduce partition's chunks in
        // several pieces; concatenated, they are one segment.
        let dir = tempfile::tempdir().unwrap();
        let files = ShuffleFiles::new(dir.path());
        let mut w = ChunkWriter::new();
        let mut pieces = Vec::new();
        for i in 0..300_000u64 {
            w.push(&(i, format!("{i}"))).unwrap();
            if i % 100_000 == 50_000 {
                pieces.push(w.take_chunks());
            }
        }
        pieces.push(w.finish());
        assert!(pieces.iter().all(|p| !p.is_empty()));
        let sizes = files
            .write_map_output_with(ShuffleId(2), 0, 0, 2, |r, out| {
                if r == 1 {
                    for p in &pieces {
                        out.write_all(p)?;
                    }
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(sizes[0], 0);
        assert_eq!(sizes[1], pieces.iter().map(|p| p.len() as u64).sum::<u64>());
        let seg = files.read_segment(ShuffleId(2), 0, 1).unwrap();
        let recs: Vec<(u64, String)> = segment_records(&seg, "t").unwrap();
        assert_eq!(recs.len(), 300_000);
        assert!(recs
            .iter()
            .enumerate()
            .all(|(i, (n, s))| *n == i as u64 && *s == format!("{i}")));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
    }

    #[test]
    fn a_failed_map_output_leaves_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = ShuffleFiles::new(dir.path());
        let err = files
            .write_map_output_with(ShuffleId(4), 0, 0, 3, |r, out| {
                out.write_all(b"x")?;
                if r == 1 {
                    return Err(std::io::Error::other("disk full"));
                }
                Ok(())
            })
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
