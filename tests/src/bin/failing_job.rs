//! A driver program whose task fails, for the tests that check what a
//! user sees on stderr (`tests/tests/user_output.rs`).
//!
//! `failing_job MASTER once DIR`: partition 1 logs a warning and fails its
//! first attempt (a marker file in DIR says it already failed), the retry
//! succeeds.
//! `failing_job MASTER always`: partition 1 fails every attempt, so the
//! job fails. `failing_job MASTER panic`: the user's function panics.
//! Tasks fail by throwing an `EmberError`, as Ember's own sources do on an
//! I/O error; the program returns the job's error from `main`, as the
//! README's programs do.

use ember_driver::prelude::*;
use ember_driver::rdd::task::throw;
use std::path::Path;

fn main() -> ember_driver::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [master, mode, rest @ ..] = args.as_slice() else {
        return Err(EmberError::Other(
            "usage: failing_job MASTER once DIR | always | panic".into(),
        ));
    };
    let ctx = Context::builder()
        .master(master)
        .conf("ember.ui.enabled", "false")
        .build()?;
    let numbers = ctx.parallelize((0..8u64).collect(), 2)?;
    let doubled = match mode.as_str() {
        "once" => numbers.map_with(rest.join(" "), |dir, x| {
            // Creating the marker succeeds once: only the first attempt fails.
            if x == 4 && std::fs::File::create_new(Path::new(dir).join("failed")).is_ok() {
                // Logged where the task runs: an executor process in
                // local-cluster mode.
                tracing::warn!("a user's warning from a task");
                throw(EmberError::Other(
                    "injected failure of the first attempt".into(),
                ));
            }
            x * 2
        }),
        "always" => numbers.map(|x| {
            if x == 4 {
                throw(EmberError::io(
                    "/no/such/input.txt",
                    "open",
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            x * 2
        }),
        "panic" => numbers.map(|x| {
            assert!(x != 4, "user code rejects {x}");
            x * 2
        }),
        other => return Err(EmberError::Other(format!("unknown mode {other}"))),
    };
    let sum: u64 = doubled.collect()?.iter().sum();
    println!("sum {sum}");
    Ok(())
}
