//! `ember` daemon processes (master, worker, history server) for the
//! standalone-mode tests of `ember-driver` and `ember-examples`; each test
//! file includes this one as a module.

// Each including test file uses its own subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a daemon gets to print a line a test waits for.
pub const PRINT_TIMEOUT: Duration = Duration::from_secs(30);

/// An `ember` daemon whose stdout lines are collected as they come;
/// killed when dropped.
pub struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    /// Starts `exe ARGS` (logging warnings and errors to the test's stderr).
    pub fn spawn(exe: &Path, args: &[&str]) -> Daemon {
        let mut cmd = Command::new(exe);
        cmd.args(args);
        Daemon::start(cmd)
    }

    /// Starts `cmd` as [`Daemon::spawn`] does (a daemon on a test host
    /// is `ip netns exec HOST ember ...`).
    pub fn start(mut cmd: Command) -> Daemon {
        let mut child = cmd
            .env("EMBER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first printed line containing `marker`, waiting up to `within`
    /// for it; `None` if it has not come by then.
    pub fn wait_for(&mut self, marker: &str, within: Duration) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| l.contains(marker)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(marker) {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// The first printed line containing `marker`; panics with what was
    /// printed if it does not come within [`PRINT_TIMEOUT`].
    pub fn line(&mut self, marker: &str) -> String {
        self.wait_for(marker, PRINT_TIMEOUT)
            .unwrap_or_else(|| panic!("ember never printed {marker:?}; printed {:?}", self.seen))
    }

    /// The word after `prefix` on the first line containing it (an
    /// address, an id), waiting as [`Daemon::line`] does.
    pub fn word_after(&mut self, prefix: &str) -> String {
        word_after(&self.line(prefix), prefix)
    }

    /// Whether a line read so far (by the waits above) contains `text`.
    pub fn printed(&self, text: &str) -> bool {
        self.seen.iter().any(|l| l.contains(text))
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL (which ends a stopped process
    /// too) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends signal `sig` (as `kill` takes it: `-STOP`, `-CONT`, ...).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The word after `prefix` in `line`.
pub fn word_after(line: &str, prefix: &str) -> String {
    let i = line.find(prefix).expect(prefix) + prefix.len();
    line[i..]
        .split_whitespace()
        .next()
        .expect("a word after the prefix")
        .to_string()
}
