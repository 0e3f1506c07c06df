//! The rest of Spark's everyday RDD API, each operation against a
//! plain-Rust computation of what it must return, in `local[4]` and in
//! `local-cluster[2,1,512]` (one context per mode, shared by every check,
//! since executor processes take a while to start).

use ember_driver::prelude::*;
use ember_driver::rdd::numeric::Buckets;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::Path;

fn context(master: &str) -> Context {
    Context::builder()
        .master(master)
        // Checks that expect a task to fail need not wait for retries.
        .conf("ember.task.maxFailures", "1")
        .build()
        .expect("context starts")
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// A small deterministic generator (xorshift64*).
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn pairs(n: u64, keys: u64, seed: u64) -> Vec<(u64, u64)> {
    let mut g = Gen(seed);
    (0..n).map(|i| (g.below(keys), i)).collect()
}

/// Records of each partition of `data` cut into `n` slices, as
/// `parallelize` cuts them.
fn slices<T: Clone>(data: &[T], n: usize) -> Vec<Vec<T>> {
    (0..n)
        .map(|i| data[i * data.len() / n..(i + 1) * data.len() / n].to_vec())
        .collect()
}

fn err_text<T>(r: Result<T, EmberError>) -> String {
    match r {
        Ok(_) => panic!("the operation must fail"),
        Err(e) => e.to_string(),
    }
}

fn zips(ctx: &Context) {
    let a: Vec<u64> = (0..20).collect();
    let ra = ctx.parallelize(a.clone(), 3).unwrap();
    let rb = ra.map(|x: u64| format!("v{x}"));
    let expected: Vec<(u64, String)> = a.iter().map(|&x| (x, format!("v{x}"))).collect();
    assert_eq!(ra.zip(&rb).unwrap().collect().unwrap(), expected);

    let other_parts = ctx.parallelize(a.clone(), 4).unwrap();
    let e = err_text(ra.zip(&other_parts));
    assert!(e.contains("unequal numbers of partitions"), "{e}");
    let longer = ctx.parallelize((0..21u64).collect(), 3).unwrap();
    let e = err_text(ra.zip(&longer).unwrap().collect());
    assert!(e.contains("different numbers of records"), "{e}");

    let sums = ra
        .zip_partitions(&longer, |x: BoxIter<u64>, y: BoxIter<u64>| {
            std::iter::once(x.sum::<u64>() * 1000 + y.sum::<u64>())
        })
        .unwrap()
        .collect()
        .unwrap();
    let expected: Vec<u64> = slices(&a, 3)
        .iter()
        .zip(slices(&(0..21u64).collect::<Vec<_>>(), 3))
        .map(|(x, y)| x.iter().sum::<u64>() * 1000 + y.iter().sum::<u64>())
        .collect();
    assert_eq!(sums, expected);

    let letters: Vec<char> = "abcdefg".chars().collect();
    let c = ctx
        .parallelize((0..5u32).collect(), 2)
        .unwrap()
        .cartesian(&ctx.parallelize(letters.clone(), 3).unwrap());
    assert_eq!(c.num_partitions(), 6);
    let expected: Vec<(u32, char)> = (0..5u32)
        .flat_map(|x| letters.iter().map(move |&l| (x, l)))
        .collect();
    assert_eq!(sorted(c.collect().unwrap()), sorted(expected));
    // An RDD with itself: the same node is both parents of one task.
    let sq = ra.cartesian(&ra).count().unwrap();
    assert_eq!(sq, 400);

    let ids = ra.zip_with_unique_id().collect().unwrap();
    let expected: Vec<(u64, u64)> = slices(&a, 3)
        .iter()
        .enumerate()
        .flat_map(|(k, part)| {
            part.iter()
                .enumerate()
                .map(move |(i, &x)| (x, (i * 3 + k) as u64))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids, expected);
}

fn set_ops(ctx: &Context) {
    let a = vec![1u32, 2, 2, 3, 4, 4, 4, 5, 9];
    let b = vec![2u32, 4, 4, 6, 9, 9, 10];
    let ra = ctx.parallelize(a.clone(), 3).unwrap();
    let rb = ctx.parallelize(b.clone(), 2).unwrap();
    let inter = ra.intersection(&rb);
    assert_eq!(inter.num_partitions(), 3);
    assert_eq!(sorted(inter.collect().unwrap()), vec![2, 4, 9]);
    let expected: Vec<u32> = a.iter().copied().filter(|x| !b.contains(x)).collect();
    assert_eq!(sorted(ra.subtract(&rb).collect().unwrap()), expected);

    let left = pairs(200, 30, 1);
    let right = pairs(50, 60, 2);
    let keys_right: HashSet<u64> = right.iter().map(|p| p.0).collect();
    let expected: Vec<(u64, u64)> = left
        .iter()
        .copied()
        .filter(|(k, _)| !keys_right.contains(k))
        .collect();
    let got = ctx
        .parallelize(left.clone(), 4)
        .unwrap()
        .subtract_by_key(&ctx.parallelize(right.clone(), 3).unwrap());
    assert_eq!(got.num_partitions(), 4);
    assert_eq!(sorted(got.collect().unwrap()), sorted(expected));

    let c = pairs(80, 45, 3);
    let d = pairs(10, 50, 4);
    let group = |v: &[(u64, u64)]| {
        let mut m: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for &(k, x) in v {
            m.entry(k).or_default().push(x);
        }
        m
    };
    let (gl, gr, gc, gd) = (group(&left), group(&right), group(&c), group(&d));
    let keys: BTreeSet<u64> = gl
        .keys()
        .chain(gr.keys())
        .chain(gc.keys())
        .copied()
        .collect();
    let get = |m: &BTreeMap<u64, Vec<u64>>, k| m.get(&k).cloned().unwrap_or_default();
    let (rl, rr, rc, rd) = (
        ctx.parallelize(left.clone(), 2).unwrap(),
        ctx.parallelize(right.clone(), 3).unwrap(),
        ctx.parallelize(c.clone(), 5).unwrap(),
        ctx.parallelize(d.clone(), 1).unwrap(),
    );
    let three = rl.cogroup3(&rr, &rc);
    assert_eq!(three.num_partitions(), 5);
    let mut got: Vec<_> = three
        .collect()
        .unwrap()
        .into_iter()
        .map(|(k, (x, y, z))| (k, (sorted(x), sorted(y), sorted(z))))
        .collect();
    got.sort();
    let expected: Vec<_> = keys
        .iter()
        .map(|&k| (k, (get(&gl, k), get(&gr, k), get(&gc, k))))
        .collect();
    assert_eq!(got, expected);

    let keys4: BTreeSet<u64> = keys.iter().chain(gd.keys()).copied().collect();
    let mut got: Vec<_> = rl
        .cogroup4(&rr, &rc, &rd)
        .collect()
        .unwrap()
        .into_iter()
        .map(|(k, (x, y, z, w))| (k, (sorted(x), sorted(y), sorted(z), sorted(w))))
        .collect();
    got.sort();
    let expected: Vec<_> = keys4
        .iter()
        .map(|&k| (k, (get(&gl, k), get(&gr, k), get(&gc, k), get(&gd, k))))
        .collect();
    assert_eq!(got, expected);
}

fn sampling(ctx: &Context) {
    let data: Vec<u64> = (0..1000).collect();
    let r = ctx.parallelize(data.clone(), 4).unwrap();
    let s = r.take_sample(false, 50, 7).unwrap();
    assert_eq!(s.len(), 50);
    assert_eq!(s.iter().collect::<HashSet<_>>().len(), 50, "no duplicates");
    assert!(s.iter().all(|x| *x < 1000));
    assert_eq!(
        s,
        r.take_sample(false, 50, 7).unwrap(),
        "same seed, same sample"
    );
    assert_ne!(s, r.take_sample(false, 50, 8).unwrap());
    let all = r.take_sample(false, 5000, 1).unwrap();
    assert_eq!(sorted(all.clone()), data, "every record once");
    assert_ne!(all, data, "shuffled");
    let with = r.take_sample(true, 1500, 3).unwrap();
    assert_eq!(with.len(), 1500);
    assert!(with.iter().collect::<HashSet<_>>().len() < 1500, "repeats");
    assert!(r.take_sample(false, 0, 1).unwrap().is_empty());

    let splits = r.random_split(&[1.0, 2.0, 3.0], 11).unwrap();
    let parts: Vec<Vec<u64>> = splits.iter().map(|s| s.collect().unwrap()).collect();
    let mut union: Vec<u64> = parts.concat();
    union.sort();
    assert_eq!(union, data, "disjoint and complete");
    for (p, w) in parts.iter().zip([1.0, 2.0, 3.0]) {
        let expected = 1000.0 * w / 6.0;
        assert!(
            (p.len() as f64 - expected).abs() < 60.0,
            "{} records for weight {w}",
            p.len()
        );
    }
    assert!(r.random_split(&[1.0, -1.0], 1).is_err());
    assert!(r.random_split(&[0.0, 0.0], 1).is_err());
    assert!(r.random_split(&[], 1).is_err());
}

fn sorting(ctx: &Context) {
    let data = pairs(300, 40, 5);
    let r = ctx.parallelize(data.clone(), 3).unwrap();
    let p = Partitioner::Hash(4);
    let parts = r
        .repartition_and_sort_within_partitions(p.clone())
        .glom()
        .collect()
        .unwrap();
    assert_eq!(parts.len(), 4);
    for (i, part) in parts.iter().enumerate() {
        assert!(
            part.windows(2).all(|w| w[0].0 <= w[1].0),
            "partition {i} sorted"
        );
        assert!(part.iter().all(|(k, _)| p.partition(k) == i));
    }
    assert_eq!(sorted(parts.concat()), sorted(data.clone()));

    let by_key = r.sort_by_key(true, 3).unwrap();
    let got = by_key.filter_by_range(10, 20).collect().unwrap();
    let expected: Vec<u64> = sorted(
        data.iter()
            .filter(|(k, _)| (10..=20).contains(k))
            .map(|p| p.0)
            .collect(),
    );
    assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), expected);

    let nums: Vec<u64> = (0..100).collect();
    let got = ctx
        .parallelize(nums.clone(), 4)
        .unwrap()
        .sort_by_with(7u64, |m: &u64, x: &u64| (x % m, *x), true, 3)
        .unwrap()
        .collect()
        .unwrap();
    let mut expected = nums;
    expected.sort_by_key(|x| (x % 7, *x));
    assert_eq!(got, expected);
}

fn with_env(ctx: &Context) {
    let data = pairs(200, 10, 9);
    let r = ctx.parallelize(data.clone(), 3).unwrap();
    let got = r
        .map_values_with(5u64, |m: &u64, v: u64| v * m)
        .collect()
        .unwrap();
    let expected: Vec<(u64, u64)> = data.iter().map(|&(k, v)| (k, v * 5)).collect();
    assert_eq!(got, expected);

    let got = r
        .reduce_by_key_with(1000u64, |m: &u64, a: u64, b: u64| (a + b) % m)
        .collect_as_map()
        .unwrap();
    let mut expected = std::collections::HashMap::new();
    for &(k, v) in &data {
        let e = expected.entry(k).or_insert(0u64);
        *e = (*e + v) % 1000;
    }
    // Reduction mod m is associative, so the order of combining is free.
    assert_eq!(got, expected);

    let keyed = r
        .values()
        .key_by_with(3u64, |m: &u64, v: &u64| v % m)
        .collect()
        .unwrap();
    assert_eq!(
        keyed,
        data.iter().map(|&(_, v)| (v % 3, v)).collect::<Vec<_>>()
    );

    let sums = r
        .values()
        .map_partitions_with(2u64, |m: &u64, it: BoxIter<u64>| {
            std::iter::once(it.map(|v| v * m).sum::<u64>())
        })
        .collect()
        .unwrap();
    let expected: Vec<u64> = slices(&data, 3)
        .iter()
        .map(|s| s.iter().map(|p| p.1 * 2).sum())
        .collect();
    assert_eq!(sums, expected);
}

fn trees_and_actions(ctx: &Context) {
    let data: Vec<u64> = (1..=1000).collect();
    let r = ctx.parallelize(data.clone(), 37).unwrap();
    for depth in 1..=4 {
        let sum = r
            .tree_aggregate(0u64, |a: u64, x: u64| a + x, |a: u64, b: u64| a + b, depth)
            .unwrap();
        assert_eq!(sum, 500_500, "depth {depth}");
        // A non-commutative combine shows every partial is merged once.
        let count = r
            .tree_aggregate(
                Vec::<u64>::new(),
                |mut a: Vec<u64>, x: u64| {
                    a.push(x);
                    a
                },
                |mut a: Vec<u64>, b: Vec<u64>| {
                    a.extend(b);
                    a
                },
                depth,
            )
            .unwrap();
        assert_eq!(sorted(count), data, "depth {depth}");
    }
    assert_eq!(
        r.tree_reduce(|a: u64, b: u64| a.max(b), 3).unwrap(),
        Some(1000)
    );
    let e = err_text(r.tree_reduce(|a: u64, b: u64| a + b, 0));
    assert!(e.contains("depth"), "{e}");
    let none = r.filter(|x: &u64| *x > 5000);
    assert_eq!(none.tree_reduce(|a: u64, b: u64| a + b, 2).unwrap(), None);

    // One job per partition, each run only when the iterator reaches it.
    let before = ctx.job_reports().len();
    let mut it = r.to_local_iterator();
    assert_eq!(ctx.job_reports().len(), before, "lazy");
    assert_eq!(it.next().unwrap().unwrap(), 1);
    assert_eq!(ctx.job_reports().len(), before + 1);
    let rest: Vec<u64> = it.map(|x| x.unwrap()).collect();
    assert_eq!(rest, data[1..].to_vec());
    assert_eq!(ctx.job_reports().len(), before + 37);
    let failing = ctx.parallelize(vec![1u64, 2, 3], 3).unwrap().map(|x: u64| {
        if x == 2 {
            panic!("record two is bad")
        } else {
            x
        }
    });
    let got: Vec<_> = failing.to_local_iterator().collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].as_ref().unwrap(), &1);
    assert!(got[1]
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("record two"));

    assert!(!r.is_empty().unwrap());
    assert!(none.is_empty().unwrap());
    assert_eq!(r.min().unwrap(), Some(1));
    assert_eq!(r.max().unwrap(), Some(1000));
    assert_eq!(none.min().unwrap(), None);
    let floats = ctx
        .parallelize(vec![2.5, f64::NAN, -1.0, 7.0, f64::NAN], 2)
        .unwrap();
    assert_eq!(floats.min().unwrap(), Some(-1.0));
    assert_eq!(floats.max().unwrap(), Some(7.0));

    let words: Vec<String> = ["kiwi", "fig", "banana", "apple", "cherry", "date"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let w = ctx.parallelize(words.clone(), 3).unwrap();
    let by_len = |s: &String| (s.len(), s.clone());
    let mut expected = words.clone();
    expected.sort_by_key(by_len);
    assert_eq!(
        w.take_ordered_by(3, |s: &String| (s.len(), s.clone()))
            .unwrap(),
        expected[..3].to_vec()
    );
    expected.reverse();
    assert_eq!(
        w.top_by(2, |s: &String| (s.len(), s.clone())).unwrap(),
        expected[..2].to_vec()
    );
    assert!(w.top_by(0, |s: &String| s.len()).unwrap().is_empty());
}

fn numeric(ctx: &Context) {
    let mut g = Gen(42);
    let xs: Vec<f64> = (0..999)
        .map(|_| g.below(10_000) as f64 / 7.0 - 300.0)
        .collect();
    let r = ctx.parallelize(xs.clone(), 5).unwrap();
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let m2: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    let s = r.stats().unwrap();
    assert_eq!(s.count, xs.len() as u64);
    assert!((s.mean - mean).abs() < 1e-9);
    assert!((s.m2 - m2).abs() < 1e-6 * m2);
    assert_eq!(s.min, xs.iter().copied().fold(f64::INFINITY, f64::min));
    assert_eq!(s.max, xs.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    assert!(close(r.sum().unwrap(), xs.iter().sum()));
    assert!(close(r.mean().unwrap(), mean));
    assert!(close(r.variance().unwrap(), m2 / n));
    assert!(close(r.sample_variance().unwrap(), m2 / (n - 1.0)));
    assert!(close(r.stdev().unwrap(), (m2 / n).sqrt()));
    assert!(close(r.sample_stdev().unwrap(), (m2 / (n - 1.0)).sqrt()));
    let ints = ctx.parallelize(vec![1u32, 2, 3, 4], 3).unwrap();
    assert_eq!(ints.sum().unwrap(), 10.0);
    assert_eq!(ints.variance().unwrap(), 1.25);
    let empty = ctx.empty_rdd::<f64>();
    assert_eq!(empty.sum().unwrap(), 0.0);
    assert!(empty.variance().unwrap().is_nan());

    // Evenly spaced buckets: the maximum lands in the last, closed one.
    let (edges, counts) = r.histogram(4).unwrap();
    let (lo, hi) = (s.min, s.max);
    assert_eq!(edges.len(), 5);
    assert_eq!((edges[0], edges[4]), (lo, hi));
    let mut expected = [0u64; 4];
    for &x in &xs {
        let i = edges[1..].iter().position(|e| x < *e).unwrap_or(3);
        expected[i] += 1;
    }
    assert_eq!(counts, expected.to_vec());
    assert_eq!(counts.iter().sum::<u64>(), xs.len() as u64);

    let v = ctx
        .parallelize(vec![-5.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.0, 3.0, f64::NAN], 3)
        .unwrap();
    assert_eq!(
        v.histogram(vec![0.0, 1.0, 2.0]).unwrap().1,
        vec![2, 4],
        "[0,1) has 0 and 0.5; [1,2] has 1, 1.5, 2, 2"
    );
    assert_eq!(
        v.histogram(Buckets::Edges(vec![-10.0, 10.0])).unwrap().1,
        vec![8]
    );
    let same = ctx.parallelize(vec![3u8, 3, 3], 2).unwrap();
    assert_eq!(same.histogram(5).unwrap(), (vec![3.0, 3.0], vec![3]));
    assert!(v.histogram(vec![1.0, 0.0]).is_err());
    assert!(v.histogram(vec![1.0]).is_err());
    assert!(v.histogram(0).is_err());
    assert!(empty.histogram(3).is_err());
    let inf = ctx.parallelize(vec![1.0, f64::INFINITY], 1).unwrap();
    assert!(inf.histogram(2).is_err());

    // 6000 distinct among 30000 records.
    let d = ctx
        .range(0, 30_000, 1, 6)
        .unwrap()
        .map(|x: i64| (x * 7919) % 6000);
    for sd in [0.05, 0.02] {
        let est = d.count_approx_distinct(sd).unwrap() as f64;
        assert!((est - 6000.0).abs() / 6000.0 < 3.0 * sd, "sd {sd}: {est}");
    }
    assert!(d.count_approx_distinct(0.0).is_err());
}

fn object_files(ctx: &Context, dir: &Path) {
    let data: Vec<(u64, String)> = (0..3000).map(|i| (i, format!("record {i}"))).collect();
    let out = dir.join("objects");
    ctx.parallelize(data.clone(), 3)
        .unwrap()
        .save_as_object_file(&out)
        .unwrap();
    assert!(out.join("_SUCCESS").exists());
    let back = ctx.object_file::<(u64, String)>(&out).unwrap();
    assert_eq!(back.num_partitions(), 3);
    assert_eq!(back.collect().unwrap(), data);
    let one = ctx
        .object_file::<(u64, String)>(out.join("part-00001"))
        .unwrap();
    assert_eq!(one.collect().unwrap(), data[1000..2000].to_vec());
    let e = err_text(
        ctx.parallelize(vec![1u8], 1)
            .unwrap()
            .save_as_object_file(&out),
    );
    assert!(e.contains("already exists"), "{e}");

    let e = err_text(ctx.object_file::<(u64, u64)>(&out).unwrap().collect());
    assert!(
        e.contains("part-0000") && e.contains("holds records of type"),
        "{e}"
    );

    let bad = dir.join("corrupt");
    ctx.parallelize(data.clone(), 2)
        .unwrap()
        .save_as_object_file(&bad)
        .unwrap();
    let victim = bad.join("part-00001");
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0x55;
    std::fs::write(&victim, bytes).unwrap();
    let e = err_text(ctx.object_file::<(u64, String)>(&bad).unwrap().collect());
    assert!(e.contains("part-00001") && e.contains("corrupt"), "{e}");
    std::fs::write(bad.join("part-00000"), b"not an object file at all").unwrap();
    let e = err_text(
        ctx.object_file::<(u64, String)>(bad.join("part-00000"))
            .unwrap()
            .count(),
    );
    assert!(
        e.contains("part-00000") && e.contains("not an object file"),
        "{e}"
    );
}

fn gzip(path: &Path, text: &str) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap();
}

fn text_files(ctx: &Context, dir: &Path) {
    let d = dir.join("texts");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("a.txt"), "a1\na2\n").unwrap();
    std::fs::write(d.join("b.txt"), "b1\nb2\nb3").unwrap();
    std::fs::write(d.join("c.log"), "c1\n").unwrap();
    std::fs::write(d.join("_hidden.txt"), "h\n").unwrap();
    let big: String = (0..5000).map(|i| format!("gz line {i}\n")).collect();
    gzip(&d.join("d.txt.gz"), &big);

    let lines = ctx
        .text_file(d.join("*.txt"), 0)
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(lines, vec!["a1", "a2", "b1", "b2", "b3"]);
    let lines = ctx.text_file(d.join("?.t*"), 4).unwrap().collect().unwrap();
    let gz_lines: Vec<String> = big.lines().map(String::from).collect();
    let mut expected: Vec<String> = ["a1", "a2", "b1", "b2", "b3"].map(String::from).to_vec();
    expected.extend(gz_lines.clone());
    assert_eq!(lines, expected);
    let gz = ctx.text_file(d.join("d.txt.gz"), 8).unwrap();
    assert_eq!(gz.num_partitions(), 1, "a gzip file is not split");
    assert_eq!(gz.collect().unwrap(), gz_lines);
    let e = err_text(ctx.text_file(d.join("*.csv"), 0));
    assert!(e.contains("*.csv") && e.contains("matches no files"), "{e}");
    // A gzip file cut short fails the task naming the file.
    let cut = dir.join("cut.gz");
    let full = std::fs::read(d.join("d.txt.gz")).unwrap();
    std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
    let e = err_text(ctx.text_file(&cut, 0).unwrap().count());
    assert!(e.contains("cut.gz"), "{e}");

    let whole: BTreeMap<String, String> = ctx
        .whole_text_files(&d, 2)
        .unwrap()
        .collect()
        .unwrap()
        .into_iter()
        .map(|(p, t)| {
            let name = Path::new(&p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            (name, t)
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        ("a.txt", "a1\na2\n".to_string()),
        ("b.txt", "b1\nb2\nb3".to_string()),
        ("c.log", "c1\n".to_string()),
        ("d.txt.gz", big.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(whole, expected);
    assert_eq!(
        ctx.whole_text_files(d.join("*.log"), 0)
            .unwrap()
            .count()
            .unwrap(),
        1
    );
}

fn empty(ctx: &Context) {
    let e = ctx.empty_rdd::<(u64, u64)>();
    assert_eq!(e.num_partitions(), 0);
    assert_eq!(e.count().unwrap(), 0);
    assert!(e.collect().unwrap().is_empty());
    assert!(e.is_empty().unwrap());
    assert!(e.reduce_by_key(|a, b| a + b).collect().unwrap().is_empty());
    let other = ctx.parallelize(vec![(1u64, 2u64)], 2).unwrap();
    assert_eq!(e.union(&other).collect().unwrap(), vec![(1, 2)]);
    assert_eq!(other.subtract_by_key(&e).collect().unwrap(), vec![(1, 2)]);
    assert_eq!(
        e.tree_aggregate(7u64, |a, _| a, |a, b| a + b, 2).unwrap(),
        7
    );
}

fn pipes(ctx: &Context) {
    let words: Vec<String> = (0..50).map(|i| format!("word{i}")).collect();
    let r = ctx.parallelize(words.clone(), 3).unwrap();
    let upper = r.pipe(&["tr", "a-z", "A-Z"]).collect().unwrap();
    assert_eq!(
        upper,
        words.iter().map(|w| w.to_uppercase()).collect::<Vec<_>>()
    );
    // One process per partition: `wc -l` prints each partition's size.
    let counts: Vec<usize> = r
        .pipe(&["wc", "-l"])
        .collect()
        .unwrap()
        .iter()
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert_eq!(
        counts,
        slices(&words, 3).iter().map(Vec::len).collect::<Vec<_>>()
    );
    let e = err_text(
        r.pipe(&[
            "sh",
            "-c",
            "cat >/dev/null; echo broken pipeline >&2; exit 3",
        ])
        .collect(),
    );
    assert!(
        e.contains("\"sh\"") && e.contains("exit status: 3") && e.contains("broken pipeline"),
        "{e}"
    );
    let e = err_text(r.pipe(&["/no/such/program-ember"]).collect());
    assert!(
        e.contains("/no/such/program-ember") && e.contains("cannot start"),
        "{e}"
    );
    // A command that stops reading early is fine if it exits 0.
    let heads = ctx
        .range(0, 200_000, 1, 1)
        .unwrap()
        .pipe(&["head", "-n", "2"])
        .collect()
        .unwrap();
    assert_eq!(heads, vec!["0", "1"]);
}

fn run_all(master: &str) {
    let ctx = context(master);
    let dir = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    zips(&ctx);
    set_ops(&ctx);
    sampling(&ctx);
    sorting(&ctx);
    with_env(&ctx);
    trees_and_actions(&ctx);
    numeric(&ctx);
    object_files(&ctx, dir.path());
    text_files(&ctx, dir.path());
    empty(&ctx);
    pipes(&ctx);
    eprintln!("{master}: every check passed in {:?}", start.elapsed());
}

#[test]
fn everyday_api_in_local_mode() {
    run_all("local[4]");
}

#[test]
fn everyday_api_in_local_cluster_mode() {
    run_all("local-cluster[2,1,512]");
}
