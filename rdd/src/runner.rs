//! What RDDs need from the driver: ids, defaults and running jobs.

use crate::node::StageRoot;
use ember_core::{RddId, Result, ShuffleId};
use std::sync::Arc;

/// The driver side of an RDD: implemented by the driver's `Context`.
pub trait JobRunner: Send + Sync + 'static {
    /// A fresh RDD id, larger than every earlier one.
    fn new_rdd_id(&self) -> RddId;
    /// A fresh shuffle id.
    fn new_shuffle_id(&self) -> ShuffleId;
    /// Partitions of shuffles and `parallelize` when none are given.
    fn default_parallelism(&self) -> usize;
    /// Runs `root` on `partitions` of its RDD and returns each partition's
    /// serialized result, in the order of `partitions`.
    fn run_job(&self, root: Arc<dyn StageRoot>, partitions: Vec<usize>) -> Result<Vec<Vec<u8>>>;
    /// Drops the cached blocks of `rdd` on every executor.
    fn unpersist(&self, rdd: RddId);
    /// The folder reliable checkpoints are written under, if set.
    fn checkpoint_dir(&self) -> Option<std::path::PathBuf>;
    /// Makes a broadcast value's bytes available to executors.
    fn register_broadcast(&self, id: ember_core::BroadcastId, bytes: Vec<u8>);
    /// Queues the removal of something no handle refers to any more; must
    /// not block (it is called from `Drop`).
    fn cleanup(&self, what: crate::cleanup::Cleanup);
    /// Cancels the running jobs whose properties' cancel flag is set
    /// (see [`crate::job_info::JobProperties::cancel`]).
    fn cancel_flagged(&self);
}
