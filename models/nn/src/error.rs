//! Errors raised while building or running a model slice.

use splitlm_weights::CheckpointError;

/// Everything that can go wrong while loading or running a model slice.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading weights or a tokenizer failed (missing tensor, wrong shape, bad file...).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A model configuration is invalid or names an unsupported architecture.
    #[error("{origin}: {detail}")]
    Config {
        /// The file or source of the configuration.
        origin: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A slice asks for layers the model does not have, or is otherwise inconsistent.
    #[error("invalid slice: {0}")]
    Slice(String),
    /// The input given to a slice does not fit it.
    #[error("invalid input: {0}")]
    Input(String),
}

impl ModelError {
    /// A configuration error.
    pub fn config(origin: impl Into<String>, detail: impl Into<String>) -> Self {
        ModelError::Config {
            origin: origin.into(),
            detail: detail.into(),
        }
    }
}
