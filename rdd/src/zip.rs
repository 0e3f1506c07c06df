//! Operations that read two RDDs side by side without a shuffle:
//! [`Rdd::zip_partitions`], [`Rdd::zip`] and [`Rdd::cartesian`], plus
//! [`Rdd::zip_with_unique_id`].

use crate::node::{
    erase_rdd, iterator, parent, ship_node, BoxIter, Compute, Decoded, Dependency, NodeCore,
    RddNode, Shippable, ShippedBody,
};
use crate::rdd::{Rdd, UserFn};
use crate::task::{throw, TaskContext};
use crate::transforms::Env;
use ember_core::{Data, EmberError, Result, Shipped};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::sync::Arc;

/// The function of a [`ZipPartitionsNode`]: environment, partition index
/// and the same partition of both parents in, this partition out.
pub trait ZipFn<E, A, B, U>:
    Fn(&Arc<E>, usize, BoxIter<A>, BoxIter<B>) -> BoxIter<U> + Copy + Send + Sync + 'static
{
}
impl<E, A, B, U, F> ZipFn<E, A, B, U> for F where
    F: Fn(&Arc<E>, usize, BoxIter<A>, BoxIter<B>) -> BoxIter<U> + Copy + Send + Sync + 'static
{
}

/// The shipped state of a [`ZipPartitionsNode`].
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "E: Serialize",
    deserialize = "E: DeserializeOwned, F: Copy + Send + Sync + 'static"
))]
pub struct ZipBody<E, F> {
    env: Arc<E>,
    f: Shipped<F>,
}

/// Partition `i` is `f(env, i, left partition i, right partition i)`; both
/// parents have the same number of partitions (a narrow dependency on
/// each).
pub struct ZipPartitionsNode<A, B, U, E, F> {
    core: NodeCore,
    left: Arc<dyn Compute<A>>,
    right: Arc<dyn Compute<B>>,
    body: ZipBody<E, F>,
    _out: PhantomData<fn() -> U>,
}

impl<A: Data, B: Data, U: Data, E: Env, F: ZipFn<E, A, B, U>> ZipPartitionsNode<A, B, U, E, F> {
    /// `f(env, i, left partition i, right partition i)`; the parents must
    /// have `core.partitions` partitions each.
    pub(crate) fn new(
        core: NodeCore,
        left: Arc<dyn Compute<A>>,
        right: Arc<dyn Compute<B>>,
        env: E,
        f: F,
    ) -> Self {
        ZipPartitionsNode {
            core,
            left,
            right,
            body: ZipBody {
                env: Arc::new(env),
                f: Shipped::new(f),
            },
            _out: PhantomData,
        }
    }
}

impl<A: Data, B: Data, U: Data, E: Env, F: ZipFn<E, A, B, U>> Shippable
    for ZipPartitionsNode<A, B, U, E, F>
{
    type Body = ZipBody<E, F>;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &Self::Body {
        &self.body
    }
    fn rebuild(core: NodeCore, body: Self::Body, parents: &[&Decoded]) -> Result<Self> {
        Ok(ZipPartitionsNode {
            core,
            left: parent(parents, 0)?,
            right: parent(parents, 1)?,
            body,
            _out: PhantomData,
        })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<U, _>(self)
    }
}

impl<A: Data, B: Data, U: Data, E: Env, F: ZipFn<E, A, B, U>> RddNode
    for ZipPartitionsNode<A, B, U, E, F>
{
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![
            Dependency::Narrow(self.left.clone().as_node()),
            Dependency::Narrow(self.right.clone().as_node()),
        ]
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        "zip_partitions"
    }
}

impl<A: Data, B: Data, U: Data, E: Env, F: ZipFn<E, A, B, U>> Compute<U>
    for ZipPartitionsNode<A, B, U, E, F>
{
    fn compute(&self, part: usize, tc: &TaskContext) -> Result<BoxIter<U>> {
        let a = iterator(&self.left, part, tc)?;
        let b = iterator(&self.right, part, tc)?;
        Ok((self.body.f.get())(&self.body.env, part, a, b))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

/// Partition `i * m + j` holds every pair of left partition `i` and right
/// partition `j` (`m` right partitions).
pub struct CartesianNode<A, B> {
    core: NodeCore,
    left: Arc<dyn Compute<A>>,
    right: Arc<dyn Compute<B>>,
    /// Partitions of the right parent.
    body: usize,
}

impl<A: Data, B: Data> Shippable for CartesianNode<A, B> {
    type Body = usize;
    fn node_core(&self) -> &NodeCore {
        &self.core
    }
    fn body(&self) -> &usize {
        &self.body
    }
    fn rebuild(core: NodeCore, body: usize, parents: &[&Decoded]) -> Result<Self> {
        Ok(CartesianNode {
            core,
            left: parent(parents, 0)?,
            right: parent(parents, 1)?,
            body,
        })
    }
    fn erase(self) -> Decoded {
        erase_rdd::<(A, B), _>(self)
    }
}

impl<A: Data, B: Data> RddNode for CartesianNode<A, B> {
    fn core(&self) -> &NodeCore {
        &self.core
    }
    fn dependencies(&self) -> Vec<Dependency> {
        vec![
            Dependency::Narrow(self.left.clone().as_node()),
            Dependency::Narrow(self.right.clone().as_node()),
        ]
    }
    fn ship(&self) -> Result<ShippedBody> {
        ship_node(self)
    }
    fn name(&self) -> &'static str {
        "cartesian"
    }
}

impl<A: Data, B: Data> Compute<(A, B)> for CartesianNode<A, B> {
    fn compute(&self, part: usize, tc: &TaskContext) -> Result<BoxIter<(A, B)>> {
        let m = self.body.max(1);
        let left = iterator(&self.left, part / m, tc)?;
        // The right partition is held once and replayed for every left
        // record; Spark recomputes it per left record instead.
        let right: Arc<Vec<B>> = Arc::new(iterator(&self.right, part % m, tc)?.collect());
        Ok(Box::new(left.flat_map(move |a| {
            let right = right.clone();
            (0..right.len()).map(move |j| (a.clone(), right[j].clone()))
        })))
    }
    fn as_node(self: Arc<Self>) -> Arc<dyn RddNode> {
        self
    }
}

impl<T: Data> Rdd<T> {
    /// The primitive behind [`Rdd::zip_partitions`]:
    /// `f(env, partition index, this partition, other's partition)`.
    /// Fails if the two RDDs have different numbers of partitions.
    pub fn zip_partitions_with_env<B: Data, U: Data, E: Env, F: ZipFn<E, T, B, U>>(
        &self,
        other: &Rdd<B>,
        env: E,
        f: F,
    ) -> Result<Rdd<U>> {
        let (n, m) = (self.num_partitions(), other.num_partitions());
        if n != m {
            return Err(EmberError::Other(format!(
                "cannot zip RDDs with unequal numbers of partitions: {n} (rdd {}) and {m} (rdd {})",
                self.id().0,
                other.id().0
            )));
        }
        let node =
            ZipPartitionsNode::new(self.core(n), self.node.clone(), other.node.clone(), env, f);
        Ok(self.wrap(Arc::new(node)))
    }

    /// Spark's `zipPartitions`: `f(this partition, other's partition)` for
    /// each partition index, without a shuffle. Spark fails when the job
    /// runs if the partition counts differ; this fails here, at once.
    pub fn zip_partitions<B: Data, U: Data, I, F>(&self, other: &Rdd<B>, f: F) -> Result<Rdd<U>>
    where
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
        F: Fn(BoxIter<T>, BoxIter<B>) -> I + UserFn,
    {
        self.zip_partitions_with_env(
            other,
            (),
            move |_: &Arc<()>, _: usize, a: BoxIter<T>, b: BoxIter<B>| -> BoxIter<U> {
                Box::new(f(a, b).into_iter())
            },
        )
    }

    /// Spark's `zip`: the `i`-th record of this RDD with the `i`-th of
    /// `other`. Both must have the same number of partitions (checked
    /// here) and the same number of records in each partition (checked as
    /// the job runs: the task fails naming the partition).
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// let ctx = Context::new("local[2]")?;
    /// let a = ctx.parallelize(vec![1, 2, 3], 2)?;
    /// let b = ctx.parallelize(vec!["x", "y", "z"].into_iter().map(String::from).collect(), 2)?;
    /// let pairs = a.zip(&b)?.collect()?;
    /// assert_eq!(pairs[2], (3, "z".to_string()));
    /// # Ok::<(), ember_driver::EmberError>(())
    /// ```
    pub fn zip<B: Data>(&self, other: &Rdd<B>) -> Result<Rdd<(T, B)>> {
        self.zip_partitions_with_env(
            other,
            (),
            |_: &Arc<()>, p: usize, mut a: BoxIter<T>, mut b: BoxIter<B>| -> BoxIter<(T, B)> {
                Box::new(std::iter::from_fn(move || match (a.next(), b.next()) {
                    (Some(x), Some(y)) => Some((x, y)),
                    (None, None) => None,
                    _ => throw(EmberError::Other(format!(
                        "cannot zip partition {p}: the two RDDs have different numbers of \
                         records in it (zip needs the same count in every partition)"
                    ))),
                }))
            },
        )
    }

    /// Spark's `cartesian`: every pair `(a, b)` of a record here and one
    /// of `other`, in `n * m` partitions. The task of partition `(i, j)`
    /// holds `other`'s partition `j` in memory (Spark recomputes it for
    /// each record of `i`).
    pub fn cartesian<B: Data>(&self, other: &Rdd<B>) -> Rdd<(T, B)> {
        let m = other.num_partitions();
        let node = CartesianNode {
            core: self.core(self.num_partitions() * m),
            left: self.node.clone(),
            right: other.node.clone(),
            body: m,
        };
        self.wrap(Arc::new(node))
    }

    /// Spark's `zipWithUniqueId`: record `i` of partition `k` gets id
    /// `i * n + k` (`n` partitions). Ids are unique but not contiguous, and
    /// unlike [`Rdd::zip_with_index`] no job runs.
    pub fn zip_with_unique_id(&self) -> Rdd<(T, u64)> {
        self.map_partitions_with_env(
            self.num_partitions() as u64,
            |n: &Arc<u64>, k: usize, it: BoxIter<T>| -> BoxIter<(T, u64)> {
                let n = **n;
                Box::new(
                    it.enumerate()
                        .map(move |(i, x)| (x, i as u64 * n + k as u64)),
                )
            },
        )
    }
}
