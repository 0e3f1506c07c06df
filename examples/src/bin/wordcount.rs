//! Word count: one `word<TAB>count` line per distinct word, sorted by
//! word. Words are runs of ASCII letters, lowercased.

use clap::Parser;
use ember_driver::{EmberError, Result};
use ember_examples::{words, EngineArgs};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Counts the words of a text file")]
struct Cli {
    #[command(flatten)]
    engine: EngineArgs,
    /// The text file.
    input: PathBuf,
}

fn run(cli: &Cli) -> Result<()> {
    if cli.input.is_dir() {
        return Err(EmberError::Io {
            path: cli.input.display().to_string(),
            action: "open".into(),
            message: "is a folder; wordcount reads one text file".into(),
        });
    }
    let ctx = cli.engine.context("wordcount")?;
    let lines = ctx.text_file(&cli.input, 0)?;
    let counts = lines
        .flat_map(words)
        .reduce_by_key(|a, b| a + b)
        .sort_by_key(true, ctx.default_parallelism())?
        .collect()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (word, n) in counts {
        writeln!(out, "{word}\t{n}").map_err(|e| EmberError::io("stdout", "write", e))?;
    }
    out.flush()
        .map_err(|e| EmberError::io("stdout", "write", e))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wordcount: {e}");
            ExitCode::FAILURE
        }
    }
}
