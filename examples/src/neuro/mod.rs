//! The neuroscience pipeline of Mehta et al. (VLDB 2017) on Ember: brain
//! mask, non-local-means denoising and a tensor fit for many subjects.
//! [`pipeline`](mod@pipeline) is the part a scientist writes; [`subject`] and [`bids`]
//! find and check inputs before any work starts; [`records`] holds the
//! record types that travel between tasks; [`maps`] names the tensor maps;
//! [`output`], [`qa`] and [`report`] write results.

pub mod bids;
pub mod maps;
pub mod output;
pub mod pipeline;
pub mod qa;
pub mod records;
pub mod report;
pub mod subject;

pub use pipeline::{pipeline, Outcome, PipelineOptions, Run, SubjectResult, NOT_RUN};
pub use subject::Subject;
