//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while locating, downloading, reading or
/// batching a dataset.
///
/// Every variant that concerns a file names that file, so the message alone
/// tells the user what to fix. Nothing in this crate panics on bad input
/// files; it returns one of these instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The file starts with the gzip magic number but its compressed stream
    /// is corrupt or cut short.
    #[error("{}: corrupt or truncated gzip stream: {source}", path.display())]
    Gzip {
        /// The file concerned.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: std::io::Error,
    },

    /// The IDX magic number is not the one expected for this kind of file.
    #[error(
        "{}: bad IDX magic number {found:#010x}, expected {expected:#010x} ({kind})",
        path.display()
    )]
    BadMagic {
        /// The file concerned.
        path: PathBuf,
        /// The magic number read from the file.
        found: u32,
        /// The magic number required.
        expected: u32,
        /// What the file should have held, e.g. `"images, u8, 3 dimensions"`.
        kind: &'static str,
    },

    /// The file ends before the data its header announces.
    #[error("{}: truncated: {detail}", path.display())]
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// What was expected and what was found.
        detail: String,
    },

    /// The file is readable but its content is not acceptable: unexpected
    /// dimensions, a label outside the class range, trailing bytes, ...
    #[error("{}: {detail}", path.display())]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// The problem.
        detail: String,
    },

    /// An images file and its labels file disagree on the number of items.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The images file.
        images_path: PathBuf,
        /// Number of images it holds.
        images: usize,
        /// The labels file.
        labels_path: PathBuf,
        /// Number of labels it holds.
        labels: usize,
    },

    /// A downloaded (or cached) file does not have the published MD5 sum.
    #[error("{}: MD5 mismatch: expected {expected}, got {actual}", path.display())]
    Checksum {
        /// The file concerned (for downloads, the name it would have had).
        path: PathBuf,
        /// The published MD5 sum (lower-case hex).
        expected: String,
        /// The MD5 sum of the bytes received (lower-case hex).
        actual: String,
    },

    /// An HTTP download failed (connection error, non-success status, ...).
    #[error("download of {url} failed: {detail}")]
    Download {
        /// The URL requested.
        url: String,
        /// The problem.
        detail: String,
    },

    /// No candidate folder holds the dataset, and downloading was not allowed.
    #[error(
        "{dataset} not found; looked in: {}. Pass --data-dir, set $STAGEWISE_DATA, \
         install the Debian package dataset-fashion-mnist, or allow downloading",
        display_paths(searched)
    )]
    NotFound {
        /// Name of the dataset.
        dataset: &'static str,
        /// The folders searched, in order.
        searched: Vec<PathBuf>,
    },

    /// A folder that was named explicitly lacks some of the dataset's files.
    #[error("{}: missing {dataset} file(s): {}", dir.display(), missing.join(", "))]
    MissingFiles {
        /// Name of the dataset.
        dataset: &'static str,
        /// The folder concerned.
        dir: PathBuf,
        /// Base names of the missing files (without the optional `.gz`).
        missing: Vec<String>,
    },

    /// A caller passed an unusable argument (zero batch size, worker index
    /// out of range, inconsistent buffer sizes, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl DataError {
    /// Shorthand for [`DataError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nowhere)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
