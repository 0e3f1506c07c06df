//! The wire and disk codec: records and messages are MessagePack
//! (rmp-serde); blocks on disk and on the wire are lz4-compressed with an
//! xxh3 checksum so corruption is detected, never returned as data;
//! messages on a socket are length-prefixed frames with a size limit.

use crate::error::{EmberError, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};

/// Largest frame a peer may send (1 GiB): bigger ones are refused before
/// any allocation, so a garbage length cannot exhaust memory.
pub const MAX_FRAME_BYTES: usize = 1 << 30;

/// Serializes `value` as MessagePack.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec(value).map_err(|e| EmberError::codec("encode", e))
}

/// Appends the MessagePack encoding of `value` to `out`. Records
/// appended one by one after a [`seq_header`] of their count decode as
/// one `Vec` of them.
pub fn encode_into<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<()> {
    rmp_serde::encode::write(out, value).map_err(|e| EmberError::codec("encode", e))
}

/// The MessagePack header of an array of `n` elements: its bytes and how
/// many of them are used (1, 3 or 5).
pub fn seq_header(n: u32) -> ([u8; 5], usize) {
    let mut h = [0u8; 5];
    if n < 16 {
        h[0] = 0x90 | n as u8;
        (h, 1)
    } else if let Ok(n) = u16::try_from(n) {
        h[0] = 0xdc;
        h[1..3].copy_from_slice(&n.to_be_bytes());
        (h, 3)
    } else {
        h[0] = 0xdd;
        h[1..5].copy_from_slice(&n.to_be_bytes());
        (h, 5)
    }
}

/// Deserializes MessagePack bytes; `what` names the thing for the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| EmberError::codec(what, e))
}

/// Compresses `raw` with lz4 and prefixes a checksum of the compressed
/// bytes: `[xxh3 u64 LE][lz4 block with its size prepended]`.
pub fn compress_block(raw: &[u8]) -> Vec<u8> {
    let compressed = lz4_flex::compress_prepend_size(raw);
    let mut out = Vec::with_capacity(compressed.len() + 8);
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&compressed).to_le_bytes());
    out.extend_from_slice(&compressed);
    out
}

/// Checks and decompresses a block made by [`compress_block`].
pub fn decompress_block(block: &[u8], what: &str) -> Result<Vec<u8>> {
    if block.len() < 12 {
        return Err(EmberError::codec(what, "block is truncated"));
    }
    let (sum, body) = block.split_at(8);
    let expected = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
    if xxhash_rust::xxh3::xxh3_64(body) != expected {
        return Err(EmberError::codec(
            what,
            "checksum mismatch: the block is corrupt",
        ));
    }
    lz4_flex::decompress_size_prepended(body).map_err(|e| EmberError::codec(what, e))
}

/// Writes one length-prefixed frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes exceeds the {} byte limit",
                payload.len(),
                MAX_FRAME_BYTES
            ),
        ));
    }
    w.write_all(&(payload.len() as u32).to_le_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

/// Largest control message a daemon (master, worker) or an executor's
/// block server reads from a peer: 16 MiB. Only connections that carry
/// data (task results, stage pipelines, shuffle blocks) allow
/// [`MAX_FRAME_BYTES`].
pub const MAX_CONTROL_FRAME_BYTES: usize = 16 << 20;

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    read_frame_limited(r, MAX_FRAME_BYTES)
}

/// Reads one frame of at most `limit` bytes; a longer announced length is
/// refused before anything is allocated, and memory grows only as bytes
/// actually arrive. `Ok(None)` on a clean end of stream before a frame.
pub fn read_frame_limited(r: &mut impl Read, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > limit.min(MAX_FRAME_BYTES) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "frame length {len} exceeds the {} byte limit",
                limit.min(MAX_FRAME_BYTES)
            ),
        ));
    }
    let mut buf = Vec::with_capacity(len.min(1 << 20));
    r.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() < len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("frame truncated after {} of {len} bytes", buf.len()),
        ));
    }
    Ok(Some(buf))
}

/// Receives one message of at most `limit` bytes; `Ok(None)` when the peer
/// closed the connection.
pub fn recv_limited<T: DeserializeOwned>(
    r: &mut impl Read,
    what: &str,
    limit: usize,
) -> Result<Option<T>> {
    match read_frame_limited(r, limit).map_err(|e| EmberError::Network(format!("{what}: {e}")))? {
        None => Ok(None),
        Some(bytes) => decode(&bytes, what).map(Some),
    }
}

/// Sends a message as one frame.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<()> {
    let bytes = encode(msg)?;
    write_frame(w, &bytes).map_err(|e| EmberError::Network(format!("send: {e}")))
}

/// Receives one message; `Ok(None)` when the peer closed the connection.
pub fn recv<T: DeserializeOwned>(r: &mut impl Read, what: &str) -> Result<Option<T>> {
    match read_frame(r).map_err(|e| EmberError::Network(format!("{what}: {e}")))? {
        None => Ok(None),
        Some(bytes) => decode(&bytes, what).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_appended_after_a_header_decode_as_a_vec() {
        for n in [0u32, 1, 15, 16, 65_535, 65_536, 70_000] {
            let records: Vec<(u64, String)> =
                (0..n as u64).map(|i| (i << 20, format!("v{i}"))).collect();
            let (header, len) = seq_header(n);
            let mut bytes = header[..len].to_vec();
            for r in &records {
                encode_into(&mut bytes, r).unwrap();
            }
            assert_eq!(bytes, encode(&records).unwrap(), "{n} records");
            let back: Vec<(u64, String)> = decode(&bytes, "t").unwrap();
            assert_eq!(back, records);
        }
    }

    #[test]
    fn blocks_round_trip() {
        let raw: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        assert_eq!(decompress_block(&compress_block(&raw), "t").unwrap(), raw);
    }

    #[test]
    fn a_flipped_byte_is_detected() {
        let mut block = compress_block(b"some shuffle data, some shuffle data");
        let last = block.len() - 1;
        block[last] ^= 0x40;
        let err = decompress_block(&block, "shuffle 1 map 0").unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn a_truncated_block_is_detected() {
        let block = compress_block(b"0123456789abcdef0123456789abcdef");
        assert!(decompress_block(&block[..block.len() - 3], "t").is_err());
        assert!(decompress_block(&block[..5], "t").is_err());
    }

    #[test]
    fn oversized_frame_lengths_are_refused_without_allocating() {
        let mut bytes = (u32::MAX).to_le_bytes().to_vec();
        bytes.extend_from_slice(b"xx");
        let err = read_frame(&mut bytes.as_slice()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        send(&mut buf, &("hello", 42u32)).unwrap();
        let got: (String, u32) = recv(&mut buf.as_slice(), "t").unwrap().unwrap();
        assert_eq!(got, ("hello".to_string(), 42));
    }
}
