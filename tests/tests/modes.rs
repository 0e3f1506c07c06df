//! One multi-stage driver program (word count, join, group_by_key,
//! sort_by_key, distinct) run unchanged in `local[1]`, `local[4]` and
//! `local-cluster[2,1,1024]`: every mode must give exactly the result a
//! plain-Rust computation of the same program gives, hence the same
//! results as each other.

use ember_driver::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const VOCABULARY: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "brain",
    "voxel",
    "tensor",
    "mask",
    "noise",
    "signal",
    "image",
    "subject",
    "volume",
    "gradient",
    "diffusion",
    "spark",
    "ember",
    "rdd",
    "shuffle",
    "stage",
    "task",
    "partition",
    "cache",
    "join",
    "key",
    "value",
    "sort",
    "group",
    "count",
    "distinct",
    "map",
    "filter",
    "reduce",
    "fold",
    "sample",
    "zip",
    "union",
    "range",
    "text",
];

/// Words of each category, for the join (some words have none, some two).
fn categories() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, w) in VOCABULARY.iter().enumerate() {
        match i % 4 {
            0 => out.push((w.to_string(), "engine".to_string())),
            1 => out.push((w.to_string(), "science".to_string())),
            2 => {
                out.push((w.to_string(), "engine".to_string()));
                out.push((w.to_string(), "common".to_string()));
            }
            _ => {}
        }
    }
    out
}

/// A text of a few thousand lines with a skewed word distribution, some
/// empty lines and irregular spacing.
fn write_text(path: &Path) -> String {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::new();
    for _ in 0..3000 {
        let words = next() % 12;
        let line: Vec<&str> = (0..words)
            .map(|_| {
                // Squaring skews toward the front of the vocabulary.
                let r = (next() % 1000) as f64 / 1000.0;
                VOCABULARY[(r * r * VOCABULARY.len() as f64) as usize]
            })
            .collect();
        text.push_str(&line.join(if next() % 5 == 0 { "  " } else { " " }));
        text.push('\n');
    }
    std::fs::write(path, &text).unwrap();
    text
}

/// What the program computes.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Lines read by the first job (an accumulator).
    lines: u64,
    /// Word counts, sorted by word.
    counts: Vec<(String, u64)>,
    /// `(word, (count, category))`, sorted.
    joined: Vec<(String, (u64, String))>,
    /// Words of each category (sorted), by category.
    groups: BTreeMap<String, Vec<String>>,
    /// `((count, word), ())` by descending count then word: an order the
    /// keys fully specify.
    ranked: Vec<(u64, String)>,
    /// Distinct word lengths, sorted.
    lengths: Vec<usize>,
}

fn run(master: &str, input: &Path) -> Outcome {
    let ctx = Context::new(master).unwrap();
    let lines = ctx.accumulator(0u64);
    let words = ctx
        .text_file(input, 5)
        .unwrap()
        .map_with(lines.clone(), |l: &Accumulator<u64>, line: String| {
            l.add(1);
            line
        })
        .flat_map(|line: String| {
            line.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
    let counts = words.map(|w: String| (w, 1u64)).reduce_by_key(|a, b| a + b);
    let mut counts_v = counts.collect().unwrap();
    counts_v.sort();
    // Read before later jobs compute `words` again (distinct does).
    let lines_read = lines.value();

    let cats = ctx.parallelize(categories(), 3).unwrap();
    let mut joined = counts.join(&cats).collect().unwrap();
    joined.sort();

    let groups = cats
        .map(|(w, c): (String, String)| (c, w))
        .group_by_key()
        .map_values(|mut ws: Vec<String>| {
            ws.sort();
            ws
        })
        .collect()
        .unwrap()
        .into_iter()
        .collect();

    let ranked: Vec<(u64, String)> = counts
        .map(|(w, n): (String, u64)| ((std::cmp::Reverse(n), w), ()))
        .sort_by_key(true, 4)
        .unwrap()
        .keys()
        .map(|(n, w): (std::cmp::Reverse<u64>, String)| (n.0, w))
        .collect()
        .unwrap();

    let mut lengths = words
        .map(|w: String| w.chars().count())
        .distinct()
        .collect()
        .unwrap();
    lengths.sort();
    Outcome {
        lines: lines_read,
        counts: counts_v,
        joined,
        groups,
        ranked,
        lengths,
    }
}

/// The same program in plain Rust.
fn reference(text: &str) -> Outcome {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for w in text.lines().flat_map(str::split_whitespace) {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    let mut joined = Vec::new();
    for (w, c) in categories() {
        if let Some(&n) = counts.get(&w) {
            joined.push((w, (n, c)));
        }
    }
    joined.sort();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (w, c) in categories() {
        groups.entry(c).or_default().push(w);
    }
    groups.values_mut().for_each(|ws| ws.sort());
    let mut ranked: Vec<(u64, String)> = counts.iter().map(|(w, &n)| (n, w.clone())).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let lengths: BTreeSet<usize> = counts.keys().map(|w| w.chars().count()).collect();
    Outcome {
        lines: text.lines().count() as u64,
        counts: counts.into_iter().collect(),
        joined,
        groups,
        ranked,
        lengths: lengths.into_iter().collect(),
    }
}

#[test]
fn the_same_program_gives_identical_results_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.txt");
    let text = write_text(&input);
    let expected = reference(&text);
    assert!(
        expected.ranked.windows(2).any(|w| w[0].0 == w[1].0),
        "tied counts in the fixture, so the word part of the sort key matters"
    );
    let outcomes: Vec<(&str, Outcome)> = ["local[1]", "local[4]", "local-cluster[2,1,1024]"]
        .into_iter()
        .map(|m| (m, run(m, &input)))
        .collect();
    for (master, got) in &outcomes {
        assert_eq!(got, &expected, "{master}");
    }
}
