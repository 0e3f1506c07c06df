//! PageRank benchmark, the "COST" baseline (McSherry, Isard and Murray,
//! *Scalability! But at what COST?*, HotOS 2015): one thread, no engine,
//! the edge list read into arrays (compressed sparse rows) and the same
//! iterations as Spark's `SparkPageRank` (see `benches/pagerank_ember.rs`), so
//! the engine has to beat a plain loop on the same machine to earn its
//! parallelism. `scripts/bench_pagerank.sh` runs it beside Ember and
//! PySpark on the same file.
//!
//! Same semantics as SparkPageRank, exactly: duplicate edges count once;
//! ranks start at 1.0 for the pages with out-links; each iteration a page
//! with out-links and a rank sends rank / out-degree to each link; a page
//! has a rank after the iteration only if it received something, and that
//! rank is 0.15 + 0.85 · received. Node ids must be integers below 2³²
//! (arrays are indexed by id, up to the largest id in the file).
//!
//! Reports, per run, the seconds to read and build the arrays (reading the
//! file included), the seconds of the iterations, and their total; prints
//! one JSON object with the result (pages ranked, Σ ranks in page order,
//! the ten highest ranks).
//!
//! Usage: `cargo bench -p ember-examples --bench pagerank_cost -- EDGES
//! [--iterations N] [--reps N] [--json FILE]`.

use clap::Parser;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Single-threaded PageRank (SparkPageRank semantics) over an edge list")]
struct Cli {
    /// Edge list: one `src dst` pair of integer ids per line, `#` comments.
    edges: PathBuf,
    /// PageRank iterations.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Timed runs (each reads the file again).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Writes the JSON to this file too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The graph as compressed sparse rows: the distinct links of page `p` are
/// `targets[offsets[p]..offsets[p + 1]]`.
struct Graph {
    offsets: Vec<usize>,
    targets: Vec<u32>,
}

impl Graph {
    fn pages(&self) -> usize {
        self.offsets.len() - 1
    }

    fn links(&self, page: usize) -> &[u32] {
        &self.targets[self.offsets[page]..self.offsets[page + 1]]
    }
}

/// Parses a non-negative decimal id below 2³².
fn id(field: &[u8], line: usize) -> Result<u32, String> {
    let mut v: u64 = 0;
    if field.is_empty() || field.len() > 10 {
        return Err(format!(
            "line {line}: bad node id {:?}",
            field.escape_ascii()
        ));
    }
    for &b in field {
        if !b.is_ascii_digit() {
            return Err(format!(
                "line {line}: bad node id {:?}",
                field.escape_ascii()
            ));
        }
        v = v * 10 + (b - b'0') as u64;
    }
    u32::try_from(v).map_err(|_| format!("line {line}: node id {v} is 2^32 or more"))
}

/// Reads the edge list at `path` into CSR form with duplicate edges
/// removed: a counting sort by source, then each row sorted and deduplicated.
fn read_graph(path: &Path) -> Result<Graph, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut edges: Vec<(u32, u32)> = Vec::with_capacity(bytes.len() / 12);
    let mut max_id = 0u32;
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = raw.trim_ascii();
        if line.is_empty() || line[0] == b'#' {
            continue;
        }
        let mut fields = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let (Some(s), Some(d)) = (fields.next(), fields.next()) else {
            return Err(format!("line {}: expected `src dst`", i + 1));
        };
        let (s, d) = (id(s, i + 1)?, id(d, i + 1)?);
        max_id = max_id.max(s).max(d);
        edges.push((s, d));
    }
    let pages = if edges.is_empty() {
        0
    } else {
        max_id as usize + 1
    };
    let mut offsets = vec![0usize; pages + 1];
    for &(s, _) in &edges {
        offsets[s as usize + 1] += 1;
    }
    for p in 0..pages {
        offsets[p + 1] += offsets[p];
    }
    let mut fill = offsets.clone();
    let mut targets = vec![0u32; edges.len()];
    for &(s, d) in &edges {
        targets[fill[s as usize]] = d;
        fill[s as usize] += 1;
    }
    drop(edges);
    // Sort and deduplicate each row, compacting in place.
    let mut write = 0;
    let mut row_start = 0;
    for p in 0..pages {
        let row_end = offsets[p + 1];
        let row = &mut targets[row_start..row_end];
        row.sort_unstable();
        let mut kept = 0;
        for i in 0..row.len() {
            if i == 0 || row[i] != row[i - 1] {
                row[kept] = row[i];
                kept += 1;
            }
        }
        targets.copy_within(row_start..row_start + kept, write);
        offsets[p] = write;
        write += kept;
        row_start = row_end;
    }
    offsets[pages] = write;
    targets.truncate(write);
    Ok(Graph { offsets, targets })
}

/// `iterations` of SparkPageRank over `g`: `ranks[p]` is `Some` for the
/// pages that have a rank at the end.
fn page_rank(g: &Graph, iterations: usize) -> Vec<Option<f64>> {
    let n = g.pages();
    let mut ranks: Vec<Option<f64>> = (0..n)
        .map(|p| (!g.links(p).is_empty()).then_some(1.0))
        .collect();
    let mut received: Vec<Option<f64>> = vec![None; n];
    for _ in 0..iterations {
        received.fill(None);
        for (p, rank) in ranks.iter().enumerate() {
            let (Some(rank), links) = (rank, g.links(p)) else {
                continue;
            };
            if links.is_empty() {
                continue;
            }
            let share = rank / links.len() as f64;
            for &t in links {
                let r = &mut received[t as usize];
                *r = Some(r.unwrap_or(0.0) + share);
            }
        }
        for (rank, got) in ranks.iter_mut().zip(&received) {
            *rank = got.map(|sum| 0.15 + 0.85 * sum);
        }
    }
    ranks
}

/// Seconds of one run.
struct Timing {
    read_s: f64,
    compute_s: f64,
}

fn run(cli: &Cli) -> Result<(), String> {
    let mut runs = Vec::new();
    let mut result = None;
    for rep in 0..cli.reps.max(1) {
        let t0 = Instant::now();
        let graph = read_graph(&cli.edges)?;
        let read_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let ranks = page_rank(&graph, cli.iterations);
        let compute_s = t1.elapsed().as_secs_f64();
        eprintln!(
            "cost run {}: {:.3} s ({:.3} s read, {:.3} s compute)",
            rep + 1,
            read_s + compute_s,
            read_s,
            compute_s
        );
        runs.push(Timing { read_s, compute_s });
        result.get_or_insert(ranks);
    }
    let ranks = result.expect("at least one run");
    let sum: f64 = ranks.iter().flatten().sum();
    let mut ranked: Vec<(usize, f64)> = ranks
        .iter()
        .enumerate()
        .filter_map(|(p, r)| r.map(|r| (p, r)))
        .collect();
    let pages = ranked.len();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(10);
    let sorted = |f: fn(&Timing) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let total = sorted(|t| t.read_s + t.compute_s);
    let compute = sorted(|t| t.compute_s);
    let report = json!({
        "engine": "cost",
        "input": cli.edges.display().to_string(),
        "iterations": cli.iterations,
        "runs": runs.iter().map(|t| json!({
            "read_s": t.read_s, "compute_s": t.compute_s, "e2e_s": t.read_s + t.compute_s,
        })).collect::<Vec<_>>(),
        "e2e_s_min": total[0],
        "e2e_s_median": total[total.len() / 2],
        "compute_s_min": compute[0],
        "compute_s_median": compute[compute.len() / 2],
        "pages": pages,
        "rank_sum": sum,
        "top": ranked.iter().map(|&(p, r)| json!([p, r])).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&report).expect("JSON of plain values");
    println!("{text}");
    if let Some(file) = &cli.json {
        std::fs::write(file, text + "\n").map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pagerank_cost: {e}");
            ExitCode::FAILURE
        }
    }
}
