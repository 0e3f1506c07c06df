//! Object files: typed records saved in batches, each batch MessagePack
//! compressed into a checksummed lz4 block (`ember_core::codec`), and the
//! node that reads them back. Spark writes Java-serialized batches into a
//! Hadoop SequenceFile; the layout here is Ember's own:
//!
//! ```text
//! "EMBEROBJ" | u32 LE n | n bytes: the record type's name
//! then per batch: u32 LE len | len bytes: codec::compress_block(encode(Vec<T>))
//! ```
//!
//! The type name is `std::any::type_name`, which Rust does not promise to
//! keep across compiler versions: files are meant to be read back by
//! programs built with the same toolchain.

use crate::node::{
    erase_rdd, ship_node, BoxIter, Compute, Decoded, Dependency, NodeCore, RddNode, Shippable,
    ShippedBody,
};
use crate::rdd::Rdd;
use crate::task::{record_side_metrics, throw, TaskContext};
use ember_core::{codec, Data, EmberError, RddId, Result};
use std::io::{BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"EMBEROBJ";

/// Records per batch: large enough for lz4 to find repetition, small
/// enough that a reader holds little.
const BATCH: usize = 1024;

/// Largest batch or type name a reader accepts, so a corrupt length
/// cannot exhaust memory.
const MAX_BLOCK: usize = codec::MAX_FRAME_BYTES;

/// Creates the output folder of a save, which must not exist yet.
pub(crate) fn create_output_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        return Err(EmberError::Io {
            path: dir.display().to_string(),
            action: "save".into(),
            message: "output folder already exists".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| EmberError::io(dir, "create", e))
}

/// Marks a save complete, as Hadoop's output committer does.
pub(crate) fn write_success(dir: &Path) -> Result<()> {
    let success = dir.join("_SUCCESS");
    std::fs::write(&success, b"").map_err(|e| EmberError::io(&success, "write", e))
}

/// Writes the task's partition as `dir/part-NNNNN` through `write`: under
/// a temporary name, synced, then renamed, so a reader never sees half a
/// file; the temporary file is removed however the task ends. Failures
/// are thrown naming the file.
pub(crate) fn write_part(
    dir: &str,
    tc: &TaskContext,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) {
    let final_path = Path::new(dir).join(format!("part-{:05}", tc.partition));
    let tmp = Path::new(dir).join(format!(".part-{:05}.{}.tmp", tc.partition, tc.task_id.0));
    // Removes the temporary file unless it was renamed, also when a user
    // function panics while the partition is being written.
    struct RemoveOnDrop<'a>(&'a Path);
    impl Drop for RemoveOnDrop<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _cleanup = RemoveOnDrop(&tmp);
    let result = (|| -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &final_path)
    })();
    if let Err(e) = result {
        throw(EmberError::io(&final_path, "write", e));
    }
}

fn write_block(w: &mut impl Write, raw: &[u8]) -> std::io::Result<()> {
    let block = codec::compress_block(raw);
    let len = u32::try_from(block.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a batch over 4 GiB"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&block)
}

impl<T: Data> Rdd<T> {
    /// Spark's `saveAsObjectFile`: each partition as a file `part-NNNNN`
    /// of typed records in the new folder `path` (batches of 1024
    /// records, each a checksummed lz4 block; see the module docs), each
    /// written under a temporary name and renamed, then a `_SUCCESS`
    /// marker. Fails if `path` exists. Read back with `Context::object_file`.
    pub fn save_as_object_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let dir = path.as_ref();
        create_output_dir(dir)?;
        self.run_job(
            dir.display().to_string(),
            |d: &Arc<String>, tc: &TaskContext, it: BoxIter<T>| {
                write_part(d, tc, |w| {
                    let name = std::any::type_name::<T>().as_bytes();
                    w.write_all(MAGIC)?;
                    w.write_all(&(name.len() as u32).to_le_bytes())?;
                    w.write_all(name)?;
                    let mut batch: Vec<T> = Vec::with_capacity(BATCH);
                    let flush = |batch: &mut Vec<T>, w: &mut BufWriter<_>| {
                        let raw = codec::encode(&*batch).map_err(std::io::Error::other)?;
                        batch.clear();
                        write_block(w, &raw)
                    };
                    for x in it {
                        batch.push(x);
                        if batch.len() == BATCH {
                            flush(&mut batch, w)?;
                        }
                    }
                    if !batch.is_empty() {
                        flush(&mut batch, w)?;
                    }
                    Ok(())
                })
            },
            (0..self.num_partitions()).collect(),
        )?;
        write_success(dir)
    }
}

/// Reads object files: one partition per file.
pub struct ObjectFileNode<T> {
    core: NodeCore,
    body: Vec<String>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Data> ObjectFileNode<T> {
    /// The object files `files`, one partition each.
    pub fn new(id: RddId, files: Vec<PathBuf>) -> Self {
        ObjectFileNode {
            core: NodeCore::new(id, files.len()),
            body: files.iter().map(|f| f.display().to_string()).collect(),
            _t: PhantomData,
        }
    }
}

impl<T: Data> Shippable for ObjectFileNode<T> {
    type Body = Vec<String>;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &Vec<String> {
        &self.body
    }
    fn rebuild(core: NodeCore, body: Vec<String>, _: &[&Decoded]) -> Result<Self> {
        Ok(ObjectFileNode {
            core,
            body,
            _t: PhantomData,
        })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<T, _>(self)
    }
}

impl<T: Data> RddNode for ObjectFileNode<T> {
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
        "object_file"
    }
}

/// Reads a `u32 LE` length and that many bytes; `None` at a clean end of
/// file before the length.
fn read_block(r: &mut impl Read, path: &str, what: &str) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(corrupt(path, format!("{what}: truncated length"))),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(EmberError::io(path, "read", e)),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_BLOCK {
        return Err(corrupt(path, format!("{what}: length {len} is impossible")));
    }
    let mut bytes = Vec::with_capacity(len.min(1 << 20));
    r.take(len as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| EmberError::io(path, "read", e))?;
    if bytes.len() < len {
        return Err(corrupt(
            path,
            format!("{what}: truncated after {} of {len} bytes", bytes.len()),
        ));
    }
    Ok(Some(bytes))
}

fn corrupt(path: &str, message: String) -> EmberError {
    EmberError::Codec {
        what: format!("object file {path}"),
        message,
    }
}

impl<T: Data> Compute<T> for ObjectFileNode<T> {
    fn compute(&self, part: usize, _: &TaskContext) -> Result<BoxIter<T>> {
        let Some(path) = self.body.get(part).cloned() else {
            return Ok(Box::new(std::iter::empty()));
        };
        let file = std::fs::File::open(&path).map_err(|e| EmberError::io(&path, "open", e))?;
        let mut r = BufReader::new(file);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)
            .map_err(|_| corrupt(&path, "not an object file (too short)".into()))?;
        if &magic != MAGIC {
            return Err(corrupt(&path, "not an object file (bad magic)".into()));
        }
        let name = read_block(&mut r, &path, "type name")?
            .ok_or_else(|| corrupt(&path, "no record type".into()))?;
        let expected = std::any::type_name::<T>();
        if name != expected.as_bytes() {
            return Err(corrupt(
                &path,
                format!(
                    "holds records of type {}, not {expected}",
                    String::from_utf8_lossy(&name)
                ),
            ));
        }
        let mut batch = 0usize;
        let mut records = Vec::new().into_iter();
        Ok(Box::new(std::iter::from_fn(move || loop {
            if let Some(x) = records.next() {
                return Some(x);
            }
            let what = format!("batch {batch}");
            let block = read_block(&mut r, &path, &what).unwrap_or_else(|e| throw(e))?;
            let decoded: Vec<T> = codec::decompress_block(&block, &what)
                .and_then(|raw| codec::decode(&raw, &what))
                .unwrap_or_else(|e| throw(corrupt(&path, e.to_string())));
            let n = decoded.len() as u64;
            let bytes = block.len() as u64 + 4;
            record_side_metrics(|m| {
                m.input_records += n;
                m.input_bytes += bytes;
            });
            batch += 1;
            records = decoded.into_iter();
        })))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}
