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

/// [`small_memory`] with its local dir in `dir`, to look at the files.
fn small_memory_in(master: &str, dir: &std::path::Path) -> Context {
    Context::builder()
        .master(master)
        .conf("ember.executor.memory", "64m")
        .conf("ember.local.dir", dir.to_str().unwrap())
        .build()
        .unwrap()
}

#[test]
fn group_by_key_over_budget_spills_and_is_correct() {
    for master in ["local[2]", "local-cluster[2,1,64]"] {
        let start = std::time::Instant::now();
        let ctx = small_memory(master);
        // 2 M pairs of 16 bytes: each of the 2 reducers holds ~16 MB, over
        // the ~10 MiB budget even alone in its executor.
        let n = 2_000_000u64;
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
    let report = ctx.job_reports().pop().unwrap();
    let m = report.metrics.clone();
    assert!(
        m.spill_disk_bytes > 0 && m.peak_execution_memory > 0,
        "metrics {m:?}"
    );
    // The job summary the driver prints shows the same numbers.
    let summary = report.to_string();
    for part in [
        format!("{} tasks", report.tasks_launched),
        format!("shuffle write {} records", m.shuffle_records_written),
        format!("read {} records", m.shuffle_records_read),
        "spill ".to_string(),
        "peak execution memory".to_string(),
    ] {
        assert!(summary.contains(&part), "{part:?} missing from {summary}");
    }
    assert!(
        !summary.contains("spill 0 B in memory / 0 B on disk"),
        "{summary}"
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

/// A well-mixed 64-bit hash of `x` (splitmix64), so records compress
/// poorly and their shuffle output is as large as it looks.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Files under `dir` whose name starts with `prefix`, at any depth.
fn files_named(dir: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(files_named(&path, prefix));
        } else if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(path);
        }
    }
    found
}

/// A reduce partition's index, record count and hash of its records.
type Digest = (usize, u64, u64);

/// Per reduce partition: its index, record count, and a hash of its
/// records in the order they arrive (map order, then each map task's
/// order), so a reordering, loss or duplicate changes it. Also returns
/// the digested RDD: while it lives, its shuffle's map outputs are kept
/// (the cleaner removes them once it is dropped).
fn shuffle_digest(
    ctx: &Context,
) -> (
    Vec<Digest>,
    ember_driver::rdd::task::TaskMetrics,
    Rdd<Digest>,
) {
    let digested = ctx
        .range(0, 2_000_000, 1, 4)
        .unwrap()
        .map(|x| {
            let x = x as u64;
            (mix(x) % 10_007, [mix(x + 1), mix(x + 2), mix(x + 3), x])
        })
        .partition_by(Partitioner::Hash(3))
        .map_partitions_with_index(|p, it: BoxIter<(u64, [u64; 4])>| {
            let (mut n, mut h) = (0u64, 0u64);
            for (k, v) in it {
                n += 1;
                h = mix(h ^ k ^ v[0] ^ v[1].rotate_left(7) ^ v[2].rotate_left(13) ^ v[3]);
            }
            [(p, n, h)]
        });
    let digest = digested.collect().unwrap();
    let metrics = ctx.job_reports().last().unwrap().metrics.clone();
    (digest, metrics, digested)
}

#[test]
fn map_tasks_whose_output_exceeds_the_budget_spill_and_write_the_same_output() {
    // Reference: plenty of memory, nothing spills.
    let roomy = Context::builder()
        .master("local[2]")
        .conf("ember.executor.memory", "2g")
        .build()
        .unwrap();
    let (expected, m, _) = shuffle_digest(&roomy);
    roomy.stop();
    assert_eq!(m.spill_disk_bytes, 0, "{m:?}");
    assert_eq!(expected.iter().map(|d| d.1).sum::<u64>(), 2_000_000);
    // Each of the 4 map tasks writes about 23 MB of barely compressible
    // records; 64 MiB of executor memory leaves ~10 MiB of budget for
    // the two running at once.
    for master in ["local[2]", "local-cluster[2,1,64]"] {
        let local = tempfile::tempdir().unwrap();
        let ctx = small_memory_in(master, local.path());
        let (got, m, digested) = shuffle_digest(&ctx);
        assert_eq!(got, expected, "{master}");
        assert!(
            m.spill_disk_bytes > 0 && m.spill_memory_bytes > 0,
            "{master}: the map side should have spilled: {m:?}"
        );
        // The budget of 64m: (64m - 300m, at least 64m / 4) × 0.6.
        let budget = (64u64 << 20) / 4 / 10 * 6;
        assert!(
            m.shuffle_bytes_written > 3 * budget,
            "{master}: the map output should be several budgets: {m:?}"
        );
        // Spill files are gone once their task ended; the map outputs
        // are still there for later jobs while the RDD lives.
        assert_eq!(
            files_named(local.path(), "spill-"),
            Vec::<std::path::PathBuf>::new()
        );
        assert!(
            !files_named(local.path(), "shuffle_").is_empty(),
            "{master}"
        );
        drop(digested);
        ctx.stop();
    }
}

#[test]
fn map_groups_streams_each_key_in_arrival_order_while_spilling() {
    let ctx = small_memory("local[2]");
    let pairs = ctx
        .range(0, 600_000, 1, 4)
        .unwrap()
        .map(|x| ((mix(x as u64) % 500) as u32, x as u64));
    // Odd keys read only their first two values: the rest are skipped,
    // not handed to the next key.
    let mut got = pairs
        .map_groups_into(
            |k: &u32, values: &mut dyn Iterator<Item = u64>| {
                if k % 2 == 1 {
                    values.take(2).collect::<Vec<u64>>()
                } else {
                    let (mut n, mut h) = (0u64, 0u64);
                    for v in values {
                        n += 1;
                        h = mix(h ^ v);
                    }
                    vec![n, h]
                }
            },
            3,
        )
        .collect()
        .unwrap();
    let m = ctx.job_reports().last().unwrap().metrics.clone();
    assert!(m.spill_disk_bytes > 0, "expected a spill: {m:?}");
    got.sort();
    let mut expected = pairs
        .group_by_key_into(3)
        .map(|(k, vs): (u32, Vec<u64>)| {
            if k % 2 == 1 {
                (k, vs[..2].to_vec())
            } else {
                let h = vs.iter().fold(0u64, |h, v| mix(h ^ v));
                (k, vec![vs.len() as u64, h])
            }
        })
        .collect()
        .unwrap();
    expected.sort();
    assert_eq!(got.len(), 500);
    assert_eq!(got, expected);
}

/// Everything under `dir`, at any depth.
fn entries_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(entries_under(&path));
        }
        found.push(path);
    }
    found
}

#[test]
fn spill_shuffle_and_block_files_are_gone_when_the_application_ends() {
    for master in ["local[2]", "local-cluster[2,1,64]"] {
        let local = tempfile::tempdir().unwrap();
        let ctx = small_memory_in(master, local.path());
        let pairs = ctx
            .range(0, 600_000, 1, 4)
            .unwrap()
            .map(|x| ((x % 1000) as u64, [mix(x as u64), x as u64]))
            .persist(StorageLevel::DiskOnly);
        // Held until the end: a dropped RDD's shuffle files are removed
        // while the application runs.
        let grouped = pairs
            .group_by_key_into(2)
            .map_values(|vs: Vec<[u64; 2]>| vs.len());
        let groups = grouped.count().unwrap();
        assert_eq!(groups, 1000, "{master}");
        let m = ctx.job_reports().last().unwrap().metrics.clone();
        assert!(m.spill_disk_bytes > 0, "{master}: expected a spill: {m:?}");
        // While the application runs, its map outputs and cached blocks
        // are on disk under the local dir.
        let during = entries_under(local.path());
        assert!(
            during
                .iter()
                .any(|p| p.to_string_lossy().contains("shuffle_")),
            "{master}: {during:?}"
        );
        assert!(
            during
                .iter()
                .any(|p| p.to_string_lossy().contains("blocks")),
            "{master}: {during:?}"
        );
        ctx.stop();
        assert_eq!(
            entries_under(local.path()),
            Vec::<std::path::PathBuf>::new(),
            "{master}: files left after stop"
        );
    }
}

/// Every file under `dir` whose name ends with `suffix`.
fn files_ending(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_corrupted_shuffle_file_is_detected_and_its_map_output_recomputed() {
    let local = tempfile::tempdir().unwrap();
    let ctx = Context::builder()
        .master("local[2]")
        .conf("ember.local.dir", local.path().to_str().unwrap())
        .build()
        .unwrap();
    let sums = ctx
        .range(0, 200_000, 1, 4)
        .unwrap()
        .map(|x| (x % 1000, x))
        .reduce_by_key(|a, b| a + b);
    let mut clean = sums.collect().unwrap();
    clean.sort();
    // Flip bytes in the middle of every map output's data file: the
    // next job reuses the shuffle and reads them.
    let data = files_ending(local.path(), ".data");
    assert!(
        !data.is_empty(),
        "no shuffle data files under the local dir"
    );
    for f in &data {
        let mut bytes = std::fs::read(f).unwrap();
        let (mid, end) = (bytes.len() / 2, (bytes.len() / 2 + 8).min(bytes.len()));
        for b in &mut bytes[mid..end] {
            *b ^= 0x5A;
        }
        std::fs::write(f, bytes).unwrap();
    }
    let mut again = sums.collect().unwrap();
    again.sort();
    assert_eq!(
        again, clean,
        "corrupted shuffle data must never be returned"
    );
    let report = ctx.job_reports().pop().unwrap();
    assert!(
        report.tasks_failed > 0 && report.stages_run.len() >= 2,
        "the reducers' fetch failures rerun the map stage: {report:?}"
    );
}

#[test]
fn sources_report_the_records_and_bytes_they_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    let text: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&path, &text).unwrap();
    let ctx = Context::new("local[2]").unwrap();

    let lines = ctx.text_file(&path, 4).unwrap();
    assert!(lines.num_partitions() >= 4);
    assert_eq!(lines.count().unwrap(), 10_000);
    let m = ctx.job_reports().pop().unwrap().metrics;
    // Every split's lines, the one running past its end included.
    assert_eq!(
        (m.input_records, m.input_bytes),
        (10_000, text.len() as u64)
    );

    assert_eq!(ctx.range(0, 1000, 1, 3).unwrap().count().unwrap(), 1000);
    assert_eq!(ctx.job_reports().pop().unwrap().metrics.input_records, 1000);

    let plus_one = ctx
        .parallelize((0..500u32).collect(), 4)
        .unwrap()
        .map(|x| x + 1);
    assert_eq!(plus_one.count().unwrap(), 500);
    let report = ctx.job_reports().pop().unwrap();
    assert_eq!(report.metrics.input_records, 500);
    assert!(report.metrics.input_bytes > 0);
    assert!(report.to_string().contains("input 500 records"), "{report}");
}
