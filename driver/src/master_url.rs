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
    /// Executors a standalone master (`ember://host:port`) places on its
    /// workers.
    Standalone {
        /// The master's `host:port`.
        address: String,
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
            if n.contains(&0) {
                return Err(bad("local-cluster numbers must be at least 1"));
            }
            return Ok(MasterUrl::LocalCluster {
                executors: n[0],
                cores: n[1],
                memory_mib: n[2],
            });
        }
        if let Some(address) = u.strip_prefix("ember://") {
            let address = address.trim_end_matches('/');
            let port_ok = address
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !port_ok {
                return Err(bad("a standalone master URL is ember://host:port"));
            }
            return Ok(MasterUrl::Standalone {
                address: address.to_string(),
            });
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
            // Known once executors registered (`Backend::total_cores`).
            MasterUrl::Standalone { .. } => 0,
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
    fn standalone_urls_name_the_master() {
        assert_eq!(
            MasterUrl::parse("ember://127.0.0.1:7077").unwrap(),
            MasterUrl::Standalone {
                address: "127.0.0.1:7077".into()
            }
        );
        for bad in [
            "ember://",
            "ember://host",
            "ember://:7077",
            "ember://h:x",
            "ember://h:0",
        ] {
            let msg = MasterUrl::parse(bad).unwrap_err().to_string();
            assert!(msg.contains("ember://host:port"), "{msg}");
        }
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
