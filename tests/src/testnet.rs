//! Test hosts for multi-host tests: network namespaces made by
//! `scripts/testnet.sh`, one address each on 10.77.0.0/24, removed when
//! the [`TestNet`] is dropped (also when the test fails), and processes
//! started inside them with `ip netns exec`.
//!
//! Namespaces are named `embnet<pid>x<n>-h<i>`: unique per test process
//! and per network, so tests running in parallel never share one, and
//! networks of a test process that died are removed by the next one.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// N test hosts joined by a bridge; torn down on drop.
pub struct TestNet {
    prefix: String,
    hosts: usize,
}

/// The committed script that makes and removes the namespaces.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("testnet.sh")
}

fn run_script(args: &[&str], prefix: &str) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .env("EMBER_TESTNET", prefix)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script().display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`testnet.sh {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TestNet {
    /// Makes `hosts` test hosts (1..=hosts). Fails with the reason when
    /// namespaces cannot be made (not root, no `ip`): a multi-host test
    /// must never pass without them.
    pub fn up(hosts: usize) -> Result<TestNet, String> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "embnet{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        // Networks left by test processes that were killed.
        let _ = run_script(&["clean"], &prefix);
        // The guard exists before `up`, so a half-made network goes too.
        let net = TestNet { prefix, hosts };
        run_script(&["up", &hosts.to_string()], &net.prefix).map_err(|e| {
            format!(
                "cannot make {hosts} test hosts (network namespaces need root and iproute2): {e}"
            )
        })?;
        Ok(net)
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// The namespace of host `i` (1-based).
    pub fn namespace(&self, i: usize) -> String {
        assert!((1..=self.hosts).contains(&i), "no test host {i}");
        format!("{}-h{i}", self.prefix)
    }

    /// The address of host `i`.
    pub fn addr(&self, i: usize) -> String {
        assert!((1..=self.hosts).contains(&i), "no test host {i}");
        format!("10.77.0.{i}")
    }

    /// A command that runs `program` on host `i`.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.namespace(i)]).arg(program);
        c
    }

    /// Runs `f` on a thread inside host `i`'s network namespace, so that
    /// the sockets it makes (an HTTP request to a daemon's UI) are host
    /// `i`'s.
    pub fn within<T: Send>(&self, i: usize, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.namespace(i));
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns with a namespace file this thread holds
                // open; it changes only this thread's network namespace.
                let rc = unsafe {
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET)
                };
                assert_eq!(rc, 0, "enter {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Takes host `i`'s link down at the bridge, as if its cable were
    /// pulled: its processes keep running and see no error until their
    /// peers' silence tells them.
    pub fn cut(&self, i: usize) {
        run_script(&["cut", &i.to_string()], &self.prefix).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Brings host `i`'s link back.
    pub fn restore(&self, i: usize) {
        run_script(&["restore", &i.to_string()], &self.prefix).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Packets the hosts tried to send to an address they have no route
    /// to (`OutNoRoutes` of each host's IP statistics): their only routes
    /// are loopback and the test subnet, so any other destination counts
    /// here. Returns `(host, count)` for each host with a non-zero count.
    pub fn sends_outside(&self) -> Vec<(usize, u64)> {
        (1..=self.hosts)
            .filter_map(|i| {
                let out = self
                    .command(i, "cat")
                    .arg("/proc/net/snmp")
                    .output()
                    .unwrap_or_else(|e| panic!("read host {i}'s IP statistics: {e}"));
                let text = String::from_utf8_lossy(&out.stdout);
                let n = out_no_routes(&text)
                    .unwrap_or_else(|| panic!("no OutNoRoutes in host {i}'s statistics: {text}"));
                (n > 0).then_some((i, n))
            })
            .collect()
    }

    /// Every route of every host: loopback's and the subnet's only.
    pub fn routes(&self, i: usize) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.namespace(i), "route", "show", "table", "all"])
            .output()
            .unwrap_or_else(|e| panic!("list host {i}'s routes: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Err(e) = run_script(&["down"], &self.prefix) {
            eprintln!("{e}");
        }
    }
}

/// `OutNoRoutes` from the text of `/proc/net/snmp`.
fn out_no_routes(snmp: &str) -> Option<u64> {
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next()?, ip.next()?);
    let i = names.split_whitespace().position(|n| n == "OutNoRoutes")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::out_no_routes;

    #[test]
    fn out_no_routes_is_read_from_the_ip_lines() {
        let snmp = "Ip: Forwarding DefaultTTL OutRequests OutNoRoutes\nIp: 2 64 4 7\nIcmp: InMsgs\nIcmp: 0\n";
        assert_eq!(out_no_routes(snmp), Some(7));
        assert_eq!(out_no_routes("Icmp: InMsgs\nIcmp: 0\n"), None);
    }
}
