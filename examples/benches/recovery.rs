//! The cost of recovery: a multi-stage job on `local-cluster[3,1,M]` run
//! clean, then with one executor of the three killed (SIGKILL) part-way
//! through. Prints, per run with a loss, the extra seconds beside the
//! target: the lost executor's share of the work (a third of the clean
//! time) plus the time of the stage attempts rerun to recompute lost map
//! outputs.
//!
//! The job: `records` numbers hashed to words of a `vocabulary`, counted
//! (`reduce_by_key`), joined with a per-word weight table, and grouped by
//! count bucket (`group_by_key`); four shuffles, five stages. Input is made
//! inside the job, so no files are read.
//!
//! Usage: `cargo bench -p ember-examples --bench recovery -- [--quick]
//! [--records N] [--partitions N] [--memory MIB] [--runs N]
//! [--kill-at FRACTION]`.

use clap::Parser;
use ember_driver::prelude::*;
use ember_driver::{JobReport, Result};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Ember recovery benchmark: clean run vs one executor of three killed mid-job")]
struct Cli {
    /// Small sizes, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Records of the job [default: 8000000; --quick: 1000000].
    #[arg(long)]
    records: Option<u64>,
    /// Distinct words.
    #[arg(long, default_value_t = 200_000)]
    vocabulary: u64,
    /// Partitions of the input and of each shuffle.
    #[arg(long, default_value_t = 12)]
    partitions: usize,
    /// Memory per executor, MiB (the M of local-cluster[3,1,M]).
    #[arg(long, default_value_t = 1024)]
    memory: usize,
    /// Clean runs and runs with a loss, each.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// When to kill, as a fraction of the clean run's median time.
    #[arg(long, default_value_t = 0.5)]
    kill_at: f64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A fixed multiplicative hash (the same in every process).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Word of record `x`: skewed towards small ids (a word-frequency shape).
fn word_of(vocabulary: &u64, x: i64) -> (u64, u64) {
    let h = mix(x as u64);
    let range = 1 + (h >> 32) % vocabulary;
    ((h & 0xffff_ffff) % range, 1)
}

/// (buckets, Σ words per bucket, checksum): what the job returns.
type Summary = (usize, u64, u64);

/// Word count, joined with word weights, grouped by count bucket.
fn job(ctx: &Context, records: u64, vocabulary: u64, partitions: usize) -> Result<Summary> {
    let counts = ctx
        .range(0, records as i64, 1, partitions)?
        .map_with(vocabulary, word_of)
        .reduce_by_key_into(|a, b| a + b, partitions);
    let weights = ctx
        .range(0, vocabulary as i64, 1, partitions)?
        .map(|w: i64| (w as u64, mix(w as u64) % 1000));
    let buckets = counts
        .join(&weights)
        .map(|(w, (c, weight)): (u64, (u64, u64))| (c % 97, w.wrapping_mul(weight)))
        .group_by_key_into(partitions)
        .map_values(|v: Vec<u64>| {
            (
                v.len() as u64,
                v.iter().fold(0u64, |a, b| a.wrapping_add(mix(*b))),
            )
        })
        .collect()?;
    let words = buckets.iter().map(|(_, (n, _))| n).sum();
    let checksum = buckets
        .iter()
        .fold(0u64, |a, (k, (_, s))| a.wrapping_add(mix(*k) ^ s));
    Ok((buckets.len(), words, checksum))
}

fn context(memory: usize) -> Result<Context> {
    Context::builder()
        .master(&format!("local-cluster[3,1,{memory}]"))
        .conf("ember.ui.enabled", "false")
        .conf("ember.ui.showConsoleProgress", "false")
        .build()
}

/// Seconds of stage attempts that repeat a stage of the job (the stages
/// resubmitted to recompute lost outputs).
fn rerun_seconds(report: &JobReport) -> f64 {
    let mut seen = HashMap::new();
    report
        .stage_seconds
        .iter()
        .filter(|(id, _)| {
            let n = seen.entry(*id).or_insert(0);
            *n += 1;
            *n > 1
        })
        .map(|(_, s)| s)
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("recovery bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark; whether every run with a loss gave the clean
/// result.
fn run(cli: &Cli) -> Result<bool> {
    let records = cli
        .records
        .unwrap_or(if cli.quick { 1_000_000 } else { 8_000_000 });
    let runs = cli.runs.max(1);
    let (v, p, m) = (cli.vocabulary, cli.partitions, cli.memory);
    println!(
        "recovery: {records} records, {v} words, {p} partitions, local-cluster[3,1,{m}], {runs} runs each"
    );

    let mut clean = Vec::new();
    let mut expected = None;
    for _ in 0..runs {
        let ctx = context(m)?;
        let start = Instant::now();
        let out = job(&ctx, records, v, p)?;
        clean.push(start.elapsed().as_secs_f64());
        if *expected.get_or_insert(out) != out {
            eprintln!("clean runs disagree: {expected:?} vs {out:?}");
            return Ok(false);
        }
    }
    let clean_s = median(clean.clone());
    println!("clean runs (s): {clean:.3?}; median {clean_s:.3}");
    let kill_after = Duration::from_secs_f64(clean_s * cli.kill_at);

    println!();
    println!(
        "{:>3} {:>8} {:>10} {:>8} {:>11} {:>9} {:>8} {:>7}  stages run",
        "run", "clean s", "w/ loss s", "extra s", "lost 1/3 s", "rerun s", "target", "within"
    );
    let mut all_correct = true;
    for i in 0..runs {
        let ctx = context(m)?;
        let pids = ctx.executor_pids();
        let (_, victim) = pids[i % pids.len()];
        let start = Instant::now();
        let (out, killed) = std::thread::scope(|s| {
            let killer = s.spawn(|| {
                std::thread::sleep(kill_after); // the chosen moment of the job
                std::process::Command::new("kill")
                    .args(["-9", &victim.to_string()])
                    .status()
                    .map(|st| st.success())
                    .unwrap_or(false)
                    .then(|| start.elapsed().as_secs_f64())
            });
            let out = job(&ctx, records, v, p);
            let end = start.elapsed().as_secs_f64();
            (out.map(|o| (o, end)), killer.join().unwrap_or(None))
        });
        let (out, loss_s) = out?;
        let report = ctx.job_reports().pop().unwrap_or_default();
        let correct = Some(out) == expected;
        all_correct &= correct;
        let extra = loss_s - clean_s;
        let share = clean_s / 3.0;
        let rerun = rerun_seconds(&report);
        let target = share + rerun;
        let within = if killed.is_some_and(|k| k < loss_s) {
            if extra <= target {
                "yes"
            } else {
                "no"
            }
        } else {
            "no kill"
        };
        println!(
            "{i:>3} {clean_s:>8.3} {loss_s:>10.3} {extra:>8.3} {share:>11.3} {rerun:>9.3} {target:>8.3} {within:>7}  {:?}{}",
            report.stages_run.iter().map(|s| s.0).collect::<Vec<_>>(),
            if correct { "" } else { "  WRONG RESULT" }
        );
    }
    println!();
    println!(
        "kill at {:.0}% of the clean median ({:.3}s); target = lost executor's share (clean/3) + rerun stage attempts",
        cli.kill_at * 100.0,
        kill_after.as_secs_f64()
    );
    Ok(all_correct)
}
