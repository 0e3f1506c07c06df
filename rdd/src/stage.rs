//! Encoding a stage's pipeline for executors and decoding it there.
//!
//! A stage is its root (a shuffle write or an action) over a graph of
//! narrow dependencies. The graph is shipped flat: nodes in an order where
//! parents come first, each with the indices of its parents. Both walks
//! are loops, so a lineage of thousands of nodes cannot overflow a stack.

use crate::node::{Decoded, Dependency, RddNode, ShippedBody};
use crate::task::{BlockLocation, TaskRoot};
// The driver's view of a root lives beside the lineage nodes, a decoded
// stage beside the task runner that uses it; re-exported for the
// scheduler and the executor.
pub use crate::node::StageRoot;
pub use crate::task::DecodedStage;
use ember_core::{EmberError, RddId, Result, ShuffleId};
use ember_shuffle::MapStatus;
use ember_storage::BlockId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// One node of a shipped stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShippedNode {
    /// The node's state and decoder.
    pub body: ShippedBody,
    /// Indices of its parents among the earlier nodes.
    pub parents: Vec<u32>,
}

/// Everything an executor needs to run any task of one stage attempt.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageBlob {
    /// Id of this blob (one per stage attempt).
    pub id: u64,
    /// Nodes, parents first; the last is the root.
    pub nodes: Vec<ShippedNode>,
    /// Map output locations of the shuffles the stage reads.
    pub shuffle_inputs: HashMap<ShuffleId, Vec<MapStatus>>,
    /// Partitions of RDDs the stage caches that other executors hold.
    pub cached_blocks: Vec<(BlockId, BlockLocation)>,
}

/// The narrow parents of `node`.
pub fn narrow_parents(node: &dyn RddNode) -> Vec<Arc<dyn RddNode>> {
    crate::node::lineage_dependencies(node)
        .into_iter()
        .filter_map(|d| match d {
            Dependency::Narrow(p) => Some(p),
            Dependency::Shuffle(_) => None,
        })
        .collect()
}

/// Flattens the stage under `root` into shippable nodes.
pub fn encode_stage(root: &dyn StageRoot) -> Result<Vec<ShippedNode>> {
    let mut index: HashMap<RddId, u32> = HashMap::new();
    let mut out: Vec<ShippedNode> = Vec::new();
    let top = root.parent();
    let mut stack: Vec<(Arc<dyn RddNode>, bool)> = vec![(top.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        let id = node.core().id;
        if index.contains_key(&id) {
            continue;
        }
        let parents = narrow_parents(node.as_ref());
        if !expanded {
            stack.push((node, true));
            for p in parents.into_iter().rev() {
                if !index.contains_key(&p.core().id) {
                    stack.push((p, false));
                }
            }
        } else {
            let parent_idx = parents.iter().map(|p| index[&p.core().id]).collect();
            index.insert(id, out.len() as u32);
            out.push(ShippedNode {
                body: crate::node::ship_lineage_node(node.as_ref())?,
                parents: parent_idx,
            });
        }
    }
    out.push(ShippedNode {
        body: root.ship()?,
        parents: vec![index[&top.core().id]],
    });
    Ok(out)
}

/// Rebuilds a stage from its blob.
///
/// The blob must come from a driver running this same binary: the
/// executor verifies the build id when it registers, before any blob.
pub fn decode_stage(blob: &StageBlob) -> Result<DecodedStage> {
    let mut decoded: Vec<Decoded> = Vec::with_capacity(blob.nodes.len());
    for (i, node) in blob.nodes.iter().enumerate() {
        let mut parents = Vec::with_capacity(node.parents.len());
        for &p in &node.parents {
            let p = p as usize;
            if p >= i {
                return Err(EmberError::codec(
                    "stage",
                    format!("node {i} names a later parent {p}"),
                ));
            }
            parents.push(&decoded[p]);
        }
        // SAFETY: the offset was made by `ship_node` in the driver, which
        // runs the same binary (build id checked at registration).
        let decode = unsafe { node.body.decoder.resolve() };
        let d = decode(&node.body.bytes, &parents)?;
        decoded.push(d);
    }
    let root = decoded
        .pop()
        .and_then(|d| d.downcast::<Arc<dyn TaskRoot>>().ok())
        .ok_or_else(|| EmberError::codec("stage", "the last node is not a task root"))?;
    Ok(DecodedStage {
        root: *root,
        shuffle_inputs: Arc::new(blob.shuffle_inputs.clone()),
        cached_elsewhere: Arc::new(blob.cached_blocks.iter().cloned().collect()),
    })
}

/// A stage root type that can be shipped: like [`crate::node::Shippable`]
/// for roots, which have no partitions of their own.
pub trait ShippableRoot: TaskRoot + Sized + 'static {
    /// The root's own state.
    type Body: Serialize + serde::de::DeserializeOwned;
    /// Rebuilds the root on the executor.
    fn rebuild(body: Self::Body, parents: &[&Decoded]) -> Result<Self>;
}

/// Ships a root of type `R` whose state is `body`: body and decoder
/// offset.
pub fn ship_root<R: ShippableRoot>(body: &R::Body) -> Result<ShippedBody> {
    Ok(ShippedBody {
        decoder: ember_core::FnOffset::of(decode_root::<R> as crate::node::DecodeFn),
        bytes: ember_core::codec::encode(body)?,
    })
}

fn decode_root<R: ShippableRoot>(bytes: &[u8], parents: &[&Decoded]) -> Result<Decoded> {
    let body: R::Body = ember_core::codec::decode(bytes, std::any::type_name::<R>())?;
    let root: Arc<dyn TaskRoot> = Arc::new(R::rebuild(body, parents)?);
    Ok(Box::new(root))
}
