//! Output files that appear whole or not at all: written to a temporary
//! file in the target's folder, synced, then renamed over the target.

use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{ImageError, Result};

/// A temporary file beside `target`, named `.{prefix}{random}{suffix}`,
/// readable by others once in place (0644 on Unix, not tempfile's 0600).
pub(crate) fn temp_beside(target: &Path, prefix: &str, suffix: &str) -> Result<NamedTempFile> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder
        .tempfile_in(&dir)
        .map_err(|e| ImageError::io(target, "cannot create a temporary file beside", e))
}

/// Syncs the finished temporary file and renames it onto `target`.
pub(crate) fn commit(tmp: NamedTempFile, target: &Path) -> Result<()> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| ImageError::io(target, "cannot sync", e))?;
    tmp.persist(target)
        .map_err(|e| ImageError::io(target, "cannot rename into place", e.error))?;
    Ok(())
}
