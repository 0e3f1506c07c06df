//! PageRank benchmark, Ember side: Spark's `SparkPageRank` on a generated
//! edge list (see [`ember_examples::bench_input`]), timed end to end
//! (context start, reading the file, the iterations, collecting the ranks,
//! context stop). `scripts/bench_pagerank.sh` runs it beside PySpark's
//! `pagerank.py` and a single-threaded Rust loop (`pagerank_cost`) on the
//! same file and compares the three.
//!
//! The job, as `SparkPageRank` writes it: `links` = the distinct
//! `(src, dst)` edges grouped by source, persisted; ranks start at 1.0 for
//! every page with out-links; each iteration every page with links and a
//! rank sends rank / out-degree to each of its links
//! (`links.join(ranks)`), and the new ranks are the sums per receiving
//! page mapped to 0.15 + 0.85 · sum. Pages that receive nothing drop out of
//! the ranks; pages without out-links keep their rank but pass nothing on.
//! Node ids are parsed as `u64` (Spark's example keeps them as strings:
//! the ranks are the same).
//!
//! Every shuffle after reading uses one hash partitioner of `--partitions`
//! partitions (`group_by_key_into`, `reduce_by_key_into`) and the ranks are
//! only ever changed by `map_values`, so `links` and `ranks` are
//! partitioned alike: once joins of co-partitioned inputs are narrow, each
//! iteration shuffles only the contributions, as in Spark.
//!
//! Prints one JSON object: per-run seconds, min and median, the result
//! (pages ranked, Σ ranks, the ten highest ranks), and the first run's job
//! report (seconds per stage, summed task time, shuffle volume) to show
//! where the time goes.
//!
//! Usage: `cargo bench -p ember-examples --bench pagerank_ember -- [--quick]
//! [--data DIR] [--edges N] [--nodes N] [--seed N] [--master URL]
//! [--partitions N] [--iterations N] [--reps N] [--json FILE]
//! [--generate-only]`.

use clap::Parser;
use ember_driver::prelude::*;
use ember_driver::{JobReport, Result};
use ember_examples::bench_input::{edge_list, GraphSpec};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "PageRank (SparkPageRank) on a generated edge list, timed")]
struct Cli {
    /// Small graph (200,000 edges), for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Master URL.
    #[arg(long, default_value = "local[2]")]
    master: String,
    /// Folder of the generated edge list (reused when present).
    #[arg(long, default_value = "target/bench-data")]
    data: PathBuf,
    /// Edges of the generated graph [default: 10000000; --quick: 200000].
    #[arg(long)]
    edges: Option<u64>,
    /// Nodes of the generated graph [default: edges / 10].
    #[arg(long)]
    nodes: Option<u64>,
    /// Seed of the graph generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Partitions of the edges, links and ranks [default: the context's
    /// default parallelism].
    #[arg(long)]
    partitions: Option<usize>,
    /// PageRank iterations.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Timed runs, each with a fresh context.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Writes the JSON to this file too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only generate the edge list and print its path.
    #[arg(long)]
    generate_only: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Cli {
    fn spec(&self) -> GraphSpec {
        let edges = self
            .edges
            .unwrap_or(if self.quick { 200_000 } else { 10_000_000 });
        GraphSpec {
            edges,
            nodes: self.nodes.unwrap_or((edges / 10).max(1)),
            seed: self.seed,
        }
    }
}

/// Parses a `src dst` line; `None` for blank and `#` comment lines.
fn edge(line: String) -> Option<(u64, u64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut parts = line.split_whitespace();
    match (parts.next().map(str::parse), parts.next().map(str::parse)) {
        (Some(Ok(s)), Some(Ok(d))) => Some((s, d)),
        _ => panic!("malformed edge line {line:?}: expected `src dst` (integer ids)"),
    }
}

/// What one run computed.
struct Ranked {
    /// Pages with a rank after the last iteration.
    pages: usize,
    /// Σ ranks, in page order.
    sum: f64,
    /// The ten highest ranks (ties by page id).
    top: Vec<(u64, f64)>,
}

/// SparkPageRank on `path`: returns every page's rank.
fn page_rank(
    ctx: &Context,
    path: &std::path::Path,
    partitions: usize,
    iterations: usize,
) -> Result<Vec<(u64, f64)>> {
    let links = ctx
        .text_file(path, partitions)?
        .flat_map(edge)
        .distinct()
        .group_by_key_into(partitions)
        .persist(StorageLevel::MemoryOnly);
    let mut ranks = links.map_values(|_: Vec<u64>| 1.0f64);
    for _ in 0..iterations {
        let contribs = links
            .join(&ranks)
            .values()
            .flat_map(|(urls, rank): (Vec<u64>, f64)| {
                let share = rank / urls.len() as f64;
                urls.into_iter().map(move |u| (u, share))
            });
        ranks = contribs
            .reduce_by_key_into(|a, b| a + b, partitions)
            .map_values(|sum: f64| 0.15 + 0.85 * sum);
    }
    ranks.collect()
}

/// The summary the three contenders are compared on.
fn summarize(mut ranks: Vec<(u64, f64)>) -> Ranked {
    ranks.sort_by_key(|&(page, _)| page);
    let sum = ranks.iter().map(|&(_, r)| r).sum();
    let pages = ranks.len();
    ranks.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranks.truncate(10);
    Ranked {
        pages,
        sum,
        top: ranks,
    }
}

/// Seconds of one end-to-end run.
struct Timing {
    start_s: f64,
    job_s: f64,
    stop_s: f64,
}

impl Timing {
    fn e2e(&self) -> f64 {
        self.start_s + self.job_s + self.stop_s
    }
}

/// One end-to-end run on a fresh context.
struct Run {
    timing: Timing,
    ranked: Ranked,
    partitions: usize,
    /// The report of the run's only job.
    report: Option<JobReport>,
}

fn one_run(cli: &Cli, path: &std::path::Path) -> Result<Run> {
    let t0 = Instant::now();
    let ctx = Context::builder()
        .master(&cli.master)
        .app_name("bench-pagerank")
        .build()?;
    let start_s = t0.elapsed().as_secs_f64();
    let partitions = cli.partitions.unwrap_or(ctx.default_parallelism());
    let t1 = Instant::now();
    let ranks = page_rank(&ctx, path, partitions, cli.iterations)?;
    let job_s = t1.elapsed().as_secs_f64();
    let report = ctx.job_reports().pop();
    let t2 = Instant::now();
    ctx.stop();
    drop(ctx);
    let stop_s = t2.elapsed().as_secs_f64();
    Ok(Run {
        timing: Timing {
            start_s,
            job_s,
            stop_s,
        },
        ranked: summarize(ranks),
        partitions,
        report,
    })
}

/// The parts of a job report the comparison shows.
fn report_json(r: &JobReport) -> serde_json::Value {
    let m = &r.metrics;
    json!({
        "seconds": r.seconds,
        "stages": r.stages_run.len(),
        "tasks": r.tasks_launched,
        "task_s": m.run_micros as f64 / 1e6,
        "stage_s": r.stage_seconds.iter().map(|&(_, s)| s).collect::<Vec<_>>(),
        "shuffle_records_written": m.shuffle_records_written,
        "shuffle_bytes_written": m.shuffle_bytes_written,
        "spill_disk_bytes": m.spill_disk_bytes,
        "peak_execution_memory": m.peak_execution_memory,
        "summary": r.to_string(),
    })
}

fn run(cli: &Cli) -> Result<()> {
    let spec = cli.spec();
    let path =
        edge_list(&cli.data, spec).map_err(|e| EmberError::io(&cli.data, "generate edges", e))?;
    if cli.generate_only {
        println!("{}", path.display());
        return Ok(());
    }
    let mut runs: Vec<Run> = Vec::new();
    for rep in 0..cli.reps.max(1) {
        let run = one_run(cli, &path)?;
        eprintln!(
            "ember run {}: {:.3} s end to end ({:.3} s job), {} pages, rank sum {:.6}",
            rep + 1,
            run.timing.e2e(),
            run.timing.job_s,
            run.ranked.pages,
            run.ranked.sum
        );
        runs.push(run);
    }
    let first = &runs[0];
    let ranked = &first.ranked;
    let mut e2e: Vec<f64> = runs.iter().map(|r| r.timing.e2e()).collect();
    e2e.sort_by(f64::total_cmp);
    let report = json!({
        "engine": "ember",
        "master": cli.master,
        "partitions": first.partitions,
        "input": path.display().to_string(),
        "edges": spec.edges,
        "iterations": cli.iterations,
        "runs": runs.iter().map(|r| &r.timing).map(|t| json!({
            "start_s": t.start_s, "job_s": t.job_s, "stop_s": t.stop_s, "e2e_s": t.e2e(),
        })).collect::<Vec<_>>(),
        "e2e_s_min": e2e[0],
        "e2e_s_median": e2e[e2e.len() / 2],
        "pages": ranked.pages,
        "rank_sum": ranked.sum,
        "top": ranked.top.iter().map(|&(p, r)| json!([p, r])).collect::<Vec<_>>(),
        "job": first.report.as_ref().map(report_json),
    });
    let text = serde_json::to_string_pretty(&report).expect("JSON of plain values");
    println!("{text}");
    if let Some(file) = &cli.json {
        std::fs::write(file, text + "\n").map_err(|e| EmberError::io(file, "write", e))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pagerank bench: {e}");
            ExitCode::FAILURE
        }
    }
}
