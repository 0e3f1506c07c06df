//! The crate's one error type: every message names the file (or the input)
//! and the field that was wrong.

use std::path::Path;

/// Everything that can go wrong in `ember-image`. Bad input is always
/// reported through this type, never by a panic.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be opened, read, written or renamed.
    #[error("{file}: {action}: {source}")]
    Io {
        /// The file, as the caller named it.
        file: String,
        /// What was being done (`"cannot open"`, `"cannot rename into place"`, ...).
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A NIfTI header field holds a value that cannot be used.
    #[error("{file}: header field {field} = {value} {problem}")]
    HeaderField {
        /// The file, as the caller named it.
        file: String,
        /// The field, as NIfTI-1 names it (`dim[4]`, `pixdim[2]`, `datatype`, `magic`).
        field: String,
        /// The value found, printed.
        value: String,
        /// What is wrong with it.
        problem: String,
    },

    /// The file ends inside the 348-byte NIfTI-1 header.
    #[error("{file}: the file ends inside the 348-byte NIfTI-1 header")]
    TruncatedHeader {
        /// The file, as the caller named it.
        file: String,
    },

    /// The gzip stream is corrupt or ends early.
    #[error(
        "{file}: gzip stream is corrupt or truncated after {position} decompressed bytes{}: {source}",
        volume_note(.volume)
    )]
    Gzip {
        /// The file, as the caller named it.
        file: String,
        /// Decompressed bytes delivered before the failure.
        position: u64,
        /// `(volume index, volumes in the file)` when the failure came
        /// while reading voxel data.
        volume: Option<(usize, usize)>,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },

    /// A `.nii.gz` whose header declares more data than its compressed size
    /// can possibly decompress to: refused before anything is allocated.
    #[error(
        "{file}: header fields {fields} declare {declared} bytes of header and voxel data, \
         but a gzip file of {disk_bytes} bytes decompresses to at most {capacity} bytes \
         (deflate expands at most 1032:1)"
    )]
    HeaderExceedsFile {
        /// The file, as the caller named it.
        file: String,
        /// The header fields that make up the size, with their values.
        fields: String,
        /// `vox_offset` plus the voxel data the header declares.
        declared: u64,
        /// Size of the compressed file on disk.
        disk_bytes: u64,
        /// The most that many compressed bytes can decompress to.
        capacity: u64,
    },

    /// The voxel data is shorter than the header's `dim`, `datatype` and
    /// `vox_offset` fields promise.
    #[error(
        "{file}: header fields dim/datatype/vox_offset promise {expected} data bytes \
         from offset {offset}, but the data ends after {found}, inside volume {volume} \
         (counting from 0) of {volumes}"
    )]
    TruncatedData {
        /// The file, as the caller named it.
        file: String,
        /// Byte offset where voxel data starts (`vox_offset`).
        offset: u64,
        /// Bytes the header promises.
        expected: u64,
        /// Bytes actually present.
        found: u64,
        /// The first volume that is short (counting from 0).
        volume: usize,
        /// Volumes the header promises (`dim[4]`).
        volumes: usize,
    },

    /// A volume index past the image's 4th dimension was asked for.
    #[error("{file}: volume {index} requested but header field dim[4] = {count}")]
    VolumeIndex {
        /// The file, as the caller named it.
        file: String,
        /// The index asked for.
        index: usize,
        /// The number of volumes in the file.
        count: usize,
    },

    /// A text file (bvals / bvecs) has a token or line that cannot be used.
    #[error("{file}:{line}:{column}: {problem}")]
    Text {
        /// The file, as the caller named it.
        file: String,
        /// 1-based line number.
        line: usize,
        /// 1-based column (in characters) where the token starts.
        column: usize,
        /// What is wrong.
        problem: String,
    },

    /// Gradient files disagree with each other or with the image.
    #[error("{file}: {problem}")]
    Gradients {
        /// The file (or files) involved.
        file: String,
        /// What disagrees.
        problem: String,
    },

    /// A kernel was handed arguments it cannot work with (empty volume,
    /// mismatched shapes, non-finite values where a range is needed).
    #[error("{what}: {problem}")]
    InvalidInput {
        /// The function or argument concerned.
        what: &'static str,
        /// What is wrong.
        problem: String,
    },

    /// The PNG encoder refused the image.
    #[error("{file}: cannot encode PNG: {source}")]
    Png {
        /// The file, as the caller named it.
        file: String,
        /// The encoder's error.
        #[source]
        source: png::EncodingError,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// The volume part of a gzip error's message (empty outside voxel data).
fn volume_note(volume: &Option<(usize, usize)>) -> String {
    match volume {
        Some((index, count)) => {
            format!(", inside volume {index} (counting from 0) of {count}")
        }
        None => String::new(),
    }
}

/// How a path is printed in messages: as the caller gave it.
pub(crate) fn file_name(path: &Path) -> String {
    path.display().to_string()
}

impl ImageError {
    /// An I/O failure on `path` while doing `action`.
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        ImageError::Io {
            file: file_name(path),
            action,
            source,
        }
    }

    /// A header field of `path` that holds an unusable value.
    pub(crate) fn field(
        path: &Path,
        field: impl Into<String>,
        value: impl ToString,
        problem: impl Into<String>,
    ) -> Self {
        ImageError::HeaderField {
            file: file_name(path),
            field: field.into(),
            value: value.to_string(),
            problem: problem.into(),
        }
    }

    /// A kernel argument that cannot be used.
    pub(crate) fn invalid(what: &'static str, problem: impl Into<String>) -> Self {
        ImageError::InvalidInput {
            what,
            problem: problem.into(),
        }
    }
}
