//! Serving this executor's shuffle segments to other executors, and
//! fetching theirs.
//!
//! One request names a shuffle, a reduce partition and the map outputs
//! wanted; the reply carries those segments in order. Connections are kept
//! in a small pool per address. With a shared secret, every connection
//! authenticates first ([`ember_core::auth`]), and requests are limited to
//! [`MAX_CONTROL_FRAME_BYTES`] so a bad peer cannot exhaust memory.

use ember_core::auth::{accept_tcp, connect_tcp, Secret};
use ember_core::codec::{recv, recv_limited, send, MAX_CONTROL_FRAME_BYTES};
use ember_core::{EmberError, Result, ShuffleId};
use ember_rdd::task::RemoteFetcher;
use ember_shuffle::ShuffleFiles;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;

#[derive(Serialize, Deserialize)]
struct FetchRequest {
    shuffle: ShuffleId,
    maps: Vec<usize>,
    reduce: usize,
}

type FetchReply = std::result::Result<Vec<ByteBuf>, EmberError>;

/// Starts a server for the segments in `files` on an ephemeral loopback
/// port (or `host`) and returns its address.
pub fn start(files: ShuffleFiles, host: &str) -> Result<String> {
    start_with_auth(files, host, None)
}

/// [`start`], requiring every connection to prove it knows `secret`.
pub fn start_with_auth(files: ShuffleFiles, host: &str, secret: Option<Secret>) -> Result<String> {
    let listener = TcpListener::bind((host, 0))
        .map_err(|e| EmberError::Network(format!("bind block server on {host}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| EmberError::Network(e.to_string()))?
        .to_string();
    std::thread::Builder::new()
        .name("ember-block-server".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let files = files.clone();
                let secret = secret.clone();
                let _ = std::thread::Builder::new()
                    .name("ember-block-conn".into())
                    .spawn(move || serve(conn, files, secret));
            }
        })
        .map_err(|e| EmberError::Network(format!("start block server: {e}")))?;
    Ok(addr)
}

fn serve(mut conn: TcpStream, files: ShuffleFiles, secret: Option<Secret>) {
    let _ = conn.set_nodelay(true);
    if let Err(e) = accept_tcp(&mut conn, secret.as_ref()) {
        tracing::warn!(%e, "block server refused a connection");
        return;
    }
    // A malformed request ends this connection only.
    while let Ok(Some(req)) =
        recv_limited::<FetchRequest>(&mut conn, "fetch request", MAX_CONTROL_FRAME_BYTES)
    {
        let reply: FetchReply = req
            .maps
            .iter()
            .map(|&m| {
                files
                    .read_segment(req.shuffle, m, req.reduce)
                    .map(ByteBuf::from)
            })
            .collect();
        if send(&mut conn, &reply).is_err() {
            return;
        }
    }
}

/// Fetches segments over TCP, reusing connections.
#[derive(Default)]
pub struct TcpFetcher {
    pool: Mutex<HashMap<String, Vec<TcpStream>>>,
    secret: Option<Secret>,
}

impl TcpFetcher {
    /// A fetcher with an empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fetcher that authenticates its connections with `secret`.
    pub fn with_secret(secret: Option<Secret>) -> Self {
        TcpFetcher {
            pool: Mutex::default(),
            secret,
        }
    }

    fn connection(&self, address: &str) -> Result<TcpStream> {
        if let Some(c) = self
            .pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(address)
            .and_then(Vec::pop)
        {
            return Ok(c);
        }
        let mut c = TcpStream::connect(address)
            .map_err(|e| EmberError::Network(format!("connect to {address}: {e}")))?;
        let _ = c.set_nodelay(true);
        connect_tcp(&mut c, self.secret.as_ref())?;
        Ok(c)
    }
}

impl RemoteFetcher for TcpFetcher {
    fn fetch(
        &self,
        address: &str,
        shuffle: ShuffleId,
        maps: &[usize],
        reduce: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut conn = self.connection(address)?;
        send(
            &mut conn,
            &FetchRequest {
                shuffle,
                maps: maps.to_vec(),
                reduce,
            },
        )?;
        let reply: FetchReply = recv(&mut conn, "fetch reply")?
            .ok_or_else(|| EmberError::Network(format!("{address} closed the connection")))?;
        let segments = reply?;
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(address.to_string())
            .or_default()
            .push(conn);
        Ok(segments.into_iter().map(ByteBuf::into_vec).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_shuffle::ChunkWriter;

    #[test]
    fn segments_are_served_and_missing_ones_are_errors() {
        let dir = std::env::temp_dir().join(format!("ember-bs-test-{}", std::process::id()));
        let files = ShuffleFiles::new(&dir);
        let mut w = ChunkWriter::new();
        w.push(&7u32).unwrap();
        files
            .write_map_output(ShuffleId(3), 0, &[w.finish()], 0)
            .unwrap();
        let addr = start(files, "127.0.0.1").unwrap();
        let f = TcpFetcher::new();
        let segs = f.fetch(&addr, ShuffleId(3), &[0], 0).unwrap();
        let recs: Vec<u32> = ember_shuffle::segment_records(&segs[0], "t").unwrap();
        assert_eq!(recs, vec![7]);
        let err = f.fetch(&addr, ShuffleId(3), &[1], 0).unwrap_err();
        assert!(err.to_string().contains("shuffle_3_1"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn with_a_secret_only_fetchers_that_know_it_are_served() {
        let dir = std::env::temp_dir().join(format!("ember-bs-auth-{}", std::process::id()));
        let files = ShuffleFiles::new(&dir);
        let mut w = ChunkWriter::new();
        w.push(&9u32).unwrap();
        files
            .write_map_output(ShuffleId(1), 0, &[w.finish()], 0)
            .unwrap();
        let secret = Secret::new("block secret").unwrap();
        let addr = start_with_auth(files, "127.0.0.1", Some(secret.clone())).unwrap();
        let stranger = TcpFetcher::new();
        assert!(stranger.fetch(&addr, ShuffleId(1), &[0], 0).is_err());
        let wrong = TcpFetcher::with_secret(Some(Secret::new("guess").unwrap()));
        assert!(wrong.fetch(&addr, ShuffleId(1), &[0], 0).is_err());
        // A garbage frame of a huge length is refused; the server goes on.
        let mut raw = TcpStream::connect(&addr).unwrap();
        use std::io::Write;
        let _ = raw.write_all(&u32::MAX.to_le_bytes());
        drop(raw);
        let friend = TcpFetcher::with_secret(Some(secret));
        let segs = friend.fetch(&addr, ShuffleId(1), &[0], 0).unwrap();
        let recs: Vec<u32> = ember_shuffle::segment_records(&segs[0], "t").unwrap();
        assert_eq!(recs, vec![9]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
