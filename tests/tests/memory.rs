//! Peak memory of a job whose one key holds several times the execution
//! budget: the job runs in a child process (this test binary re-executed)
//! so that its peak resident set, read from `/proc/self/status`, is the
//! job's alone. The group is read with `map_groups`, which streams a
//! key's values from the merged spill runs; `group_by_key` hands each key
//! its values as one `Vec`, so it cannot stay under such a bound.

use ember_driver::prelude::*;
use std::process::Command;

/// Set in the child process.
const CHILD: &str = "EMBER_RSS_CHILD";

/// `ember.executor.memory`: its usable part, (727m - 300m) × 0.6, is a
/// budget of 256 MiB shared by storage and execution.
const EXECUTOR_MEMORY: &str = "727m";
const BUDGET: u64 = 256 << 20;

/// Values of 1024 `f32` (4 KiB in memory) for the one key: 5 × the
/// budget.
const FLOATS: usize = 1024;
const VALUES: u64 = 5 * BUDGET / (FLOATS as u64 * 4);

/// What the resident set may hold besides the budget: the binary, thread
/// stacks, decoded chunks of the merged runs, allocator slack. (Measured:
/// 229 MiB in all; the same job through `group_by_key`, whose values are
/// one `Vec` per key, peaked at 1362 MiB.)
const OVERHEAD: u64 = 200 << 20;

/// A well-mixed hash (splitmix64), so values compress poorly.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A `/proc/self/status` field in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable {line:?}"));
    kb << 10
}

/// The child: groups every value under one key and reads the group as a
/// stream, printing what it counted and its peak resident set.
fn child() {
    let ctx = Context::builder()
        .master("local[2]")
        .conf("ember.executor.memory", EXECUTOR_MEMORY)
        .build()
        .unwrap();
    let got = ctx
        .range(0, VALUES as i64, 1, 4)
        .unwrap()
        .map(|i| {
            let i = i as u64;
            let v: Vec<f32> = (0..FLOATS as u64)
                .map(|j| (mix(i * FLOATS as u64 + j) >> 40) as f32)
                .collect();
            (7u32, (i, v))
        })
        .map_groups_into(
            |_: &u32, values: &mut dyn Iterator<Item = (u64, Vec<f32>)>| {
                let (mut n, mut ids, mut floats) = (0u64, 0u64, 0u64);
                for (i, v) in values {
                    n += 1;
                    ids += i;
                    floats += v.len() as u64;
                }
                (n, ids, floats)
            },
            1,
        )
        .collect()
        .unwrap();
    let m = ctx.job_reports().last().unwrap().metrics.clone();
    ctx.stop();
    println!("RESULT {got:?}");
    println!("SPILL_DISK {}", m.spill_disk_bytes);
    println!("VMHWM {}", status_bytes("VmHWM:"));
}

#[test]
fn one_key_holding_5x_the_budget_streams_in_bounded_memory() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let name = "one_key_holding_5x_the_budget_streams_in_bounded_memory";
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> &str {
        stdout
            .lines()
            .find_map(|l| l.split_once(name).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .trim()
    };
    let n = VALUES;
    assert_eq!(
        field("RESULT "),
        format!(
            "{:?}",
            vec![(7u32, (n, n * (n - 1) / 2, n * FLOATS as u64))]
        )
    );
    let spilled: u64 = field("SPILL_DISK ").parse().unwrap();
    assert!(spilled > 0, "the group should have gone through disk");
    let peak: u64 = field("VMHWM ").parse().unwrap();
    println!(
        "peak RSS {} MiB for {} MiB of values under a {} MiB budget (spilled {} MiB)",
        peak >> 20,
        (VALUES * FLOATS as u64 * 4) >> 20,
        BUDGET >> 20,
        spilled >> 20
    );
    assert!(
        peak < BUDGET + OVERHEAD,
        "peak RSS {} MiB exceeds the budget ({} MiB) + {} MiB",
        peak >> 20,
        BUDGET >> 20,
        OVERHEAD >> 20
    );
}
