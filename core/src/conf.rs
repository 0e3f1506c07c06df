//! `EmberConf`: string key/value configuration with typed getters, sizes
//! such as `2g`, and Spark's precedence (defaults file < `EMBER_*`
//! environment < explicit settings).

use crate::error::{EmberError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Keys Ember reads, with their defaults documented at the getter.
pub mod keys {
    /// Master URL (`local[*]` when unset).
    pub const MASTER: &str = "ember.master";
    /// Attempts per task before the job fails (default 4).
    pub const TASK_MAX_FAILURES: &str = "ember.task.maxFailures";
    /// Folder for shuffle and spill files (default: the system temp dir).
    pub const LOCAL_DIR: &str = "ember.local.dir";
    /// Default number of partitions of shuffles and `parallelize`.
    pub const DEFAULT_PARALLELISM: &str = "ember.default.parallelism";
    /// Memory of each executor (default: for `local[N]` half the machine's
    /// memory; for `local-cluster` its M).
    pub const EXECUTOR_MEMORY: &str = "ember.executor.memory";
    /// Share of the usable memory that caching keeps from execution
    /// (default 0.5).
    pub const STORAGE_FRACTION: &str = "ember.memory.storageFraction";
    /// Application name.
    pub const APP_NAME: &str = "ember.app.name";
    /// Whether the console progress bar is shown.
    pub const PROGRESS: &str = "ember.ui.showConsoleProgress";
    /// Whether a summary of each job (time, stages, tasks, shuffle,
    /// cache and spill metrics) is printed to stderr when it ends.
    pub const JOB_SUMMARY: &str = "ember.ui.showJobSummary";
    /// Interval of executor heartbeats (default 1s).
    pub const HEARTBEAT_INTERVAL: &str = "ember.executor.heartbeatInterval";
    /// Silence after which an executor is lost (default 10s).
    pub const NETWORK_TIMEOUT: &str = "ember.network.timeout";
    /// Lost executor processes replaced over an application's life
    /// (default twice the executor count).
    pub const MAX_RELAUNCHES: &str = "ember.executor.maxRelaunches";
    /// How long a job waits for an executor when none is left (default 30s).
    pub const EXECUTOR_WAIT: &str = "ember.scheduler.executorWaitTimeout";
    /// Whether shuffles, cached blocks and broadcasts are removed once no
    /// handle refers to them (default true; Spark's
    /// `spark.cleaner.referenceTracking`).
    pub const CLEANER_REFERENCE_TRACKING: &str = "ember.cleaner.referenceTracking";
    /// Whether Ctrl-C (SIGINT) in a driver program cancels its jobs,
    /// stops its contexts and exits with code 130 (default true; false
    /// leaves SIGINT to the program).
    pub const DRIVER_INTERRUPT_HANDLER: &str = "ember.driver.interruptHandler";
}

/// Configuration of one application: string keys to string values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EmberConf {
    values: BTreeMap<String, String>,
}

impl EmberConf {
    /// An empty configuration (every getter returns its default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Configuration from the environment: every `EMBER_FOO_BAR=value`
    /// variable other than the launcher's private ones becomes
    /// `ember.foo.bar`; `EMBER_MASTER` becomes `ember.master`.
    pub fn from_env() -> Self {
        let mut conf = Self::new();
        for (name, value) in std::env::vars() {
            if let Some(rest) = name.strip_prefix("EMBER_") {
                if rest.starts_with("EXECUTOR_SPEC") || rest.starts_with('_') {
                    continue;
                }
                let key = format!("ember.{}", rest.to_ascii_lowercase().replace('_', "."));
                conf.set(&key, value);
            }
        }
        conf
    }

    /// Reads a Spark-style defaults file: `key value` or `key=value` per
    /// line, `#` comments.
    pub fn load_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| EmberError::io(path, "read", e))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .or_else(|| line.split_once(char::is_whitespace))
                .ok_or_else(|| EmberError::Conf {
                    key: format!("{}:{}", path.display(), n + 1),
                    message: format!("expected `key value`, found {line:?}"),
                })?;
            self.set(key.trim(), value.trim());
        }
        Ok(())
    }

    /// Sets `key` to `value`, replacing any earlier value. Keys are
    /// case-insensitive, so `EMBER_TASK_MAXFAILURES` sets
    /// `ember.task.maxFailures`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.values.insert(key.to_ascii_lowercase(), value.into());
        self
    }

    /// Parses `key=value` as given on a command line (`--conf k=v`).
    pub fn set_pair(&mut self, pair: &str) -> Result<&mut Self> {
        let (k, v) = pair.split_once('=').ok_or_else(|| EmberError::Conf {
            key: pair.to_string(),
            message: "expected key=value".to_string(),
        })?;
        Ok(self.set(k.trim(), v.trim()))
    }

    /// Overlays `other`: its values win.
    pub fn merge(&mut self, other: &EmberConf) {
        for (k, v) in &other.values {
            self.values.insert(k.clone(), v.clone());
        }
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(&key.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// All settings, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// An unsigned integer setting, `default` when unset.
    pub fn get_usize(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| EmberError::Conf {
                key: key.to_string(),
                message: format!("{v:?} is not a non-negative integer"),
            }),
        }
    }

    /// A boolean setting (`true`/`false`), `default` when unset.
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(EmberError::Conf {
                    key: key.to_string(),
                    message: format!("{v:?} is not true or false"),
                }),
            },
        }
    }

    /// A duration (`500ms`, `10s`; plain numbers are seconds), `default`
    /// when unset.
    pub fn get_duration(
        &self,
        key: &str,
        default: std::time::Duration,
    ) -> Result<std::time::Duration> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|message| EmberError::Conf {
                key: key.to_string(),
                message,
            }),
        }
    }

    /// A size in bytes (`512m`, `2g`, `1024k`, plain bytes), `default`
    /// when unset. Units are powers of 1024, as in Spark.
    pub fn get_bytes(&self, key: &str, default: u64) -> Result<u64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => parse_bytes(v).map_err(|message| EmberError::Conf {
                key: key.to_string(),
                message,
            }),
        }
    }
}

/// Memory this process may use: the machine's physical memory
/// (`/proc/meminfo`), or the memory limit of its control group when that
/// is lower (a container, a systemd slice, a batch job), so defaults
/// derived from it fit where the process actually runs.
pub fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    let total = kib * 1024;
    Some(cgroup_memory_limit().map_or(total, |limit| limit.min(total)))
}

/// The memory limit of this process's control group (cgroup v2
/// `memory.max` or v1 `memory.limit_in_bytes`), if one is set.
fn cgroup_memory_limit() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_limit_files(&membership)
        .into_iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .filter_map(|text| parse_cgroup_limit(&text))
        .min()
}

/// Files that may hold this process's memory limit, given the text of
/// `/proc/self/cgroup`: its own group's and, for a group mounted as the
/// root (inside a container), the root's.
fn cgroup_limit_files(membership: &str) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut files = Vec::new();
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            files.push(root.join(rel).join("memory.max"));
            files.push(root.join("memory.max"));
        } else if controllers.split(',').any(|c| c == "memory") {
            files.push(root.join("memory").join(rel).join("memory.limit_in_bytes"));
            files.push(root.join("memory").join("memory.limit_in_bytes"));
        }
    }
    files
}

/// A limit file's value in bytes; `None` for "max" and for the huge
/// values cgroup v1 reports when no limit is set.
fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let value: u64 = text.trim().parse().ok()?;
    (value < 1 << 60).then_some(value)
}

/// The execution-and-storage pool of an executor with `memory` bytes, as
/// in Spark: 300 MiB reserved for the system, 60% of the rest for Ember
/// (at least a quarter of `memory`).
pub fn usable_memory(memory: u64) -> u64 {
    let rest = memory.saturating_sub(300 << 20).max(memory / 4);
    rest / 10 * 6
}

/// Parses a duration such as `500ms`, `10s`, `2m`, `1h`; a plain number
/// is seconds, as in Spark.
pub fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    let t = text.trim().to_ascii_lowercase();
    let (num, unit_secs) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("min").or_else(|| t.strip_suffix('m')) {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t.as_str(), 1.0)
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms or 10s"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a non-negative duration"));
    }
    Ok(std::time::Duration::from_secs_f64(value * unit_secs))
}

/// Parses a size such as `512m`, `2g`, `1.5g` or `4096` (bytes).
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512m or 2g"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{text:?} is not a non-negative size"));
    }
    Ok((value * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("2g"), Ok(2 << 30));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5k"), Ok(1536));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("-1g").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        use std::time::Duration;
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut c = EmberConf::new();
        c.set("ember.task.maxFailures", "four");
        let err = c.get_usize("ember.task.maxFailures", 4).unwrap_err();
        assert!(err.to_string().contains("ember.task.maxFailures"));
    }

    #[test]
    fn keys_are_case_insensitive() {
        let mut c = EmberConf::new();
        c.set("ember.task.maxfailures", "7");
        assert_eq!(c.get_usize("ember.task.maxFailures", 4).unwrap(), 7);
    }

    #[test]
    fn later_settings_win_when_merged() {
        let mut a = EmberConf::new();
        a.set("k", "1");
        let mut b = EmberConf::new();
        b.set("k", "2");
        a.merge(&b);
        assert_eq!(a.get("k"), Some("2"));
    }

    #[test]
    fn cgroup_limits_are_read_from_v1_and_v2_layouts() {
        let v1 = cgroup_limit_files("4:memory:/batch/job7\n3:cpuset:/\n");
        assert_eq!(
            v1,
            [
                "/sys/fs/cgroup/memory/batch/job7/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/memory.limit_in_bytes"
            ]
            .map(std::path::PathBuf::from)
        );
        let v2 = cgroup_limit_files("0::/user.slice/ember.scope\n");
        assert_eq!(
            v2,
            [
                "/sys/fs/cgroup/user.slice/ember.scope/memory.max",
                "/sys/fs/cgroup/memory.max"
            ]
            .map(std::path::PathBuf::from)
        );
        assert_eq!(parse_cgroup_limit("2147483648\n"), Some(2 << 30));
        assert_eq!(parse_cgroup_limit("max\n"), None);
        // cgroup v1's "no limit": the largest page-aligned i64.
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
    }

    #[test]
    fn physical_memory_is_never_above_the_machine_total() {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib: u64 = text
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        let got = physical_memory().unwrap();
        assert!(
            got > 0 && got <= kib * 1024,
            "{got} of {} bytes",
            kib * 1024
        );
    }
}
