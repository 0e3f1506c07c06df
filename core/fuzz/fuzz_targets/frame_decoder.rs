//! Feeds arbitrary bytes to the frame reader and the message decoder as a
//! daemon would read them: any input must give a frame, `None` or an
//! error, never a panic, a hang or an allocation beyond the limit.
#![no_main]

use ember_core::codec::{read_frame_limited, recv_limited, MAX_CONTROL_FRAME_BYTES};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

/// A message with the shapes daemons decode: enums, strings, byte
/// buffers, nested vectors and maps.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
enum Message {
    Register { id: String, cores: usize, memory: u64 },
    Data(Vec<u8>),
    Nested(Vec<Vec<(String, u64)>>),
    Map(std::collections::BTreeMap<String, Option<i64>>),
    Unit,
}

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(Some(frame)) = read_frame_limited(&mut r, 1 << 16) {
        assert!(frame.len() <= 1 << 16);
    }
    let mut r = data;
    while let Ok(Some(_)) = recv_limited::<Message>(&mut r, "fuzz", MAX_CONTROL_FRAME_BYTES) {}
    let _ = ember_core::codec::decompress_block(data, "fuzz");
});
