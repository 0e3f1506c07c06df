//! Shuffle dependencies: the map side (a stage root that partitions its
//! records into one segment per reduce partition) and the reduce side (an
//! RDD that reads its segment from every map output).

use crate::cleanup::{Cleanup, CleanupGuard};
use crate::map_output::MapOutputBuffer;
use crate::node::{erase_rdd, parent, ship_node};
use crate::node::{
    iterator, BoxIter, Compute, Decoded, Dependency, NodeCore, RddNode, Shippable, ShippedBody,
    StageRoot,
};
use crate::runner::JobRunner;
use crate::stage::{ship_root, ShippableRoot};
use crate::task::{TaskContext, TaskOutput, TaskRoot};
use ember_core::partitioner::{DynPartitioner, ShippedPartitioner};
use ember_core::{Data, EmberError, ExecutorId, PartitionerRef, Result, ShuffleId};
use ember_shuffle::{ChunkReader, MapStatus};
use serde::{Deserialize, Serialize};
use std::hash::Hash;
use std::sync::Arc;

/// Keys of pair RDDs: hashable for hash partitioning, ordered for range
/// partitioning and sorting.
pub trait Key: Data + Hash + Eq + Ord {}
impl<K> Key for K where K: Data + Hash + Eq + Ord {}

// The driver's view of a shuffle lives beside the lineage nodes that
// hold it; re-exported for the scheduler.
pub use crate::node::ShuffleDep;

/// A shuffle of `(K, V)` records by a partitioner. It exists only on the
/// driver; when the last RDD reading it is dropped, its guard has the
/// shuffle's files and records removed.
pub struct ShuffleDependency<K, V> {
    shuffle_id: ShuffleId,
    parent: Arc<dyn Compute<(K, V)>>,
    partitioner: Arc<dyn DynPartitioner<K>>,
    _cleanup: CleanupGuard,
}

impl<K: Key, V: Data> ShuffleDependency<K, V> {
    /// Records of `parent` moved to the partitions `partitioner` names,
    /// under a fresh shuffle id of `runner`.
    pub fn new(
        runner: &Arc<dyn JobRunner>,
        parent: Arc<dyn Compute<(K, V)>>,
        partitioner: Arc<dyn DynPartitioner<K>>,
    ) -> Self {
        let shuffle_id = runner.new_shuffle_id();
        ShuffleDependency {
            shuffle_id,
            parent,
            partitioner,
            _cleanup: CleanupGuard::new(Cleanup::Shuffle(shuffle_id), runner),
        }
    }

    /// The partitioner of the reduce side.
    pub fn partitioner(&self) -> PartitionerRef {
        PartitionerRef::from_dyn(self.partitioner.clone())
    }
}

impl<K: Key, V: Data> ShuffleDep for ShuffleDependency<K, V> {
    fn shuffle_id(&self) -> ShuffleId {
        self.shuffle_id
    }
    fn parent(&self) -> Arc<dyn RddNode> {
        self.parent.clone().as_node()
    }
    fn num_reduces(&self) -> usize {
        self.partitioner.num_partitions()
    }
    fn write_root(&self) -> Arc<dyn StageRoot> {
        Arc::new(ShuffleWriteRoot {
            parent: self.parent.clone(),
            shuffle: self.shuffle_id,
            partitioner: self.partitioner.clone(),
        })
    }
}

/// The map side of a shuffle: partitions, serializes and writes one
/// partition's records, spilling its buffers when execution memory runs
/// out (see `map_output.rs`).
pub struct ShuffleWriteRoot<K, V> {
    parent: Arc<dyn Compute<(K, V)>>,
    shuffle: ShuffleId,
    partitioner: Arc<dyn DynPartitioner<K>>,
}

impl<K: Key, V: Data> StageRoot for ShuffleWriteRoot<K, V> {
    fn parent(&self) -> Arc<dyn RddNode> {
        self.parent.clone().as_node()
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_root::<Self>(&(self.shuffle, self.partitioner.ship()?))
    }
}

impl<K: Key, V: Data> ShippableRoot for ShuffleWriteRoot<K, V> {
    type Body = (ShuffleId, ShippedPartitioner);
    fn rebuild((shuffle, partitioner): Self::Body, parents: &[&Decoded]) -> Result<Self> {
        Ok(ShuffleWriteRoot {
            parent: parent(parents, 0)?,
            shuffle,
            // SAFETY: shipped by the driver, which runs this same binary
            // (as every node of the stage blob being decoded).
            partitioner: unsafe { partitioner.rebuild::<K>()? },
        })
    }
}

impl<K: Key, V: Data> TaskRoot for ShuffleWriteRoot<K, V> {
    fn run(&self, tc: &TaskContext) -> Result<TaskOutput> {
        let (shuffle, partitioner) = (self.shuffle, &self.partitioner);
        let n = partitioner.num_partitions();
        let mut buffer = MapOutputBuffer::<(K, V)>::new(n);
        let mut written = 0u64;
        for record in iterator(&self.parent, tc.partition, tc)? {
            let reduce = partitioner.partition(&record.0);
            if reduce >= n {
                return Err(EmberError::TaskFailed {
                    message: format!(
                        "partitioner {} put a key in partition {reduce} of {n}",
                        partitioner.type_name()
                    ),
                });
            }
            buffer.push(reduce, &record)?;
            written += 1;
        }
        let sizes = buffer.write(&tc.env.shuffle_files, shuffle, tc.partition, tc.task_id.0)?;
        tc.record(|m| {
            m.shuffle_records_written += written;
            m.shuffle_bytes_written += sizes.iter().sum::<u64>();
        });
        Ok(TaskOutput::Map(MapStatus {
            executor: tc.env.executor_id.clone(),
            address: tc.env.block_address.clone(),
            sizes,
        }))
    }
}

/// The reduce side: partition `r` holds segment `r` of every map output.
pub struct ShuffledNode<K, V> {
    core: NodeCore,
    body: ShuffleId,
    /// Only on the driver: the dependency, for the scheduler.
    dep: Option<Arc<ShuffleDependency<K, V>>>,
}

impl<K: Key, V: Data> ShuffledNode<K, V> {
    /// The reduce side of `dep`.
    pub fn new(id: ember_core::RddId, dep: ShuffleDependency<K, V>) -> Self {
        ShuffledNode {
            core: NodeCore::new(id, dep.num_reduces()),
            body: dep.shuffle_id,
            dep: Some(Arc::new(dep)),
        }
    }
}

impl<K: Key, V: Data> Shippable for ShuffledNode<K, V> {
    type Body = ShuffleId;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &ShuffleId {
        &self.body
    }
    fn rebuild(core: NodeCore, body: ShuffleId, _: &[&Decoded]) -> Result<Self> {
        Ok(ShuffledNode {
            core,
            body,
            dep: None,
        })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<(K, V), _>(self)
    }
}

impl<K: Key, V: Data> RddNode for ShuffledNode<K, V> {
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        self.dep
            .iter()
            .map(|d| Dependency::Shuffle(d.clone()))
            .collect()
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        "shuffled"
    }
}

impl<K: Key, V: Data> Compute<(K, V)> for ShuffledNode<K, V> {
    fn compute(&self, part: usize, tc: &TaskContext) -> Result<BoxIter<(K, V)>> {
        let shuffle = self.body;
        let statuses = tc
            .shuffle_inputs
            .get(&shuffle)
            .ok_or_else(|| EmberError::FetchFailed {
                shuffle,
                map: 0,
                reduce: part,
                executor: tc.env.executor_id.clone(),
                message: "the stage was sent without this shuffle's map outputs".into(),
            })?;
        let fetch_failed =
            |map: usize, executor: &ExecutorId, message: String| EmberError::FetchFailed {
                shuffle,
                map,
                reduce: part,
                executor: executor.clone(),
                message,
            };
        // Segments are read when the stream reaches them: local ones a
        // chunk at a time, remote ones in requests of at most
        // MAX_BYTES_IN_FLIGHT, so memory stays bounded however many map
        // outputs another executor holds.
        let mut sources = std::collections::VecDeque::new();
        let mut bytes = 0u64;
        for (map, st) in statuses.iter().enumerate() {
            let size = st.sizes.get(part).copied().unwrap_or(0);
            if size == 0 {
                continue;
            }
            bytes += size;
            if st.executor == tc.env.executor_id {
                sources.push_back((map, Source::Local));
            } else if tc.env.fetcher.is_none() {
                return Err(fetch_failed(
                    map,
                    &st.executor,
                    "no remote fetcher on this executor".into(),
                ));
            } else {
                let address = st.address.clone().unwrap_or_default();
                sources.push_back((map, Source::Remote { address, size }));
            }
        }
        tc.record(|m| m.shuffle_bytes_read += bytes);
        Ok(Box::new(SegmentStream::<K, V> {
            env: tc.env.clone(),
            inputs: tc.shuffle_inputs.clone(),
            shuffle,
            reduce: part,
            sources,
            current: None,
            buffer: Vec::new().into_iter(),
        }))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

/// A reduce partition's records, decoded one chunk at a time from the
/// segments of every map output, in map order (local segments are also
/// read from disk a chunk at a time).
struct SegmentStream<K, V> {
    env: Arc<crate::task::TaskEnv>,
    /// Map output locations by shuffle (shared by the stage's tasks).
    inputs: Arc<std::collections::HashMap<ShuffleId, Vec<MapStatus>>>,
    shuffle: ShuffleId,
    reduce: usize,
    /// Segments still to read, by map, in map order.
    sources: std::collections::VecDeque<(usize, Source)>,
    /// The segment being read, and its map.
    current: Option<(usize, ChunkReader<'static>)>,
    buffer: std::vec::IntoIter<(K, V)>,
}

impl<K: Key, V: Data> SegmentStream<K, V> {
    fn failed(&self, map: usize, message: String) -> EmberError {
        EmberError::FetchFailed {
            shuffle: self.shuffle,
            map,
            reduce: self.reduce,
            executor: self
                .inputs
                .get(&self.shuffle)
                .and_then(|s| s.get(map))
                .map(|s| s.executor.clone())
                .unwrap_or_else(|| ExecutorId("unknown".into())),
            message,
        }
    }

    /// Fetches `map`'s segment from `address`, and with it the segments of
    /// later maps held there, up to [`MAX_BYTES_IN_FLIGHT`] in all (they
    /// wait in `sources`, fetched); returns `map`'s.
    fn fetch_batch(&mut self, map: usize, address: String, size: u64) -> Result<Vec<u8>> {
        let mut maps = vec![map];
        let mut slots = Vec::new();
        let mut total = size;
        for (i, (m, src)) in self.sources.iter().enumerate() {
            if let Source::Remote { address: a, size } = src {
                if *a == address && total + size <= MAX_BYTES_IN_FLIGHT {
                    total += size;
                    maps.push(*m);
                    slots.push(i);
                }
            }
        }
        let fetcher = self
            .env
            .fetcher
            .clone()
            .ok_or_else(|| self.failed(map, "no remote fetcher on this executor".into()))?;
        let mut segments = fetcher
            .fetch(&address, self.shuffle, &maps, self.reduce)
            .map_err(|e| self.failed(map, e.to_string()))?;
        if segments.len() != maps.len() {
            return Err(self.failed(
                map,
                format!(
                    "{address} sent {} segments for {}",
                    segments.len(),
                    maps.len()
                ),
            ));
        }
        let fetched: u64 = segments.iter().map(|s| s.len() as u64).sum();
        crate::task::record_side_metrics(|m| m.shuffle_remote_bytes_read += fetched);
        for (slot, segment) in slots.into_iter().zip(segments.drain(1..)) {
            self.sources[slot].1 = Source::Fetched(segment);
        }
        Ok(segments.pop().unwrap_or_default())
    }

    /// Decodes the next chunk into the buffer; false at the end.
    fn refill(&mut self) -> Result<bool> {
        loop {
            if let Some((map, reader)) = &mut self.current {
                let map = *map;
                match reader.next_chunk::<(K, V)>() {
                    Ok(None) => self.current = None,
                    Ok(Some(records)) => {
                        let n = records.len() as u64;
                        crate::task::record_side_metrics(|m| m.shuffle_records_read += n);
                        self.buffer = records.into_iter();
                        return Ok(true);
                    }
                    Err(e) => return Err(self.failed(map, e.to_string())),
                }
            }
            let Some((map, source)) = self.sources.pop_front() else {
                return Ok(false);
            };
            let what = format!(
                "shuffle {} map {map} reduce {}",
                self.shuffle.0, self.reduce
            );
            let reader = match source {
                Source::Fetched(bytes) => ChunkReader::from_bytes(bytes, what),
                Source::Remote { address, size } => {
                    ChunkReader::from_bytes(self.fetch_batch(map, address, size)?, what)
                }
                Source::Local => self
                    .env
                    .shuffle_files
                    .open_segment(self.shuffle, map, self.reduce)
                    .map_err(|e| self.failed(map, e.to_string()))?,
            };
            self.current = Some((map, reader));
        }
    }
}

/// Most bytes of remote segments one reduce task fetches ahead of reading
/// them (Spark's `spark.reducer.maxSizeInFlight` default); a single larger
/// segment is fetched alone.
const MAX_BYTES_IN_FLIGHT: u64 = 48 << 20;

/// Where a map output's segment for this reduce partition is.
enum Source {
    /// In this executor's shuffle files.
    Local,
    /// On another executor, not fetched yet.
    Remote { address: String, size: u64 },
    /// Fetched, waiting to be read.
    Fetched(Vec<u8>),
}

impl<K: Key, V: Data> Iterator for SegmentStream<K, V> {
    type Item = (K, V);
    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some(r) = self.buffer.next() {
                return Some(r);
            }
            match self.refill() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => crate::task::throw(e),
            }
        }
    }
}

/// A result task's root: applies the action's function to the partition.
pub struct ResultRoot<T, R, E, F> {
    parent: Arc<dyn Compute<T>>,
    body: ResultBody<E, F>,
    _r: std::marker::PhantomData<fn() -> R>,
}

/// The shipped state of a [`ResultRoot`].
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "E: Serialize",
    deserialize = "E: serde::de::DeserializeOwned, F: Copy + Send + Sync + 'static"
))]
pub struct ResultBody<E, F> {
    env: Arc<E>,
    f: ember_core::Shipped<F>,
}

/// The function of a result task.
pub trait ResultFn<E, T, R>:
    Fn(&Arc<E>, &TaskContext, BoxIter<T>) -> R + Copy + Send + Sync + 'static
{
}
impl<E, T, R, F> ResultFn<E, T, R> for F where
    F: Fn(&Arc<E>, &TaskContext, BoxIter<T>) -> R + Copy + Send + Sync + 'static
{
}

impl<T: Data, R: Data, E: crate::transforms::Env, F: ResultFn<E, T, R>> ResultRoot<T, R, E, F> {
    /// `f(env, task, records)` over partitions of `parent`.
    pub fn new(parent: Arc<dyn Compute<T>>, env: E, f: F) -> Self {
        ResultRoot {
            parent,
            body: ResultBody {
                env: Arc::new(env),
                f: ember_core::Shipped::new(f),
            },
            _r: std::marker::PhantomData,
        }
    }
}

impl<T: Data, R: Data, E: crate::transforms::Env, F: ResultFn<E, T, R>> StageRoot
    for ResultRoot<T, R, E, F>
{
    fn parent(&self) -> Arc<dyn RddNode> {
        self.parent.clone().as_node()
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_root::<Self>(&self.body)
    }
}

impl<T: Data, R: Data, E: crate::transforms::Env, F: ResultFn<E, T, R>> ShippableRoot
    for ResultRoot<T, R, E, F>
{
    type Body = ResultBody<E, F>;
    fn rebuild(body: Self::Body, parents: &[&Decoded]) -> Result<Self> {
        Ok(ResultRoot {
            parent: parent(parents, 0)?,
            body,
            _r: std::marker::PhantomData,
        })
    }
}

impl<T: Data, R: Data, E: crate::transforms::Env, F: ResultFn<E, T, R>> TaskRoot
    for ResultRoot<T, R, E, F>
{
    fn run(&self, tc: &TaskContext) -> Result<TaskOutput> {
        let records = iterator(&self.parent, tc.partition, tc)?;
        let value = (self.body.f.get())(&self.body.env, tc, records);
        Ok(TaskOutput::Result(ember_core::codec::encode(&value)?))
    }
}
