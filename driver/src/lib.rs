//! `ember-driver`: the driver side of Ember — [`Context`], the DAG
//! scheduler, task dispatch, and the backends that start executors.
//!
//! A driver program needs only this crate:
//!
//! ```no_run
//! use ember_driver::prelude::*;
//!
//! fn main() -> ember_driver::Result<()> {
//!     let ctx = Context::builder().master("local[2]").build()?;
//!     let squares = ctx.parallelize((1..=4).collect::<Vec<u64>>(), 2)?.map(|x| x * x);
//!     assert_eq!(squares.collect()?, vec![1, 4, 9, 16]);
//!     Ok(())
//! }
//! ```

/// The allocator of every program linking Ember (feature `mimalloc`, on by
/// default): see [`alloc`].
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: alloc::EmberAllocator = alloc::EmberAllocator;

#[cfg(feature = "mimalloc")]
pub mod alloc;
pub mod backend;
pub mod context;
pub mod dag;
pub mod deploy;
pub mod dispatch;
mod interrupt;
pub mod master_url;
pub mod progress;
pub mod submit;
pub mod ui;

pub use context::{Context, ContextBuilder};
pub use dag::JobReport;
pub use ember_core::{EmberConf, EmberError, KeyPartitioner, Partitioner, PartitionerRef, Result};
pub use ember_rdd as rdd;
pub use master_url::MasterUrl;

/// What driver programs usually import.
pub mod prelude {
    pub use crate::{Context, ContextBuilder};
    pub use ember_core::{Data, EmberError, KeyPartitioner, Partitioner, PartitionerRef};
    pub use ember_rdd::{
        Accumulator, BoxIter, Broadcast, JobHandle, Rdd, StorageLevel, TaskContext,
    };
}
