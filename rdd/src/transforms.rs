//! Narrow transformations: every per-partition function is one
//! [`MapPartitionsNode`]; [`UnionNode`] and [`CoalesceNode`] regroup
//! parent partitions without a shuffle.

use crate::node::{
    erase_rdd, iterator, parent, ship_node, BoxIter, Compute, Decoded, Dependency, NodeCore,
    RddNode, Shippable, ShippedBody,
};
use crate::task::TaskContext;
use ember_core::{Data, Result, Shipped};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;

/// Values a shipped function may carry along: serializable and shareable.
pub trait Env: Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<E> Env for E where E: Serialize + DeserializeOwned + Send + Sync + 'static {}

/// The function of a [`MapPartitionsNode`]: environment, partition index
/// and the parent's records in, this partition's records out.
pub trait PartitionFn<E, T, U>:
    Fn(&Arc<E>, usize, BoxIter<T>) -> BoxIter<U> + Copy + Send + Sync + 'static
{
}
impl<E, T, U, F> PartitionFn<E, T, U> for F where
    F: Fn(&Arc<E>, usize, BoxIter<T>) -> BoxIter<U> + Copy + Send + Sync + 'static
{
}

/// The shipped state of a [`MapPartitionsNode`].
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "E: Serialize",
    deserialize = "E: DeserializeOwned, F: Copy + Send + Sync + 'static"
))]
pub struct MapBody<E, F> {
    env: Arc<E>,
    f: Shipped<F>,
}

/// Applies a function to each partition of its parent.
pub struct MapPartitionsNode<T, U, E, F> {
    core: NodeCore,
    parent: Arc<dyn Compute<T>>,
    body: MapBody<E, F>,
    name: &'static str,
    _out: PhantomData<fn() -> U>,
}

impl<T: Data, U: Data, E: Env, F: PartitionFn<E, T, U>> MapPartitionsNode<T, U, E, F> {
    /// A node computing `f(env, partition, parent records)`.
    pub fn new(
        core: NodeCore,
        parent: Arc<dyn Compute<T>>,
        env: E,
        f: F,
        name: &'static str,
    ) -> Self {
        MapPartitionsNode {
            core,
            parent,
            body: MapBody {
                env: Arc::new(env),
                f: Shipped::new(f),
            },
            name,
            _out: PhantomData,
        }
    }
}

impl<T: Data, U: Data, E: Env, F: PartitionFn<E, T, U>> Shippable
    for MapPartitionsNode<T, U, E, F>
{
    type Body = MapBody<E, F>;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &Self::Body {
        &self.body
    }
    fn rebuild(core: NodeCore, body: Self::Body, parents: &[&Decoded]) -> Result<Self> {
        Ok(MapPartitionsNode {
            core,
            parent: parent(parents, 0)?,
            body,
            name: "map_partitions",
            _out: PhantomData,
        })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<U, _>(self)
    }
}

impl<T: Data, U: Data, E: Env, F: PartitionFn<E, T, U>> RddNode for MapPartitionsNode<T, U, E, F> {
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![Dependency::Narrow(self.parent.clone().as_node())]
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        self.name
    }
}

impl<T: Data, U: Data, E: Env, F: PartitionFn<E, T, U>> Compute<U>
    for MapPartitionsNode<T, U, E, F>
{
    fn compute(&self, part: usize, tc: &TaskContext) -> Result<BoxIter<U>> {
        let input = iterator(&self.parent, part, tc)?;
        Ok((self.body.f.get())(&self.body.env, part, input))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

/// The partitions of several RDDs, one after another.
pub struct UnionNode<T> {
    core: NodeCore,
    parents: Vec<Arc<dyn Compute<T>>>,
    /// Partition counts of the parents, in order.
    body: Vec<usize>,
}

impl<T: Data> UnionNode<T> {
    /// The union of `parents`.
    pub fn new(id: ember_core::RddId, parents: Vec<Arc<dyn Compute<T>>>) -> Self {
        let counts: Vec<usize> = parents.iter().map(|p| p.core().partitions).collect();
        UnionNode {
            core: NodeCore::new(id, counts.iter().sum()),
            parents,
            body: counts,
        }
    }
}

impl<T: Data> Shippable for UnionNode<T> {
    type Body = Vec<usize>;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &Vec<usize> {
        &self.body
    }
    fn rebuild(core: NodeCore, body: Vec<usize>, parents: &[&Decoded]) -> Result<Self> {
        let ps = (0..parents.len())
            .map(|i| parent(parents, i))
            .collect::<Result<_>>()?;
        Ok(UnionNode {
            core,
            parents: ps,
            body,
        })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<T, _>(self)
    }
}

impl<T: Data> RddNode for UnionNode<T> {
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        self.parents
            .iter()
            .map(|p| Dependency::Narrow(p.clone().as_node()))
            .collect()
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        "union"
    }
}

impl<T: Data> Compute<T> for UnionNode<T> {
    fn compute(&self, mut part: usize, tc: &TaskContext) -> Result<BoxIter<T>> {
        for (p, &n) in self.parents.iter().zip(&self.body) {
            if part < n {
                return iterator(p, part, tc);
            }
            part -= n;
        }
        Ok(Box::new(std::iter::empty()))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

/// Fewer partitions without a shuffle: each partition reads a contiguous
/// group of parent partitions.
pub struct CoalesceNode<T> {
    core: NodeCore,
    parent: Arc<dyn Compute<T>>,
    /// Parent partitions of each partition.
    body: Vec<Vec<usize>>,
}

impl<T: Data> CoalesceNode<T> {
    /// `parent` merged into at most `partitions` partitions.
    pub fn new(id: ember_core::RddId, parent: Arc<dyn Compute<T>>, partitions: usize) -> Self {
        let n = parent.core().partitions;
        let k = partitions.clamp(1, n.max(1));
        let groups: Vec<Vec<usize>> = (0..k)
            .map(|i| (i * n / k..(i + 1) * n / k).collect())
            .collect();
        CoalesceNode {
            core: NodeCore::new(id, groups.len()),
            parent,
            body: groups,
        }
    }
}

impl<T: Data> Shippable for CoalesceNode<T> {
    type Body = Vec<Vec<usize>>;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &Vec<Vec<usize>> {
        &self.body
    }
    fn rebuild(core: NodeCore, body: Vec<Vec<usize>>, parents: &[&Decoded]) -> Result<Self> {
        Ok(CoalesceNode {
            core,
            parent: parent(parents, 0)?,
            body,
        })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<T, _>(self)
    }
}

impl<T: Data> RddNode for CoalesceNode<T> {
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![Dependency::Narrow(self.parent.clone().as_node())]
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        "coalesce"
    }
}

impl<T: Data> Compute<T> for CoalesceNode<T> {
    fn compute(&self, part: usize, tc: &TaskContext) -> Result<BoxIter<T>> {
        let mut iters = Vec::new();
        for &p in self.body.get(part).map(Vec::as_slice).unwrap_or(&[]) {
            iters.push(iterator(&self.parent, p, tc)?);
        }
        Ok(Box::new(iters.into_iter().flatten()))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}
