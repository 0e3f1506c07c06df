//! PageRank as in Spark's `SparkPageRank`: initial rank 1.0; each
//! iteration every page sends rank / out-degree to each out-link; the new
//! rank is 0.15 + 0.85 × what it received. Duplicate edges count once and
//! pages that receive nothing drop out. Prints `page<TAB>rank` by page.

use clap::Parser;
use ember_driver::{EmberError, Result};
use ember_examples::EngineArgs;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Ranks the pages of an edge list")]
struct Cli {
    #[command(flatten)]
    engine: EngineArgs,
    /// Number of iterations.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Edge list: one `src dst` pair per line, `#` comments.
    edges: PathBuf,
}

/// Parses `src dst`; `None` for blank and comment lines.
fn edge(path: &String, line: String) -> Option<(String, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(s), Some(d)) => Some((s.to_string(), d.to_string())),
        _ => panic!("{path}: malformed edge line {line:?}: expected `src dst`"),
    }
}

fn run(cli: &Cli) -> Result<()> {
    let ctx = cli.engine.context("pagerank")?;
    let path = cli.edges.display().to_string();
    let links = ctx
        .text_file(&cli.edges, 0)?
        .flat_map_with(path, |p: &String, line: String| edge(p, line))
        .distinct()
        .group_by_key()
        .cache();
    let mut ranks = links.map_values(|_| 1.0f64);
    for _ in 0..cli.iterations {
        let contribs = links
            .join(&ranks)
            .values()
            .flat_map(|(urls, rank): (Vec<String>, f64)| {
                let share = rank / urls.len() as f64;
                urls.into_iter().map(move |u| (u, share))
            });
        ranks = contribs
            .reduce_by_key(|a, b| a + b)
            .map_values(|sum| 0.15 + 0.85 * sum);
    }
    let sorted = ranks
        .sort_by_key(true, ctx.default_parallelism())?
        .collect()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (page, rank) in sorted {
        writeln!(out, "{page}\t{rank:.10}").map_err(|e| EmberError::io("stdout", "write", e))?;
    }
    out.flush()
        .map_err(|e| EmberError::io("stdout", "write", e))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pagerank: {e}");
            ExitCode::FAILURE
        }
    }
}
