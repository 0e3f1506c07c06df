//! Every RDD operation against a plain-Rust computation of what it must
//! return: sources, narrow and shuffle transformations, actions,
//! persistence, shared variables, partitioners and edge cases.

use ember_driver::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

fn ctx() -> Context {
    Context::new("local[4]").expect("a local[4] context starts")
}

/// A small deterministic generator (xorshift64*), so fixtures need no
/// committed files and no extra dependencies.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// `(key, value)` pairs with keys `0..keys`, deterministic.
fn pairs(n: u64, keys: u64, seed: u64) -> Vec<(u64, u64)> {
    let mut g = Gen(seed);
    (0..n).map(|i| (g.below(keys), i)).collect()
}

/// Panics the first time any task reaches record `at` (a marker file
/// records that it happened), so the task fails once and then succeeds.
fn panic_once_at(env: &(String, u64), x: u64) -> u64 {
    let (marker, at) = env;
    if x == *at
        && std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(marker)
            .is_ok()
    {
        panic!("injected failure at record {x}");
    }
    x
}

// ---------------------------------------------------------------- sources

#[test]
fn parallelize_keeps_order_and_balances_slices() {
    let ctx = ctx();
    let data: Vec<u64> = (0..100).collect();
    let r = ctx.parallelize(data.clone(), 7).unwrap();
    assert_eq!(r.num_partitions(), 7);
    assert_eq!(r.collect().unwrap(), data);
    let sizes: Vec<usize> = r.glom().collect().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), data.len());
    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(max - min <= 1, "slices are balanced: {sizes:?}");
}

#[test]
fn parallelize_with_zero_slices_uses_default_parallelism() {
    let ctx = ctx();
    let r = ctx.parallelize((0..10u32).collect(), 0).unwrap();
    assert_eq!(r.num_partitions(), ctx.default_parallelism());
    assert_eq!(r.collect().unwrap(), (0..10).collect::<Vec<u32>>());
}

#[test]
fn more_partitions_than_elements_leaves_empty_partitions() {
    let ctx = ctx();
    let r = ctx.parallelize(vec![5u64, 6, 7], 10).unwrap();
    let parts = r.glom().collect().unwrap();
    assert_eq!(parts.len(), 10);
    assert_eq!(parts.iter().filter(|p| p.is_empty()).count(), 7);
    assert_eq!(r.collect().unwrap(), vec![5, 6, 7]);
    assert_eq!(r.count().unwrap(), 3);
    assert_eq!(
        r.map(|x: u64| (x % 2, x))
            .reduce_by_key(|a, b| a + b)
            .collect_as_map()
            .unwrap(),
        HashMap::from([(1, 12), (0, 6)])
    );
}

#[test]
fn range_counts_up_with_a_positive_step() {
    let ctx = ctx();
    let expected: Vec<i64> = (3..50).step_by(4).collect();
    let r = ctx.range(3, 50, 4, 5).unwrap();
    assert_eq!(r.num_partitions(), 5);
    assert_eq!(r.collect().unwrap(), expected);
    assert_eq!(r.count().unwrap(), expected.len() as u64);
}

#[test]
fn range_counts_down_with_a_negative_step() {
    let ctx = ctx();
    let mut expected = Vec::new();
    let mut x = 10i64;
    while x > -7 {
        expected.push(x);
        x -= 3;
    }
    assert_eq!(
        ctx.range(10, -7, -3, 4).unwrap().collect().unwrap(),
        expected
    );
}

#[test]
fn range_is_empty_when_the_bounds_are_equal_or_reversed() {
    let ctx = ctx();
    for (start, end, step) in [(5, 5, 1), (5, 0, 1), (0, 5, -1), (-3, -3, -2)] {
        let r = ctx.range(start, end, step, 3).unwrap();
        assert_eq!(r.count().unwrap(), 0, "range({start}, {end}, {step})");
        assert!(r.collect().unwrap().is_empty());
    }
}

#[test]
fn range_near_the_integer_limits_does_not_overflow() {
    let ctx = ctx();
    let r = ctx.range(i64::MAX - 5, i64::MAX, 2, 2).unwrap();
    assert_eq!(
        r.collect().unwrap(),
        vec![i64::MAX - 5, i64::MAX - 3, i64::MAX - 1]
    );
    let r = ctx.range(i64::MIN + 4, i64::MIN, -2, 3).unwrap();
    assert_eq!(r.collect().unwrap(), vec![i64::MIN + 4, i64::MIN + 2]);
}

#[test]
fn range_rejects_a_zero_step() {
    let err = ctx().range(0, 10, 0, 2).err().expect("step 0 is an error");
    assert!(err.to_string().contains("step"), "{err}");
}

/// Lines of varying length (empty ones, multi-byte characters, and a few
/// longer than the smallest splits), about `bytes` in all.
fn text_lines(bytes: usize, seed: u64) -> Vec<String> {
    let mut g = Gen(seed);
    let alphabet: Vec<char> = "abcdefghij klmnopqrstuvwxyz0123456789éü中\t"
        .chars()
        .collect();
    let mut lines = Vec::new();
    let mut total = 0;
    while total < bytes {
        let len = match g.below(100) {
            0..=9 => 0,
            10..=97 => g.below(200) as usize,
            _ => 3_000 + g.below(9_000) as usize,
        };
        let line: String = (0..len)
            .map(|_| alphabet[g.below(alphabet.len() as u64) as usize])
            .collect();
        total += line.len() + 1;
        lines.push(line);
    }
    lines
}

#[test]
fn text_file_byte_range_splits_return_every_line_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.txt");
    let lines = text_lines(3 << 20, 7);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let ctx = ctx();
    for min_partitions in [1, 2, 3, 7, 16, 61, 250, 1000] {
        let r = ctx.text_file(&path, min_partitions).unwrap();
        assert!(
            r.num_partitions() >= min_partitions,
            "{} < {min_partitions}",
            r.num_partitions()
        );
        let got = r.collect().unwrap();
        assert_eq!(
            got.len(),
            lines.len(),
            "line count with {min_partitions} partitions"
        );
        assert!(
            got == lines,
            "lines differ with {min_partitions} partitions"
        );
    }
}

#[test]
fn text_file_strips_crlf_and_reads_a_last_line_without_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crlf.txt");
    let content = "first\r\nsecond line\r\n\r\nfourth\nlast";
    std::fs::write(&path, content).unwrap();
    let expected = vec!["first", "second line", "", "fourth", "last"];
    let ctx = ctx();
    for min_partitions in 1..=content.len() + 3 {
        let got = ctx
            .text_file(&path, min_partitions)
            .unwrap()
            .collect()
            .unwrap();
        assert_eq!(got, expected, "with {min_partitions} partitions");
    }
}

#[test]
fn text_file_replaces_invalid_utf8_and_keeps_valid_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.txt");
    std::fs::write(&path, b"plain\nna\xc3\xafve\nbad \xff byte\n\xe2\x82\n").unwrap();
    let got = ctx().text_file(&path, 1).unwrap().collect().unwrap();
    assert_eq!(got, vec!["plain", "naïve", "bad \u{FFFD} byte", "\u{FFFD}"]);
}

#[test]
fn text_file_of_an_empty_file_has_no_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.txt");
    std::fs::write(&path, "").unwrap();
    let r = ctx().text_file(&path, 4).unwrap();
    assert_eq!(r.count().unwrap(), 0);
}

#[test]
fn text_file_of_a_folder_reads_its_visible_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.txt"), "b1\nb2\n").unwrap();
    std::fs::write(dir.path().join("a.txt"), "a1\na2\na3").unwrap();
    std::fs::write(dir.path().join(".hidden"), "hidden\n").unwrap();
    std::fs::write(dir.path().join("_SUCCESS"), "").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let got = ctx().text_file(dir.path(), 3).unwrap().collect().unwrap();
    assert_eq!(got, vec!["a1", "a2", "a3", "b1", "b2"]);
}

#[test]
fn binary_files_returns_each_visible_file_whole_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Gen(99);
    let mut expected = BTreeMap::new();
    for (i, len) in [0usize, 1, 1000, 70_000, 5].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..len).map(|_| g.next() as u8).collect();
        let p = dir.path().join(format!("f{i}.bin"));
        std::fs::write(&p, &bytes).unwrap();
        expected.insert(p.display().to_string(), bytes);
    }
    std::fs::write(dir.path().join(".skip"), b"no").unwrap();
    let r = ctx().binary_files(dir.path(), 3).unwrap();
    assert_eq!(r.num_partitions(), 3);
    let got: BTreeMap<String, Vec<u8>> = r.collect().unwrap().into_iter().collect();
    assert_eq!(got, expected);
}

#[test]
fn union_of_many_rdds_keeps_every_partition_in_order() {
    let ctx = ctx();
    let rdds: Vec<Rdd<u64>> = (0..40u64)
        .map(|i| {
            ctx.parallelize((i * 100..i * 100 + i).collect(), (i % 4 + 1) as usize)
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (0..40u64).flat_map(|i| i * 100..i * 100 + i).collect();
    let u = ctx.union(&rdds);
    assert_eq!(
        u.num_partitions(),
        rdds.iter().map(Rdd::num_partitions).sum::<usize>()
    );
    assert_eq!(u.collect().unwrap(), expected);
    let two = rdds[3].union(&rdds[5]);
    assert_eq!(
        two.collect().unwrap(),
        [rdds[3].collect().unwrap(), rdds[5].collect().unwrap()].concat()
    );
}

// ------------------------------------------------------ narrow transforms

#[test]
fn map_applies_the_function_to_every_record() {
    let r = ctx().parallelize((0..50u64).collect(), 3).unwrap();
    assert_eq!(
        r.map(|x| x * x + 1).collect().unwrap(),
        (0..50u64).map(|x| x * x + 1).collect::<Vec<_>>()
    );
}

#[test]
fn map_with_passes_its_environment_to_the_function() {
    let r = ctx().parallelize((0..20i64).collect(), 3).unwrap();
    let got = r
        .map_with(
            (10i64, "x".to_string()),
            |(k, s): &(i64, String), x: i64| format!("{s}{}", x * k),
        )
        .collect()
        .unwrap();
    assert_eq!(
        got,
        (0..20i64)
            .map(|x| format!("x{}", x * 10))
            .collect::<Vec<_>>()
    );
}

#[test]
fn filter_keeps_only_matching_records() {
    let r = ctx().parallelize((0..100u64).collect(), 4).unwrap();
    assert_eq!(
        r.filter(|x| x % 7 == 3).collect().unwrap(),
        (0..100u64).filter(|x| x % 7 == 3).collect::<Vec<_>>()
    );
    assert_eq!(
        r.filter_with(90u64, |lim: &u64, x: &u64| x > lim)
            .collect()
            .unwrap(),
        (91..100u64).collect::<Vec<_>>()
    );
}

#[test]
fn flat_map_flattens_results_including_empty_ones() {
    let r = ctx().parallelize((0..30u64).collect(), 4).unwrap();
    let got = r
        .flat_map(|x| (0..x % 4).map(move |i| x * 10 + i))
        .collect()
        .unwrap();
    let expected: Vec<u64> = (0..30u64)
        .flat_map(|x| (0..x % 4).map(move |i| x * 10 + i))
        .collect();
    assert_eq!(got, expected);
    let got = r
        .flat_map_with(2usize, |n: &usize, x: u64| vec![x; *n])
        .count()
        .unwrap();
    assert_eq!(got, 60);
}

#[test]
fn map_partitions_sees_each_whole_partition() {
    let r = ctx().parallelize((0..100u64).collect(), 6).unwrap();
    let sums = r
        .map_partitions(|it: BoxIter<u64>| std::iter::once(it.sum::<u64>()))
        .collect()
        .unwrap();
    let expected: Vec<u64> = r
        .glom()
        .collect()
        .unwrap()
        .iter()
        .map(|p| p.iter().sum())
        .collect();
    assert_eq!(sums, expected);
}

#[test]
fn map_partitions_with_index_passes_the_partition_index() {
    let r = ctx().parallelize((0..25u64).collect(), 4).unwrap();
    let got = r
        .map_partitions_with_index(|p: usize, it: BoxIter<u64>| it.map(move |x| (p, x)))
        .collect()
        .unwrap();
    let expected: Vec<(usize, u64)> = r
        .glom()
        .collect()
        .unwrap()
        .into_iter()
        .enumerate()
        .flat_map(|(p, xs)| xs.into_iter().map(move |x| (p, x)))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn map_values_and_flat_map_values_keep_the_keys() {
    let data = pairs(200, 10, 1);
    let r = ctx().parallelize(data.clone(), 4).unwrap();
    assert_eq!(
        r.map_values(|v| v + 1).collect().unwrap(),
        data.iter().map(|&(k, v)| (k, v + 1)).collect::<Vec<_>>()
    );
    let expected: Vec<(u64, u64)> = data
        .iter()
        .flat_map(|&(k, v)| (0..v % 3).map(move |i| (k, v + i)))
        .collect();
    assert_eq!(
        r.flat_map_values(|v| (0..v % 3).map(move |i| v + i))
            .collect()
            .unwrap(),
        expected
    );
}

#[test]
fn keys_values_and_key_by_split_and_build_pairs() {
    let data = pairs(50, 5, 2);
    let r = ctx().parallelize(data.clone(), 3).unwrap();
    assert_eq!(
        r.keys().collect().unwrap(),
        data.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    assert_eq!(
        r.values().collect().unwrap(),
        data.iter().map(|p| p.1).collect::<Vec<_>>()
    );
    let words = ctx()
        .parallelize(vec!["a".to_string(), "bcd".into(), "ef".into()], 2)
        .unwrap();
    assert_eq!(
        words.key_by(|w: &String| w.len()).collect().unwrap(),
        vec![(1, "a".to_string()), (3, "bcd".into()), (2, "ef".into())]
    );
}

#[test]
fn zip_with_index_numbers_records_in_partition_order_across_empty_partitions() {
    let ctx = ctx();
    // Records only in some partitions: 0..40 spread over 9 partitions, the
    // middle ones emptied.
    let r = ctx
        .parallelize((0..40u64).collect(), 9)
        .unwrap()
        .filter(|x| !(10..25).contains(x));
    let expected: Vec<(u64, u64)> = r.collect().unwrap().into_iter().zip(0u64..).collect();
    assert_eq!(r.zip_with_index().unwrap().collect().unwrap(), expected);
    let empty = ctx.parallelize(Vec::<u64>::new(), 3).unwrap();
    assert!(empty
        .zip_with_index()
        .unwrap()
        .collect()
        .unwrap()
        .is_empty());
}

#[test]
fn glom_returns_one_vector_per_partition() {
    let r = ctx().parallelize((0..10u64).collect(), 4).unwrap();
    let parts = r.glom().collect().unwrap();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts.concat(), (0..10u64).collect::<Vec<_>>());
}

#[test]
fn distinct_removes_duplicates() {
    let mut g = Gen(3);
    let data: Vec<u64> = (0..1000).map(|_| g.below(97)).collect();
    let expected: Vec<u64> = sorted(
        data.iter()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect(),
    );
    let got = ctx()
        .parallelize(data, 5)
        .unwrap()
        .distinct()
        .collect()
        .unwrap();
    assert_eq!(sorted(got), expected);
}

#[test]
fn sample_without_replacement_keeps_about_the_fraction_and_no_duplicates() {
    let n = 20_000u64;
    let r = ctx().parallelize((0..n).collect(), 4).unwrap();
    let fraction = 0.3;
    let got = r.sample(false, fraction, 42).collect().unwrap();
    let mean = n as f64 * fraction;
    let sd = (n as f64 * fraction * (1.0 - fraction)).sqrt();
    assert!(
        (got.len() as f64 - mean).abs() < 5.0 * sd,
        "{} records, expected about {mean}",
        got.len()
    );
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "a sample keeps order and never repeats a record"
    );
    assert!(got.iter().all(|&x| x < n));
    assert!(r.sample(false, 0.0, 1).collect().unwrap().is_empty());
    assert_eq!(r.sample(false, 1.0, 1).count().unwrap(), n);
}

#[test]
fn sample_is_deterministic_for_a_seed_and_differs_across_seeds() {
    let r = ctx().parallelize((0..5_000u64).collect(), 4).unwrap();
    let a = r.sample(false, 0.1, 7).collect().unwrap();
    assert_eq!(a, r.sample(false, 0.1, 7).collect().unwrap());
    assert_ne!(a, r.sample(false, 0.1, 8).collect().unwrap());
    let b = r.sample(true, 0.5, 7).collect().unwrap();
    assert_eq!(b, r.sample(true, 0.5, 7).collect().unwrap());
}

#[test]
fn sample_with_replacement_repeats_records_about_fraction_times() {
    let n = 10_000u64;
    let r = ctx().parallelize((0..n).collect(), 4).unwrap();
    let fraction = 2.0;
    let got = r.sample(true, fraction, 11).collect().unwrap();
    let mean = n as f64 * fraction;
    let sd = (n as f64 * fraction).sqrt();
    assert!(
        (got.len() as f64 - mean).abs() < 5.0 * sd,
        "{} records, expected about {mean}",
        got.len()
    );
    assert!(got.iter().all(|&x| x < n));
    let distinct: HashSet<u64> = got.iter().copied().collect();
    assert!(distinct.len() < got.len(), "some records are repeated");
}

#[test]
fn coalesce_merges_neighbouring_partitions_keeping_order() {
    let r = ctx().parallelize((0..100u64).collect(), 10).unwrap();
    let c = r.coalesce(3);
    assert_eq!(c.num_partitions(), 3);
    assert_eq!(c.collect().unwrap(), (0..100u64).collect::<Vec<_>>());
    assert_eq!(
        r.coalesce(50).num_partitions(),
        10,
        "coalesce never adds partitions"
    );
    assert_eq!(r.coalesce(0).num_partitions(), 1);
}

#[test]
fn repartition_spreads_records_evenly_over_the_new_partitions() {
    // All 1,000 records start in one partition of three.
    let ctx = ctx();
    let r = ctx
        .parallelize((0..1000u64).collect(), 1)
        .unwrap()
        .union(&ctx.parallelize(vec![], 2).unwrap());
    let p = r.repartition(4);
    assert_eq!(p.num_partitions(), 4);
    let parts = p.glom().collect().unwrap();
    for part in &parts {
        assert!(
            (150..=350).contains(&part.len()),
            "unbalanced: {:?}",
            parts.iter().map(Vec::len).collect::<Vec<_>>()
        );
    }
    assert_eq!(sorted(parts.concat()), (0..1000u64).collect::<Vec<_>>());
}

// ----------------------------------------------------------- partitioners

#[test]
fn hash_partitioner_places_every_key_where_it_says() {
    let data = pairs(500, 60, 4);
    let partitioner = Partitioner::Hash(5);
    let parts = ctx()
        .parallelize(data.clone(), 3)
        .unwrap()
        .partition_by(partitioner.clone())
        .glom()
        .collect()
        .unwrap();
    assert_eq!(parts.len(), partitioner.num_partitions());
    for (i, part) in parts.iter().enumerate() {
        for (k, _) in part {
            assert_eq!(partitioner.partition(k), i, "key {k}");
        }
    }
    assert_eq!(sorted(parts.concat()), sorted(data));
}

#[test]
fn range_partitioner_places_keys_in_ascending_ranges() {
    let data = pairs(600, 1000, 5);
    let sample: Vec<u64> = data.iter().map(|p| p.0).collect();
    let partitioner = Partitioner::range_from_sample(sample, 4, true);
    let parts = ctx()
        .parallelize(data.clone(), 3)
        .unwrap()
        .partition_by(partitioner.clone())
        .glom()
        .collect()
        .unwrap();
    assert_eq!(parts.len(), 4);
    for (i, part) in parts.iter().enumerate() {
        assert!(!part.is_empty(), "partition {i} is empty");
        for (k, _) in part {
            assert_eq!(partitioner.partition(k), i);
        }
    }
    for w in parts.windows(2) {
        let hi = w[0].iter().map(|p| p.0).max().unwrap();
        let lo = w[1].iter().map(|p| p.0).min().unwrap();
        assert!(hi < lo, "ranges overlap: {hi} >= {lo}");
    }
    assert_eq!(sorted(parts.concat()), sorted(data));
}

// ----------------------------------------------------- shuffle transforms

fn grouped(data: &[(u64, u64)]) -> BTreeMap<u64, Vec<u64>> {
    let mut m: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &(k, v) in data {
        m.entry(k).or_default().push(v);
    }
    m
}

fn sums(data: &[(u64, u64)]) -> BTreeMap<u64, u64> {
    grouped(data)
        .into_iter()
        .map(|(k, vs)| (k, vs.iter().sum()))
        .collect()
}

fn sorted_groups<K: Ord>(v: Vec<(K, Vec<u64>)>) -> BTreeMap<K, Vec<u64>> {
    v.into_iter().map(|(k, vs)| (k, sorted(vs))).collect()
}

#[test]
fn group_by_key_collects_all_values_of_each_key() {
    let data = pairs(2000, 37, 6);
    let got = ctx()
        .parallelize(data.clone(), 5)
        .unwrap()
        .group_by_key()
        .collect()
        .unwrap();
    assert_eq!(got.len(), 37, "one record per key");
    assert_eq!(sorted_groups(got), grouped(&data));
}

#[test]
fn group_by_groups_records_by_the_function() {
    let got = ctx()
        .parallelize((0..100u64).collect(), 4)
        .unwrap()
        .group_by(|x: &u64| x % 7)
        .collect()
        .unwrap();
    let expected: BTreeMap<u64, Vec<u64>> = (0..7)
        .map(|k| (k, (0..100).filter(|x| x % 7 == k).collect()))
        .collect();
    assert_eq!(sorted_groups(got), expected);
}

#[test]
fn reduce_by_key_combines_the_values_of_each_key() {
    let data = pairs(3000, 50, 7);
    let r = ctx().parallelize(data.clone(), 6).unwrap();
    let got: BTreeMap<u64, u64> = r
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(got, sums(&data));
    let into = r.reduce_by_key_into(|a, b| a.max(b), 3);
    assert_eq!(into.num_partitions(), 3);
    let maxes: BTreeMap<u64, u64> = into.collect().unwrap().into_iter().collect();
    let expected: BTreeMap<u64, u64> = grouped(&data)
        .into_iter()
        .map(|(k, vs)| (k, *vs.iter().max().unwrap()))
        .collect();
    assert_eq!(maxes, expected);
}

/// For each key, the number of partitions of `parts` it occurs in.
fn partitions_per_key(parts: &[Vec<(u64, u64)>]) -> BTreeMap<u64, u64> {
    let mut m = BTreeMap::new();
    for part in parts {
        for k in part.iter().map(|p| p.0).collect::<HashSet<_>>() {
            *m.entry(k).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn fold_by_key_uses_zero_once_per_key_and_partition() {
    let data = pairs(500, 20, 8);
    let r = ctx().parallelize(data.clone(), 4).unwrap();
    let got: BTreeMap<u64, u64> = r
        .fold_by_key(0, |a, b| a + b)
        .collect()
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(got, sums(&data));
    // Spark's semantics: zero is folded in once per key in each map partition.
    let per_key = partitions_per_key(&r.glom().collect().unwrap());
    let got: BTreeMap<u64, u64> = r
        .fold_by_key(1000, |a, b| a + b)
        .collect()
        .unwrap()
        .into_iter()
        .collect();
    let expected: BTreeMap<u64, u64> = sums(&data)
        .into_iter()
        .map(|(k, s)| (k, s + 1000 * per_key[&k]))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn aggregate_by_key_computes_a_different_result_type() {
    let data = pairs(800, 30, 9);
    let got = ctx()
        .parallelize(data.clone(), 5)
        .unwrap()
        .aggregate_by_key(
            (0u64, 0u64),
            |(n, s), v| (n + 1, s + v),
            |a, b| (a.0 + b.0, a.1 + b.1),
        )
        .collect()
        .unwrap();
    let expected: BTreeMap<u64, (u64, u64)> = grouped(&data)
        .into_iter()
        .map(|(k, vs)| (k, (vs.len() as u64, vs.iter().sum())))
        .collect();
    assert_eq!(got.into_iter().collect::<BTreeMap<_, _>>(), expected);
}

#[test]
fn combine_by_key_builds_per_key_collections() {
    let data = pairs(800, 30, 10);
    let got = ctx()
        .parallelize(data.clone(), 5)
        .unwrap()
        .combine_by_key(
            |v: u64| vec![v],
            |mut c: Vec<u64>, v: u64| {
                c.push(v);
                c
            },
            |mut a: Vec<u64>, mut b: Vec<u64>| {
                a.append(&mut b);
                a
            },
        )
        .collect()
        .unwrap();
    assert_eq!(sorted_groups(got), grouped(&data));
}

fn check_total_order(parts: &[Vec<(u64, u64)>], ascending: bool) {
    let keys: Vec<u64> = parts.iter().flatten().map(|p| p.0).collect();
    let ordered = |a: u64, b: u64| if ascending { a <= b } else { a >= b };
    assert!(
        keys.windows(2).all(|w| ordered(w[0], w[1])),
        "keys out of order across partitions"
    );
}

#[test]
fn sort_by_key_ascending_orders_keys_across_partitions() {
    let data = pairs(5000, 100_000, 11);
    let r = ctx()
        .parallelize(data.clone(), 8)
        .unwrap()
        .sort_by_key(true, 6)
        .unwrap();
    let parts = r.glom().collect().unwrap();
    assert!(
        parts.len() > 1 && parts.len() <= 6,
        "{} partitions",
        parts.len()
    );
    assert!(
        parts.iter().all(|p| !p.is_empty()),
        "range partitions hold data"
    );
    check_total_order(&parts, true);
    assert_eq!(sorted(parts.concat()), sorted(data));
}

#[test]
fn sort_by_key_descending_orders_keys_across_partitions() {
    let data = pairs(5000, 300, 12);
    let parts = ctx()
        .parallelize(data.clone(), 5)
        .unwrap()
        .sort_by_key(false, 7)
        .unwrap()
        .glom()
        .collect()
        .unwrap();
    assert!(parts.len() > 1);
    check_total_order(&parts, false);
    assert_eq!(sorted(parts.concat()), sorted(data));
}

#[test]
fn sort_by_key_with_more_partitions_than_keys_still_orders() {
    let data = pairs(300, 3, 13);
    let r = ctx()
        .parallelize(data.clone(), 4)
        .unwrap()
        .sort_by_key(true, 16)
        .unwrap();
    let parts = r.glom().collect().unwrap();
    check_total_order(&parts, true);
    assert_eq!(sorted(parts.concat()), sorted(data));
}

#[test]
fn sort_by_orders_by_the_function() {
    let mut g = Gen(14);
    let data: Vec<i64> = (0..1000).map(|_| g.below(10_000) as i64 - 5_000).collect();
    let r = ctx().parallelize(data.clone(), 4).unwrap();
    let by_abs = r
        .sort_by(|x: &i64| x.abs(), true, 5)
        .unwrap()
        .collect()
        .unwrap();
    assert!(by_abs.windows(2).all(|w| w[0].abs() <= w[1].abs()));
    assert_eq!(sorted(by_abs), sorted(data.clone()));
    let desc = r
        .sort_by(|x: &i64| *x, false, 3)
        .unwrap()
        .collect()
        .unwrap();
    let mut expected = data;
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(desc, expected);
}

/// Left and right sides of the join tests.
type JoinSides = (Vec<(u64, u64)>, Vec<(u64, String)>);

fn join_fixture() -> JoinSides {
    // Keys 0..20 on the left, 10..30 on the right, some repeated.
    let left: Vec<(u64, u64)> = (0..60).map(|i| (i % 20, i)).collect();
    let right: Vec<(u64, String)> = (0..50).map(|i| (10 + i % 20, format!("r{i}"))).collect();
    (left, right)
}

#[test]
fn join_pairs_every_value_with_every_value_of_the_same_key() {
    let (left, right) = join_fixture();
    let ctx = ctx();
    let l = ctx.parallelize(left.clone(), 3).unwrap();
    let r = ctx.parallelize(right.clone(), 4).unwrap();
    let got = sorted(l.join(&r).collect().unwrap());
    let mut expected = Vec::new();
    for (k, v) in &left {
        for (k2, w) in &right {
            if k == k2 {
                expected.push((*k, (*v, w.clone())));
            }
        }
    }
    assert_eq!(got, sorted(expected));
}

#[test]
fn left_outer_join_keeps_left_keys_without_a_match() {
    let (left, right) = join_fixture();
    let ctx = ctx();
    let got = sorted(
        ctx.parallelize(left.clone(), 3)
            .unwrap()
            .left_outer_join(&ctx.parallelize(right.clone(), 2).unwrap())
            .collect()
            .unwrap(),
    );
    let mut expected = Vec::new();
    for (k, v) in &left {
        let ws: Vec<&String> = right
            .iter()
            .filter(|(k2, _)| k2 == k)
            .map(|(_, w)| w)
            .collect();
        if ws.is_empty() {
            expected.push((*k, (*v, None)));
        }
        expected.extend(ws.into_iter().map(|w| (*k, (*v, Some(w.clone())))));
    }
    assert_eq!(got, sorted(expected));
}

#[test]
fn right_outer_join_keeps_right_keys_without_a_match() {
    let (left, right) = join_fixture();
    let ctx = ctx();
    let got = sorted(
        ctx.parallelize(left.clone(), 3)
            .unwrap()
            .right_outer_join(&ctx.parallelize(right.clone(), 2).unwrap())
            .collect()
            .unwrap(),
    );
    let mut expected = Vec::new();
    for (k, w) in &right {
        let vs: Vec<u64> = left.iter().filter(|(k2, _)| k2 == k).map(|p| p.1).collect();
        if vs.is_empty() {
            expected.push((*k, (None, w.clone())));
        }
        expected.extend(vs.into_iter().map(|v| (*k, (Some(v), w.clone()))));
    }
    assert_eq!(got, sorted(expected));
}

#[test]
fn full_outer_join_keeps_unmatched_keys_of_both_sides() {
    let (left, right) = join_fixture();
    let ctx = ctx();
    let got = sorted(
        ctx.parallelize(left.clone(), 3)
            .unwrap()
            .full_outer_join(&ctx.parallelize(right.clone(), 2).unwrap())
            .collect()
            .unwrap(),
    );
    let keys: HashSet<u64> = left
        .iter()
        .map(|p| p.0)
        .chain(right.iter().map(|p| p.0))
        .collect();
    let mut expected = Vec::new();
    for k in keys {
        let vs: Vec<Option<u64>> = left
            .iter()
            .filter(|p| p.0 == k)
            .map(|p| Some(p.1))
            .collect();
        let ws: Vec<Option<String>> = right
            .iter()
            .filter(|p| p.0 == k)
            .map(|p| Some(p.1.clone()))
            .collect();
        let vs = if vs.is_empty() { vec![None] } else { vs };
        let ws = if ws.is_empty() { vec![None] } else { ws };
        for v in &vs {
            for w in &ws {
                expected.push((k, (*v, w.clone())));
            }
        }
    }
    assert_eq!(got, sorted(expected));
}

#[test]
fn cogroup_lists_the_values_of_both_sides_for_every_key() {
    let (left, right) = join_fixture();
    let ctx = ctx();
    let got = ctx
        .parallelize(left.clone(), 3)
        .unwrap()
        .cogroup(&ctx.parallelize(right.clone(), 2).unwrap())
        .collect()
        .unwrap();
    let got: BTreeMap<u64, (Vec<u64>, Vec<String>)> = got
        .into_iter()
        .map(|(k, (vs, ws))| (k, (sorted(vs), sorted(ws))))
        .collect();
    let keys: HashSet<u64> = left
        .iter()
        .map(|p| p.0)
        .chain(right.iter().map(|p| p.0))
        .collect();
    let expected: BTreeMap<u64, (Vec<u64>, Vec<String>)> = keys
        .into_iter()
        .map(|k| {
            let vs = sorted(left.iter().filter(|p| p.0 == k).map(|p| p.1).collect());
            let ws = sorted(
                right
                    .iter()
                    .filter(|p| p.0 == k)
                    .map(|p| p.1.clone())
                    .collect(),
            );
            (k, (vs, ws))
        })
        .collect();
    assert_eq!(got, expected);
}

// ---------------------------------------------------------------- actions

#[test]
fn count_and_collect_see_every_record() {
    let r = ctx().parallelize((0..1234u64).collect(), 7).unwrap();
    assert_eq!(r.count().unwrap(), 1234);
    assert_eq!(r.collect().unwrap(), (0..1234u64).collect::<Vec<_>>());
}

#[test]
fn first_skips_empty_leading_partitions() {
    let ctx = ctx();
    let r = ctx
        .parallelize((0..100u64).collect(), 10)
        .unwrap()
        .filter(|x| *x >= 73);
    assert_eq!(r.first().unwrap(), Some(73));
    assert_eq!(r.filter(|_| false).first().unwrap(), None);
}

#[test]
fn take_reads_across_partitions_and_stops_at_what_exists() {
    let ctx = ctx();
    let r = ctx.parallelize((0..100u64).collect(), 10).unwrap();
    assert_eq!(r.take(37).unwrap(), (0..37u64).collect::<Vec<_>>());
    assert_eq!(r.take(1000).unwrap(), (0..100u64).collect::<Vec<_>>());
    assert!(r.take(0).unwrap().is_empty());
    let sparse = r.filter(|x| *x >= 85);
    assert_eq!(sparse.take(10).unwrap(), (85..95u64).collect::<Vec<_>>());
}

#[test]
fn take_scans_only_the_partitions_it_needs() {
    let ctx = ctx();
    let r = ctx.parallelize((0..100u64).collect(), 10).unwrap();
    let before = ctx.job_reports().len();
    assert_eq!(r.take(5).unwrap(), (0..5u64).collect::<Vec<_>>());
    let reports = ctx.job_reports();
    let launched: usize = reports[before..].iter().map(|j| j.tasks_launched).sum();
    assert_eq!(launched, 1, "the first partition holds 10 records");
}

#[test]
fn reduce_combines_all_records() {
    let r = ctx().parallelize((1..=100u64).collect(), 6).unwrap();
    assert_eq!(r.reduce(|a, b| a + b).unwrap(), Some(5050));
    assert_eq!(r.reduce(|a, b| a.max(b)).unwrap(), Some(100));
}

#[test]
fn fold_applies_zero_once_per_partition_and_once_more() {
    let r = ctx().parallelize((1..=100u64).collect(), 6).unwrap();
    assert_eq!(r.fold(0, |a, b| a + b).unwrap(), 5050);
    // Spark's semantics: zero starts every partition and the final merge.
    assert_eq!(
        r.fold(1, |a, b| a + b).unwrap(),
        5050 + r.num_partitions() as u64 + 1
    );
}

#[test]
fn aggregate_computes_a_different_result_type() {
    let data: Vec<u64> = (1..=100).collect();
    let r = ctx().parallelize(data.clone(), 6).unwrap();
    let (n, sum) = r
        .aggregate(
            (0u64, 0u64),
            |(n, s), x| (n + 1, s + x),
            |a, b| (a.0 + b.0, a.1 + b.1),
        )
        .unwrap();
    assert_eq!((n, sum), (data.len() as u64, data.iter().sum()));
}

#[test]
fn foreach_runs_on_every_record() {
    let ctx = ctx();
    let acc = ctx.accumulator(0u64);
    let r = ctx.parallelize((1..=200u64).collect(), 5).unwrap();
    r.foreach_with(acc.clone(), |a: &Accumulator<u64>, x: u64| a.add(x))
        .unwrap();
    assert_eq!(acc.value(), (1..=200u64).sum::<u64>());
    // Without an environment, a function can still have effects: write to
    // files, as here one file per record.
    let dir = tempfile::tempdir().unwrap();
    let files = ctx
        .parallelize(
            (0..20u64)
                .map(|i| dir.path().join(i.to_string()).display().to_string())
                .collect(),
            3,
        )
        .unwrap();
    files
        .foreach(|p: String| std::fs::write(p, b"x").unwrap())
        .unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 20);
}

#[test]
fn foreach_partition_runs_once_per_partition() {
    let ctx = ctx();
    let dir = tempfile::tempdir().unwrap();
    let r = ctx.parallelize((0..50u64).collect(), 6).unwrap();
    r.map_partitions_with_index(|p: usize, it: BoxIter<u64>| {
        std::iter::once((p, it.collect::<Vec<u64>>()))
    })
    .map_with(
        dir.path().display().to_string(),
        |d: &String, (p, xs): (usize, Vec<u64>)| (format!("{d}/{p}"), xs),
    )
    .foreach_partition(|it: BoxIter<(String, Vec<u64>)>| {
        for (path, xs) in it {
            let text: Vec<String> = xs.iter().map(u64::to_string).collect();
            std::fs::write(path, text.join(",")).unwrap();
        }
    })
    .unwrap();
    let parts = r.glom().collect().unwrap();
    for (p, xs) in parts.iter().enumerate() {
        let text = std::fs::read_to_string(dir.path().join(p.to_string())).unwrap();
        assert_eq!(
            text,
            xs.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        );
    }
    let count = ctx.accumulator(0usize);
    r.map_partitions_with_env(
        count.clone(),
        |c: &std::sync::Arc<Accumulator<usize>>, _: usize, it: BoxIter<u64>| -> BoxIter<u64> {
            c.add(1);
            it
        },
    )
    .foreach_partition(|it: BoxIter<u64>| it.for_each(drop))
    .unwrap();
    assert_eq!(count.value(), 6);
}

#[test]
fn count_by_key_and_count_by_value_count_occurrences() {
    let data = pairs(1000, 13, 15);
    let r = ctx().parallelize(data.clone(), 4).unwrap();
    let expected: HashMap<u64, u64> = grouped(&data)
        .into_iter()
        .map(|(k, vs)| (k, vs.len() as u64))
        .collect();
    assert_eq!(r.count_by_key().unwrap(), expected);
    assert_eq!(r.keys().count_by_value().unwrap(), expected);
}

#[test]
fn take_ordered_and_top_return_the_extremes_in_order() {
    let mut g = Gen(16);
    let data: Vec<u64> = (0..2000).map(|_| g.below(500)).collect();
    let r = ctx().parallelize(data.clone(), 7).unwrap();
    let asc = sorted(data.clone());
    assert_eq!(r.take_ordered(25).unwrap(), asc[..25].to_vec());
    let mut desc = asc.clone();
    desc.reverse();
    assert_eq!(r.top(25).unwrap(), desc[..25].to_vec());
    assert_eq!(r.top(5000).unwrap(), desc, "more than exist: all of them");
    assert!(r.take_ordered(0).unwrap().is_empty());
}

#[test]
fn collect_as_map_keeps_the_last_value_of_a_key() {
    let r = ctx()
        .parallelize(
            vec![(1u64, "a".to_string()), (2, "b".into()), (1, "c".into())],
            3,
        )
        .unwrap();
    assert_eq!(
        r.collect_as_map().unwrap(),
        HashMap::from([(1, "c".to_string()), (2, "b".to_string())])
    );
}

#[test]
fn lookup_returns_every_value_of_a_key() {
    let data = pairs(500, 10, 17);
    let r = ctx().parallelize(data.clone(), 4).unwrap();
    for k in [0u64, 3, 9] {
        let expected: Vec<u64> = data.iter().filter(|p| p.0 == k).map(|p| p.1).collect();
        assert_eq!(r.lookup(k).unwrap(), expected);
    }
    assert!(r.lookup(42).unwrap().is_empty());
}

/// The names in folder `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    sorted(
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
    )
}

fn expected_output_names(partitions: usize) -> Vec<String> {
    sorted(
        (0..partitions)
            .map(|p| format!("part-{p:05}"))
            .chain(["_SUCCESS".to_string()])
            .collect(),
    )
}

#[test]
fn save_as_text_file_writes_one_part_file_per_partition_and_a_success_marker() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let ctx = ctx();
    let r = ctx
        .parallelize((0..103u64).collect(), 5)
        .unwrap()
        .filter(|x| !(20..45).contains(x));
    r.save_as_text_file(&out).unwrap();
    assert_eq!(names(&out), expected_output_names(5));
    for (p, xs) in r.glom().collect().unwrap().iter().enumerate() {
        let text = std::fs::read_to_string(out.join(format!("part-{p:05}"))).unwrap();
        assert_eq!(
            text,
            xs.iter().map(|x| format!("{x}\n")).collect::<String>(),
            "part {p}"
        );
    }
    let back: Vec<u64> = ctx
        .text_file(&out, 2)
        .unwrap()
        .collect()
        .unwrap()
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(back, r.collect().unwrap());
}

#[test]
fn save_as_text_file_refuses_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let r = ctx().parallelize(vec![1u64, 2, 3], 2).unwrap();
    let err = r
        .save_as_text_file(dir.path())
        .expect_err("an existing folder is refused");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert_eq!(names(dir.path()), vec!["keep.txt"]);
}

#[test]
fn save_as_text_file_leaves_no_temporary_files_after_a_retried_task() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let marker = dir.path().join("failed-once").display().to_string();
    let ctx = ctx();
    let r = ctx.parallelize((0..100u64).collect(), 4).unwrap();
    r.map_with((marker, 60u64), panic_once_at)
        .save_as_text_file(&out)
        .unwrap();
    assert_eq!(names(&out), expected_output_names(4));
    let back: Vec<u64> = ctx
        .text_file(&out, 1)
        .unwrap()
        .collect()
        .unwrap()
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(back, (0..100u64).collect::<Vec<_>>());
}

// ------------------------------------------------------------ persistence

#[test]
fn a_cached_rdd_is_computed_once_across_two_actions() {
    let ctx = ctx();
    let computed = ctx.accumulator(0u64);
    let r = ctx
        .parallelize((0..300u64).collect(), 4)
        .unwrap()
        .map_with(computed.clone(), |c: &Accumulator<u64>, x: u64| {
            c.add(1);
            x * 3
        })
        .cache();
    assert_eq!(r.count().unwrap(), 300);
    assert_eq!(
        r.collect().unwrap(),
        (0..300u64).map(|x| x * 3).collect::<Vec<_>>()
    );
    assert_eq!(
        r.map(|x| x + 1).reduce(|a, b| a + b).unwrap(),
        Some((0..300u64).map(|x| x * 3 + 1).sum())
    );
    assert_eq!(computed.value(), 300, "each record computed once");
}

#[test]
fn a_cached_rdd_is_computed_once_across_actions_in_local_cluster() {
    let ctx = Context::new("local-cluster[2,1,512]").unwrap();
    let computed = ctx.accumulator(0u64);
    let r = ctx
        .parallelize((0..400u64).collect(), 8)
        .unwrap()
        .map_with(computed.clone(), |c: &Accumulator<u64>, x: u64| {
            c.add(1);
            x
        })
        .cache();
    for _ in 0..10 {
        assert_eq!(r.count().unwrap(), 400);
    }
    assert_eq!(computed.value(), 400, "each record computed once");
}

#[test]
fn a_task_reads_partitions_cached_on_another_executor_instead_of_recomputing_them() {
    let ctx = Context::new("local-cluster[2,1,512]").unwrap();
    for level in [
        StorageLevel::MemoryOnly,
        StorageLevel::MemoryOnlySer,
        StorageLevel::MemoryAndDisk,
        StorageLevel::DiskOnly,
    ] {
        let computed = ctx.accumulator(0u64);
        // Slow partitions, so both one-core executors cache some of them.
        let r = ctx
            .parallelize((0..8u64).collect(), 8)
            .unwrap()
            .map_with(computed.clone(), |c: &Accumulator<u64>, x: u64| {
                c.add(1);
                std::thread::sleep(std::time::Duration::from_millis(100));
                format!("volume {x}")
            })
            .persist(level);
        assert_eq!(r.count().unwrap(), 8);
        // One task reads all eight: those the other executor caches come
        // from its block server.
        let all = r.coalesce(1).collect().unwrap();
        assert_eq!(
            all,
            (0..8).map(|x| format!("volume {x}")).collect::<Vec<_>>(),
            "{level:?}"
        );
        assert_eq!(computed.value(), 8, "{level:?}: nothing recomputed");
        let m = ctx.job_reports().last().unwrap().metrics.clone();
        assert_eq!((m.cache_hits, m.cache_misses), (8, 0), "{level:?}");
        assert!(
            (1..8).contains(&m.cache_remote_hits),
            "{level:?}: {} of 8 partitions fetched from the other executor",
            m.cache_remote_hits
        );
        r.unpersist();
    }
}

#[test]
fn an_unpersisted_rdd_is_recomputed() {
    let ctx = ctx();
    let computed = ctx.accumulator(0u64);
    let r = ctx
        .parallelize((0..100u64).collect(), 4)
        .unwrap()
        .map_with(computed.clone(), |c: &Accumulator<u64>, x: u64| {
            c.add(1);
            x
        })
        .persist(StorageLevel::MemoryOnly);
    r.count().unwrap();
    r.count().unwrap();
    assert_eq!(computed.value(), 100);
    r.unpersist();
    r.count().unwrap();
    assert_eq!(computed.value(), 200, "recomputed after unpersist");
    r.count().unwrap();
    assert_eq!(computed.value(), 300, "and no longer cached");
}

#[test]
fn an_uncached_rdd_is_recomputed_by_every_action() {
    let ctx = ctx();
    let computed = ctx.accumulator(0u64);
    let r = ctx.parallelize((0..50u64).collect(), 3).unwrap().map_with(
        computed.clone(),
        |c: &Accumulator<u64>, x: u64| {
            c.add(1);
            x
        },
    );
    r.count().unwrap();
    r.count().unwrap();
    assert_eq!(computed.value(), 100);
}

// ------------------------------------------------------- shared variables

#[test]
fn broadcast_values_are_read_in_tasks() {
    let ctx = ctx();
    let table: HashMap<u64, String> = (0..10).map(|i| (i, format!("v{i}"))).collect();
    let b = ctx.broadcast(table.clone()).unwrap();
    let got = ctx
        .parallelize((0..30u64).collect(), 4)
        .unwrap()
        .map_with(b, |b: &Broadcast<HashMap<u64, String>>, x: u64| {
            b.value().get(&(x % 10)).cloned().unwrap()
        })
        .collect()
        .unwrap();
    assert_eq!(
        got,
        (0..30u64)
            .map(|x| table[&(x % 10)].clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn broadcast_values_reach_local_cluster_executors() {
    let ctx = Context::new("local-cluster[2,1,512]").unwrap();
    let weights: Vec<u64> = (0..1000).map(|i| i * 7 % 13).collect();
    let b = ctx.broadcast(weights.clone()).unwrap();
    let other = ctx.broadcast("suffix".to_string()).unwrap();
    let got = ctx
        .parallelize((0..1000u64).collect(), 6)
        .unwrap()
        .map_with(
            (b, other),
            |(b, o): &(Broadcast<Vec<u64>>, Broadcast<String>), x: u64| {
                format!("{}{}", b.value()[x as usize], o.value())
            },
        )
        .collect()
        .unwrap();
    assert_eq!(
        got,
        weights
            .iter()
            .map(|w| format!("{w}suffix"))
            .collect::<Vec<_>>()
    );
    assert_eq!(ctx.executor_pids().len(), 2, "ran in executor processes");
}

#[test]
fn accumulators_count_each_partition_once_when_a_task_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("failed-once").display().to_string();
    let ctx = ctx();
    let seen = ctx.accumulator(0u64);
    // The task of the partition holding record 70 adds for records 50..70,
    // then panics; its retry adds for the whole partition again.
    ctx.parallelize((0..100u64).collect(), 4)
        .unwrap()
        .map_with(seen.clone(), |s: &Accumulator<u64>, x: u64| {
            s.add(1);
            x
        })
        .map_with((marker, 70u64), panic_once_at)
        .foreach(drop)
        .unwrap();
    assert!(
        Path::new(&dir.path().join("failed-once")).exists(),
        "the failure happened"
    );
    assert_eq!(seen.value(), 100);
    assert_eq!(ctx.job_reports().last().unwrap().tasks_failed, 1);
}

#[test]
fn accumulators_add_on_the_driver_too() {
    let ctx = ctx();
    let acc = ctx.accumulator(Vec::<String>::new());
    acc.add(vec!["driver".into()]);
    ctx.parallelize(vec!["a".to_string(), "b".into()], 2)
        .unwrap()
        .foreach_with(acc.clone(), |a: &Accumulator<Vec<String>>, s: String| {
            a.add(vec![s])
        })
        .unwrap();
    assert_eq!(sorted(acc.value()), vec!["a", "b", "driver"]);
}

// ------------------------------------------------------------- edge cases

#[test]
fn actions_on_an_empty_rdd_return_neutral_values() {
    let ctx = ctx();
    let r = ctx.parallelize(Vec::<u64>::new(), 4).unwrap();
    assert_eq!(r.count().unwrap(), 0);
    assert!(r.collect().unwrap().is_empty());
    assert_eq!(r.first().unwrap(), None);
    assert!(r.take(3).unwrap().is_empty());
    assert_eq!(r.reduce(|a, b| a + b).unwrap(), None);
    assert_eq!(r.fold(0, |a, b| a + b).unwrap(), 0);
    assert_eq!(r.aggregate(0u64, |a, x| a + x, |a, b| a + b).unwrap(), 0);
    assert!(r.take_ordered(3).unwrap().is_empty());
    assert!(r.top(3).unwrap().is_empty());
    assert!(r.count_by_value().unwrap().is_empty());
    assert!(r.distinct().collect().unwrap().is_empty());
    assert!(r.sample(false, 0.5, 1).collect().unwrap().is_empty());
    assert!(r.repartition(3).collect().unwrap().is_empty());
    r.foreach(drop).unwrap();
}

#[test]
fn an_rdd_without_partitions_supports_actions_and_shuffles() {
    let ctx = ctx();
    let none: Rdd<(u64, u64)> = ctx.union(&[]);
    assert_eq!(none.num_partitions(), 0);
    assert_eq!(none.count().unwrap(), 0);
    assert_eq!(none.first().unwrap(), None);
    assert!(none
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap()
        .is_empty());
    assert!(none
        .sort_by_key(false, 3)
        .unwrap()
        .collect()
        .unwrap()
        .is_empty());
    assert!(none.zip_with_index().unwrap().collect().unwrap().is_empty());
    assert!(none.coalesce(2).collect().unwrap().is_empty());
}

#[test]
fn pair_operations_on_empty_rdds_return_nothing() {
    let ctx = ctx();
    let empty = ctx.parallelize(Vec::<(u64, u64)>::new(), 3).unwrap();
    let full = ctx.parallelize(pairs(20, 5, 18), 2).unwrap();
    assert!(empty.group_by_key().collect().unwrap().is_empty());
    assert!(empty
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap()
        .is_empty());
    assert!(empty
        .sort_by_key(true, 4)
        .unwrap()
        .collect()
        .unwrap()
        .is_empty());
    assert!(empty.join(&full).collect().unwrap().is_empty());
    assert!(full.join(&empty).collect().unwrap().is_empty());
    assert_eq!(full.left_outer_join(&empty).count().unwrap(), 20);
    assert_eq!(empty.full_outer_join(&full).count().unwrap(), 20);
    assert!(empty.count_by_key().unwrap().is_empty());
    assert!(empty.collect_as_map().unwrap().is_empty());
    assert!(empty.lookup(1).unwrap().is_empty());
}

#[test]
fn saving_an_empty_rdd_writes_empty_part_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ctx()
        .parallelize(Vec::<u64>::new(), 2)
        .unwrap()
        .save_as_text_file(&out)
        .unwrap();
    assert_eq!(names(&out), expected_output_names(2));
    assert_eq!(std::fs::read_to_string(out.join("part-00001")).unwrap(), "");
}

#[test]
fn shuffles_over_mostly_empty_partitions_lose_nothing() {
    let data = pairs(40, 6, 19);
    let ctx = ctx();
    // 40 records over 64 partitions, then half of them dropped.
    let r = ctx
        .parallelize(data.clone(), 64)
        .unwrap()
        .filter(|p| p.1 % 2 == 0);
    let kept: Vec<(u64, u64)> = data.iter().copied().filter(|p| p.1 % 2 == 0).collect();
    assert_eq!(
        sorted_groups(r.group_by_key().collect().unwrap()),
        grouped(&kept)
    );
    assert_eq!(
        r.reduce_by_key(|a, b| a + b)
            .collect()
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        sums(&kept)
    );
    let parts = r.sort_by_key(true, 32).unwrap().glom().collect().unwrap();
    check_total_order(&parts, true);
    assert_eq!(sorted(parts.concat()), sorted(kept));
}

#[test]
fn a_skewed_key_holding_most_values_is_aggregated_exactly() {
    let mut g = Gen(20);
    // 90% of 30,000 records under key 0.
    let data: Vec<(u64, u64)> = (0..30_000u64)
        .map(|i| (if g.below(10) < 9 { 0 } else { 1 + g.below(50) }, i))
        .collect();
    let ctx = ctx();
    let r = ctx.parallelize(data.clone(), 6).unwrap();
    let groups = sorted_groups(r.group_by_key().collect().unwrap());
    assert_eq!(groups, grouped(&data));
    assert_eq!(
        r.reduce_by_key(|a, b| a + b)
            .collect()
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        sums(&data)
    );
    let small = ctx
        .parallelize(vec![(0u64, "zero".to_string()), (1, "one".into())], 1)
        .unwrap();
    let joined = r.join(&small).count().unwrap();
    let expected = data.iter().filter(|p| p.0 <= 1).count() as u64;
    assert_eq!(joined, expected);
    let parts = r.sort_by_key(true, 4).unwrap().glom().collect().unwrap();
    check_total_order(&parts, true);
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), data.len());
}
