//! A driver program to start from: counts the words of a text (a file
//! given as argument, or a built-in one), leaving out short words and stop
//! words, and prints `word<TAB>count` lines sorted by word.
//!
//! ```sh
//! cargo run --release -- --master 'local-cluster[2,1,512]' [FILE]
//! EMBER_MASTER='local[2]' cargo run --release
//! ember submit --master ember://host:7077 target/release/ember-template /abs/path/FILE
//! ```
//!
//! The same binary runs in every mode: only the master URL changes. It
//! comes from `--master`, else from `EMBER_MASTER` (which `ember submit`
//! sets), else it is `local[*]`.

use ember_driver::prelude::*;
use std::collections::HashSet;

/// The text counted when no file is given.
const TEXT: &str = "The quick brown fox jumps over the lazy dog. \
                    The dog sleeps; the fox runs over the hill and the fox is quick.";

/// Words of fewer letters than this are not counted.
const MIN_LETTERS: usize = 3;

fn main() -> ember_driver::Result<()> {
    let (master, input) = parse_args()?;
    let mut builder = Context::builder().app_name("ember-template");
    if let Some(url) = master {
        builder = builder.master(&url);
    }
    let ctx = builder.build()?;

    let lines = match input {
        Some(path) => ctx.text_file(path, 0)?,
        None => ctx.parallelize(TEXT.split(". ").map(String::from).collect(), 0)?,
    };

    // Functions passed to RDD operations must not capture variables: they
    // travel to executors by type alone. This does not compile:
    //     let min = MIN_LETTERS;
    //     words.filter(|w| w.len() >= min)
    // A value a function needs is passed explicitly: as the env of a
    // `*_with` operation (shipped with every task)...
    let words = lines
        .flat_map(|line: String| {
            line.split(|c: char| !c.is_alphabetic())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .filter_with(MIN_LETTERS, |min, word| word.chars().count() >= *min);

    // ...or as a broadcast variable (shipped once per executor), for
    // larger values that many tasks read.
    let stop_words: HashSet<String> = ["the", "and", "over"].map(String::from).into();
    let stop_words = ctx.broadcast(stop_words)?;
    let counts = words
        .filter_with(stop_words, |stop, word| !stop.value().contains(word))
        .map(|word| (word, 1u64))
        .reduce_by_key(|a, b| a + b);

    // Nothing ran so far: the action `collect` runs the job.
    let mut counts = counts.collect()?;
    counts.sort();
    for (word, n) in counts {
        println!("{word}\t{n}");
    }
    Ok(())
}

/// `[--master URL] [FILE]`.
fn parse_args() -> ember_driver::Result<(Option<String>, Option<String>)> {
    let usage = || EmberError::Other("usage: ember-template [--master URL] [FILE]".into());
    let mut master = None;
    let mut input = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--master" {
            master = Some(args.next().ok_or_else(usage)?);
        } else if let Some(url) = arg.strip_prefix("--master=") {
            master = Some(url.to_string());
        } else if arg.starts_with('-') || input.is_some() {
            return Err(usage());
        } else {
            input = Some(arg);
        }
    }
    Ok((master, input))
}
