//! Source RDDs: driver-side collections, integer ranges, text files split
//! by byte ranges (gzip files whole), whole binary and text files, and the
//! empty RDD. File paths may end in a `*`/`?` pattern.

use crate::node::{
    erase_rdd, ship_node, BoxIter, Compute, Decoded, Dependency, NodeCore, RddNode, Shippable,
    ShippedBody,
};
use crate::task::{record_side_metrics, throw, TaskContext};
use ember_core::{codec, Data, EmberError, RddId, Result};
use flate2::read::MultiGzDecoder;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A driver-side collection cut into slices, each encoded separately so a
/// task decodes only its own.
pub struct ParallelizeNode<T> {
    core: NodeCore,
    body: Vec<ByteBuf>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Data> ParallelizeNode<T> {
    /// `data` in `slices` contiguous slices (at least one).
    pub fn new(id: RddId, data: Vec<T>, slices: usize) -> Result<Self> {
        let n = slices.max(1);
        let len = data.len();
        let mut it = data.into_iter();
        let mut body = Vec::with_capacity(n);
        for i in 0..n {
            let take = (i + 1) * len / n - i * len / n;
            let slice: Vec<T> = it.by_ref().take(take).collect();
            body.push(ByteBuf::from(codec::encode(&slice)?));
        }
        Ok(ParallelizeNode {
            core: NodeCore::new(id, n),
            body,
            _t: PhantomData,
        })
    }
}

impl<T: Data> Shippable for ParallelizeNode<T> {
    type Body = Vec<ByteBuf>;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &Vec<ByteBuf> {
        &self.body
    }
    fn rebuild(core: NodeCore, body: Vec<ByteBuf>, _: &[&Decoded]) -> Result<Self> {
        Ok(ParallelizeNode {
            core,
            body,
            _t: PhantomData,
        })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<T, _>(self)
    }
}

impl<T: Data> Compute<T> for ParallelizeNode<T> {
    fn compute(&self, part: usize, tc: &TaskContext) -> Result<BoxIter<T>> {
        let bytes = self.body.get(part).map(|b| b.as_slice()).unwrap_or(&[]);
        if bytes.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        let slice: Vec<T> = codec::decode(bytes, "parallelize slice")?;
        tc.record(|m| {
            m.input_records += slice.len() as u64;
            m.input_bytes += bytes.len() as u64;
        });
        Ok(Box::new(slice.into_iter()))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

/// Integers `start, start + step, ...` below `end` (above, for a negative
/// step).
pub struct RangeNode {
    core: NodeCore,
    body: (i64, i64, i64),
}

impl RangeNode {
    /// The range in `slices` partitions; `step` must not be 0.
    pub fn new(id: RddId, start: i64, end: i64, step: i64, slices: usize) -> Result<Self> {
        if step == 0 {
            return Err(EmberError::Other("range: step must not be 0".into()));
        }
        Ok(RangeNode {
            core: NodeCore::new(id, slices.max(1)),
            body: (start, end, step),
        })
    }

    fn len(&self) -> u64 {
        let (start, end, step) = self.body;
        let span = if step > 0 {
            end as i128 - start as i128
        } else {
            start as i128 - end as i128
        };
        if span <= 0 {
            0
        } else {
            ((span + step.unsigned_abs() as i128 - 1) / step.unsigned_abs() as i128) as u64
        }
    }
}

impl Shippable for RangeNode {
    type Body = (i64, i64, i64);
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &(i64, i64, i64) {
        &self.body
    }
    fn rebuild(core: NodeCore, body: (i64, i64, i64), _: &[&Decoded]) -> Result<Self> {
        Ok(RangeNode { core, body })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<i64, _>(self)
    }
}

impl RddNode for RangeNode {
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        "range"
    }
}

impl Compute<i64> for RangeNode {
    fn compute(&self, part: usize, tc: &TaskContext) -> Result<BoxIter<i64>> {
        let n = self.len() as u128;
        let k = self.core.partitions as u128;
        let (lo, hi) = (
            (part as u128 * n / k) as i128,
            ((part as u128 + 1) * n / k) as i128,
        );
        tc.record(|m| m.input_records += (hi - lo) as u64);
        let (start, _, step) = self.body;
        Ok(Box::new(
            (lo..hi).map(move |i| (start as i128 + i * step as i128) as i64),
        ))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

/// A byte range of one file: the lines that start inside it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TextSplit {
    path: String,
    start: u64,
    end: u64,
}

/// Lines of text files, split by byte ranges; a line belongs to the split
/// its first byte is in, so no line is cut or read twice. A `.gz` file is
/// decompressed and read whole by one split.
pub struct TextFileNode {
    core: NodeCore,
    body: Vec<TextSplit>,
}

/// Largest split, as Spark's default block size for local files.
const MAX_SPLIT_BYTES: u64 = 32 << 20;

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters and `?` for one.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    // Where the last `*` was and where its match started, to backtrack.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Visible files (names not starting with `.` or `_`, as Hadoop hides
/// them) of folder `dir`, sorted.
fn visible_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| EmberError::io(dir, "list", e))? {
        let e = e.map_err(|e| EmberError::io(dir, "list", e))?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if e.path().is_file() {
            files.push(e.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The files of `path`: itself if a file; the visible files of a folder,
/// sorted; or, when its last component holds `*` or `?` and no such file
/// exists, the visible files and folders that pattern matches in its
/// folder (a folder standing for its visible files), sorted. A pattern
/// that matches nothing is an error, as in Hadoop.
pub fn input_files(path: &Path) -> Result<Vec<PathBuf>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if (name.contains('*') || name.contains('?')) && !path.exists() {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut matched = Vec::new();
        for e in std::fs::read_dir(parent).map_err(|e| EmberError::io(parent, "list", e))? {
            let e = e.map_err(|e| EmberError::io(parent, "list", e))?;
            let entry = e.file_name().to_string_lossy().to_string();
            if entry.starts_with('.') || entry.starts_with('_') || !wildcard_match(&name, &entry) {
                continue;
            }
            matched.push(e.path());
        }
        matched.sort();
        let mut files = Vec::new();
        for m in matched {
            if m.is_dir() {
                files.extend(visible_files(&m)?);
            } else {
                files.push(m);
            }
        }
        if files.is_empty() {
            return Err(EmberError::Io {
                path: path.display().to_string(),
                action: "match".into(),
                message: "the pattern matches no files".into(),
            });
        }
        return Ok(files);
    }
    let meta = std::fs::metadata(path).map_err(|e| EmberError::io(path, "open", e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    visible_files(path)
}

/// Whether `path` is read through a gzip decoder (by its extension, as
/// Hadoop chooses codecs).
fn is_gzip(path: &str) -> bool {
    path.ends_with(".gz")
}

/// Fails unless `path` opens for reading.
fn check_readable(path: &Path) -> Result<u64> {
    let f = std::fs::File::open(path).map_err(|e| EmberError::io(path, "open", e))?;
    let meta = f.metadata().map_err(|e| EmberError::io(path, "stat", e))?;
    Ok(meta.len())
}

impl TextFileNode {
    /// Splits of the file, folder of files or pattern `path` (see
    /// [`input_files`]), at least
    /// `min_partitions` of them where the data allows.
    pub fn new(id: RddId, path: &Path, min_partitions: usize) -> Result<Self> {
        let files = input_files(path)?;
        let sizes: Vec<u64> = files
            .iter()
            .map(|f| check_readable(f))
            .collect::<Result<_>>()?;
        let total: u64 = sizes.iter().sum();
        let goal = (total / min_partitions.max(1) as u64).clamp(1, MAX_SPLIT_BYTES);
        let mut splits = Vec::new();
        for (f, &size) in files.iter().zip(&sizes) {
            let path = f.display().to_string();
            if size == 0 {
                splits.push(TextSplit {
                    path,
                    start: 0,
                    end: 0,
                });
                continue;
            }
            if is_gzip(&path) {
                // A gzip stream cannot be entered in the middle: the whole
                // file is one split, as in Hadoop.
                splits.push(TextSplit {
                    path,
                    start: 0,
                    end: size,
                });
                continue;
            }
            let mut start = 0;
            while start < size {
                // A small remainder joins the last split, as in Hadoop.
                let end = if (size - start) as f64 <= goal as f64 * 1.1 {
                    size
                } else {
                    start + goal
                };
                splits.push(TextSplit {
                    path: path.clone(),
                    start,
                    end,
                });
                start = end;
            }
        }
        Ok(TextFileNode {
            core: NodeCore::new(id, splits.len().max(1)),
            body: splits,
        })
    }
}

impl Shippable for TextFileNode {
    type Body = Vec<TextSplit>;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &Vec<TextSplit> {
        &self.body
    }
    fn rebuild(core: NodeCore, body: Vec<TextSplit>, _: &[&Decoded]) -> Result<Self> {
        Ok(TextFileNode { core, body })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<String, _>(self)
    }
}

impl RddNode for TextFileNode {
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        "text_file"
    }
}

impl Compute<String> for TextFileNode {
    fn compute(&self, part: usize, _: &TaskContext) -> Result<BoxIter<String>> {
        let Some(split) = self.body.get(part).cloned() else {
            return Ok(Box::new(std::iter::empty()));
        };
        if split.end == 0 {
            return Ok(Box::new(std::iter::empty()));
        }
        let file =
            std::fs::File::open(&split.path).map_err(|e| EmberError::io(&split.path, "open", e))?;
        if is_gzip(&split.path) {
            // Positions count decompressed bytes; the split ends with the
            // stream (concatenated gzip members included).
            let reader = BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file));
            return Ok(Box::new(LineIter {
                reader: Box::new(reader),
                start: 0,
                pos: 0,
                end: u64::MAX,
                path: split.path,
                buf: Vec::new(),
                lines: 0,
            }));
        }
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut pos = split.start;
        if split.start > 0 {
            // Skip the line that started in the previous split: read from
            // the byte before the split through the next newline.
            reader
                .seek(SeekFrom::Start(split.start - 1))
                .map_err(|e| EmberError::io(&split.path, "seek", e))?;
            let mut skipped = Vec::new();
            let n = reader
                .read_until(b'\n', &mut skipped)
                .map_err(|e| EmberError::io(&split.path, "read", e))?;
            pos = split.start - 1 + n as u64;
        }
        Ok(Box::new(LineIter {
            reader: Box::new(reader),
            start: pos,
            pos,
            end: split.end,
            path: split.path,
            buf: Vec::new(),
            lines: 0,
        }))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

/// The lines of a split; what it read goes to the task's input metrics
/// when it is dropped (consumed or not).
struct LineIter {
    reader: Box<dyn BufRead>,
    /// Where its first line starts.
    start: u64,
    pos: u64,
    end: u64,
    path: String,
    buf: Vec<u8>,
    lines: u64,
}

impl Drop for LineIter {
    fn drop(&mut self) {
        let (lines, bytes) = (self.lines, self.pos - self.start);
        record_side_metrics(|m| {
            m.input_records += lines;
            m.input_bytes += bytes;
        });
    }
}

impl Iterator for LineIter {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        if self.pos >= self.end {
            return None;
        }
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .unwrap_or_else(|e| throw(EmberError::io(&self.path, "read", e)));
        if n == 0 {
            return None;
        }
        self.pos += n as u64;
        self.lines += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        // `from_utf8` checks ASCII a word at a time; the lossy decoder
        // only runs for lines that are not valid UTF-8.
        Some(match std::str::from_utf8(&self.buf) {
            Ok(line) => line.to_owned(),
            Err(_) => String::from_utf8_lossy(&self.buf).into_owned(),
        })
    }
}

/// Whole files of a folder as `(path, bytes)` records.
pub struct BinaryFilesNode {
    core: NodeCore,
    body: Vec<Vec<String>>,
}

impl BinaryFilesNode {
    /// The visible files of folder `dir` in up to `min_partitions`
    /// partitions.
    pub fn new(id: RddId, dir: &Path, min_partitions: usize) -> Result<Self> {
        let meta = std::fs::metadata(dir).map_err(|e| EmberError::io(dir, "open", e))?;
        if !meta.is_dir() {
            return Err(EmberError::Io {
                path: dir.display().to_string(),
                action: "list".into(),
                message: "expected a folder, found a file".into(),
            });
        }
        Self::of_files(id, input_files(dir)?, min_partitions)
    }

    /// The files `files` in up to `min_partitions` partitions of
    /// neighbouring files.
    pub fn of_files(id: RddId, files: Vec<PathBuf>, min_partitions: usize) -> Result<Self> {
        for f in &files {
            check_readable(f)?;
        }
        let k = min_partitions.clamp(1, files.len().max(1));
        let groups = (0..k)
            .map(|i| {
                files[i * files.len() / k..(i + 1) * files.len() / k]
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .collect::<Vec<Vec<String>>>();
        Ok(BinaryFilesNode {
            core: NodeCore::new(id, k),
            body: groups,
        })
    }
}

impl Shippable for BinaryFilesNode {
    type Body = Vec<Vec<String>>;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &Vec<Vec<String>> {
        &self.body
    }
    fn rebuild(core: NodeCore, body: Vec<Vec<String>>, _: &[&Decoded]) -> Result<Self> {
        Ok(BinaryFilesNode { core, body })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<(String, Vec<u8>), _>(self)
    }
}

impl RddNode for BinaryFilesNode {
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        "binary_files"
    }
}

impl Compute<(String, Vec<u8>)> for BinaryFilesNode {
    fn compute(&self, part: usize, _: &TaskContext) -> Result<BoxIter<(String, Vec<u8>)>> {
        let files = self.body.get(part).cloned().unwrap_or_default();
        Ok(Box::new(files.into_iter().map(|path| {
            let mut bytes = Vec::new();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .unwrap_or_else(|e| throw(EmberError::io(&path, "read", e)));
            let len = bytes.len() as u64;
            record_side_metrics(|m| {
                m.input_records += 1;
                m.input_bytes += len;
            });
            (path, bytes)
        })))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

impl<T: Data> RddNode for ParallelizeNode<T> {
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        "parallelize"
    }
}

/// A `(path, bytes)` record of `binary_files` as `(path, text)`, for
/// Spark's `wholeTextFiles`: a `.gz` file is decompressed, and bytes that
/// are not UTF-8 are replaced (U+FFFD). A corrupt gzip file fails the
/// task naming it.
pub fn whole_text((path, bytes): (String, Vec<u8>)) -> (String, String) {
    let bytes = if is_gzip(&path) {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .unwrap_or_else(|e| throw(EmberError::io(&path, "decompress", e)));
        out
    } else {
        bytes
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    (path, text)
}

/// An RDD with no partitions (Spark's `emptyRDD`).
pub struct EmptyNode<T> {
    core: NodeCore,
    _t: PhantomData<fn() -> T>,
}

impl<T: Data> EmptyNode<T> {
    /// The empty RDD `id`.
    pub fn new(id: RddId) -> Self {
        EmptyNode {
            core: NodeCore::new(id, 0),
            _t: PhantomData,
        }
    }
}

impl<T: Data> Shippable for EmptyNode<T> {
    type Body = ();
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &() {
        &()
    }
    fn rebuild(core: NodeCore, _: (), _: &[&Decoded]) -> Result<Self> {
        Ok(EmptyNode {
            core,
            _t: PhantomData,
        })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<T, _>(self)
    }
}

impl<T: Data> RddNode for EmptyNode<T> {
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        Vec::new()
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        "empty"
    }
}

impl<T: Data> Compute<T> for EmptyNode<T> {
    fn compute(&self, _: usize, _: &TaskContext) -> Result<BoxIter<T>> {
        Ok(Box::new(std::iter::empty()))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards_match_runs_and_single_characters() {
        assert!(wildcard_match("*.txt", "a.txt"));
        assert!(wildcard_match("*.txt", ".txt"));
        assert!(!wildcard_match("*.txt", "a.txt.gz"));
        assert!(wildcard_match("part-?????", "part-00001"));
        assert!(!wildcard_match("part-?????", "part-0001"));
        assert!(wildcard_match("a*b*c", "aXXbYYbc"));
        assert!(!wildcard_match("a*b*c", "aXXbYYbd"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("données-*", "données-é"));
    }
}
