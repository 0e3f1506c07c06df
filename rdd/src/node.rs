//! Lineage nodes: the type-erased view the scheduler walks ([`RddNode`]),
//! the typed view tasks compute from ([`Compute`]), and how one node is
//! shipped and rebuilt ([`Shippable`]).

use crate::cleanup::CleanupGuard;
use crate::task::TaskContext;
use ember_core::codec;
use ember_core::ship::FnOffset;
use ember_core::{Data, EmberError, RddId, Result, ShuffleId};
use ember_storage::block_manager::decode_block;
use ember_storage::{BlockId, StorageLevel, StoreOutcome};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::{Arc, Mutex};

/// An iterator over one partition's records.
pub type BoxIter<T> = Box<dyn Iterator<Item = T>>;

/// A node rebuilt on the executor: `Arc<dyn Compute<T>>` for an RDD,
/// `Arc<dyn TaskRoot>` for a stage's root, boxed as `Any`.
pub type Decoded = Box<dyn Any + Send + Sync>;

/// Signature of every node decoder: own bytes and rebuilt parents in.
pub type DecodeFn = fn(&[u8], &[&Decoded]) -> Result<Decoded>;

/// One node ready to travel: its decoder and its own state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShippedBody {
    /// Where the decoder is in the binary.
    pub decoder: FnOffset<DecodeFn>,
    /// The node's own state, MessagePack.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// What every RDD node has: its id, partition count, storage level and,
/// once checkpointed, the node that reads the saved partitions back.
pub struct NodeCore {
    /// The RDD's id (parents have smaller ids).
    pub id: RddId,
    /// How many partitions it has.
    pub partitions: usize,
    storage: Mutex<Option<StorageLevel>>,
    checkpoint: Mutex<Option<Checkpointed>>,
    /// On the driver, once persisted: unpersists the RDD when its node is
    /// dropped.
    cleanup: Mutex<Option<CleanupGuard>>,
}

/// A checkpointed RDD's replacement: the same id and partitions, no
/// parents. `typed` holds an `Arc<dyn Compute<T>>`.
#[derive(Clone)]
pub struct Checkpointed {
    /// The replacement, for the scheduler.
    pub node: Arc<dyn RddNode>,
    /// The replacement, for computing (`Arc<dyn Compute<T>>` as `Any`).
    pub typed: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for NodeCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCore")
            .field("id", &self.id)
            .field("partitions", &self.partitions)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct CoreHeader {
    id: RddId,
    partitions: usize,
    storage: Option<StorageLevel>,
}

impl NodeCore {
    /// A core for a new RDD.
    pub fn new(id: RddId, partitions: usize) -> Self {
        NodeCore {
            id,
            partitions,
            storage: Mutex::new(None),
            checkpoint: Mutex::new(None),
            cleanup: Mutex::new(None),
        }
    }

    /// The checkpoint replacing this node's lineage, if any.
    pub fn checkpointed(&self) -> Option<Checkpointed> {
        self.checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces this node's lineage by a checkpoint.
    pub fn set_checkpointed(&self, c: Checkpointed) {
        *self.checkpoint.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
    }

    /// The storage level set by `persist`, if any.
    pub fn storage_level(&self) -> Option<StorageLevel> {
        *self.storage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets or clears the storage level.
    pub fn set_storage_level(&self, level: Option<StorageLevel>) {
        *self.storage.lock().unwrap_or_else(|p| p.into_inner()) = level;
    }

    /// Has the node's cached blocks removed when it is dropped (set when
    /// the driver persists it; replaces an earlier guard, disarmed).
    pub fn set_cleanup(&self, guard: Option<CleanupGuard>) {
        let mut slot = self.cleanup.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take() {
            old.disarm();
        }
        *slot = guard;
    }

    fn header(&self) -> CoreHeader {
        CoreHeader {
            id: self.id,
            partitions: self.partitions,
            storage: self.storage_level(),
        }
    }

    fn from_header(h: CoreHeader) -> Self {
        NodeCore {
            id: h.id,
            partitions: h.partitions,
            storage: Mutex::new(h.storage),
            checkpoint: Mutex::new(None),
            cleanup: Mutex::new(None),
        }
    }
}

/// How a node depends on a parent.
#[derive(Clone)]
pub enum Dependency {
    /// Each partition needs a few parent partitions, computed in the same
    /// task.
    Narrow(Arc<dyn RddNode>),
    /// Each partition needs every parent partition, through a shuffle.
    Shuffle(Arc<dyn ShuffleDep>),
}

/// The driver's view of a shuffle dependency.
pub trait ShuffleDep: Send + Sync {
    /// The shuffle's id.
    fn shuffle_id(&self) -> ShuffleId;
    /// The RDD whose partitions the map tasks read.
    fn parent(&self) -> Arc<dyn RddNode>;
    /// Number of reduce partitions.
    fn num_reduces(&self) -> usize;
    /// The root of the map stage.
    fn write_root(&self) -> Arc<dyn StageRoot>;
}

/// The driver's view of a stage root.
pub trait StageRoot: Send + Sync {
    /// The RDD whose partitions the stage's tasks compute.
    fn parent(&self) -> Arc<dyn RddNode>;
    /// The root's own state and decoder.
    fn ship(&self) -> Result<ShippedBody>;
}

/// The dependencies the scheduler sees: none once checkpointed.
pub fn lineage_dependencies(node: &dyn RddNode) -> Vec<Dependency> {
    match node.core().checkpointed() {
        Some(_) => Vec::new(),
        None => node.dependencies(),
    }
}

/// What ships for `node`: the checkpoint's reader once checkpointed.
pub fn ship_lineage_node(node: &dyn RddNode) -> Result<ShippedBody> {
    match node.core().checkpointed() {
        Some(c) => c.node.ship(),
        None => node.ship(),
    }
}

/// The type-erased face of an RDD: what the scheduler needs.
pub trait RddNode: Send + Sync + 'static {
    /// Id, partition count and storage level.
    fn core(&self) -> &NodeCore;
    /// Parents and how they are depended on.
    fn dependencies(&self) -> Vec<Dependency>;
    /// This node's own state and decoder, without its parents.
    fn ship(&self) -> Result<ShippedBody>;
    /// A short name for logs and the UI (`map`, `shuffled`, ...).
    fn name(&self) -> &'static str;
}

/// The typed face of an RDD: computing one partition.
pub trait Compute<T>: RddNode {
    /// The records of partition `part`, ignoring any cached copy (callers
    /// use [`iterator`], which consults the cache).
    fn compute(&self, part: usize, tc: &TaskContext) -> Result<BoxIter<T>>;
    /// This node as its type-erased face.
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode>;
}

/// The records of partition `part` of `node`, from the executor's block
/// manager when the RDD is persisted and the block is there, computing
/// (and storing) it otherwise.
pub fn iterator<T: Data>(
    node: &Arc<dyn Compute<T>>,
    part: usize,
    tc: &TaskContext,
) -> Result<BoxIter<T>> {
    let core = node.core();
    if let Some(c) = core.checkpointed() {
        if let Some(saved) = c.typed.downcast_ref::<Arc<dyn Compute<T>>>() {
            return saved.compute(part, tc);
        }
    }
    let Some(level) = core.storage_level() else {
        return Ok(Box::new(Cancellable {
            inner: node.compute(part, tc)?,
            cancelled: tc.cancelled.clone(),
            task: tc.task_id,
        }));
    };
    let id = BlockId::Rdd {
        rdd: core.id,
        partition: part,
    };
    if let Some(records) = tc.env.blocks.get::<T>(&id)? {
        tc.record(|m| m.cache_hits += 1);
        return Ok(Box::new(SharedIter { records, next: 0 }));
    }
    if let Some(records) = fetch_cached::<T>(&id, tc) {
        tc.record(|m| {
            m.cache_hits += 1;
            m.cache_remote_hits += 1;
        });
        return Ok(Box::new(SharedIter { records, next: 0 }));
    }
    tc.record(|m| m.cache_misses += 1);
    let records: Arc<Vec<T>> = Arc::new(node.compute(part, tc)?.collect());
    if tc.env.blocks.put(id, level, records.clone())? != StoreOutcome::NotStored {
        tc.stored_blocks.borrow_mut().push(id);
    }
    Ok(Box::new(SharedIter { records, next: 0 }))
}

/// Block `id` from the executor the driver says caches it, if another one
/// does and still has it. Any failure (the executor is gone, the block was
/// evicted or is damaged) means computing it again from lineage, so it is
/// logged, not returned.
fn fetch_cached<T: Data>(id: &BlockId, tc: &TaskContext) -> Option<Arc<Vec<T>>> {
    let at = tc.cached_elsewhere.get(id)?;
    if at.executor == tc.env.executor_id {
        return None;
    }
    let fetcher = tc.env.fetcher.as_ref()?;
    let fetched = fetcher.fetch_block(&at.address, *id).and_then(|bytes| {
        bytes
            .map(|b| decode_block::<T>(&b, &format!("{id:?} from {}", at.executor)))
            .transpose()
    });
    match fetched {
        Ok(records) => records.map(Arc::new),
        Err(e) => {
            tracing::warn!(block = ?id, executor = %at.executor, %e, "remote cached block unavailable; recomputing");
            None
        }
    }
}

/// A node's records, stopping the task at the next record once it is
/// killed (every node's partition is read through [`iterator`], so every
/// record boundary of a pipeline is a cancellation point).
struct Cancellable<T> {
    inner: BoxIter<T>,
    cancelled: Arc<std::sync::atomic::AtomicBool>,
    task: ember_core::TaskId,
}

impl<T> Iterator for Cancellable<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.cancelled.load(std::sync::atomic::Ordering::Relaxed) {
            crate::task::throw(EmberError::Cancelled(format!(
                "task {} was killed",
                self.task.0
            )));
        }
        self.inner.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

/// Iterates a cached partition, cloning records out of the shared block.
struct SharedIter<T> {
    records: Arc<Vec<T>>,
    next: usize,
}

impl<T: Clone> Iterator for SharedIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        let r = self.records.get(self.next)?.clone();
        self.next += 1;
        Some(r)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.records.len() - self.next;
        (n, Some(n))
    }
}

/// A node type that can be shipped: its serializable state is a `Body`,
/// and it can be rebuilt from a body and its decoded parents.
pub trait Shippable: Sized + Send + Sync + 'static {
    /// The node's own state.
    type Body: Serialize + DeserializeOwned;
    /// Its core.
    fn node_core(&self) -> &NodeCore;
    /// Its own state.
    fn body(&self) -> &Self::Body;
    /// Rebuilds the node on the executor.
    fn rebuild(core: NodeCore, body: Self::Body, parents: &[&Decoded]) -> Result<Self>;
    /// Boxes the rebuilt node as the trait object its children expect.
    fn erase(self) -> Decoded;
}

/// Ships a [`Shippable`] node: header, body and decoder offset.
pub fn ship_node<N: Shippable>(node: &N) -> Result<ShippedBody> {
    let bytes = codec::encode(&(node.node_core().header(), node.body()))?;
    Ok(ShippedBody {
        decoder: FnOffset::of(decode_node::<N> as DecodeFn),
        bytes,
    })
}

fn decode_node<N: Shippable>(bytes: &[u8], parents: &[&Decoded]) -> Result<Decoded> {
    let (header, body): (CoreHeader, N::Body) = codec::decode(bytes, std::any::type_name::<N>())?;
    Ok(N::rebuild(NodeCore::from_header(header), body, parents)?.erase())
}

/// The decoded parent `i` as a typed RDD.
pub fn parent<T: Data>(parents: &[&Decoded], i: usize) -> Result<Arc<dyn Compute<T>>> {
    parents
        .get(i)
        .and_then(|p| p.downcast_ref::<Arc<dyn Compute<T>>>())
        .cloned()
        .ok_or_else(|| {
            EmberError::codec(
                "stage",
                format!("parent {i} is not an RDD of {}", std::any::type_name::<T>()),
            )
        })
}

/// Erases a typed RDD node for its children.
pub fn erase_rdd<T: Data, N: Compute<T>>(node: N) -> Decoded {
    let arc: Arc<dyn Compute<T>> = Arc::new(node);
    Box::new(arc)
}
