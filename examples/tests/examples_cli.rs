//! The example programs, run as a user would.

use std::path::Path;
use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin).args(args).output().expect("run example");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A text with punctuation, digits, mixed case and non-ASCII letters.
fn write_text(path: &Path) {
    let words = [
        "The", "quick", "BROWN", "fox", "jumps", "over", "lazy", "dog's", "naïve", "x2y", "a-b",
    ];
    let mut text = String::new();
    for i in 0..5000usize {
        for j in 0..(i % 13) {
            text.push_str(words[(i * 7 + j * 3) % words.len()]);
            text.push(if j % 4 == 0 { ',' } else { ' ' });
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// `tr -cs 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | sort | uniq -c`, as
/// `word<TAB>count` lines.
fn reference_counts(path: &Path) -> String {
    let script = format!(
        "tr -cs 'A-Za-z' '\\n' < '{}' | tr 'A-Z' 'a-z' | LC_ALL=C sort | uniq -c | awk 'NF==2 {{print $2 \"\\t\" $1}}'",
        path.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run the shell pipeline");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn wordcount_equals_the_unix_pipeline_in_local_and_local_cluster_mode() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("text.txt");
    write_text(&input);
    let expected = reference_counts(&input);
    assert!(expected.lines().count() > 5);
    for master in ["local[2]", "local-cluster[2,1,512]"] {
        let (ok, out, err) = run(
            env!("CARGO_BIN_EXE_wordcount"),
            &["--master", master, input.to_str().unwrap()],
        );
        assert!(ok, "{master}: {err}");
        assert_eq!(out, expected, "{master}");
    }
}

#[test]
fn wordcount_names_a_missing_input_and_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.txt");
    let (ok, _, err) = run(
        env!("CARGO_BIN_EXE_wordcount"),
        &["--master", "local[1]", missing.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err.contains("nope.txt"), "{err}");
    let (ok, _, err) = run(
        env!("CARGO_BIN_EXE_wordcount"),
        &["--master", "local[1]", dir.path().to_str().unwrap()],
    );
    assert!(!ok);
    assert!(
        err.contains(dir.path().to_str().unwrap()) && err.contains("folder"),
        "{err}"
    );
}

#[test]
fn wordcount_lists_accepted_master_urls_for_a_bad_one() {
    let (ok, _, err) = run(
        env!("CARGO_BIN_EXE_wordcount"),
        &["--master", "spark://x", "/dev/null"],
    );
    assert!(!ok);
    assert!(err.contains("local-cluster[N,C,M]"), "{err}");
}

/// Spark's SparkPageRank semantics, computed directly.
fn reference_pagerank(edges: &[(&str, &str)], iterations: usize) -> Vec<(String, f64)> {
    use std::collections::{BTreeMap, BTreeSet};
    let unique: BTreeSet<(&str, &str)> = edges.iter().copied().collect();
    let mut links: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (s, d) in unique {
        links.entry(s).or_default().push(d);
    }
    let mut ranks: BTreeMap<&str, f64> = links.keys().map(|k| (*k, 1.0)).collect();
    for _ in 0..iterations {
        let mut received: BTreeMap<&str, f64> = BTreeMap::new();
        for (s, urls) in &links {
            if let Some(r) = ranks.get(s) {
                for u in urls {
                    *received.entry(u).or_default() += r / urls.len() as f64;
                }
            }
        }
        ranks = received
            .into_iter()
            .map(|(k, v)| (k, 0.15 + 0.85 * v))
            .collect();
    }
    ranks.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[test]
fn pagerank_matches_sparks_definition_in_both_modes() {
    let edges = [
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
        ("c", "a"),
        ("d", "a"),
        ("d", "a"),
        ("e", "d"),
        ("c", "e"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edges.txt");
    let mut text = String::from("# a comment\n\n");
    for (s, d) in edges {
        text.push_str(&format!("{s} {d}\n"));
    }
    std::fs::write(&path, text).unwrap();
    let expected = reference_pagerank(&edges, 7);
    for master in ["local[3]", "local-cluster[2,1,512]"] {
        let (ok, out, err) = run(
            env!("CARGO_BIN_EXE_pagerank"),
            &[
                "--master",
                master,
                "--iterations",
                "7",
                path.to_str().unwrap(),
            ],
        );
        assert!(ok, "{master}: {err}");
        let got: Vec<(String, f64)> = out
            .lines()
            .map(|l| {
                let (p, r) = l.split_once('\t').unwrap();
                (p.to_string(), r.parse().unwrap())
            })
            .collect();
        assert_eq!(got.len(), expected.len(), "{master}: {out}");
        for ((gp, gr), (ep, er)) in got.iter().zip(&expected) {
            assert_eq!(gp, ep);
            assert!((gr - er).abs() < 1e-9, "{master}: {gp} {gr} vs {er}");
        }
    }
}
