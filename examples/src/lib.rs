//! Shared pieces of the example driver programs, and the neuroscience
//! pipeline ([`neuro`]) behind the `neuro` binary.

pub mod bench_input;
pub mod neuro;
pub mod phantom;
pub mod steps;

use clap::Args;
use ember_driver::{Context, Result};

/// The options every example takes: where to run and extra configuration.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Master URL: `local[N]`, `local[*]`, `local-cluster[N,C,M]`.
    // The same words without rustdoc's backticks for `--help`.
    #[arg(
        long,
        env = "EMBER_MASTER",
        default_value = "local[*]",
        help = "Master URL: local[N], local[*], local-cluster[N,C,M]"
    )]
    pub master: String,
    /// Configuration `key=value`, repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

impl EngineArgs {
    /// Starts a context for these options.
    pub fn context(&self, app_name: &str) -> Result<Context> {
        Context::builder()
            .app_name(app_name)
            .master(&self.master)
            .conf_pairs(&self.conf)?
            .build()
    }
}

/// The words of a line, each paired with 1: runs of ASCII letters,
/// lowercased, anything else a separator. The `wordcount` example and the
/// engine benchmark count with it (as the Spark script and `tr -cs
/// 'A-Za-z'` tokenize).
pub fn words(mut line: String) -> Vec<(String, u64)> {
    // One lowercasing pass over the line, then a plain copy per word.
    line.make_ascii_lowercase();
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        // ASCII letters are whole characters, so these are char boundaries.
        out.push((line[start..i].to_owned(), 1));
    }
    out
}
