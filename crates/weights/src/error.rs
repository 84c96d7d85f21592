//! The one error type of the crate.

use std::path::PathBuf;

/// Errors while reading a checkpoint or building a tokenizer. Every variant names the file (or
/// checkpoint) and says what is wrong, so the message alone is enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be opened, mapped or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tensor the caller asked for is not in the checkpoint.
    #[error("{source_desc}: tensor `{name}` not found")]
    MissingTensor {
        /// The checkpoint (file or directory), as [`crate::TensorSource::describe`] gives it.
        source_desc: String,
        /// The tensor name.
        name: String,
    },
    /// A tensor has another shape than the caller expects.
    #[error("{source_desc}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The checkpoint.
        source_desc: String,
        /// The tensor name.
        name: String,
        /// The shape the caller needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The file ends before the data it announces.
    #[error("{}: truncated file: {detail}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read and how much was missing.
        detail: String,
    },
    /// A tensor's storage type cannot be converted to the requested element type.
    #[error("{}: tensor `{tensor}` has unsupported type {dtype}", path.display())]
    UnsupportedDType {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The type, e.g. `Q5_K (type 13)` or `F8_E4M3`.
        dtype: String,
    },
    /// The file is not in the expected format, or contradicts itself.
    #[error("{}: {detail}", path.display())]
    BadFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file is of a format version this crate does not read.
    #[error("{}: unsupported {format} version {version} (supported: {supported})", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The format, e.g. `GGUF`.
        format: &'static str,
        /// The version found in the file.
        version: u64,
        /// The versions that can be read, e.g. `2, 3`.
        supported: &'static str,
    },
    /// A metadata key the caller needs is absent.
    #[error("{}: metadata key `{key}` not found", path.display())]
    MissingMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// The tokenizer cannot be built from the file.
    #[error("{}: tokenizer: {detail}", path.display())]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

impl CheckpointError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Self::BadFormat {
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn truncated(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Self::Truncated {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
