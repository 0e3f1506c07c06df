//! The log output every Ember process gets unless its program chose its
//! own: `tracing` events at or above a filter, written to stderr.
//!
//! Warnings such as a failed task being retried or a lost executor are
//! emitted with `tracing`; without a subscriber they would go nowhere, so
//! driver programs (when a `Context` is built), executor processes (before
//! `main`) and the `ember` daemons install this one.

use tracing_subscriber::EnvFilter;

/// Variables holding the log filter, in the order they are read: the
/// first one set to a valid filter wins.
pub const FILTER_VARS: [&str; 2] = ["RUST_LOG", "EMBER_LOG"];

/// The filter of driver programs and executors when no variable sets one.
pub const DEFAULT_FILTER: &str = "warn";

/// Installs Ember's subscriber (filter from [`FILTER_VARS`], else
/// `default`; written to stderr) as the global one. A program that
/// installed its own global subscriber first keeps it, and a second call
/// is a no-op.
pub fn init(default: &str) {
    // Once per process: every Context calls this, and a rejected variable
    // is worth one message, not one per Context.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| install(default));
}

fn install(default: &str) {
    let (directives, rejected) = choose_filter(|name| std::env::var(name).ok(), default);
    for (name, value) in &rejected {
        // Said once, before logging starts: a typo would otherwise silently
        // hide or flood every warning.
        eprintln!("ember: ignoring {name}={value:?}: not a log filter");
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a terminal: executors of a standalone worker and
    // tests write stderr to files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // `try_init` fails when a global subscriber exists: that one stays.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// The filter directives to use, read through `var` from [`FILTER_VARS`]
/// (the first set to a valid filter), else `default`; and the variables
/// that were set to something that is not a filter.
fn choose_filter(
    var: impl Fn(&str) -> Option<String>,
    default: &str,
) -> (String, Vec<(&'static str, String)>) {
    let mut rejected = Vec::new();
    for name in FILTER_VARS {
        match var(name) {
            Some(value) if value.trim().is_empty() => {}
            Some(value) if EnvFilter::try_new(&value).is_ok() => return (value, rejected),
            Some(value) => rejected.push((name, value)),
            None => {}
        }
    }
    (default.to_string(), rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(vars: &[(&str, &str)]) -> (String, Vec<(&'static str, String)>) {
        choose_filter(
            |name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            },
            DEFAULT_FILTER,
        )
    }

    #[test]
    fn rust_log_comes_first_then_ember_log_then_the_default() {
        assert_eq!(choose(&[]).0, "warn");
        assert_eq!(choose(&[("EMBER_LOG", "error")]).0, "error");
        assert_eq!(
            choose(&[("RUST_LOG", "info"), ("EMBER_LOG", "error")]).0,
            "info"
        );
        assert_eq!(
            choose(&[("RUST_LOG", " "), ("EMBER_LOG", "error")]).0,
            "error"
        );
    }

    #[test]
    fn a_value_that_is_not_a_filter_is_skipped_and_reported() {
        let (filter, rejected) = choose(&[("RUST_LOG", "ember=[{"), ("EMBER_LOG", "debug")]);
        assert_eq!(filter, "debug");
        assert_eq!(rejected, vec![("RUST_LOG", "ember=[{".to_string())]);
    }
}
