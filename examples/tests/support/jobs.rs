//! What the examples' cluster tests share: the `ember` binary, checked
//! runs, the neuro phantom, neuro in `local[2]` as the reference, and the
//! comparison of its outputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `ember` launcher built beside the example binaries.
pub fn ember() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_wordcount")).with_file_name("ember");
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build -p ember-driver --bin ember` (same profile)",
        p.display()
    );
    p
}

/// `out`, after asserting that `what` succeeded (its stderr otherwise).
pub fn check(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The smallest phantom the neuro tests use: one subject.
pub const SMALL: [&str; 5] = ["24", "28", "24", "2", "6"];

/// One phantom subject of `size` (x, y, z, b0 volumes, directions per
/// shell) under `dir`; returns its folder.
pub fn phantom(dir: &Path, size: [&str; 5]) -> PathBuf {
    let [x, y, z, b0, dirs] = size;
    let out = Command::new(env!("CARGO_BIN_EXE_neuro"))
        .args(["phantom", "--shape", x, y, z, "--b0", b0, "--dirs", dirs])
        .args(["--shells", "1000,2000", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    check(out, "neuro phantom");
    dir.join("subject-000")
}

/// Runs neuro on `subject` in `local[2]`, the reference outputs, into `out`.
pub fn neuro_local(subject: &Path, out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_neuro"))
        .args(["run", "--master", "local[2]", "--out"])
        .arg(out)
        .arg(subject)
        .output()
        .unwrap();
    check(o, "neuro run in local[2]");
}

/// Asserts that a cluster run wrote the same bytes as the local one.
pub fn assert_same_outputs(local: &Path, cluster: &Path) {
    for f in ["mask.nii.gz", "fa.nii.gz", "md.nii.gz", "fa.png"] {
        let a = std::fs::read(local.join("subject-000").join(f)).unwrap();
        let b = std::fs::read(cluster.join("subject-000").join(f)).unwrap();
        assert!(a == b, "{f} differs between local mode and the cluster");
    }
}
