//! The frame reader and message decoder on garbage (the stable-toolchain
//! counterpart of `core/fuzz`): seeded random bytes, truncations and
//! hostile lengths give errors, never panics or large allocations.

use ember_core::codec::{encode, read_frame_limited, recv_limited, write_frame};
use serde::Deserialize;

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
enum Message {
    Register { id: String, cores: usize },
    Data(Vec<u8>),
    Nested(Vec<Vec<(String, u64)>>),
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn decode_all(bytes: &[u8]) {
    let mut r = bytes;
    while let Ok(Some(_)) = recv_limited::<Message>(&mut r, "garbage", 1 << 16) {}
}

#[test]
fn random_bytes_never_panic_the_decoder() {
    let mut s = 0x5EED_u64;
    for _ in 0..20_000 {
        let len = (xorshift(&mut s) % 96) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut s) as u8).collect();
        decode_all(&bytes);
        // The same bytes behind a valid length prefix reach the decoder.
        let mut framed = Vec::new();
        write_frame(&mut framed, &bytes).unwrap();
        decode_all(&framed);
    }
}

#[test]
fn mutated_valid_messages_never_panic_the_decoder() {
    #[derive(serde::Serialize)]
    enum Out {
        Register { id: String, cores: usize },
        Data(#[serde(with = "serde_bytes_shim")] Vec<u8>),
        Nested(Vec<Vec<(String, u64)>>),
    }
    mod serde_bytes_shim {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }
    let samples = [
        encode(&Out::Register {
            id: "worker-1".into(),
            cores: 4,
        })
        .unwrap(),
        encode(&Out::Data(vec![7; 40])).unwrap(),
        encode(&Out::Nested(vec![vec![("a".into(), 1)], vec![]])).unwrap(),
    ];
    let mut s = 42u64;
    for sample in &samples {
        for _ in 0..5_000 {
            let mut m = sample.clone();
            for _ in 0..1 + xorshift(&mut s) % 4 {
                let i = (xorshift(&mut s) as usize) % m.len();
                m[i] = xorshift(&mut s) as u8;
            }
            let cut = (xorshift(&mut s) as usize) % (m.len() + 1);
            let mut framed = Vec::new();
            write_frame(&mut framed, &m[..cut]).unwrap();
            decode_all(&framed);
        }
    }
}

#[test]
fn a_huge_announced_length_is_refused_before_reading() {
    let mut bytes = (16u32 << 20).to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 8]);
    let err = read_frame_limited(&mut bytes.as_slice(), 1 << 20).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[test]
fn a_truncated_frame_is_an_error_not_a_short_frame() {
    let mut bytes = 100u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[1; 10]);
    assert!(read_frame_limited(&mut bytes.as_slice(), 1 << 20).is_err());
}
