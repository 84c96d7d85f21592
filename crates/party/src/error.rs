use splitlm_nn::ModelError;
use splitlm_partition::TrainabilityError;
use splitlm_protocol::ProtocolError;

use crate::optim::OptimizerConfigError;

/// Everything that can end a party's step or session.
#[derive(Debug, thiserror::Error)]
pub enum PartyError {
    /// Encoding, decoding or moving a message failed.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// A slice refused its input or could not be built.
    #[error("model: {0}")]
    Model(#[from] ModelError),
    /// A trainability setting does not fit the slice.
    #[error(transparent)]
    Trainability(#[from] TrainabilityError),
    /// An optimizer setting is out of range.
    #[error(transparent)]
    Optimizer(#[from] OptimizerConfigError),
    /// The peer reported an error and ended the session.
    #[error("the peer failed (code {code}): {message}")]
    Peer {
        /// Error code sent by the peer.
        code: u16,
        /// The peer's explanation.
        message: String,
    },
    /// A message arrived out of the protocol's order.
    #[error("expected {expected}, received {found}")]
    Unexpected {
        /// What the protocol called for.
        expected: &'static str,
        /// What came.
        found: &'static str,
    },
    /// A reply answers another step.
    #[error("expected a reply to step {expected}, received one for step {found}")]
    StepMismatch {
        /// The step in progress.
        expected: u64,
        /// The step the reply names.
        found: u64,
    },
    /// A received tensor has the wrong rank or shape, or non-finite values.
    #[error("bad tensor: {0}")]
    BadTensor(String),
    /// Saving or restoring a party's state failed.
    #[error("party state {}: {detail}", path.display())]
    State {
        /// The file concerned.
        path: std::path::PathBuf,
        /// What went wrong.
        detail: String,
    },
}

impl PartyError {
    pub(crate) fn state(path: &std::path::Path, detail: impl Into<String>) -> Self {
        PartyError::State {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// The code sent to the peer in a [`splitlm_protocol::Message::Error`].
    pub fn code(&self) -> u16 {
        match self {
            PartyError::Protocol(_) => 1,
            PartyError::Model(_) => 2,
            PartyError::Trainability(_) | PartyError::Optimizer(_) => 3,
            PartyError::Peer { .. } => 4,
            PartyError::Unexpected { .. } | PartyError::StepMismatch { .. } => 5,
            PartyError::BadTensor(_) => 6,
            PartyError::State { .. } => 7,
        }
    }
}
