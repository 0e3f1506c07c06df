//! The neuroscience pipeline of Mehta et al. (VLDB 2017) on Ember: brain
//! mask, non-local-means denoising and a tensor fit for many subjects.
//! [`pipeline`] is the part a scientist writes; [`subject`] resolves and
//! checks inputs before any work starts; [`records`] holds the record
//! types that travel between tasks; [`output`] writes results.

pub mod output;
pub mod pipeline;
pub mod records;
pub mod subject;

pub use pipeline::{pipeline, SubjectResult};
pub use subject::Subject;
