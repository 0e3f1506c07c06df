//! `ember-image`: NIfTI I/O and the kernels of the diffusion-MRI pipeline
//! (brain mask, noise estimation, non-local means, tensor fit), matching
//! DIPY's results. It depends on none of the engine and is useful alone.
//!
//! Reading and writing: [`nifti_io`]; gradients: [`gradients`]; the mask:
//! [`mask`] built on [`median`], [`mod@otsu`] and [`morphology`]; noise:
//! [`noise`]; denoising: [`nlmeans`]; tensor fit: [`dti`]; splitting volumes
//! into blocks: [`block`]; pictures: [`montage`]. Every failure is an
//! [`ImageError`] naming the file and field concerned.
//!
//! ```
//! use ember_image::{median_otsu, estimate_sigma};
//! use ndarray::Array3;
//!
//! // a bright cube in a dim, slightly noisy background
//! let b0 = Array3::from_shape_fn((16, 16, 16), |(x, y, z)| {
//!     let inside = [x, y, z].iter().all(|c| (4..12).contains(c));
//!     (if inside { 1000.0 } else { 10.0 }) + ((x * 7 + y * 3 + z) % 5) as f64
//! });
//! let found = median_otsu(b0.view(), 2, 2, 1)?;
//! assert!(found.mask[[8, 8, 8]] && !found.mask[[0, 0, 0]]);
//!
//! let sigma = estimate_sigma(b0.mapv(|v| v as f32).view())?;
//! assert!(sigma > 0.0);
//! # Ok::<(), ember_image::ImageError>(())
//! ```

mod atomic;
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

pub use error::{ImageError, Result};
pub use gradients::{GradientTable, DEFAULT_B0_THRESHOLD};
pub use mask::{mean_of_selected, mean_volumes, median_otsu, MedianOtsu};
pub use median::{median_filter, median_filter_passes};
pub use nifti_io::{
    read_header, read_image, read_volume, volumes, write_image4, write_nifti, write_volume,
    Geometry, ImageHeader, VolumeWriter,
};
pub use noise::{estimate_sigma, estimate_sigma_4d};
pub use otsu::otsu;
pub use volume::{reflect_index_numpy, reflect_index_scipy, Image4, Mask, Volume, Volume64};
