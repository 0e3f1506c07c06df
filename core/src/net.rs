//! Which address a process binds and which it advertises, and how a
//! connection notices that its peer's link is gone.
//!
//! Every Ember process binds what it is told. Told nothing (or a wildcard
//! such as `0.0.0.0`), it advertises the address of the interface that
//! routes to the peer it first talks to (the master, or the driver), as
//! Spark picks a non-loopback address: on one machine that is 127.0.0.1,
//! across hosts it is the host's own address on the shared network.

use crate::{EmberError, Result};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Whether `host` is a wildcard (`0.0.0.0`, `::`): bind every interface.
pub fn is_wildcard(host: &str) -> bool {
    host.trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// The local address of the interface that routes to `peer` (`host:port`).
/// A UDP socket is connected, which only consults the routing table: no
/// packet is sent. The caller names the peer in its error.
pub fn route_to(peer: &str) -> std::io::Result<IpAddr> {
    let target = peer.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
    })?;
    let any: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(target)?;
    Ok(socket.local_addr()?.ip())
}

/// The host to advertise for a socket bound to `bind`: `bind` itself
/// unless it is a wildcard, else the address that routes to `peer`, else
/// (no peer) this machine's first non-loopback address.
pub fn advertised_host(bind: &str, peer: Option<&str>) -> Result<String> {
    if !is_wildcard(bind) {
        return Ok(bind.to_string());
    }
    let ip = match peer {
        Some(p) => route_to(p).map_err(|e| {
            EmberError::Network(format!("find the local address that routes to {p}: {e}"))
        })?,
        None => first_non_loopback().ok_or_else(|| {
            EmberError::Network(format!(
                "bound to {bind}, but this machine has no non-loopback address to advertise"
            ))
        })?,
    };
    Ok(ip.to_string())
}

/// `host:port`, with an IPv6 host in brackets.
pub fn join(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// This machine's first IPv4 address that is not loopback (interface
/// order), else its first such IPv6 address.
pub fn first_non_loopback() -> Option<IpAddr> {
    let mut found: Vec<IpAddr> = Vec::new();
    // SAFETY: getifaddrs fills a list we only read and then free; each
    // entry's `ifa_addr` may be null and is checked before use, and is
    // read as `sockaddr_in`/`sockaddr_in6` only when its family says so.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
            if up && !ifa.ifa_addr.is_null() {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        found.push(IpAddr::from(u32::from_be(sa.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sa = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        found.push(IpAddr::from(sa.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    let usable = |ip: &IpAddr| {
        !ip.is_loopback()
            && !ip.is_unspecified()
            && !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
    };
    found
        .iter()
        .find(|ip| ip.is_ipv4() && usable(ip))
        .or_else(|| found.iter().find(|ip| usable(ip)))
        .copied()
}

/// `url` (`scheme://host:port` or `host:port`) with a wildcard host
/// replaced by `host`: what a server bound to every interface tells others.
pub fn advertised_url(url: &str, host: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    match rest.rsplit_once(':') {
        Some((h, port)) if is_wildcard(h) => match port.parse::<u16>() {
            Ok(p) => format!("{scheme}{}", join(host, p)),
            Err(_) => url.to_string(),
        },
        _ => url.to_string(),
    }
}

/// Connects to `address` (`host:port`), giving up after `timeout` (a host
/// whose link is down does not answer at all). The caller names the peer
/// in its error.
pub fn connect(address: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let target = address.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the name has no address")
    })?;
    TcpStream::connect_timeout(&target, timeout)
}

/// Makes a connection fail once its peer has not acknowledged anything
/// for about `timeout`: data unacknowledged that long
/// (`TCP_USER_TIMEOUT`), and keepalive probes while the connection is
/// idle, so that a cut link ends blocked reads and writes instead of
/// leaving them waiting for the kernel's retries (15 minutes and more).
/// Best effort: a platform without these options keeps its defaults.
pub fn fail_when_silent(stream: &TcpStream, timeout: Duration) {
    let fd = stream.as_raw_fd();
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    let probe = (timeout.as_secs() / 3).clamp(1, i32::MAX as u64) as libc::c_int;
    let set = |level, name, value: libc::c_int| {
        // SAFETY: setsockopt on a socket this stream owns, reading one
        // c_int of the given size.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    };
    set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms);
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, probe);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, probe);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_bind_everything_and_are_never_advertised() {
        assert!(is_wildcard("0.0.0.0"));
        assert!(is_wildcard("::"));
        assert!(is_wildcard("[::]"));
        assert!(!is_wildcard("127.0.0.1"));
        assert!(!is_wildcard("node-1"));
        assert_eq!(advertised_host("10.77.0.3", None).unwrap(), "10.77.0.3");
        assert_eq!(
            advertised_host("0.0.0.0", Some("127.0.0.1:7077")).unwrap(),
            "127.0.0.1"
        );
    }

    #[test]
    fn the_route_to_loopback_starts_at_loopback() {
        assert_eq!(
            route_to("127.0.0.1:9").unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert!(route_to("no-such-host.invalid:1").is_err());
    }

    #[test]
    fn urls_of_wildcard_servers_name_the_advertised_host() {
        assert_eq!(
            advertised_url("http://0.0.0.0:4040", "10.77.0.4"),
            "http://10.77.0.4:4040"
        );
        assert_eq!(
            advertised_url("ember://[::]:7077", "fd00::1"),
            "ember://[fd00::1]:7077"
        );
        assert_eq!(
            advertised_url("http://127.0.0.1:4040", "10.77.0.4"),
            "http://127.0.0.1:4040"
        );
        assert_eq!(join("10.0.0.1", 80), "10.0.0.1:80");
    }
}
