//! `pipe`: each partition through an external command.

use crate::node::BoxIter;
use crate::rdd::Rdd;
use crate::task::throw;
use ember_core::{Data, EmberError};
use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;

/// Most bytes of a failed command's standard error quoted in the error.
const STDERR_TAIL: usize = 2000;

fn pipe_error(command: &[String], partition: usize, what: String) -> EmberError {
    EmberError::Other(format!(
        "pipe: command {command:?} (partition {partition}): {what}"
    ))
}

/// The output lines of one partition's child process; at their end, the
/// exit status is checked and a failure thrown.
struct PipeOutput {
    command: Arc<Vec<String>>,
    partition: usize,
    child: Child,
    lines: mpsc::IntoIter<std::io::Result<String>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
    finished: bool,
}

impl PipeOutput {
    fn fail(&self, what: String) -> ! {
        throw(pipe_error(&self.command, self.partition, what))
    }

    fn finish(&mut self) {
        self.finished = true;
        let status = match self.child.wait() {
            Ok(s) => s,
            Err(e) => self.fail(format!("waiting for it failed: {e}")),
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if !status.success() {
            let tail = &stderr[stderr.len().saturating_sub(STDERR_TAIL)..];
            let tail = String::from_utf8_lossy(tail);
            let tail = tail.trim();
            self.fail(if tail.is_empty() {
                format!("exited with {status}")
            } else {
                format!("exited with {status}; its standard error ends: {tail}")
            });
        }
    }
}

impl Iterator for PipeOutput {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        if self.finished {
            return None;
        }
        match self.lines.next() {
            Some(Ok(line)) => Some(line),
            Some(Err(e)) => self.fail(format!("reading its output failed: {e}")),
            None => {
                self.finish();
                None
            }
        }
    }
}

impl Drop for PipeOutput {
    fn drop(&mut self) {
        // A consumer that stops early (take) must not leave the child
        // running or a zombie behind.
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `command` over `records`: each record as a line on its standard
/// input (written from this thread while another reads its output), its
/// output lines as the result.
fn run_pipe<T: Display>(
    command: Arc<Vec<String>>,
    partition: usize,
    records: BoxIter<T>,
) -> BoxIter<String> {
    let Some((program, args)) = command.split_first() else {
        throw(pipe_error(
            &command,
            partition,
            "the command is empty".into(),
        ));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            throw(pipe_error(
                &command,
                partition,
                format!("cannot start: {e}"),
            ))
        });
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = stdout {
        // Reading concurrently keeps a child that writes a lot before it
        // has read all its input from blocking on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let stderr = stderr.map(|mut e| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = e.read_to_end(&mut bytes);
            bytes
        })
    });
    let output = PipeOutput {
        command,
        partition,
        child,
        lines: rx.into_iter(),
        stderr,
        finished: false,
    };
    if let Some(stdin) = stdin {
        let mut w = std::io::BufWriter::new(stdin);
        for x in records {
            if let Err(e) = writeln!(w, "{x}") {
                // A command that stops reading early (head) closes the
                // pipe; its exit status decides whether that was an error.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    break;
                }
                output.fail(format!("writing its input failed: {e}"));
            }
        }
        if let Err(e) = w.flush() {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                output.fail(format!("writing its input failed: {e}"));
            }
        }
        // Dropping the writer closes the child's standard input.
    }
    Box::new(output)
}

impl<T: Data + Display> Rdd<T> {
    /// Spark's `pipe`: each partition's records, one per line
    /// (`Display`), on the standard input of a new `command` process
    /// (program and arguments; no shell, so use `["sh", "-c", "..."]` for
    /// one), and the lines of its standard output as the records. A
    /// command that cannot start or exits unsuccessfully fails the task
    /// with an error naming the command, the partition, the exit status
    /// and the end of its standard error. Spark's `pipe(String)` splits
    /// the string on whitespace; here the words are given separately.
    ///
    /// ```
    /// # use ember_driver::prelude::*;
    /// let ctx = Context::new("local[2]")?;
    /// let r = ctx.parallelize(vec!["a".to_string(), "b".to_string()], 2)?;
    /// assert_eq!(r.pipe(&["tr", "a-z", "A-Z"]).collect()?, vec!["A", "B"]);
    /// # Ok::<(), ember_driver::EmberError>(())
    /// ```
    pub fn pipe<S: AsRef<str>>(&self, command: &[S]) -> Rdd<String> {
        let command: Vec<String> = command.iter().map(|s| s.as_ref().to_string()).collect();
        self.map_partitions_with_env(
            command,
            |c: &Arc<Vec<String>>, p: usize, it: BoxIter<T>| -> BoxIter<String> {
                run_pipe(c.clone(), p, it)
            },
        )
    }
}
