use std::path::PathBuf;

/// What can go wrong while training, evaluating or checkpointing a learner.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A training setting is out of range.
    #[error("invalid training setting: {0}")]
    Setting(String),
    /// A configuration value is out of range.
    #[error("{key}: {detail}")]
    Invalid {
        /// The key, dotted (`split.data_device`).
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A batch's loss is NaN or infinite.
    #[error("the loss is {0}")]
    NonFiniteLoss(f32),
    /// A remote model party could not be reached (again).
    #[error("connecting to the model party: {0}")]
    Connect(String),
    /// The model party's thread of an in-process split died.
    #[error("the model party's thread panicked")]
    ModelPartyPanicked,
    /// A training checkpoint could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A training checkpoint's files are not what this version writes.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The task's data or scoring failed.
    #[error(transparent)]
    Task(#[from] splitlm_tasks::TaskError),
    /// A party failed.
    #[error(transparent)]
    Party(#[from] splitlm_party::PartyError),
    /// A model refused its input or its weights could not be read.
    #[error(transparent)]
    Model(#[from] splitlm_nn::ModelError),
    /// A party's device is unknown or unavailable.
    #[error(transparent)]
    Device(#[from] splitlm_device::DeviceError),
    /// A defense's settings are invalid.
    #[error(transparent)]
    Defense(#[from] splitlm_defenses::DefenseError),
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
