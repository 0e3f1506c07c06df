//! Aggregations that exceed their execution memory spill to disk and
//! still give the right answer.

use ember_driver::prelude::*;

fn small_memory(master: &str) -> Context {
    // 64 MiB per executor leaves about 10 MiB for execution and storage.
    Context::builder()
        .master(master)
        .conf("ember.executor.memory", "64m")
        .build()
        .unwrap()
}

#[test]
fn group_by_key_over_budget_spills_and_is_correct() {
    for master in ["local[2]", "local-cluster[2,1,64]"] {
        let start = std::time::Instant::now();
        let ctx = small_memory(master);
        let n = 600_000u64;
        let grouped = ctx
            .range(0, n as i64, 1, 4)
            .unwrap()
            .map(|x| ((x % 1000) as u64, x as u64))
            .group_by_key_into(2)
            .map_values(|vs: Vec<u64>| (vs.len() as u64, vs.iter().sum::<u64>()));
        let mut got = grouped.collect().unwrap();
        got.sort();
        assert_eq!(got.len(), 1000, "{master}");
        for (k, (count, sum)) in got {
            // Keys k, k + 1000, ..., k + 1000 (n/1000 - 1).
            let m = n / 1000;
            let expected = m * k + 1000 * m * (m - 1) / 2;
            assert_eq!((count, sum), (m, expected), "{master}: key {k}");
        }
        let m = ctx.job_reports().last().unwrap().metrics.clone();
        println!("{master}: {:?}", start.elapsed());
        assert!(
            m.spill_disk_bytes > 0,
            "{master}: expected a spill, metrics {m:?}"
        );
    }
}

#[test]
fn reduce_by_key_with_many_keys_spills_and_is_correct() {
    let ctx = small_memory("local[2]");
    let n = 1_000_000i64;
    let mut got = ctx
        .range(0, n, 1, 4)
        .unwrap()
        .map(|x| (x % 300_000, 1u64))
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap();
    got.sort();
    assert_eq!(got.len(), 300_000);
    assert!(got
        .iter()
        .all(|(k, c)| *c == if *k < n % 300_000 { 4 } else { 3 }));
    let m = ctx.job_reports().last().unwrap().metrics.clone();
    assert!(
        m.spill_disk_bytes > 0 && m.peak_execution_memory > 0,
        "metrics {m:?}"
    );
}

#[test]
fn one_key_holding_most_values_is_grouped_correctly_while_spilling() {
    let ctx = small_memory("local[2]");
    let grouped = ctx
        .range(0, 500_000, 1, 4)
        .unwrap()
        .map(|x| (if x % 50 == 0 { x } else { -1 }, x))
        .group_by_key_into(3)
        .filter(|(k, _): &(i64, Vec<i64>)| *k == -1)
        .map_values(|vs: Vec<i64>| (vs.len(), vs.iter().sum::<i64>()));
    let got = grouped.collect().unwrap();
    let expected: i64 = (0..500_000i64).filter(|x| x % 50 != 0).sum();
    assert_eq!(got, vec![(-1, (490_000, expected))]);
}

#[test]
fn sort_by_key_over_budget_spills_and_keeps_total_order() {
    let ctx = small_memory("local[2]");
    for ascending in [true, false] {
        let sorted = ctx
            .range(0, 1_000_000, 1, 4)
            .unwrap()
            .map(|x| ((x * 7919) % 1_000_003, x))
            .sort_by_key(ascending, 2)
            .unwrap()
            .keys()
            .collect()
            .unwrap();
        // Each of the 2 sorting tasks holds more than the ~10 MiB budget.
        assert_eq!(sorted.len(), 1_000_000);
        assert!(sorted.windows(2).all(|w| if ascending {
            w[0] <= w[1]
        } else {
            w[0] >= w[1]
        }));
        let m = ctx.job_reports().last().unwrap().metrics.clone();
        assert!(m.spill_disk_bytes > 0, "expected a spill: {m:?}");
    }
}
