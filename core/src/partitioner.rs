//! Partitioners: which reduce partition a key goes to. The built-in ones
//! ([`Partitioner`]: hash and range) and the user's own implement
//! [`KeyPartitioner`]; an RDD remembers its partitioner as a
//! [`PartitionerRef`], which ships to executors as a [`ShippedPartitioner`]
//! (its state, and the offset of the function that decodes it, as nodes
//! ship) and compares equal to another when both would place every key
//! in the same partition.

use crate::codec;
use crate::ship::FnOffset;
use crate::{EmberError, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

/// How keys are spread over the partitions of a shuffle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Partitioner<K> {
    /// By a hash of the key that is the same in every process (SipHash
    /// with fixed keys), modulo the number of partitions.
    Hash(usize),
    /// By sorted range: `bounds[i]` is the largest key of partition `i`
    /// (ascending); keys above every bound go to the last partition.
    Range {
        /// Upper bounds, one fewer than the partitions.
        bounds: Vec<K>,
        /// Whether partitions are in ascending key order.
        ascending: bool,
    },
}

/// A process-independent hash of `key`.
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x656d62, 0x6572);
    key.hash(&mut h);
    h.finish()
}

impl<K: Hash + Ord> Partitioner<K> {
    /// The number of partitions.
    pub fn num_partitions(&self) -> usize {
        match self {
            Partitioner::Hash(n) => (*n).max(1),
            Partitioner::Range { bounds, .. } => bounds.len() + 1,
        }
    }

    /// The partition of `key`.
    pub fn partition(&self, key: &K) -> usize {
        match self {
            Partitioner::Hash(n) => (stable_hash(key) % (*n).max(1) as u64) as usize,
            Partitioner::Range { bounds, ascending } => {
                let p = bounds.partition_point(|b| b < key);
                if *ascending {
                    p
                } else {
                    bounds.len() - p
                }
            }
        }
    }
}

impl<K: Ord + Clone> Partitioner<K> {
    /// A range partitioner of up to `partitions` partitions from a sample of
    /// keys: bounds at evenly spaced quantiles of the sorted sample.
    pub fn range_from_sample(mut sample: Vec<K>, partitions: usize, ascending: bool) -> Self {
        sample.sort();
        let mut bounds: Vec<K> = Vec::new();
        if partitions > 1 && !sample.is_empty() {
            for i in 1..partitions {
                let idx = (i * sample.len() / partitions).min(sample.len() - 1);
                let k = &sample[idx];
                if bounds.last() != Some(k) {
                    bounds.push(k.clone());
                }
            }
        }
        Partitioner::Range { bounds, ascending }
    }
}

/// A rule placing keys of type `K` in partitions: Spark's `Partitioner`.
/// Implement it for a partitioner of your own; its state ships to the
/// executors with the shuffle (so it must serialize), and two RDDs whose
/// partitioners are equal (`PartialEq`, same type) are co-partitioned:
/// joining them needs no shuffle.
///
/// ```
/// use ember_core::partitioner::{KeyPartitioner, PartitionerRef};
/// use serde::{Deserialize, Serialize};
///
/// /// Even keys in partition 0, odd keys in partition 1.
/// #[derive(Clone, PartialEq, Serialize, Deserialize)]
/// struct Parity;
///
/// impl KeyPartitioner<u64> for Parity {
///     fn num_partitions(&self) -> usize {
///         2
///     }
///     fn partition(&self, key: &u64) -> usize {
///         (key % 2) as usize
///     }
/// }
///
/// let p = PartitionerRef::new(Parity);
/// assert_eq!(p.partition(&7u64), Some(1));
/// assert_eq!(p, PartitionerRef::new(Parity));
/// ```
pub trait KeyPartitioner<K>:
    Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync + 'static
{
    /// The number of partitions (at least 1).
    fn num_partitions(&self) -> usize;
    /// The partition of `key`; a value not below `num_partitions()` fails
    /// the task that computed it.
    fn partition(&self, key: &K) -> usize;
}

impl<K> KeyPartitioner<K> for Partitioner<K>
where
    K: Hash + Ord + Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn num_partitions(&self) -> usize {
        Partitioner::num_partitions(self)
    }
    fn partition(&self, key: &K) -> usize {
        Partitioner::partition(self, key)
    }
}

/// A partitioner of keys of type `K`, whatever its implementation: what a
/// shuffle of `K` keys holds.
pub trait DynPartitioner<K>: Send + Sync {
    /// The number of partitions.
    fn num_partitions(&self) -> usize;
    /// The partition of `key`.
    fn partition(&self, key: &K) -> usize;
    /// The partitioner's state and decoder, for an executor.
    fn ship(&self) -> Result<ShippedPartitioner>;
    /// Whether `other` (another partitioner's [`Typed`] value) is equal.
    fn same(&self, other: &dyn Any) -> bool;
    /// This partitioner as [`Any`] (its [`Typed`] value).
    fn as_any(&self) -> &dyn Any;
    /// The implementation's type name, for messages.
    fn type_name(&self) -> &'static str;
}

/// A [`KeyPartitioner`] and its key type, as a [`DynPartitioner`].
pub struct Typed<K, P> {
    partitioner: P,
    _keys: PhantomData<fn(&K)>,
}

impl<K: 'static, P: KeyPartitioner<K>> Typed<K, P> {
    /// `partitioner` behind a [`DynPartitioner`] of `K` keys.
    pub fn erase(partitioner: P) -> Arc<dyn DynPartitioner<K>> {
        Arc::new(Typed {
            partitioner,
            _keys: PhantomData,
        })
    }
}

impl<K: 'static, P: KeyPartitioner<K>> DynPartitioner<K> for Typed<K, P> {
    fn num_partitions(&self) -> usize {
        self.partitioner.num_partitions().max(1)
    }
    fn partition(&self, key: &K) -> usize {
        self.partitioner.partition(key)
    }
    fn ship(&self) -> Result<ShippedPartitioner> {
        Ok(ShippedPartitioner {
            decoder: FnOffset::of(decode_partitioner::<K, P> as DecodePartitioner),
            bytes: codec::encode(&self.partitioner)?,
        })
    }
    fn same(&self, other: &dyn Any) -> bool {
        other
            .downcast_ref::<Typed<K, P>>()
            .is_some_and(|o| o.partitioner == self.partitioner)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<P>()
    }
}

/// Signature of a partitioner decoder: its bytes in, an
/// `Arc<dyn DynPartitioner<K>>` boxed as `Any` out.
type DecodePartitioner = fn(&[u8]) -> Result<Box<dyn Any + Send + Sync>>;

fn decode_partitioner<K: 'static, P: KeyPartitioner<K>>(
    bytes: &[u8],
) -> Result<Box<dyn Any + Send + Sync>> {
    let p: P = codec::decode(bytes, std::any::type_name::<P>())?;
    Ok(Box::new(Typed::<K, P>::erase(p)))
}

/// A partitioner on its way to an executor: its state and the offset of
/// the function that decodes it (as lineage nodes travel).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShippedPartitioner {
    decoder: FnOffset<DecodePartitioner>,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

impl ShippedPartitioner {
    /// The partitioner again, in this process.
    ///
    /// # Safety
    /// It must come from [`DynPartitioner::ship`] in a process running the
    /// same binary (as a stage blob: the executor checks the build id at
    /// registration before it decodes any).
    pub unsafe fn rebuild<K: 'static>(&self) -> Result<Arc<dyn DynPartitioner<K>>> {
        // SAFETY: per the caller's contract.
        let decode = unsafe { self.decoder.resolve() };
        decode(&self.bytes)?
            .downcast::<Arc<dyn DynPartitioner<K>>>()
            .map(|p| *p)
            .map_err(|_| {
                EmberError::codec(
                    "partitioner",
                    format!("not a partitioner of {}", std::any::type_name::<K>()),
                )
            })
    }
}

/// An RDD's partitioner with its key type erased (Spark's
/// `RDD.partitioner`): two are equal when they are of the same type, for
/// the same key type, and equal as values.
#[derive(Clone)]
pub struct PartitionerRef(Arc<dyn AnyPartitioner>);

/// A [`DynPartitioner`] of some key type.
trait AnyPartitioner: Send + Sync {
    fn num_partitions(&self) -> usize;
    /// The [`Typed`] value, for equality and [`PartitionerRef::get`].
    fn value(&self) -> &dyn Any;
    /// The [`Keyed`] wrapper, for [`PartitionerRef::for_keys`].
    fn keyed(&self) -> &dyn Any;
    fn same(&self, other: &dyn Any) -> bool;
    fn type_name(&self) -> &'static str;
}

struct Keyed<K>(Arc<dyn DynPartitioner<K>>);

impl<K: 'static> AnyPartitioner for Keyed<K> {
    fn num_partitions(&self) -> usize {
        self.0.num_partitions()
    }
    fn value(&self) -> &dyn Any {
        self.0.as_any()
    }
    fn keyed(&self) -> &dyn Any {
        self
    }
    fn same(&self, other: &dyn Any) -> bool {
        self.0.same(other)
    }
    fn type_name(&self) -> &'static str {
        self.0.type_name()
    }
}

impl PartitionerRef {
    /// `partitioner`, for keys of type `K`.
    pub fn new<K: 'static, P: KeyPartitioner<K>>(partitioner: P) -> Self {
        Self::from_dyn(Typed::<K, P>::erase(partitioner))
    }

    /// A partitioner already behind a [`DynPartitioner`].
    pub fn from_dyn<K: 'static>(partitioner: Arc<dyn DynPartitioner<K>>) -> Self {
        PartitionerRef(Arc::new(Keyed(partitioner)))
    }

    /// The number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.0.num_partitions()
    }

    /// The partitioner as its own type, if it is a `P` for `K` keys.
    pub fn get<K: 'static, P: KeyPartitioner<K>>(&self) -> Option<&P> {
        self.0
            .value()
            .downcast_ref::<Typed<K, P>>()
            .map(|t| &t.partitioner)
    }

    /// The partitioner for `K` keys; `None` if its keys are of another type.
    pub fn for_keys<K: 'static>(&self) -> Option<Arc<dyn DynPartitioner<K>>> {
        self.0
            .keyed()
            .downcast_ref::<Keyed<K>>()
            .map(|k| k.0.clone())
    }

    /// The partition of `key`; `None` if the partitioner's keys are of
    /// another type.
    pub fn partition<K: 'static>(&self, key: &K) -> Option<usize> {
        self.for_keys::<K>().map(|p| p.partition(key))
    }

    /// Whether `other` places keys as this one does.
    pub fn matches<K: 'static>(&self, other: &dyn DynPartitioner<K>) -> bool {
        other.same(self.0.value())
    }
}

impl PartialEq for PartitionerRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.same(other.0.value())
    }
}

impl std::fmt::Debug for PartitionerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} partitions)",
            self.0.type_name(),
            self.num_partitions()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_partitions_are_in_range_and_stable() {
        let p = Partitioner::<String>::Hash(7);
        for w in ["a", "bb", "ccc", ""] {
            let i = p.partition(&w.to_string());
            assert!(i < 7);
            assert_eq!(i, p.partition(&w.to_string()));
        }
    }

    #[test]
    fn range_partitions_follow_key_order() {
        let p = Partitioner::range_from_sample((0..1000).collect::<Vec<i32>>(), 4, true);
        assert_eq!(p.num_partitions(), 4);
        let parts: Vec<usize> = [-5, 0, 300, 600, 999, 5000]
            .iter()
            .map(|k| p.partition(k))
            .collect();
        assert!(parts.windows(2).all(|w| w[0] <= w[1]), "{parts:?}");
        assert_eq!(parts[0], 0);
        assert_eq!(parts[5], 3);
        let d = Partitioner::range_from_sample((0..1000).collect::<Vec<i32>>(), 4, false);
        assert_eq!(d.partition(&-5), 3);
        assert_eq!(d.partition(&5000), 0);
    }

    #[test]
    fn range_from_an_empty_sample_has_one_partition() {
        let p = Partitioner::<i32>::range_from_sample(vec![], 8, true);
        assert_eq!(p.num_partitions(), 1);
        assert_eq!(p.partition(&3), 0);
    }

    #[derive(Clone, PartialEq, Serialize, Deserialize)]
    struct Modulo(usize);

    impl KeyPartitioner<u64> for Modulo {
        fn num_partitions(&self) -> usize {
            self.0
        }
        fn partition(&self, key: &u64) -> usize {
            (*key % self.0 as u64) as usize
        }
    }

    #[test]
    fn partitioners_are_equal_when_type_keys_and_value_are() {
        let h = PartitionerRef::new(Partitioner::<u64>::Hash(4));
        assert_eq!(h, PartitionerRef::new(Partitioner::<u64>::Hash(4)));
        assert_ne!(h, PartitionerRef::new(Partitioner::<u64>::Hash(5)));
        assert_ne!(h, PartitionerRef::new(Partitioner::<u32>::Hash(4)));
        assert_ne!(h, PartitionerRef::new(Modulo(4)));
        assert_eq!(
            PartitionerRef::new(Modulo(4)),
            PartitionerRef::new(Modulo(4))
        );
        assert_eq!(
            h.get::<u64, Partitioner<u64>>(),
            Some(&Partitioner::Hash(4))
        );
        assert!(h.get::<u64, Modulo>().is_none());
        assert_eq!(h.partition(&1u32), None);
    }

    #[test]
    fn a_shipped_partitioner_places_keys_as_the_original() {
        let p = Typed::<u64, Modulo>::erase(Modulo(3));
        let bytes = codec::encode(&p.ship().unwrap()).unwrap();
        let shipped: ShippedPartitioner = codec::decode(&bytes, "t").unwrap();
        // SAFETY: shipped by this very process.
        let back = unsafe { shipped.rebuild::<u64>() }.unwrap();
        assert_eq!(back.num_partitions(), 3);
        assert!((0..100u64).all(|k| back.partition(&k) == p.partition(&k)));
        assert!(back.same(p.as_any()));
        // SAFETY: as above; the key type is checked, not trusted.
        assert!(unsafe { shipped.rebuild::<String>() }.is_err());
    }
}
