//! Records of the pipeline: whole volumes and per-volume pieces of voxel
//! blocks, serialized as contiguous little-endian bytes rather than one
//! value at a time.

use ndarray::{Array3, ShapeBuilder};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One 3-D volume (x-fastest in memory, as NIfTI stores it).
#[derive(Clone, Debug, PartialEq)]
pub struct Vol(pub Array3<f32>);

fn f32s_to_bytes<'a>(values: impl Iterator<Item = &'a f32>, n: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(n * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}

fn bytes_to_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl Serialize for Vol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (x, y, z) = self.0.dim();
        // The transposed view iterates x fastest.
        let bytes = f32s_to_bytes(self.0.t().iter(), x * y * z);
        ([x, y, z], serde_bytes::ByteBuf::from(bytes)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Vol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (shape, bytes): ([usize; 3], serde_bytes::ByteBuf) = Deserialize::deserialize(d)?;
        let data = bytes_to_f32s(&bytes);
        Array3::from_shape_vec((shape[0], shape[1], shape[2]).f(), data)
            .map(Vol)
            .map_err(|e| D::Error::custom(format!("volume record: {e}")))
    }
}

/// Voxel values of one block of one volume, x-fastest within the block.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockData(pub Vec<f32>);

impl Serialize for BlockData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_bytes::ByteBuf::from(f32s_to_bytes(self.0.iter(), self.0.len())).serialize(s)
    }
}

impl<'de> Deserialize<'de> for BlockData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: serde_bytes::ByteBuf = Deserialize::deserialize(d)?;
        Ok(BlockData(bytes_to_f32s(&bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_round_trip_through_the_codec() {
        let v = Vol(Array3::from_shape_fn((3, 4, 5).f(), |(x, y, z)| {
            (x * 100 + y * 10 + z) as f32 + 0.5
        }));
        let bytes = rmp_serde::to_vec(&v).unwrap();
        assert!(
            bytes.len() < 3 * 4 * 5 * 4 + 32,
            "contiguous encoding, {} bytes",
            bytes.len()
        );
        let back: Vol = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, v);
    }
}
