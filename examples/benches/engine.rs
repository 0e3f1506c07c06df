//! Engine benchmarks: word count, group-by-key and the scheduler, in the
//! same shapes as `scripts/bench_spark.py` runs them on Spark, so the two
//! can be compared on the same machine and the same data
//! (`scripts/bench_engine.sh` runs both and prints the comparison).
//!
//! Workloads:
//!
//! * `wordcount`: lines of a generated text (256 MiB by default: Zipf-like
//!   words over a ~100k-word vocabulary, seeded, written once into
//!   `--data DIR` and reused), words are runs of ASCII letters, lowercased,
//!   counted with `reduce_by_key` and collected. End to end: context start,
//!   job, context stop. The result is summarized as total words, distinct
//!   words and an order-independent checksum (see [`word_checksum`]) that
//!   the Spark script computes the same way.
//! * `groupby`: `(u64, f64)` pairs made inside the job from `range` and a
//!   multiplicative hash (see [`pair_of`]), grouped with `group_by_key`,
//!   then summarized in one action: number of groups, Σ sizes, Σ sizes²
//!   and Σ key·size.
//! * `tasks`: a job of many one-record tasks (`range(0, n, 1, n).count()`)
//!   on a running context; tasks per second, best and median of `--reps`.
//! * `latency`: a trivial one-partition job (`parallelize(vec![1], 1)
//!   .count()`) repeated; median and p99 in microseconds.
//!
//! Usage: `cargo bench -p ember-examples --bench engine -- [--quick]
//! [--data DIR] [--json FILE] [--only wordcount,groupby,tasks,latency]
//! [--text-mb N] [--pairs N] [--keys N] [--tasks N] [--latency-runs N]`.

use clap::Parser;
use ember_driver::prelude::*;
use ember_driver::Result;
use ember_examples::bench_input::SplitMix64;
use ember_examples::words;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Ember engine benchmarks (word count, group-by-key, scheduler)")]
struct Cli {
    /// Small sizes, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Master URL.
    #[arg(long, default_value = "local[2]")]
    master: String,
    /// Folder for generated input (reused when present); default: the
    /// system temporary folder's `ember-bench-data`.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Writes the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Comma-separated workloads: wordcount, groupby, tasks, latency.
    #[arg(long, default_value = "wordcount,groupby,tasks,latency")]
    only: String,
    /// Size of the generated text in MiB [default: 256; --quick: 8].
    #[arg(long)]
    text_mb: Option<u64>,
    /// Vocabulary of the generated text [default: 100000; --quick: 10000].
    #[arg(long)]
    vocabulary: Option<usize>,
    /// Seed of the text generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Pairs of the group-by job [default: 20000000; --quick: 200000].
    #[arg(long)]
    pairs: Option<u64>,
    /// Also run the group-by job on this many pairs (to compare with a
    /// smaller Spark RDD run); same key count.
    #[arg(long)]
    extra_pairs: Option<u64>,
    /// Key space of the group-by job [default: 1000000; --quick: 10000].
    #[arg(long)]
    keys: Option<u64>,
    /// Tasks of the scheduler job [default: 10000; --quick: 1000].
    #[arg(long)]
    tasks: Option<usize>,
    /// Repetitions of the scheduler job.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Trivial jobs timed for latency [default: 1000; --quick: 100].
    #[arg(long)]
    latency_runs: Option<usize>,
    /// Only generate the input text and print its path.
    #[arg(long)]
    generate_only: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The sizes in force after `--quick` and explicit options.
struct Sizes {
    text_bytes: u64,
    vocabulary: usize,
    pairs: u64,
    keys: u64,
    tasks: usize,
    latency_runs: usize,
}

impl Cli {
    fn sizes(&self) -> Sizes {
        let q = self.quick;
        Sizes {
            text_bytes: self.text_mb.unwrap_or(if q { 8 } else { 256 }) << 20,
            vocabulary: self.vocabulary.unwrap_or(if q { 10_000 } else { 100_000 }),
            pairs: self.pairs.unwrap_or(if q { 200_000 } else { 20_000_000 }),
            keys: self.keys.unwrap_or(if q { 10_000 } else { 1_000_000 }),
            tasks: self.tasks.unwrap_or(if q { 1_000 } else { 10_000 }),
            latency_runs: self.latency_runs.unwrap_or(if q { 100 } else { 1_000 }),
        }
    }
}

// ---------------------------------------------------------------------------
// Deterministic input generation

/// English letter frequencies (per mille, a..z), so words look plausible.
const LETTER_FREQ: [u32; 26] = [
    82, 15, 28, 43, 127, 22, 20, 61, 70, 2, 8, 40, 24, 67, 75, 19, 1, 60, 63, 91, 28, 10, 24, 2,
    20, 1,
];

/// `n` distinct lowercase words, 1 to 14 letters (most 4 to 9).
fn vocabulary(rng: &mut SplitMix64, n: usize) -> Vec<Vec<u8>> {
    let total: u32 = LETTER_FREQ.iter().sum();
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut words = Vec::with_capacity(n);
    while words.len() < n {
        // Sum of three uniforms: a bell around 7 letters.
        let len = 1 + rng.below(5) + rng.below(5) + rng.below(6);
        let mut w = Vec::with_capacity(len as usize);
        for _ in 0..len {
            let mut r = rng.below(total as u64) as u32;
            let mut letter = 0;
            while r >= LETTER_FREQ[letter] {
                r -= LETTER_FREQ[letter];
                letter += 1;
            }
            w.push(b'a' + letter as u8);
        }
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

/// Cumulative Zipf–Mandelbrot weights `1 / (rank + 2.7)`: a few words are
/// very frequent, most are rare, as in natural text.
fn zipf_cdf(n: usize) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (0..n)
        .map(|r| {
            acc += 1.0 / (r as f64 + 2.7);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

/// Writes about `bytes` bytes of text (whole lines) to `out`: lines of 1 to
/// 20 words (about 75 characters), sentences capitalized and ended by a
/// period, commas, some all-caps words, numbers, apostrophes and hyphens,
/// and blank lines between paragraphs.
fn write_text(
    out: &mut impl std::io::Write,
    bytes: u64,
    vocab_size: usize,
    seed: u64,
) -> std::io::Result<u64> {
    let mut rng = SplitMix64(seed);
    let vocab = vocabulary(&mut rng, vocab_size);
    let cdf = zipf_cdf(vocab.len());
    let mut written = 0u64;
    let mut line: Vec<u8> = Vec::with_capacity(512);
    let mut sentence_start = true;
    while written < bytes {
        line.clear();
        if rng.below(30) == 0 {
            line.push(b'\n');
        } else {
            let n = 1 + rng.below(20);
            for i in 0..n {
                if i > 0 {
                    line.push(b' ');
                }
                if rng.below(100) == 0 {
                    write!(line, "{}", rng.below(3000))?;
                    continue;
                }
                let u = rng.unit();
                let rank = cdf.partition_point(|&c| c < u).min(vocab.len() - 1);
                let word = &vocab[rank];
                let start = line.len();
                line.extend_from_slice(word);
                if rng.below(200) == 0 {
                    line[start..].make_ascii_uppercase();
                } else if sentence_start {
                    line[start] = line[start].to_ascii_uppercase();
                }
                sentence_start = false;
                match rng.below(100) {
                    0..=6 => line.push(b','),
                    7..=11 => {
                        line.push(b'.');
                        sentence_start = true;
                    }
                    12 => line.extend_from_slice(b"'s"),
                    13 => {
                        line.push(b'-');
                        let other = &vocab[rng.below(vocab.len() as u64) as usize];
                        line.extend_from_slice(other);
                    }
                    _ => {}
                }
            }
            line.push(b'\n');
        }
        out.write_all(&line)?;
        written += line.len() as u64;
    }
    Ok(written)
}

/// The generated text for these sizes under `dir`, written (atomically,
/// through a temporary name) unless it is already there.
fn text_input(dir: &Path, bytes: u64, vocab: usize, seed: u64) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("words-{}MiB-v{vocab}-s{seed}.txt", bytes >> 20));
    if path.is_file() {
        eprintln!("reusing {}", path.display());
        return Ok(path);
    }
    let start = Instant::now();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        write_text(&mut f, bytes, vocab, seed)?;
        f.flush()?;
    }
    std::fs::rename(&tmp, &path)?;
    eprintln!(
        "generated {} in {:.1} s",
        path.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(path)
}

// ---------------------------------------------------------------------------
// Workloads

/// 64-bit FNV-1a of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Order-independent checksum of word counts: Σ FNV-1a(word) · count,
/// wrapping at 2⁶⁴.
fn word_checksum(counts: &[(String, u64)]) -> u64 {
    counts.iter().fold(0u64, |acc, (w, c)| {
        acc.wrapping_add(fnv1a(w.as_bytes()).wrapping_mul(*c))
    })
}

/// Pair `i` of the group-by job: key `((i · 2654435761) mod 2³² · keys) >> 32`
/// (Fibonacci hashing into `[0, keys)`), value `(i mod 1009) / 8`. The
/// Spark script computes the same columns with 64-bit integer arithmetic
/// that cannot overflow for the sizes used.
fn pair_of(keys: u64, i: u64) -> (u64, f64) {
    let h = i.wrapping_mul(2_654_435_761) & 0xFFFF_FFFF;
    ((h * keys) >> 32, (i % 1009) as f64 / 8.0)
}

fn context(master: &str, app: &str) -> Result<Context> {
    Context::builder().master(master).app_name(app).build()
}

/// One measured workload: named numbers for the table and the JSON.
struct Measured {
    name: String,
    fields: Vec<(String, Value)>,
}

#[derive(Clone)]
enum Value {
    Seconds(f64),
    Micros(f64),
    Rate(f64),
    Int(u64),
    Text(String),
}

impl Value {
    fn json(&self) -> String {
        match self {
            Value::Seconds(x) | Value::Micros(x) | Value::Rate(x) => format!("{x:.6}"),
            Value::Int(n) => n.to_string(),
            Value::Text(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        }
    }

    fn show(&self) -> String {
        match self {
            Value::Seconds(x) => format!("{x:.3} s"),
            Value::Micros(x) => format!("{x:.1} µs"),
            Value::Rate(x) => format!("{x:.0} /s"),
            Value::Int(n) => n.to_string(),
            Value::Text(s) => s.clone(),
        }
    }
}

impl Measured {
    fn new(name: impl Into<String>) -> Self {
        Measured {
            name: name.into(),
            fields: Vec::new(),
        }
    }

    fn add(&mut self, key: &str, v: Value) -> &mut Self {
        self.fields.push((key.to_string(), v));
        self
    }
}

fn bench_wordcount(master: &str, path: &Path) -> Result<Measured> {
    let t0 = Instant::now();
    let ctx = context(master, "bench-wordcount")?;
    let started = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let counts = ctx
        .text_file(path, 0)?
        .flat_map(words)
        .reduce_by_key(|a, b| a + b)
        .collect()?;
    let total: u64 = counts.iter().map(|(_, c)| c).sum();
    let checksum = word_checksum(&counts);
    let job = t1.elapsed().as_secs_f64();
    let stages = ctx
        .job_reports()
        .last()
        .map(|r| r.stages_run.len())
        .unwrap_or(0);
    let t2 = Instant::now();
    ctx.stop();
    drop(ctx);
    let stop = t2.elapsed().as_secs_f64();
    let mut m = Measured::new("wordcount");
    m.add("input", Value::Text(path.display().to_string()))
        .add(
            "input_bytes",
            Value::Int(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)),
        )
        .add("start_s", Value::Seconds(started))
        .add("job_s", Value::Seconds(job))
        .add("stop_s", Value::Seconds(stop))
        .add("e2e_s", Value::Seconds(started + job + stop))
        .add("stages", Value::Int(stages as u64))
        .add("total_words", Value::Int(total))
        .add("distinct_words", Value::Int(counts.len() as u64))
        .add("checksum", Value::Int(checksum));
    Ok(m)
}

fn bench_groupby(master: &str, name: &str, pairs: u64, keys: u64) -> Result<Measured> {
    let t0 = Instant::now();
    let ctx = context(master, "bench-groupby")?;
    let started = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let stats = ctx
        .range(0, pairs as i64, 1, 0)?
        .map_with(keys, |keys: &u64, i: i64| pair_of(*keys, i as u64))
        .group_by_key()
        .map(|(k, vs): (u64, Vec<f64>)| {
            let n = vs.len() as u64;
            (1u64, n, n * n, k.wrapping_mul(n))
        })
        .reduce(|a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3.wrapping_add(b.3)))?
        .unwrap_or((0, 0, 0, 0));
    let job = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    ctx.stop();
    drop(ctx);
    let stop = t2.elapsed().as_secs_f64();
    let mut m = Measured::new(name);
    m.add("pairs", Value::Int(pairs))
        .add("keys", Value::Int(keys))
        .add("start_s", Value::Seconds(started))
        .add("job_s", Value::Seconds(job))
        .add("stop_s", Value::Seconds(stop))
        .add("e2e_s", Value::Seconds(started + job + stop))
        .add("groups", Value::Int(stats.0))
        .add("values", Value::Int(stats.1))
        .add("sum_size_sq", Value::Int(stats.2))
        .add("sum_key_size", Value::Int(stats.3));
    Ok(m)
}

fn bench_tasks(master: &str, tasks: usize, reps: usize) -> Result<Measured> {
    let ctx = context(master, "bench-tasks")?;
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let n = ctx.range(0, tasks as i64, 1, tasks)?.count()?;
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(n, tasks as u64, "the scheduler job lost records");
    }
    let launched = ctx
        .job_reports()
        .last()
        .map(|r| r.tasks_launched)
        .unwrap_or(0);
    ctx.stop();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let mut m = Measured::new("tasks");
    m.add("tasks", Value::Int(tasks as u64))
        .add("tasks_launched", Value::Int(launched as u64))
        .add("job_s_best", Value::Seconds(times[0]))
        .add("job_s_median", Value::Seconds(median))
        .add("tasks_per_s", Value::Rate(tasks as f64 / median))
        .add("tasks_per_s_best", Value::Rate(tasks as f64 / times[0]));
    Ok(m)
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[f64], q: f64) -> f64 {
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn bench_latency(master: &str, runs: usize) -> Result<Measured> {
    let ctx = context(master, "bench-latency")?;
    for _ in 0..10 {
        ctx.parallelize(vec![1u64], 1)?.count()?;
    }
    let mut micros = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let n = ctx.parallelize(vec![1u64], 1)?.count()?;
        micros.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(n, 1);
    }
    ctx.stop();
    micros.sort_by(f64::total_cmp);
    let mut m = Measured::new("latency");
    m.add("runs", Value::Int(micros.len() as u64))
        .add("median_us", Value::Micros(quantile(&micros, 0.5)))
        .add("p99_us", Value::Micros(quantile(&micros, 0.99)))
        .add("min_us", Value::Micros(micros[0]));
    Ok(m)
}

// ---------------------------------------------------------------------------
// Output

fn table(results: &[Measured]) -> String {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for m in results {
        for (k, v) in &m.fields {
            if k == "input" {
                continue;
            }
            rows.push((m.name.clone(), k.clone(), v.show()));
        }
    }
    let w0 = rows
        .iter()
        .map(|r| r.0.chars().count())
        .max()
        .unwrap_or(0)
        .max(8);
    let w1 = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut s = String::new();
    let _ = writeln!(s, "| {:w0$} | {:w1$} | value |", "workload", "metric");
    let _ = writeln!(s, "|{}|{}|------:|", "-".repeat(w0 + 2), "-".repeat(w1 + 2));
    for (a, b, c) in rows {
        let _ = writeln!(s, "| {a:w0$} | {b:w1$} | {c} |");
    }
    s
}

fn json(results: &[Measured], cli: &Cli) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(
        s,
        "  \"engine\": \"ember\",\n  \"master\": \"{}\",\n  \"quick\": {},",
        cli.master, cli.quick
    );
    let parts: Vec<String> = results
        .iter()
        .map(|m| {
            let fields: Vec<String> = m
                .fields
                .iter()
                .map(|(k, v)| format!("\"{k}\": {}", v.json()))
                .collect();
            format!("  \"{}\": {{{}}}", m.name, fields.join(", "))
        })
        .collect();
    s.push_str(&parts.join(",\n"));
    s.push_str("\n}\n");
    s
}

fn run(cli: &Cli) -> Result<()> {
    let sizes = cli.sizes();
    if cli.quick {
        self_check();
    }
    let data = cli
        .data
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("ember-bench-data"));
    let io = |e: std::io::Error| EmberError::io(&data, "generate input", e);
    let wanted: Vec<&str> = cli
        .only
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for w in &wanted {
        if !["wordcount", "groupby", "tasks", "latency"].contains(w) {
            return Err(EmberError::Other(format!("unknown workload {w:?}")));
        }
    }
    if cli.generate_only {
        let path = text_input(&data, sizes.text_bytes, sizes.vocabulary, cli.seed).map_err(io)?;
        println!("{}", path.display());
        return Ok(());
    }
    let mut results = Vec::new();
    if wanted.contains(&"wordcount") {
        let path = text_input(&data, sizes.text_bytes, sizes.vocabulary, cli.seed).map_err(io)?;
        eprintln!("running wordcount on {}", path.display());
        results.push(bench_wordcount(&cli.master, &path)?);
    }
    if wanted.contains(&"groupby") {
        eprintln!(
            "running groupby: {} pairs, {} keys",
            sizes.pairs, sizes.keys
        );
        results.push(bench_groupby(
            &cli.master,
            "groupby",
            sizes.pairs,
            sizes.keys,
        )?);
        if let Some(extra) = cli.extra_pairs.filter(|&p| p != sizes.pairs) {
            eprintln!("running groupby: {extra} pairs, {} keys", sizes.keys);
            results.push(bench_groupby(
                &cli.master,
                "groupby_extra",
                extra,
                sizes.keys,
            )?);
        }
    }
    if wanted.contains(&"tasks") {
        eprintln!("running tasks: {} tasks x {}", sizes.tasks, cli.reps);
        results.push(bench_tasks(&cli.master, sizes.tasks, cli.reps)?);
    }
    if wanted.contains(&"latency") {
        eprintln!("running latency: {} trivial jobs", sizes.latency_runs);
        results.push(bench_latency(&cli.master, sizes.latency_runs)?);
    }
    println!(
        "Ember engine benchmarks ({}{})",
        cli.master,
        if cli.quick { ", quick" } else { "" }
    );
    print!("{}", table(&results));
    if let Some(path) = &cli.json {
        std::fs::write(path, json(&results, cli)).map_err(|e| EmberError::io(path, "write", e))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Checks of the pieces the comparison with Spark relies on; run with
/// `--quick` (cheap, so also a smoke test of the bench itself).
fn self_check() {
    let got: Vec<String> = words("The dog's naïve x2y, A-b!".into())
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    assert_eq!(
        got,
        ["the", "dog", "s", "na", "ve", "x", "y", "a", "b"],
        "tokenizer"
    );
    let (mut a, mut b) = (Vec::new(), Vec::new());
    write_text(&mut a, 10_000, 500, 7).expect("write to memory");
    write_text(&mut b, 10_000, 500, 7).expect("write to memory");
    assert!(
        a == b && a.len() >= 10_000 && a.ends_with(b"\n"),
        "text generation is deterministic"
    );
    let keys: std::collections::HashSet<u64> = (0..20_000).map(|i| pair_of(1000, i).0).collect();
    assert_eq!(keys.len(), 1000, "pairs use the whole key space");
    assert_eq!(fnv1a(b"a"), 0xAF63_DC4C_8601_EC8C, "FNV-1a");
}
