//! Set operations on records and keys (`intersection`, `subtract`,
//! `subtract_by_key`) and co-groups of three and four pair RDDs. The set
//! operations are two-way co-groups (each side placed by a hash
//! partitioner, see `pair.rs`); the n-way co-groups are one shuffle: the
//! inputs are tagged by side, unioned, and grouped by key.

use crate::rdd::Rdd;
use crate::shuffled::Key;
use ember_core::Data;
use serde::{Deserialize, Serialize};

/// A key's values from each of three co-grouped RDDs.
pub type CoGrouped3<K, V, W1, W2> = (K, (Vec<V>, Vec<W1>, Vec<W2>));

/// A key's values from each of four co-grouped RDDs.
pub type CoGrouped4<K, V, W1, W2, W3> = (K, (Vec<V>, Vec<W1>, Vec<W2>, Vec<W3>));

/// Which of up to four co-grouped RDDs a value came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Tagged<A, B, C, D> {
    /// From the first RDD.
    First(A),
    /// From the second.
    Second(B),
    /// From the third.
    Third(C),
    /// From the fourth.
    Fourth(D),
}

/// The values of one key, split back by side.
type Split<A, B, C, D> = (Vec<A>, Vec<B>, Vec<C>, Vec<D>);

fn split<A, B, C, D>(tagged: Vec<Tagged<A, B, C, D>>) -> Split<A, B, C, D> {
    let mut out = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in tagged {
        match t {
            Tagged::First(a) => out.0.push(a),
            Tagged::Second(b) => out.1.push(b),
            Tagged::Third(c) => out.2.push(c),
            Tagged::Fourth(d) => out.3.push(d),
        }
    }
    out
}

impl<T: Key> Rdd<T> {
    /// Spark's `intersection`: the distinct records present both here and
    /// in `other`, in as many hash partitions as the larger input has.
    pub fn intersection(&self, other: &Rdd<T>) -> Rdd<T> {
        let partitions = self.num_partitions().max(other.num_partitions());
        self.map(|x: T| (x, ()))
            .cogroup_into(&other.map(|x: T| (x, ())), partitions)
            .flat_map(|(k, (a, b)): (T, (Vec<()>, Vec<()>))| {
                (!a.is_empty() && !b.is_empty()).then_some(k)
            })
    }

    /// Spark's `subtract`: the records here that are not in `other`,
    /// duplicates kept, in as many hash partitions as this RDD has.
    pub fn subtract(&self, other: &Rdd<T>) -> Rdd<T> {
        self.map(|x: T| (x, ()))
            .subtract_by_key(&other.map(|x: T| (x, ())))
            .keys()
    }
}

impl<K: Key, V: Data> Rdd<(K, V)> {
    /// Spark's `subtractByKey`: the pairs here whose key does not occur in
    /// `other`, duplicates kept, in as many hash partitions as this RDD
    /// has. Spark streams `other`'s keys into a map per partition and
    /// filters; here both sides are co-grouped (a side already placed
    /// that way is not shuffled).
    pub fn subtract_by_key<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, V)> {
        self.cogroup_into(other, self.num_partitions().max(1))
            .flat_map_values(
                |(vs, ws): (Vec<V>, Vec<W>)| if ws.is_empty() { vs } else { Vec::new() },
            )
    }

    /// Spark's three-way `cogroup`: for each key of any input, its values
    /// here, in `b` and in `c`, in as many hash partitions as the largest
    /// input has.
    pub fn cogroup3<W1: Data, W2: Data>(
        &self,
        b: &Rdd<(K, W1)>,
        c: &Rdd<(K, W2)>,
    ) -> Rdd<CoGrouped3<K, V, W1, W2>> {
        type T<V, W1, W2> = Tagged<V, W1, W2, ()>;
        let partitions = [
            self.num_partitions(),
            b.num_partitions(),
            c.num_partitions(),
        ];
        self.map_values(|v: V| T::<V, W1, W2>::First(v))
            .union(&b.map_values(|w: W1| T::<V, W1, W2>::Second(w)))
            .union(&c.map_values(|w: W2| T::<V, W1, W2>::Third(w)))
            .group_by_key_into(partitions.into_iter().max().unwrap_or(1).max(1))
            .map_values(|t: Vec<T<V, W1, W2>>| {
                let (a, b, c, _) = split(t);
                (a, b, c)
            })
    }

    /// Spark's four-way `cogroup`: for each key of any input, its values
    /// here, in `b`, in `c` and in `d`, in as many hash partitions as the
    /// largest input has.
    pub fn cogroup4<W1: Data, W2: Data, W3: Data>(
        &self,
        b: &Rdd<(K, W1)>,
        c: &Rdd<(K, W2)>,
        d: &Rdd<(K, W3)>,
    ) -> Rdd<CoGrouped4<K, V, W1, W2, W3>> {
        type T<V, W1, W2, W3> = Tagged<V, W1, W2, W3>;
        let partitions = [
            self.num_partitions(),
            b.num_partitions(),
            c.num_partitions(),
            d.num_partitions(),
        ];
        self.map_values(|v: V| T::<V, W1, W2, W3>::First(v))
            .union(&b.map_values(|w: W1| T::<V, W1, W2, W3>::Second(w)))
            .union(&c.map_values(|w: W2| T::<V, W1, W2, W3>::Third(w)))
            .union(&d.map_values(|w: W3| T::<V, W1, W2, W3>::Fourth(w)))
            .group_by_key_into(partitions.into_iter().max().unwrap_or(1).max(1))
            .map_values(|t: Vec<T<V, W1, W2, W3>>| split(t))
    }
}
