//! The one error type of the engine. Errors cross process boundaries (a
//! task's failure travels from executor to driver), so they are plain data.

use crate::ids::{ExecutorId, JobId, ShuffleId, StageId};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `Result` with [`EmberError`].
pub type Result<T, E = EmberError> = std::result::Result<T, E>;

/// Everything that can go wrong in Ember; every message names the thing
/// (file, key, stage, partition, executor) that was wrong.
///
/// `Debug` prints the same text as `Display`: a driver program's `main`
/// that returns `Result<(), EmberError>` reports its error with `Debug`,
/// and the user should read the message, not the enum's fields.
#[derive(Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum EmberError {
    /// A file-system operation failed.
    #[error("{path}: {action}: {message}")]
    Io {
        /// The file or folder.
        path: String,
        /// What was being done (`"open"`, `"read"`, ...).
        action: String,
        /// The operating system's message.
        message: String,
    },
    /// A configuration value is missing or malformed.
    #[error("configuration {key}: {message}")]
    Conf {
        /// The configuration key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A master URL that does not parse.
    #[error("master URL {url:?} is not valid: {message}; accepted forms: local, local[N], local[*], local-cluster[N,C,M] (N executors of C cores and M MiB), ember://host:port")]
    MasterUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// Bytes that do not decode (a bad frame, a corrupt block).
    #[error("{what}: {message}")]
    Codec {
        /// What was being decoded.
        what: String,
        /// Why it failed.
        message: String,
    },
    /// A reducer could not read one map output of a shuffle.
    #[error("fetch failed: {shuffle} map {map} reduce {reduce} from {executor}: {message}")]
    FetchFailed {
        /// The shuffle.
        shuffle: ShuffleId,
        /// The map partition whose output was missing.
        map: usize,
        /// The reduce partition being read.
        reduce: usize,
        /// The executor that held the output.
        executor: ExecutorId,
        /// Why it failed.
        message: String,
    },
    /// A task failed (user code panicked or returned an error).
    #[error("{message}")]
    TaskFailed {
        /// The failure, usually the user's panic message.
        message: String,
    },
    /// A job was aborted because one task failed on every attempt; carries
    /// where and why. One line names the job, stage, partition, attempt and
    /// executor; the cause follows it.
    #[error("job {job} aborted: {stage} partition {partition} failed on attempt {attempts} of {attempts} ({executor}): {message}", job = job.0)]
    JobFailed {
        /// The job.
        job: JobId,
        /// The stage whose task failed.
        stage: StageId,
        /// The partition of the failing task.
        partition: usize,
        /// The executor of the last attempt.
        executor: ExecutorId,
        /// How many attempts were made.
        attempts: usize,
        /// The last attempt's message.
        message: String,
    },
    /// An executor runs a different binary than the driver.
    #[error("{executor} runs a different binary (build {executor_build}) than the driver (build {driver_build}); ship the driver's binary to the workers")]
    BuildMismatch {
        /// The executor.
        executor: ExecutorId,
        /// The executor's build id.
        executor_build: String,
        /// The driver's build id.
        driver_build: String,
    },
    /// The job was cancelled (its job group, every job, its async
    /// action's handle, or Ctrl-C) before it finished.
    #[error("{0}")]
    Cancelled(String),
    /// A connection or protocol failure.
    #[error("network: {0}")]
    Network(String),
    /// Anything else, with a message that says what.
    #[error("{0}")]
    Other(String),
}

impl std::fmt::Debug for EmberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl EmberError {
    /// An I/O error about `path` while doing `action`.
    pub fn io(path: impl AsRef<Path>, action: &str, err: std::io::Error) -> Self {
        EmberError::Io {
            path: path.as_ref().display().to_string(),
            action: action.to_string(),
            message: err.to_string(),
        }
    }

    /// A decoding error about `what`.
    pub fn codec(what: impl Into<String>, message: impl ToString) -> Self {
        EmberError::Codec {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_job_reads_as_one_line_naming_where_and_why() {
        let e = EmberError::JobFailed {
            job: JobId(3),
            stage: StageId(7),
            partition: 2,
            executor: ExecutorId("1".into()),
            attempts: 4,
            message: "/in/a.txt: read: Is a directory".into(),
        };
        let expected = "job 3 aborted: stage 7 partition 2 failed on attempt 4 of 4 (executor 1): /in/a.txt: read: Is a directory";
        assert_eq!(e.to_string(), expected);
        // What `main` returning the error prints.
        assert_eq!(format!("{e:?}"), expected);
    }
}
