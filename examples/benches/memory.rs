//! Jobs over more data than the executor memory budget: `group_by_key`
//! and `sort_by_key` over records about 3x the budget (1.5 GiB against a
//! 512 MiB budget by default), each run with default settings except
//! that budget, and again with the default budget (enough memory). Each
//! run is a child process of this binary, so its peak resident set
//! (`VmHWM` of `/proc/self/status`) is its own; each case runs `--reps`
//! times (3), alternating the two budgets, and the table prints the
//! median wall time, the slowdown of the small budget against enough
//! memory (ratio of medians; target <= 1.5x), the largest peak RSS beside
//! the budget, the bytes spilled, and every run's time.
//!
//! Records: `(u64 key, [u64; 16] value)` (136 bytes in memory), made
//! inside the job from `range` with a fixed hash, so no input is read;
//! 1 M distinct keys. Results are checked to be equal across budgets.
//!
//! Usage: `cargo bench -p ember-examples --bench memory -- [--quick]
//! [--data-mb N] [--budget-mb N] [--reps N] [--only groupby,sort]`; the environment
//! variable `EMBER_MEMORY_BENCH_QUICK=1` is the same as `--quick`.

use clap::Parser;
use ember_driver::prelude::*;
use ember_driver::Result;
use std::process::{Command, ExitCode};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Ember memory benchmark: jobs over 3x the executor memory budget")]
struct Cli {
    /// Small sizes, for a quick run (also `EMBER_MEMORY_BENCH_QUICK=1`).
    #[arg(long)]
    quick: bool,
    /// In-memory size of the records, MiB [default: 1536; --quick: 384].
    #[arg(long)]
    data_mb: Option<u64>,
    /// Executor memory budget (storage + execution), MiB [default: 512;
    /// --quick: 128].
    #[arg(long)]
    budget_mb: Option<u64>,
    /// Runs of each case, alternating default and small budget; the table
    /// shows the median wall time and the largest peak RSS [default: 3;
    /// --quick: 1].
    #[arg(long)]
    reps: Option<usize>,
    /// Comma-separated jobs: groupby, sort.
    #[arg(long, default_value = "groupby,sort")]
    only: String,
    /// Runs one case and prints its measurements (used by the parent).
    #[arg(long, hide = true)]
    child: Option<String>,
    /// `ember.executor.memory` of the child; none: the default.
    #[arg(long, hide = true)]
    executor_memory: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Distinct keys.
const KEYS: u64 = 1_000_000;
/// Bytes of one record in memory.
const RECORD_BYTES: u64 = std::mem::size_of::<(u64, [u64; 16])>() as u64;
/// Partitions of the generated input.
const INPUT_PARTITIONS: usize = 16;

/// A fixed multiplicative hash (the same in every process).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Record `i`: a hashed key and 16 hashed words.
fn record(i: i64) -> (u64, [u64; 16]) {
    let i = i as u64;
    let mut v = [0u64; 16];
    for (j, w) in v.iter_mut().enumerate() {
        *w = mix(i * 16 + j as u64);
    }
    (mix(i) % KEYS, v)
}

/// The `ember.executor.memory` whose usable part is `budget` bytes:
/// usable = (memory - 300 MiB) × 0.6, as Spark computes it.
fn executor_memory_for(budget: u64) -> String {
    format!("{}m", ((budget >> 20) * 10).div_ceil(6) + 300)
}

/// What a child measured.
struct Measured {
    seconds: f64,
    spill_memory: u64,
    spill_disk: u64,
    peak_rss: u64,
    checksum: u64,
}

/// Runs `job` on `records` records with `executor_memory` (or the
/// default) and prints the measurements on one line.
fn child(job: &str, records: u64, executor_memory: Option<&str>) -> Result<()> {
    let mut builder = Context::builder().master("local[2]");
    if let Some(m) = executor_memory {
        builder = builder.conf("ember.executor.memory", m);
    }
    let ctx = builder.build()?;
    let start = Instant::now();
    let input = ctx
        .range(0, records as i64, 1, INPUT_PARTITIONS)?
        .map(record);
    let checksum = match job {
        "groupby" => input
            .group_by_key()
            .map(|(k, vs): (u64, Vec<[u64; 16]>)| {
                vs.iter()
                    .fold(k.wrapping_mul(vs.len() as u64), |h, v| h.wrapping_add(v[0]))
            })
            .fold(0u64, |a, b| a.wrapping_add(b))?,
        "sort" => input
            .sort_by_key(true, ctx.default_parallelism())?
            .map_partitions(|it: BoxIter<(u64, [u64; 16])>| {
                // Σ over records of key × (position-independent word),
                // and whether the partition is in order.
                let (mut sum, mut last, mut sorted) = (0u64, 0u64, true);
                for (k, v) in it {
                    sorted &= k >= last;
                    last = k;
                    sum = sum.wrapping_add(k.wrapping_mul(v[1]));
                }
                [if sorted { sum } else { u64::MAX }]
            })
            .collect()?
            .into_iter()
            .fold(
                0u64,
                |a, b| if b == u64::MAX { b } else { a.wrapping_add(b) },
            ),
        other => {
            return Err(EmberError::TaskFailed {
                message: format!("unknown job {other:?}"),
            })
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let mut spill = (0u64, 0u64);
    for r in ctx.job_reports() {
        spill.0 += r.metrics.spill_memory_bytes;
        spill.1 += r.metrics.spill_disk_bytes;
    }
    ctx.stop();
    println!(
        "MEASURED {seconds} {} {} {} {checksum}",
        spill.0,
        spill.1,
        vm_hwm()
    );
    Ok(())
}

/// Peak resident set of this process, bytes (0 where `/proc` is absent).
fn vm_hwm() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb << 10)
}

/// Runs one case in a child process.
fn run_case(job: &str, records: u64, executor_memory: Option<&str>) -> Result<Measured> {
    let exe = std::env::current_exe().map_err(|e| EmberError::io("bench binary", "locate", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(["--child", job, "--data-mb"])
        .arg((records * RECORD_BYTES).div_ceil(1 << 20).to_string());
    if let Some(m) = executor_memory {
        cmd.args(["--executor-memory", m]);
    }
    let out = cmd
        .output()
        .map_err(|e| EmberError::io("bench child", "run", e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MEASURED "))
        .filter(|_| out.status.success());
    let Some(line) = line else {
        return Err(EmberError::TaskFailed {
            message: format!(
                "{job} child failed ({}): {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    let bad = || EmberError::TaskFailed {
        message: format!("unreadable child output {line:?}"),
    };
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(bad);
    Ok(Measured {
        seconds: f.first().and_then(|v| v.parse().ok()).ok_or_else(bad)?,
        spill_memory: num(1)?,
        spill_disk: num(2)?,
        peak_rss: num(3)?,
        checksum: num(4)?,
    })
}

/// The runs of one case: median wall time, the largest peak RSS and
/// spill, and every wall time.
struct Summary {
    seconds: f64,
    peak_rss: u64,
    spill_memory: u64,
    spill_disk: u64,
    all_seconds: String,
}

impl Summary {
    fn of(runs: &[Measured]) -> Summary {
        let mut seconds: Vec<f64> = runs.iter().map(|m| m.seconds).collect();
        let all_seconds = seconds
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" ");
        seconds.sort_by(f64::total_cmp);
        // The middle run (the upper one of an even count).
        let median = seconds[seconds.len() / 2];
        let max = |f: fn(&Measured) -> u64| runs.iter().map(f).max().unwrap_or(0);
        Summary {
            seconds: median,
            peak_rss: max(|m| m.peak_rss),
            spill_memory: max(|m| m.spill_memory),
            spill_disk: max(|m| m.spill_disk),
            all_seconds,
        }
    }
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

fn run(cli: &Cli) -> Result<()> {
    let quick = cli.quick || std::env::var_os("EMBER_MEMORY_BENCH_QUICK").is_some();
    let data = cli.data_mb.unwrap_or(if quick { 384 } else { 1536 }) << 20;
    let records = data / RECORD_BYTES;
    if let Some(job) = &cli.child {
        return child(job, records, cli.executor_memory.as_deref());
    }
    let budget = cli.budget_mb.unwrap_or(if quick { 128 } else { 512 }) << 20;
    let small = executor_memory_for(budget);
    println!(
        "memory bench: local[2], {records} records of {RECORD_BYTES} B = {} MiB in memory, \
         {KEYS} keys; small budget {} MiB (ember.executor.memory={small}) vs the default",
        mib(records * RECORD_BYTES),
        mib(budget),
    );
    println!();
    println!(
        "{:<8} {:<16} {:>8} {:>9} {:>13} {:>11} {:>15} {:>14}   runs s",
        "job",
        "memory",
        "median s",
        "slowdown",
        "peak RSS MiB",
        "budget MiB",
        "spill mem MiB",
        "spill disk MiB"
    );
    let reps = cli.reps.unwrap_or(if quick { 1 } else { 3 }).max(1);
    for job in cli.only.split(',').map(str::trim).filter(|j| !j.is_empty()) {
        // Alternating the two budgets spreads any drift of the machine
        // over both sides of the ratio.
        let mut roomy_runs = Vec::new();
        let mut tight_runs = Vec::new();
        for _ in 0..reps {
            roomy_runs.push(run_case(job, records, None)?);
            tight_runs.push(run_case(job, records, Some(&small))?);
        }
        let checksum = roomy_runs[0].checksum;
        if let Some(other) = roomy_runs
            .iter()
            .chain(&tight_runs)
            .find(|m| m.checksum != checksum)
        {
            return Err(EmberError::TaskFailed {
                message: format!(
                    "{job}: results differ between runs ({checksum} vs {})",
                    other.checksum
                ),
            });
        }
        let roomy = Summary::of(&roomy_runs);
        let tight = Summary::of(&tight_runs);
        for (label, m, budget) in [
            ("default", &roomy, None),
            ("small budget", &tight, Some(budget)),
        ] {
            println!(
                "{:<8} {:<16} {:>8.2} {:>9} {:>13} {:>11} {:>15} {:>14}   {}",
                job,
                label,
                m.seconds,
                if budget.is_some() {
                    format!("{:.2}x", m.seconds / roomy.seconds)
                } else {
                    "1.00x".into()
                },
                mib(m.peak_rss),
                budget.map_or("(phys/2)".into(), |b| mib(b).to_string()),
                mib(m.spill_memory),
                mib(m.spill_disk),
                m.all_seconds,
            );
        }
    }
    println!();
    println!("target: slowdown <= 1.50x; the small-budget runs complete with default settings");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory bench: {e}");
            ExitCode::FAILURE
        }
    }
}
