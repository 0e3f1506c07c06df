//! Cleanup (Spark's ContextCleaner): an iterative driver program whose
//! every iteration makes a shuffle and a broadcast keeps its local dir and
//! its own memory bounded, because what no handle refers to any more is
//! removed; with reference tracking off, the same loop grows without
//! bound, so the measurement can tell. The driver's resident memory is
//! read from `/proc/self/status`: this file holds one test so nothing else
//! runs in the process.

use ember_driver::prelude::*;
use std::path::Path;

const NODES: usize = 5_000;
const OUT_DEGREE: usize = 4;

/// A `/proc/self/status` field in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb << 10
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

/// A fixed graph: node `i` links to `OUT_DEGREE` pseudo-random others.
fn links() -> Vec<(u32, Vec<u32>)> {
    (0..NODES as u64)
        .map(|i| {
            let dsts = (0..OUT_DEGREE as u64)
                .map(|k| ((i * 7919 + k * 104_729 + i * k * 31) % NODES as u64) as u32)
                .collect();
            (i as u32, dsts)
        })
        .collect()
}

/// What one run of the loop measured.
struct Growth {
    /// Bytes under the local dir after the first iteration.
    first_bytes: u64,
    /// The most bytes under the local dir after any iteration.
    max_bytes: u64,
    /// Resident memory of the driver after the warm-up iterations and at
    /// the end.
    rss_warm: u64,
    rss_end: u64,
    /// Ranks after the last iteration, to check the two runs agree.
    ranks: Vec<f64>,
}

/// `iterations` of PageRank with the ranks collected to the driver and
/// broadcast back each time: one shuffle and one broadcast per iteration,
/// each dropped when the next iteration starts.
fn run(tracking: bool, iterations: usize) -> Growth {
    let local = tempfile::tempdir().unwrap();
    let ctx = Context::builder()
        .master("local-cluster[2,1,512]")
        .conf("ember.local.dir", local.path().to_str().unwrap())
        .conf("ember.cleaner.referenceTracking", &tracking.to_string())
        .conf("ember.ui.enabled", "false")
        .conf("ember.ui.showConsoleProgress", "false")
        .build()
        .unwrap();
    let graph = ctx.parallelize(links(), 4).unwrap().cache();
    let mut ranks = vec![1.0f64; NODES];
    let (mut first_bytes, mut max_bytes, mut rss_warm) = (0, 0, 0);
    for i in 0..iterations {
        let bc = ctx.broadcast(ranks.clone()).unwrap();
        let sums = graph
            .flat_map_with(
                bc,
                |bc: &Broadcast<Vec<f64>>, (src, dsts): (u32, Vec<u32>)| {
                    let share = bc.value()[src as usize] / dsts.len() as f64;
                    dsts.into_iter().map(move |d| (d, share))
                },
            )
            .reduce_by_key(|a, b| a + b);
        // `sums` lives until the iteration ends, so its shuffle is on disk
        // when the local dir is measured.
        let collected = sums.collect().unwrap();
        ranks = vec![0.15; NODES];
        for (d, s) in collected {
            ranks[d as usize] = 0.15 + 0.85 * s;
        }
        let bytes = dir_bytes(local.path());
        if i == 0 {
            first_bytes = bytes;
        }
        if i == 9 {
            rss_warm = status_bytes("VmRSS:");
        }
        max_bytes = max_bytes.max(bytes);
    }
    let rss_end = status_bytes("VmRSS:");
    ctx.stop();
    Growth {
        first_bytes,
        max_bytes,
        rss_warm,
        rss_end,
        ranks,
    }
}

#[test]
fn an_iterative_job_keeps_its_disk_and_driver_memory_bounded() {
    let with = run(true, 300);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "tracking on, 300 iterations: local dir {:.2} MiB after one, at most {:.2} MiB; driver RSS {:.1} -> {:.1} MiB",
        mib(with.first_bytes),
        mib(with.max_bytes),
        mib(with.rss_warm),
        mib(with.rss_end)
    );
    assert!(
        with.first_bytes > 0,
        "the first iteration wrote shuffle files"
    );
    // The current shuffle plus those still being removed: a dropped
    // shuffle's removal waits for the job running then to release the
    // scheduler, and executors delete files after the driver asks. That lag
    // is a few iterations, whatever their number.
    assert!(
        with.max_bytes <= 6 * with.first_bytes,
        "local dir grew to {} bytes, {} after one iteration",
        with.max_bytes,
        with.first_bytes
    );
    // Each iteration's 40 KB broadcast (value and bytes) and its shuffle's
    // records: about 25 MiB over 290 iterations if kept.
    let growth = |g: &Growth| g.rss_end.saturating_sub(g.rss_warm);
    assert!(
        growth(&with) < 8 << 20,
        "driver RSS grew by {:.1} MiB over 290 iterations",
        mib(growth(&with))
    );

    let without = run(false, 300);
    println!(
        "tracking off, 300 iterations: local dir {:.2} MiB after one, {:.2} MiB at the end; driver RSS {:.1} -> {:.1} MiB",
        mib(without.first_bytes),
        mib(without.max_bytes),
        mib(without.rss_warm),
        mib(without.rss_end)
    );
    assert!(
        without.max_bytes > 10 * without.first_bytes,
        "without cleanup the files pile up ({} bytes, {} after one iteration), so the bound above can fail",
        without.max_bytes,
        without.first_bytes
    );
    assert!(
        growth(&without) >= 8 << 20,
        "without cleanup the driver keeps every broadcast ({:.1} MiB), so the bound above can fail",
        mib(growth(&without))
    );
    assert_eq!(with.ranks, without.ranks, "cleanup changes no result");
}
