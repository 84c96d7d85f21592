use std::path::PathBuf;

/// Errors while reading a checkpoint; each names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("{source_desc}: tensor `{name}` not found")]
    MissingTensor {
        /// The checkpoint (file or directory).
        source_desc: String,
        /// The tensor name.
        name: String,
    },
    /// A tensor has another shape than the model expects.
    #[error("{source_desc}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The checkpoint.
        source_desc: String,
        /// The tensor name.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The file ends before the data it announces.
    #[error("{}: truncated file: {detail}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read.
        detail: String,
    },
    /// A tensor's storage type cannot be converted.
    #[error("{}: tensor `{tensor}` has unsupported type {dtype}", path.display())]
    UnsupportedDType {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        tensor: String,
        /// The type, e.g. `Q5_K (type 13)`.
        dtype: String,
    },
    /// The file is not in the expected format.
    #[error("{}: {detail}", path.display())]
    BadFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A metadata key the reader needs is absent.
    #[error("{}: metadata key `{key}` not found", path.display())]
    MissingMetadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// The tokenizer cannot be built.
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
}
