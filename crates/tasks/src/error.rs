//! What can go wrong reading a dataset, scoring a model or loading a task.

use std::path::PathBuf;

/// What can go wrong reading a dataset or running a task.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A dataset file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A dataset file is not in the expected format.
    #[error("{path}, line {line}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record of a dataset file is inconsistent: found by its id or position rather than by
    /// a line (a question of a SQuAD file, an element of a JSON array, a field of a file).
    #[error("{path}, {record}: {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Which record, in words: `question "56be4db0acb8001400a502ec"`, `record 3`.
        record: String,
        /// What is wrong.
        reason: String,
    },
    /// A tokenizer failed or is missing.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Config(String),
    /// A value of the `[task]` configuration is out of range.
    #[error("{key}: {detail}")]
    Setting {
        /// The key, dotted (`task.max_len`).
        key: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The model does not fit the task (its head classifies where the task generates, …).
    #[error("the model does not fit the task: {0}")]
    Mismatch(String),
    /// A demo dataset could not be fetched.
    #[error(transparent)]
    Asset(#[from] splitlm_assets::AssetError),
    /// A model refused its input.
    #[error(transparent)]
    Model(#[from] splitlm_nn::ModelError),
    /// The model being scored failed (a party of a split model, say).
    #[error("running the model: {0}")]
    Predictor(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl TaskError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TaskError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
