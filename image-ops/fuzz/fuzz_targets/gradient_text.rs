//! Any text given to the bvals / bvecs parser must produce a table or an
//! error, never a panic; an accepted table is consistent.
#![no_main]

use ember_image::gradients::GradientTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // the first NUL byte splits the input into the two files
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let bvals = String::from_utf8_lossy(&data[..split]);
    let bvecs = String::from_utf8_lossy(data.get(split + 1..).unwrap_or(&[]));
    if let Ok(g) = GradientTable::from_fsl_text(&bvals, &bvecs, "fuzz.bval", "fuzz.bvec", 10.0) {
        assert_eq!(g.bvals.len(), g.bvecs.len());
        assert!(g.bvals.iter().all(|b| b.is_finite() && *b >= 0.0));
        assert!(g.bvecs.iter().flatten().all(|v| v.is_finite()));
        let _ = g.check_volumes(g.len(), "fuzz.nii");
    }
});
