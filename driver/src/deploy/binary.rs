//! Application binaries, addressed by content: the driver serves its own
//! executable by SHA-256, workers fetch it once per hash into their cache
//! and check the hash before anything runs it.

use super::messages::{BinaryRef, FileRequest};
use ember_core::auth::{accept_tcp, connect_tcp, Secret};
use ember_core::codec::{recv, recv_limited, send, MAX_CONTROL_FRAME_BYTES};
use ember_core::{EmberError, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest binary a worker accepts.
pub const MAX_BINARY_BYTES: u64 = 4 << 30;
/// How long a worker waits for a driver's file server that does not
/// answer or acknowledge (a driver whose link is down).
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| EmberError::io(path, "open", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| EmberError::io(path, "read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex(&h.finalize()), size))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves one file by its hash to authenticated peers; stops when dropped.
pub struct FileServer {
    /// What workers are told to fetch.
    pub binary: BinaryRef,
    stopping: Arc<AtomicBool>,
}

impl FileServer {
    /// Hashes `path` and serves it on an ephemeral port of `bind`; workers
    /// are told to fetch it from `advertised` and that port.
    pub fn start(
        path: &Path,
        bind: &str,
        advertised: &str,
        secret: Option<Secret>,
    ) -> Result<FileServer> {
        let (sha256, size) = sha256_file(path)?;
        let listener = TcpListener::bind((bind, 0))
            .map_err(|e| EmberError::Network(format!("bind file server on {bind}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| EmberError::Network(e.to_string()))?
            .port();
        let stopping = Arc::new(AtomicBool::new(false));
        let binary = BinaryRef {
            sha256: sha256.clone(),
            size,
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source: ember_core::net::join(advertised, port),
        };
        let path = path.to_path_buf();
        let stop = stopping.clone();
        std::thread::Builder::new()
            .name("ember-file-server".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (path, sha, secret) = (path.clone(), sha256.clone(), secret.clone());
                    let _ = std::thread::Builder::new()
                        .name("ember-file-conn".into())
                        .spawn(move || {
                            if let Err(e) = serve(conn, &path, &sha, secret.as_ref()) {
                                tracing::warn!(%e, "file server");
                            }
                        });
                }
            })
            .map_err(|e| EmberError::Network(format!("start file server: {e}")))?;
        Ok(FileServer { binary, stopping })
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.binary.source);
    }
}

fn serve(mut conn: TcpStream, path: &Path, sha: &str, secret: Option<&Secret>) -> Result<()> {
    accept_tcp(&mut conn, secret)?;
    let Some(req) =
        recv_limited::<FileRequest>(&mut conn, "file request", MAX_CONTROL_FRAME_BYTES)?
    else {
        return Ok(());
    };
    if req.sha256 != sha {
        return send(
            &mut conn,
            &Err::<u64, String>(format!("no file with hash {}", req.sha256)),
        );
    }
    let mut f = std::fs::File::open(path).map_err(|e| EmberError::io(path, "open", e))?;
    let size = f
        .metadata()
        .map_err(|e| EmberError::io(path, "stat", e))?
        .len();
    send(&mut conn, &Ok::<u64, String>(size))?;
    std::io::copy(&mut f, &mut conn).map_err(|e| EmberError::io(path, "send", e))?;
    conn.flush().map_err(|e| EmberError::Network(e.to_string()))
}

/// The cached copy of `binary` under `cache`, fetched and checked first if
/// missing. Concurrent callers for the same hash may both fetch; the
/// rename makes the last one win with identical bytes.
pub fn fetch_cached(binary: &BinaryRef, cache: &Path, secret: Option<&Secret>) -> Result<PathBuf> {
    let valid = binary.sha256.len() == 64 && binary.sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(EmberError::Other(format!(
            "{:?} is not a SHA-256",
            binary.sha256
        )));
    }
    let target = cache.join(&binary.sha256);
    if target.exists() {
        return Ok(target);
    }
    if binary.size > MAX_BINARY_BYTES {
        return Err(EmberError::Other(format!(
            "binary {} of {} bytes exceeds the {MAX_BINARY_BYTES} byte limit",
            binary.name, binary.size
        )));
    }
    std::fs::create_dir_all(cache).map_err(|e| EmberError::io(cache, "create", e))?;
    let mut conn = ember_core::net::connect(&binary.source, FETCH_TIMEOUT).map_err(|e| {
        EmberError::Network(format!(
            "cannot reach the driver's file server at {}: {e}",
            binary.source
        ))
    })?;
    ember_core::net::fail_when_silent(&conn, FETCH_TIMEOUT);
    connect_tcp(&mut conn, secret)?;
    send(
        &mut conn,
        &FileRequest {
            sha256: binary.sha256.clone(),
        },
    )?;
    let size = match recv::<std::result::Result<u64, String>>(&mut conn, "file reply")? {
        Some(Ok(size)) if size == binary.size => size,
        Some(Ok(size)) => {
            return Err(EmberError::Other(format!(
                "{} is {size} bytes, {} were announced",
                binary.name, binary.size
            )))
        }
        Some(Err(e)) => return Err(EmberError::Other(e)),
        None => {
            return Err(EmberError::Network(
                "file server closed the connection".into(),
            ))
        }
    };
    let tmp = cache.join(format!(".{}.{}.tmp", binary.sha256, std::process::id()));
    let outcome = (|| {
        let mut out = std::fs::File::create(&tmp).map_err(|e| EmberError::io(&tmp, "create", e))?;
        let mut h = Sha256::new();
        let mut left = size;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = conn
                .read(&mut buf[..want])
                .map_err(|e| EmberError::Network(format!("fetch {}: {e}", binary.name)))?;
            if n == 0 {
                return Err(EmberError::Network(format!(
                    "fetch {}: connection closed with {left} bytes to go",
                    binary.name
                )));
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| EmberError::io(&tmp, "write", e))?;
            left -= n as u64;
        }
        let got = hex(&h.finalize());
        if got != binary.sha256 {
            return Err(EmberError::Other(format!(
                "{} arrived with SHA-256 {got}, expected {}",
                binary.name, binary.sha256
            )));
        }
        out.sync_all()
            .map_err(|e| EmberError::io(&tmp, "sync", e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| EmberError::io(&tmp, "chmod", e))?;
        std::fs::rename(&tmp, &target).map_err(|e| EmberError::io(&target, "rename", e))
    })();
    if outcome.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    outcome.map(|()| target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_served_binary_arrives_checked_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("app");
        std::fs::write(&src, vec![42u8; 3 << 20]).unwrap();
        let secret = Secret::new("s").unwrap();
        let server =
            FileServer::start(&src, "127.0.0.1", "127.0.0.1", Some(secret.clone())).unwrap();
        let cache = dir.path().join("cache");
        assert!(fetch_cached(&server.binary, &cache, None).is_err());
        let got = fetch_cached(&server.binary, &cache, Some(&secret)).unwrap();
        assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&src).unwrap());
        let mut wrong = server.binary.clone();
        wrong.sha256 = "0".repeat(64);
        assert!(fetch_cached(&wrong, &cache, Some(&secret)).is_err());
        wrong.sha256 = "../../etc/passwd".into();
        assert!(fetch_cached(&wrong, &cache, Some(&secret)).is_err());
    }
}
