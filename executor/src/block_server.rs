//! Serving this executor's shuffle segments and cached blocks to other
//! executors, and fetching theirs.
//!
//! A segment request names a shuffle, a reduce partition and the map
//! outputs wanted; the reply carries those segments in order. A block
//! request names a cached partition; the reply carries it encoded, or
//! nothing if this executor no longer has it. Connections are kept in a
//! small pool per address. With a shared secret, every connection
//! authenticates first ([`ember_core::auth`]), and requests are limited to
//! [`MAX_CONTROL_FRAME_BYTES`] so a bad peer cannot exhaust memory.

use ember_core::auth::{accept_tcp, connect_tcp, Secret};
use ember_core::codec::{recv, recv_limited, send, MAX_CONTROL_FRAME_BYTES};
use ember_core::{EmberError, Result, ShuffleId};
use ember_rdd::task::RemoteFetcher;
use ember_shuffle::ShuffleFiles;
use ember_storage::{BlockId, BlockManager};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a fetch waits for a silent block server unless told
/// otherwise (Ember's `ember.network.timeout` default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize, Deserialize)]
enum Request {
    /// Segment `reduce` of each map output in `maps`.
    Segments {
        shuffle: ShuffleId,
        maps: Vec<usize>,
        reduce: usize,
    },
    /// A cached partition.
    Block(BlockId),
}

type SegmentsReply = std::result::Result<Vec<ByteBuf>, EmberError>;
type BlockReply = std::result::Result<Option<ByteBuf>, EmberError>;

/// What a block server serves.
#[derive(Clone)]
pub struct Served {
    /// Shuffle map outputs.
    pub files: ShuffleFiles,
    /// Cached partitions.
    pub blocks: Arc<BlockManager>,
}

/// Starts a server for `served` on an ephemeral port of `bind` and returns
/// the address others reach it at, `advertised:port` (`advertised` is
/// `bind` unless `bind` is a wildcard); with a `secret`, every connection
/// must prove it knows it.
pub fn start(
    served: Served,
    bind: &str,
    advertised: &str,
    secret: Option<Secret>,
) -> Result<String> {
    let listener = TcpListener::bind((bind, 0))
        .map_err(|e| EmberError::Network(format!("bind block server on {bind}: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| EmberError::Network(e.to_string()))?
        .port();
    let addr = ember_core::net::join(advertised, port);
    std::thread::Builder::new()
        .name("ember-block-server".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let served = served.clone();
                let secret = secret.clone();
                let _ = std::thread::Builder::new()
                    .name("ember-block-conn".into())
                    .spawn(move || serve(conn, served, secret));
            }
        })
        .map_err(|e| EmberError::Network(format!("start block server: {e}")))?;
    Ok(addr)
}

fn serve(mut conn: TcpStream, served: Served, secret: Option<Secret>) {
    let _ = conn.set_nodelay(true);
    if let Err(e) = accept_tcp(&mut conn, secret.as_ref()) {
        tracing::warn!(%e, "block server refused a connection");
        return;
    }
    // A malformed request ends this connection only.
    while let Ok(Some(req)) =
        recv_limited::<Request>(&mut conn, "block request", MAX_CONTROL_FRAME_BYTES)
    {
        let sent = match req {
            Request::Segments {
                shuffle,
                maps,
                reduce,
            } => {
                let reply: SegmentsReply = maps
                    .iter()
                    .map(|&m| {
                        served
                            .files
                            .read_segment(shuffle, m, reduce)
                            .map(ByteBuf::from)
                    })
                    .collect();
                send(&mut conn, &reply)
            }
            Request::Block(id) => {
                let reply: BlockReply =
                    served.blocks.get_encoded(&id).map(|b| b.map(ByteBuf::from));
                send(&mut conn, &reply)
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Fetches segments and blocks over TCP, reusing connections.
pub struct TcpFetcher {
    pool: Mutex<HashMap<String, Vec<TcpStream>>>,
    secret: Option<Secret>,
    timeout: Duration,
}

impl Default for TcpFetcher {
    fn default() -> Self {
        Self::with_secret(None)
    }
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
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Gives up on a block server that does not answer a connection, or
    /// acknowledge what was sent, within `timeout` (a host whose link was
    /// cut): the fetch fails and the scheduler recomputes, instead of a
    /// task waiting for the kernel's retries.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
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
        let mut c = ember_core::net::connect(address, self.timeout)
            .map_err(|e| EmberError::Network(format!("connect to {address}: {e}")))?;
        ember_core::net::fail_when_silent(&c, self.timeout);
        let _ = c.set_nodelay(true);
        connect_tcp(&mut c, self.secret.as_ref())?;
        Ok(c)
    }
}

impl TcpFetcher {
    /// Sends `req` to `address` and reads its reply, returning the
    /// connection to the pool once the exchange is complete.
    fn ask<R: DeserializeOwned>(&self, address: &str, req: &Request) -> Result<R> {
        let mut conn = self.connection(address)?;
        send(&mut conn, req)?;
        let reply: R = recv(&mut conn, "block server reply")?
            .ok_or_else(|| EmberError::Network(format!("{address} closed the connection")))?;
        self.pool
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(address.to_string())
            .or_default()
            .push(conn);
        Ok(reply)
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
        let req = Request::Segments {
            shuffle,
            maps: maps.to_vec(),
            reduce,
        };
        let segments = self.ask::<SegmentsReply>(address, &req)??;
        Ok(segments.into_iter().map(ByteBuf::into_vec).collect())
    }

    fn fetch_block(&self, address: &str, block: BlockId) -> Result<Option<Vec<u8>>> {
        let reply = self.ask::<BlockReply>(address, &Request::Block(block))??;
        Ok(reply.map(ByteBuf::into_vec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_shuffle::ChunkWriter;
    use ember_storage::{MemoryBudget, StorageLevel};

    fn served(dir: &std::path::Path) -> Served {
        Served {
            files: ShuffleFiles::new(dir),
            blocks: Arc::new(BlockManager::new(
                dir.join("blocks"),
                Arc::new(MemoryBudget::new(1 << 20, 0.5)),
            )),
        }
    }

    #[test]
    fn segments_are_served_and_missing_ones_are_errors() {
        let dir = std::env::temp_dir().join(format!("ember-bs-test-{}", std::process::id()));
        let served = served(&dir);
        let mut w = ChunkWriter::new();
        w.push(&7u32).unwrap();
        served
            .files
            .write_map_output(ShuffleId(3), 0, &[w.finish()], 0)
            .unwrap();
        let addr = start(served, "127.0.0.1", "127.0.0.1", None).unwrap();
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
        let served = served(&dir);
        let mut w = ChunkWriter::new();
        w.push(&9u32).unwrap();
        served
            .files
            .write_map_output(ShuffleId(1), 0, &[w.finish()], 0)
            .unwrap();
        let secret = Secret::new("block secret").unwrap();
        let addr = start(served, "127.0.0.1", "127.0.0.1", Some(secret.clone())).unwrap();
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

    #[test]
    fn cached_blocks_are_served_and_absent_ones_are_none() {
        let dir = std::env::temp_dir().join(format!("ember-bs-block-{}", std::process::id()));
        let served = served(&dir);
        let id = BlockId::Rdd {
            rdd: ember_core::RddId(4),
            partition: 2,
        };
        let records: Arc<Vec<String>> = Arc::new(vec!["a".into(), "bc".into()]);
        served
            .blocks
            .put(id, StorageLevel::MemoryOnly, records.clone())
            .unwrap();
        let addr = start(served, "127.0.0.1", "127.0.0.1", None).unwrap();
        let f = TcpFetcher::new();
        let bytes = f.fetch_block(&addr, id).unwrap().expect("block is cached");
        let back: Vec<String> = ember_storage::block_manager::decode_block(&bytes, "t").unwrap();
        assert_eq!(back, *records);
        let other = BlockId::Rdd {
            rdd: ember_core::RddId(4),
            partition: 3,
        };
        assert!(f.fetch_block(&addr, other).unwrap().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
