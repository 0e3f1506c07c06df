//! Checkpoints: an RDD's partitions saved to files, after which its
//! lineage is replaced by a node that reads them back, so long iterative
//! lineages stay short and recovery need not recompute from the start.
//!
//! A reliable checkpoint writes under the context's checkpoint folder
//! (`set_checkpoint_dir`); a local checkpoint writes into the executors'
//! own folders — cheaper, but lost with the executor. Both are eager: the
//! call runs a job that writes every partition (each file written under a
//! temporary name and renamed).

use crate::node::{
    erase_rdd, ship_node, BoxIter, Checkpointed, Compute, Decoded, Dependency, NodeCore, RddNode,
    Shippable, ShippedBody,
};
use crate::rdd::Rdd;
use crate::task::{throw, TaskContext};
use ember_core::{Data, EmberError, Result};
use ember_shuffle::{segment_records, ChunkWriter};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads a checkpointed RDD's partitions from their files.
pub struct CheckpointNode<T> {
    core: NodeCore,
    /// The file of each partition.
    body: Vec<String>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Data> Shippable for CheckpointNode<T> {
    type Body = Vec<String>;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &Vec<String> {
        &self.body
    }
    fn rebuild(core: NodeCore, body: Vec<String>, _: &[&Decoded]) -> Result<Self> {
        Ok(CheckpointNode {
            core,
            body,
            _t: PhantomData,
        })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<T, _>(self)
    }
}

impl<T: Data> RddNode for CheckpointNode<T> {
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
        "checkpoint"
    }
}

impl<T: Data> Compute<T> for CheckpointNode<T> {
    fn compute(&self, part: usize, _: &TaskContext) -> Result<BoxIter<T>> {
        let path = self.body.get(part).ok_or_else(|| {
            EmberError::Other(format!(
                "checkpoint of {} has no partition {part}",
                self.core.id
            ))
        })?;
        let bytes = std::fs::read(path).map_err(|e| EmberError::io(path, "read checkpoint", e))?;
        let records: Vec<T> = segment_records(&bytes, path)?;
        Ok(Box::new(records.into_iter()))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

/// Writes one partition's records to `dir/part-NNNNN` (temp, then rename).
fn write_partition<T: Data>(dir: &Path, tc: &TaskContext, records: BoxIter<T>) -> String {
    let write = || -> Result<String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| EmberError::io(dir, "create checkpoint folder", e))?;
        let mut w = ChunkWriter::new();
        for r in records {
            w.push(&r)?;
        }
        let bytes = w.finish();
        let path = dir.join(format!("part-{:05}", tc.partition));
        let tmp = dir.join(format!(".part-{:05}.{}.tmp", tc.partition, tc.task_id.0));
        std::fs::write(&tmp, &bytes).map_err(|e| EmberError::io(&tmp, "write checkpoint", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| EmberError::io(&path, "rename checkpoint", e))?;
        Ok(path.display().to_string())
    };
    write().unwrap_or_else(|e| throw(e))
}

impl<T: Data> Rdd<T> {
    /// Saves every partition under the context's checkpoint folder and
    /// cuts this RDD's lineage: later jobs read the files. Runs a job now.
    pub fn checkpoint(&self) -> Result<()> {
        let base = self
            .runner
            .checkpoint_dir()
            .ok_or_else(|| EmberError::Conf {
                key: "checkpoint dir".into(),
                message: "call Context::set_checkpoint_dir before checkpoint()".into(),
            })?;
        self.save_checkpoint(Some(base.join(format!("rdd-{}", self.id().0))))
    }

    /// Saves every partition in the executors' local folders and cuts the
    /// lineage: cheaper than [`Rdd::checkpoint`], but a lost executor loses
    /// its partitions for good. Runs a job now.
    pub fn local_checkpoint(&self) -> Result<()> {
        self.save_checkpoint(None)
    }

    /// Whether this RDD's lineage has been replaced by a checkpoint.
    pub fn is_checkpointed(&self) -> bool {
        self.node.core().checkpointed().is_some()
    }

    fn save_checkpoint(&self, dir: Option<PathBuf>) -> Result<()> {
        let id = self.id().0;
        let dir = dir.map(|d| d.display().to_string());
        let paths = self.run_job(
            (dir, id),
            |env: &Arc<(Option<String>, u64)>, tc: &TaskContext, it: BoxIter<T>| {
                let dir = match &env.0 {
                    Some(d) => PathBuf::from(d),
                    None => tc
                        .env
                        .shuffle_files
                        .dir()
                        .join(format!("checkpoint-rdd-{}", env.1)),
                };
                write_partition(&dir, tc, it)
            },
            (0..self.num_partitions()).collect(),
        )?;
        let core = NodeCore::new(self.id(), self.num_partitions());
        let reader: Arc<CheckpointNode<T>> = Arc::new(CheckpointNode {
            core,
            body: paths,
            _t: PhantomData,
        });
        let typed: Arc<dyn Compute<T>> = reader.clone();
        self.node.core().set_checkpointed(Checkpointed {
            node: reader,
            typed: Arc::new(typed),
        });
        Ok(())
    }
}
