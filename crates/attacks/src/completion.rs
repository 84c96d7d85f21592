//! Model completion (Head–Body–Tail): the model party trains surrogate head and tail around
//! its own body on auxiliary labelled data and predicts the task. Not built yet.

use burn::tensor::Device;

use crate::label::LabelGuess;
use crate::{AttackError, AttackerView, Prior};

/// Model completion's settings; each left out takes the reference's value.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionSettings {}

/// Trains the surrogates and predicts the labels of the prior's evaluation examples, in order.
pub fn model_completion(
    _view: &AttackerView,
    _prior: &Prior,
    _settings: &CompletionSettings,
    _device: &Device,
) -> Result<Vec<LabelGuess>, AttackError> {
    Err(AttackError {
        attack: "model_completion",
        reason: "not implemented yet".into(),
    })
}
