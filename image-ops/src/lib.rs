//! `ember-image`: NIfTI I/O and the kernels of the diffusion-MRI pipeline
//! (brain mask, noise estimation, non-local means, tensor fit), matching
//! DIPY's results. It depends on none of the engine and is useful alone.

pub mod block;
pub mod dti;
pub mod error;
pub mod gradients;
pub mod mask;
pub mod median;
pub mod montage;
pub mod morphology;
pub mod nifti_io;
pub mod nlmeans;
pub mod noise;
pub mod otsu;
pub mod volume;

pub use volume::{reflect_index_numpy, reflect_index_scipy, Image4, Mask, Volume, Volume64};
