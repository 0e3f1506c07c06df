//! `ember-shuffle`: moving records between stages.
//!
//! A map task writes one data file and one index file; the data file holds
//! one segment per reduce partition, each segment a run of checksummed lz4
//! chunks of MessagePack records. Reducers read their segment locally or
//! ask the executor that wrote it. The driver's [`MapOutputTracker`] knows
//! where every map output is.

pub mod chunks;
pub mod files;
pub mod tracker;

pub use chunks::{segment_records, ChunkReader, ChunkWriter};
pub use files::{read_segment, ShuffleFiles};
pub use tracker::{MapOutputTracker, MapStatus};
