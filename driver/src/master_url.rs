//! Parsing master URLs: where a context's executors run.

use ember_core::{EmberError, Result};

/// Where executors run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterUrl {
    /// Task threads inside the driver process.
    Local {
        /// Number of task threads.
        threads: usize,
    },
    /// Executor processes of this binary on this machine.
    LocalCluster {
        /// Number of executor processes.
        executors: usize,
        /// Task threads per executor.
        cores: usize,
        /// Memory per executor, MiB.
        memory_mib: usize,
    },
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl MasterUrl {
    /// Parses `local`, `local[N]`, `local[*]` or `local-cluster[N,C,M]`.
    pub fn parse(url: &str) -> Result<MasterUrl> {
        let bad = |message: &str| EmberError::MasterUrl {
            url: url.to_string(),
            message: message.to_string(),
        };
        let u = url.trim();
        if u == "local" {
            return Ok(MasterUrl::Local { threads: 1 });
        }
        if let Some(inner) = u.strip_prefix("local[").and_then(|r| r.strip_suffix(']')) {
            let threads = if inner.trim() == "*" {
                cpus()
            } else {
                inner
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| bad("the thread count must be a number or *"))?
            };
            if threads == 0 {
                return Err(bad("the thread count must be at least 1"));
            }
            return Ok(MasterUrl::Local { threads });
        }
        if let Some(inner) = u
            .strip_prefix("local-cluster[")
            .and_then(|r| r.strip_suffix(']'))
        {
            let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
            if parts.len() != 3 {
                return Err(bad(
                    "local-cluster takes three numbers: executors, cores each, MiB each",
                ));
            }
            let n: Vec<usize> = parts
                .iter()
                .map(|p| p.parse::<usize>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad("local-cluster takes three whole numbers"))?;
            if n.iter().any(|&x| x == 0) {
                return Err(bad("local-cluster numbers must be at least 1"));
            }
            return Ok(MasterUrl::LocalCluster {
                executors: n[0],
                cores: n[1],
                memory_mib: n[2],
            });
        }
        if u.starts_with("ember://") {
            return Err(bad(
                "standalone masters (ember://) are not supported by this build yet",
            ));
        }
        Err(bad("unknown form"))
    }

    /// Total task slots.
    pub fn total_cores(&self) -> usize {
        match self {
            MasterUrl::Local { threads } => *threads,
            MasterUrl::LocalCluster {
                executors, cores, ..
            } => executors * cores,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms_parse() {
        assert_eq!(
            MasterUrl::parse("local").unwrap(),
            MasterUrl::Local { threads: 1 }
        );
        assert_eq!(
            MasterUrl::parse("local[3]").unwrap(),
            MasterUrl::Local { threads: 3 }
        );
        assert!(
            matches!(MasterUrl::parse("local[*]").unwrap(), MasterUrl::Local { threads } if threads >= 1)
        );
        assert_eq!(
            MasterUrl::parse("local-cluster[2, 1, 1024]").unwrap(),
            MasterUrl::LocalCluster {
                executors: 2,
                cores: 1,
                memory_mib: 1024
            }
        );
    }

    #[test]
    fn bad_urls_list_the_accepted_forms() {
        for url in [
            "lokal",
            "local[x]",
            "local[0]",
            "local-cluster[2,1]",
            "yarn",
            "",
        ] {
            let msg = MasterUrl::parse(url).unwrap_err().to_string();
            assert!(
                msg.contains("local-cluster[N,C,M]") && msg.contains("local[N]"),
                "{msg}"
            );
        }
    }
}
