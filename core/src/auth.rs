//! Shared-secret authentication of connections between cluster processes
//! (driver, master, workers, executors).
//!
//! When `ember.authenticate` is on, every connection starts with a mutual
//! challenge-response before any message is read: the accepting side sends
//! a random nonce, the connecting side answers with its own nonce and an
//! HMAC-SHA-256 of both under the shared secret, and the accepting side
//! proves it knows the secret too. Neither side reveals the secret, and a
//! peer without it learns nothing but a refusal. Nothing is encrypted
//! (as with Spark's `spark.authenticate` without `spark.network.crypto`):
//! the point is that only holders of the secret can submit work or talk to
//! executors.
//!
//! Frames read before a peer is authenticated are limited to
//! [`MAX_HANDSHAKE_FRAME`] bytes and the handshake to a timeout, so an
//! unauthenticated peer can neither make a daemon allocate nor hold a
//! thread for long.

use crate::codec::{read_frame_limited, write_frame};
use crate::conf::EmberConf;
use crate::error::{EmberError, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Configuration keys of authentication.
pub mod keys {
    /// Whether connections must authenticate (default false).
    pub const AUTHENTICATE: &str = "ember.authenticate";
    /// The shared secret.
    pub const SECRET: &str = "ember.authenticate.secret";
    /// A file whose contents (trailing whitespace trimmed) are the secret.
    pub const SECRET_FILE: &str = "ember.authenticate.secretFile";
}

/// Environment variable through which a launcher hands the secret to the
/// executor processes it starts (never on a command line, where other
/// users could read it).
pub const SECRET_ENV: &str = "EMBER__AUTH_SECRET";

/// Largest frame accepted during the handshake.
pub const MAX_HANDSHAKE_FRAME: usize = 256;

/// How long a peer may take to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const MAGIC: &[u8] = b"EMBER-AUTH-1";
const NONCE: usize = 32;
const DENIED: &[u8] = b"DENIED";

/// A shared secret. Its `Debug` form never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret from its bytes; empty secrets are refused.
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Secret> {
        let bytes = bytes.as_ref();
        if bytes.is_empty() {
            return Err(EmberError::Conf {
                key: keys::SECRET.into(),
                message: "the shared secret is empty".into(),
            });
        }
        Ok(Secret(Arc::from(bytes)))
    }

    /// A fresh random secret (for a `local-cluster` that authenticates but
    /// was given no secret: only its own processes need to know it).
    pub fn generate() -> Secret {
        let bytes: [u8; 32] = rand::random();
        Secret(Arc::from(&bytes[..]))
    }

    /// The secret `conf` asks for: `None` unless `ember.authenticate` is
    /// true, then `ember.authenticate.secret` or the contents of
    /// `ember.authenticate.secretFile`. Authentication without a secret is
    /// an error naming both keys.
    pub fn from_conf(conf: &EmberConf) -> Result<Option<Secret>> {
        if !conf.get_bool(keys::AUTHENTICATE, false)? {
            return Ok(None);
        }
        if let Some(s) = conf.get(keys::SECRET) {
            return Secret::new(s.as_bytes()).map(Some);
        }
        if let Some(path) = conf.get(keys::SECRET_FILE) {
            let text = std::fs::read(path)
                .map_err(|e| EmberError::io(path, "read the authentication secret", e))?;
            let end = text
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |i| i + 1);
            return Secret::new(&text[..end])
                .map(Some)
                .map_err(|_| EmberError::Conf {
                    key: keys::SECRET_FILE.into(),
                    message: format!("{path} is empty"),
                });
        }
        Err(EmberError::Conf {
            key: keys::AUTHENTICATE.into(),
            message: format!(
                "authentication is on but neither {} nor {} is set",
                keys::SECRET,
                keys::SECRET_FILE
            ),
        })
    }

    /// The secret a launcher put in [`SECRET_ENV`], if any.
    pub fn from_env() -> Option<Secret> {
        let hex = std::env::var(SECRET_ENV).ok()?;
        Secret::from_hex(&hex)
    }

    /// The secret as hexadecimal, for [`SECRET_ENV`].
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`Secret::to_hex`]'s output.
    pub fn from_hex(hex: &str) -> Option<Secret> {
        let hex = hex.trim();
        if hex.is_empty() || !hex.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        Secret::new(bytes?).ok()
    }

    fn mac(&self, role: &[u8], server_nonce: &[u8], client_nonce: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(MAGIC);
        mac.update(role);
        mac.update(server_nonce);
        mac.update(client_nonce);
        mac
    }
}

fn refused(peer: &str, why: &str) -> EmberError {
    EmberError::Network(format!("authentication with {peer} failed: {why}"))
}

fn read_small(stream: &mut impl Read, peer: &str, what: &str) -> Result<Vec<u8>> {
    match read_frame_limited(stream, MAX_HANDSHAKE_FRAME) {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err(refused(
            peer,
            &format!("connection closed before the {what}"),
        )),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(refused(
                peer,
                &format!(
                    "no {what} within {HANDSHAKE_TIMEOUT:?} (is {} set the same on both sides?)",
                    keys::AUTHENTICATE
                ),
            ))
        }
        Err(e) => Err(refused(peer, &format!("{what}: {e}"))),
    }
}

fn write(stream: &mut impl Write, bytes: &[u8], peer: &str) -> Result<()> {
    write_frame(stream, bytes).map_err(|e| refused(peer, &e.to_string()))
}

/// The accepting side of the handshake over any byte stream; `peer` names
/// the other side in errors. Does nothing when `secret` is `None`.
pub fn server_handshake<S: Read + Write>(
    stream: &mut S,
    secret: Option<&Secret>,
    peer: &str,
) -> Result<()> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let server_nonce: [u8; NONCE] = rand::random();
    let mut challenge = MAGIC.to_vec();
    challenge.extend_from_slice(&server_nonce);
    write(stream, &challenge, peer)?;
    let answer = read_small(stream, peer, "answer to the challenge")?;
    let verified = answer.len() == 2 * NONCE && {
        let (client_nonce, tag) = answer.split_at(NONCE);
        secret
            .mac(b"client", &server_nonce, client_nonce)
            .verify_slice(tag)
            .is_ok()
    };
    if !verified {
        let _ = write_frame(stream, DENIED);
        return Err(refused(peer, "the peer does not know the shared secret"));
    }
    let proof = secret
        .mac(b"server", &server_nonce, &answer[..NONCE])
        .finalize()
        .into_bytes();
    write(stream, &proof, peer)
}

/// The connecting side of the handshake; `peer` names the other side in
/// errors. Does nothing when `secret` is `None`.
pub fn client_handshake<S: Read + Write>(
    stream: &mut S,
    secret: Option<&Secret>,
    peer: &str,
) -> Result<()> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let challenge = read_small(stream, peer, "authentication challenge")?;
    let Some(server_nonce) = challenge.strip_prefix(MAGIC).filter(|n| n.len() == NONCE) else {
        return Err(refused(
            peer,
            "the peer did not send an authentication challenge (is authentication on there?)",
        ));
    };
    let client_nonce: [u8; NONCE] = rand::random();
    let tag = secret
        .mac(b"client", server_nonce, &client_nonce)
        .finalize()
        .into_bytes();
    let mut answer = client_nonce.to_vec();
    answer.extend_from_slice(&tag);
    write(stream, &answer, peer)?;
    let proof = read_small(stream, peer, "server's proof")?;
    if proof == DENIED {
        return Err(refused(peer, "the peer refused our secret"));
    }
    secret
        .mac(b"server", server_nonce, &client_nonce)
        .verify_slice(&proof)
        .map_err(|_| refused(peer, "the peer does not know the shared secret"))
}

fn with_timeout(
    stream: &mut TcpStream,
    f: impl FnOnce(&mut TcpStream) -> Result<()>,
) -> Result<()> {
    let before = stream.read_timeout().ok().flatten();
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let outcome = f(stream);
    let _ = stream.set_read_timeout(before);
    outcome
}

fn peer_name(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "an unknown peer".into())
}

/// [`server_handshake`] on a TCP connection, bounded by
/// [`HANDSHAKE_TIMEOUT`].
pub fn accept_tcp(stream: &mut TcpStream, secret: Option<&Secret>) -> Result<()> {
    if secret.is_none() {
        return Ok(());
    }
    let peer = peer_name(stream);
    with_timeout(stream, |s| server_handshake(s, secret, &peer))
}

/// [`client_handshake`] on a TCP connection, bounded by
/// [`HANDSHAKE_TIMEOUT`].
pub fn connect_tcp(stream: &mut TcpStream, secret: Option<&Secret>) -> Result<()> {
    if secret.is_none() {
        return Ok(());
    }
    let peer = peer_name(stream);
    with_timeout(stream, |s| client_handshake(s, secret, &peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair(server: Option<Secret>, client: Option<Secret>) -> (Result<()>, Result<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            accept_tcp(&mut s, server.as_ref())
        });
        let mut c = TcpStream::connect(addr).unwrap();
        let client_result = connect_tcp(&mut c, client.as_ref());
        drop(c);
        (t.join().unwrap(), client_result)
    }

    #[test]
    fn the_same_secret_authenticates_both_sides() {
        let s = Secret::new("open sesame").unwrap();
        let (server, client) = pair(Some(s.clone()), Some(s));
        server.unwrap();
        client.unwrap();
    }

    #[test]
    fn a_wrong_secret_is_refused_on_both_sides() {
        let (server, client) = pair(
            Some(Secret::new("right").unwrap()),
            Some(Secret::new("wrong").unwrap()),
        );
        assert!(server.unwrap_err().to_string().contains("does not know"));
        assert!(client.is_err());
    }

    #[test]
    fn a_client_without_the_secret_that_sends_a_message_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            accept_tcp(&mut s, Some(&Secret::new("k").unwrap()))
        });
        let mut c = TcpStream::connect(addr).unwrap();
        crate::codec::send(&mut c, &("register", vec![0u8; 1000])).unwrap();
        assert!(t.join().unwrap().is_err());
    }

    #[test]
    fn the_secret_travels_as_hex_and_hides_in_debug() {
        let s = Secret::new([0u8, 1, 255]).unwrap();
        assert_eq!(s.to_hex(), "0001ff");
        assert_eq!(Secret::from_hex("0001ff"), Some(s.clone()));
        assert_eq!(Secret::from_hex("0g"), None);
        assert_eq!(Secret::from_hex("abc"), None);
        assert_eq!(format!("{s:?}"), "Secret(..)");
    }

    #[test]
    fn conf_selects_the_secret_or_names_the_missing_keys() {
        let mut c = EmberConf::new();
        assert_eq!(Secret::from_conf(&c).unwrap(), None);
        c.set(keys::AUTHENTICATE, "true");
        let err = Secret::from_conf(&c).unwrap_err().to_string();
        assert!(
            err.contains(keys::SECRET) && err.contains(keys::SECRET_FILE),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("ember-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "from a file\n").unwrap();
        c.set(keys::SECRET_FILE, file.display().to_string());
        assert_eq!(
            Secret::from_conf(&c).unwrap(),
            Some(Secret::new("from a file").unwrap())
        );
        c.set(keys::SECRET, "inline");
        assert_eq!(
            Secret::from_conf(&c).unwrap(),
            Some(Secret::new("inline").unwrap())
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
