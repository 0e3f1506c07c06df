//! `ember-core`: the vocabulary every Ember crate shares — ids,
//! configuration, errors, the wire codec, shippable functions and
//! partitioners.

pub mod auth;
pub mod codec;
pub mod conf;
pub mod error;
pub mod ids;
pub mod logging;
pub mod net;
pub mod partitioner;
pub mod ship;

pub use conf::EmberConf;
pub use error::{EmberError, Result};
pub use ids::*;
pub use partitioner::{KeyPartitioner, Partitioner, PartitionerRef};
pub use ship::{BuildId, FnOffset, Shipped};

/// The bound every record type must meet: it crosses process boundaries
/// (serde), threads (`Send + Sync`) and is read from caches (`Clone`).
pub trait Data:
    serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
}
impl<T> Data for T where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
}
