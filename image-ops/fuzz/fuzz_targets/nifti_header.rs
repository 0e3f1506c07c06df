//! Any bytes given to the NIfTI-1 header parser must produce a header or an
//! error, never a panic, and an accepted header must describe data whose
//! size can be computed without overflow.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ember_image::nifti_io::parse_header(data, Path::new("fuzz.nii")) {
        assert!(h.shape.iter().all(|&d| d >= 1));
        assert!(h.voxel_size.iter().all(|v| v.is_finite() && *v > 0.0));
        assert!(h.affine.iter().flatten().all(|v| v.is_finite()));
        let _ = h
            .vox_offset
            .checked_add(h.data_bytes())
            .expect("data end overflows");
    }
});
