//! Partitioner-aware operations: an RDD knows how its pairs are placed,
//! operations by key on inputs placed alike read them where they are (no
//! shuffle), `lookup` reads one partition, and users bring their own
//! partitioners. Each check compares with a plain-Rust computation and
//! counts stages and tasks in the job reports, in `local[4]` and in
//! `local-cluster[2,1,512]`.

use ember_driver::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn context(master: &str) -> Context {
    Context::builder()
        .master(master)
        // The check that expects a task to fail need not wait for retries.
        .conf("ember.task.maxFailures", "1")
        .build()
        .expect("context starts")
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Pairs with repeated keys: `(i * 7 % keys, i)`.
fn pairs(n: u64, keys: u64) -> Vec<(u64, u64)> {
    (0..n).map(|i| (i * 7 % keys, i)).collect()
}

/// The inner join of two lists of pairs, computed in plain Rust.
fn reference_join(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, (u64, u64))> {
    let mut right: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (k, w) in b {
        right.entry(*k).or_default().push(*w);
    }
    let mut out = Vec::new();
    for (k, v) in a {
        for w in right.get(k).into_iter().flatten() {
            out.push((*k, (*v, *w)));
        }
    }
    sorted(out)
}

/// The last job's report: (stages run, tasks launched).
fn last_job(ctx: &Context) -> (usize, usize) {
    let r = ctx.job_reports().pop().expect("a job ran");
    (r.stages_run.len(), r.tasks_launched)
}

/// Keys by their last decimal digit, partitions `0..10`, or (when
/// `broken`) one partition too far for key 9.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct LastDigit {
    broken: bool,
}

impl KeyPartitioner<u64> for LastDigit {
    fn num_partitions(&self) -> usize {
        10
    }
    fn partition(&self, key: &u64) -> usize {
        (key % 10) as usize + usize::from(self.broken && key % 10 == 9)
    }
}

fn narrow_join(ctx: &Context) {
    // Keys 0..=96 on the left, 50..=180 on the right.
    let a = pairs(2000, 97);
    let b: Vec<(u64, u64)> = pairs(700, 131)
        .into_iter()
        .map(|(k, v)| (k + 50, v))
        .collect();
    let expected = reference_join(&a, &b);
    let by_key = Partitioner::Hash(6);
    let left = ctx
        .parallelize(a.clone(), 4)
        .unwrap()
        .partition_by(by_key.clone());
    let right = ctx
        .parallelize(b.clone(), 3)
        .unwrap()
        .partition_by(by_key.clone());

    // Cold: the only shuffles are the two `partition_by`s (two map stages
    // and the join's one result stage); afterwards `left` needs no stage
    // but its result stage, so the join's map stages were left's own.
    let joined = left.join(&right);
    assert_eq!(sorted(joined.collect().unwrap()), expected);
    assert_eq!(last_job(ctx).0, 3, "two partition_by map stages + the join");
    assert_eq!(joined.num_partitions(), 6);
    assert_eq!(joined.partitioner(), left.partitioner());
    left.count().unwrap();
    assert_eq!(
        last_job(ctx).0,
        1,
        "the join shuffled left by its own partition_by"
    );

    // Warm (the inputs materialized): the join is one stage, one task
    // per partition.
    let (left, right) = (left.cache(), right.cache());
    left.count().unwrap();
    right.count().unwrap();
    assert_eq!(sorted(left.join(&right).collect().unwrap()), expected);
    assert_eq!(last_job(ctx), (1, 6));

    // The same join on unplaced inputs shuffles both sides, same result.
    let unplaced = ctx
        .parallelize(a.clone(), 4)
        .unwrap()
        .join(&ctx.parallelize(b.clone(), 3).unwrap());
    assert_eq!(sorted(unplaced.collect().unwrap()), expected);
    assert_eq!(last_job(ctx).0, 3);

    // Placed differently: only the side with fewer partitions moves.
    let other = ctx
        .parallelize(b.clone(), 3)
        .unwrap()
        .partition_by(Partitioner::Hash(9))
        .cache();
    other.count().unwrap();
    let mixed = left.join(&other);
    assert_eq!(mixed.num_partitions(), 9);
    assert_eq!(sorted(mixed.collect().unwrap()), expected);
    assert_eq!(last_job(ctx).0, 2, "left reshuffled, other read in place");

    // Outer joins and cogroup are narrow on placed inputs too.
    let full = left.full_outer_join(&right).collect().unwrap();
    assert_eq!(last_job(ctx).0, 1);
    let inner_count = full
        .iter()
        .filter(|(_, (v, w))| v.is_some() && w.is_some())
        .count();
    assert_eq!(inner_count, expected.len());
    let left_only = full.iter().filter(|(_, (_, w))| w.is_none()).count();
    let reference_left_only = a.iter().filter(|(k, _)| *k < 50).count();
    assert!(reference_left_only > 0);
    assert_eq!(left_only, reference_left_only);
    assert_eq!(left.cogroup(&right).count().unwrap(), 181);
    assert_eq!(last_job(ctx).0, 1);

    // An explicit partitioner equal to the inputs' is narrow; another one
    // shuffles both.
    assert_eq!(
        sorted(
            left.join_with_partitioner(&right, by_key.clone())
                .collect()
                .unwrap()
        ),
        expected
    );
    assert_eq!(last_job(ctx).0, 1);
    let into = left.join_into(&right, 5);
    assert_eq!(into.num_partitions(), 5);
    assert_eq!(sorted(into.collect().unwrap()), expected);
    assert_eq!(last_job(ctx).0, 3);
}

fn narrow_aggregations(ctx: &Context) {
    let a = pairs(3000, 50);
    let mut sums: BTreeMap<u64, u64> = BTreeMap::new();
    let mut groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (k, v) in &a {
        *sums.entry(*k).or_default() += v;
        groups.entry(*k).or_default().push(*v);
    }
    let placed = ctx
        .parallelize(a.clone(), 5)
        .unwrap()
        .partition_by(Partitioner::Hash(4))
        .cache();
    placed.count().unwrap();
    let hash4 = PartitionerRef::new(Partitioner::<u64>::Hash(4));

    // Same partitioner: the same RDD, no new shuffle.
    assert_eq!(placed.partition_by(Partitioner::Hash(4)).id(), placed.id());

    let reduced = placed.reduce_by_key(|x, y| x + y);
    assert_eq!(
        reduced
            .collect()
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        sums
    );
    assert_eq!(last_job(ctx).0, 1);
    assert_eq!(reduced.partitioner(), Some(hash4.clone()));

    let grouped = placed.group_by_key();
    let got: BTreeMap<u64, Vec<u64>> = grouped
        .collect()
        .unwrap()
        .into_iter()
        .map(|(k, vs)| (k, sorted(vs)))
        .collect();
    assert_eq!(got, groups);
    assert_eq!(last_job(ctx).0, 1);

    let folded = placed.fold_by_key_with_partitioner(0, |x, y| x + y, Partitioner::Hash(4));
    assert_eq!(
        folded
            .collect()
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        sums
    );
    assert_eq!(last_job(ctx).0, 1);
    let aggregated = placed.aggregate_by_key_into(0u64, |n, _| n + 1, |x, y| x + y, 4);
    let counts: BTreeMap<u64, u64> = groups.iter().map(|(k, v)| (*k, v.len() as u64)).collect();
    assert_eq!(
        aggregated
            .collect()
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        counts
    );
    assert_eq!(last_job(ctx).0, 1);

    // Another partition count shuffles, into that many partitions.
    let moved = placed.reduce_by_key_into(|x, y| x + y, 7);
    assert_eq!(moved.num_partitions(), 7);
    assert_eq!(
        moved
            .collect()
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        sums
    );
    assert_eq!(last_job(ctx).0, 2);

    // A join after a reduce by the same partitioner: no shuffle between.
    let joined = reduced.join(&placed.map_values(|v| v % 3));
    let expected = reference_join(
        &sums.clone().into_iter().collect::<Vec<_>>(),
        &a.iter().map(|&(k, v)| (k, v % 3)).collect::<Vec<_>>(),
    );
    assert_eq!(sorted(joined.collect().unwrap()), expected);
    assert_eq!(last_job(ctx).0, 1);

    // distinct and group_by take a partition count.
    let keys = ctx
        .parallelize(a.iter().map(|(k, _)| *k).collect(), 3)
        .unwrap();
    let distinct = keys.distinct_into(2);
    assert_eq!(distinct.num_partitions(), 2);
    assert_eq!(
        sorted(distinct.collect().unwrap()),
        sums.keys().copied().collect::<Vec<_>>()
    );
    let by_parity = keys.group_by_into(|k| k % 2, 3);
    assert_eq!(by_parity.num_partitions(), 3);
    assert_eq!(by_parity.count().unwrap(), 2);
}

fn lookups(ctx: &Context) {
    let a = pairs(1000, 37);
    let expected: Vec<u64> = a
        .iter()
        .filter(|(k, _)| *k == 11)
        .map(|(_, v)| *v)
        .collect();
    let unplaced = ctx.parallelize(a.clone(), 5).unwrap();
    assert_eq!(sorted(unplaced.lookup(11).unwrap()), expected);
    assert_eq!(last_job(ctx), (1, 5), "no partitioner: every partition");

    let placed = unplaced.partition_by(Partitioner::Hash(8)).cache();
    placed.count().unwrap();
    assert_eq!(sorted(placed.lookup(11).unwrap()), expected);
    assert_eq!(last_job(ctx), (1, 1), "known partitioner: one partition");
    assert_eq!(placed.lookup(1000).unwrap(), Vec::<u64>::new());

    // Through operations that keep the partitioner.
    let filtered = placed.filter(|(_, v)| v % 2 == 0);
    let even: Vec<u64> = expected.iter().copied().filter(|v| v % 2 == 0).collect();
    assert_eq!(sorted(filtered.lookup(11).unwrap()), even);
    assert_eq!(last_job(ctx), (1, 1));
}

fn custom(ctx: &Context) {
    let a = pairs(500, 200);
    let b = pairs(300, 150);
    let digit = LastDigit { broken: false };
    let left = ctx
        .parallelize(a.clone(), 3)
        .unwrap()
        .partition_by(digit.clone())
        .cache();
    let right = ctx
        .parallelize(b.clone(), 2)
        .unwrap()
        .partition_by(digit.clone())
        .cache();
    assert_eq!(left.num_partitions(), 10);
    assert_eq!(left.partitioner(), Some(PartitionerRef::new(digit.clone())));
    assert_ne!(
        left.partitioner(),
        Some(PartitionerRef::new(Partitioner::<u64>::Hash(10)))
    );
    let got = left.partitioner().unwrap();
    assert_eq!(got.get::<u64, LastDigit>(), Some(&digit));

    // Every key is where the partitioner says.
    let placement = left
        .map_partitions_with_index(|p, it: BoxIter<(u64, u64)>| it.map(move |(k, _)| (p, k)))
        .collect()
        .unwrap();
    assert_eq!(placement.len(), a.len());
    assert!(
        placement.iter().all(|(p, k)| *p as u64 == k % 10),
        "{placement:?}"
    );

    left.count().unwrap();
    right.count().unwrap();
    assert_eq!(
        sorted(left.join(&right).collect().unwrap()),
        reference_join(&a, &b)
    );
    assert_eq!(last_job(ctx), (1, 10));
    let sevens: Vec<u64> = a
        .iter()
        .filter(|(k, _)| *k == 17)
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(sorted(left.lookup(17).unwrap()), sevens);
    assert_eq!(last_job(ctx), (1, 1));

    // A partitioner that names a partition that does not exist fails the
    // job with a message, not a panic.
    let broken = ctx
        .parallelize(a.clone(), 2)
        .unwrap()
        .partition_by(LastDigit { broken: true })
        .count();
    let e = broken.expect_err("a key in partition 10 of 10");
    assert!(e.to_string().contains("partition 10 of 10"), "{e}");
}

fn kept_and_dropped(ctx: &Context) {
    let placed = ctx
        .parallelize(pairs(100, 10), 2)
        .unwrap()
        .partition_by(Partitioner::Hash(3));
    let hash3 = Some(PartitionerRef::new(Partitioner::<u64>::Hash(3)));
    assert_eq!(placed.partitioner(), hash3);
    // Kept: the records stay with their keys.
    assert_eq!(placed.map_values(|v| v + 1).partitioner(), hash3);
    assert_eq!(
        placed.map_values_with(2u64, |m, v| v * m).partitioner(),
        hash3
    );
    assert_eq!(placed.flat_map_values(|v| vec![v, v]).partitioner(), hash3);
    assert_eq!(placed.filter(|(k, _)| k % 2 == 0).partitioner(), hash3);
    assert_eq!(
        placed
            .filter_with(3u64, |m, (k, _)| k % m == 0)
            .partitioner(),
        hash3
    );
    assert_eq!(placed.sample(false, 0.5, 7).partitioner(), hash3);
    assert_eq!(placed.cache().partitioner(), hash3);
    assert_eq!(
        placed
            .map_partitions_preserving(|it: BoxIter<(u64, u64)>| it.map(|(k, v)| (k, v * 2)))
            .partitioner(),
        hash3
    );
    assert_eq!(placed.reduce_by_key(|x, y| x + y).partitioner(), hash3);
    // Dropped: a record may move to another key or partition.
    assert_eq!(placed.map(|(k, v)| (k + 1, v)).partitioner(), None);
    assert_eq!(
        placed
            .map_partitions(|it: BoxIter<(u64, u64)>| it)
            .partitioner(),
        None
    );
    assert_eq!(placed.flat_map(|p: (u64, u64)| vec![p]).partitioner(), None);
    assert_eq!(placed.union(&placed).partitioner(), None);
    assert_eq!(placed.coalesce(1).partitioner(), None);
    assert_eq!(placed.keys().map(|k| (k, ())).partitioner(), None);
    // Set by the shuffling operations.
    let unplaced = ctx.parallelize(pairs(100, 10), 2).unwrap();
    assert_eq!(unplaced.partitioner(), None);
    assert_eq!(
        unplaced.reduce_by_key_into(|x, y| x + y, 5).partitioner(),
        Some(PartitionerRef::new(Partitioner::<u64>::Hash(5)))
    );
    assert_eq!(
        unplaced
            .group_by_key_with_partitioner(LastDigit { broken: false })
            .partitioner(),
        Some(PartitionerRef::new(LastDigit { broken: false }))
    );
    let reduced = unplaced.reduce_by_key(|x, y| x + y);
    let p = reduced
        .partitioner()
        .expect("reduce_by_key sets a partitioner");
    assert_eq!(p.num_partitions(), reduced.num_partitions());
    let sorted_pairs = unplaced.sort_by_key(true, 3).unwrap();
    let range = sorted_pairs
        .partitioner()
        .expect("sort_by_key sets a range partitioner");
    assert!(matches!(
        range.get::<u64, Partitioner<u64>>(),
        Some(Partitioner::Range {
            ascending: true,
            ..
        })
    ));
    // A range-partitioned RDD joins its own map_values in place: the
    // job's one shuffle is the sort's (10 pairs of each of 10 keys give
    // 100 joined pairs per key).
    let joined = sorted_pairs.join(&sorted_pairs.map_values(|v| v * 10));
    assert_eq!(joined.count().unwrap(), 10 * 100);
    assert_eq!(last_job(ctx).0, 2, "the sort's map stage and the join");
}

fn run_all(master: &str) {
    let ctx = context(master);
    narrow_join(&ctx);
    narrow_aggregations(&ctx);
    lookups(&ctx);
    custom(&ctx);
    kept_and_dropped(&ctx);
}

#[test]
fn partitioner_aware_operations_in_local_mode() {
    run_all("local[4]");
}

#[test]
fn partitioner_aware_operations_in_local_cluster_mode() {
    run_all("local-cluster[2,1,512]");
}
