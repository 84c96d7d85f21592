//! Model completion (Head–Body–Tail): the model party trains surrogate head and tail around
//! its own trained body on auxiliary labelled data, then predicts the task's labels.
//!
//! The reference is VFLAIR-LLM's `ModelCompletion_LLM`
//! (`src/evaluates/attacks/ModelCompletion_LLM.py`): public pretrained copies of the head and
//! tail (l.158-163), both trained in full by one Adam (l.175-177) through the model party's
//! body, which is not stepped, on the auxiliary examples in order (l.204, l.218-266), with an
//! early stop after two epochs in a row that do not improve the loss (l.270-276); then the
//! surrogate tail reads the body's outputs on the held-out examples (l.358-363).
//!
//! The reference only runs it for generation: its `cal_loss` returns nothing for
//! classification (l.86-109, the `return` sits in the CLM branch, l.137), and its
//! `attack_api.py` l.38-39 dispatches every name containing `ModelCompletion` to the older
//! VFL attack. Here it runs for any task whose loss [`splitlm_nn::loss`] computes, and
//! predicts class labels.

mod fresh;
mod predict;
mod train;

pub use fresh::fresh_task_head;

use burn::tensor::Device;
use splitlm_nn::{Labels, TokenBatch, TransformerSlice};
use splitlm_zoo::AnyModel;

use crate::label::LabelGuess;
use crate::{AttackError, AttackerView, Prior};

const ATTACK: &str = "model_completion";

/// Model completion's settings; each left out takes the reference's value.
///
/// The LLM attack reads `lr`, `epochs` and `batch_size` with no default
/// (`ModelCompletion_LLM.py` l.42-44) and no LLM configuration of the reference sets them, so
/// `lr` and `epochs` come from the reference's model completion configurations
/// (`configs/main_task/attack_defense/mnist_test_attack_allattack_10class.json` l.48-50:
/// epochs 25, batch size 16, lr 2e-3; every other configuration also has lr 2e-3 and batch 16).
/// Batches are the auxiliary prior's as given (the reference's 16 is the harness's to use).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompletionSettings {
    /// Adam's learning rate for the surrogate head and tail (2e-3; Adam's other values are
    /// PyTorch's defaults, as `torch.optim.Adam` at `ModelCompletion_LLM.py` l.175-177).
    pub lr: f64,
    /// Passes over the auxiliary examples at most (25). 0 leaves the surrogates as
    /// pretrained: the baseline an untrained attacker reaches.
    pub epochs: usize,
    /// Stop after this many epochs in a row whose summed loss is above the best so far
    /// (`ModelCompletion_LLM.py` l.270-276: 2); 0 never stops early.
    pub patience: usize,
    /// Use at most this many auxiliary examples, the first ones (`None`: all the prior holds).
    /// The reference draws `aux_data_num` examples (or `aux_data_percentage` of the training
    /// set) with no default (l.184-191); the older VFL attack labels 4 per class
    /// (`n_labeled_per_class`, the configuration above l.51).
    pub max_auxiliary: Option<usize>,
    /// What the surrogate tail reads to predict.
    pub predict_from: PredictFrom,
}

impl Default for CompletionSettings {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            epochs: 25,
            patience: 2,
            max_auxiliary: None,
            predict_from: PredictFrom::default(),
        }
    }
}

/// What the surrogate tail reads to predict the held-out examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictFrom {
    /// The reference's (`ModelCompletion_LLM.py` l.358-363): the body's outputs the model
    /// party recorded while the data party ran the held-out examples through the split model
    /// (its evaluation steps, `ObservationLimits::inference`); the last recorded evaluation
    /// steps, one per held-out batch and in their order, must match the batches' shapes. The
    /// data party's real head and its defenses made those outputs.
    #[default]
    Observed,
    /// The completed model on the held-out tokens: surrogate head, body, surrogate tail (the
    /// attacker queries its own completed model; no traffic of the data party is needed).
    CompletedModel,
}

/// Trains the surrogates and predicts the labels of the prior's evaluation examples, in order.
/// Each guess's score is the surrogate's probability of the class it guessed.
pub fn model_completion(
    view: &AttackerView,
    prior: &Prior,
    settings: &CompletionSettings,
    device: &Device,
) -> Result<Vec<LabelGuess>, AttackError> {
    validate(settings)?;
    let pieces = Pieces::of(prior)?;
    let auxiliary = train::first_examples(pieces.auxiliary, settings.max_auxiliary)?;
    let completed = train::train(&pieces, &auxiliary, settings, device)?;
    match settings.predict_from {
        PredictFrom::Observed => predict::from_observed(&completed, view, pieces.evaluation),
        PredictFrom::CompletedModel => predict::from_tokens(&completed, pieces.evaluation),
    }
}

fn fail(reason: impl Into<String>) -> AttackError {
    AttackError {
        attack: ATTACK,
        reason: reason.into(),
    }
}

fn validate(settings: &CompletionSettings) -> Result<(), AttackError> {
    if !(settings.lr > 0.0 && settings.lr.is_finite()) {
        return Err(fail(format!("lr = {} must be > 0", settings.lr)));
    }
    if settings.max_auxiliary == Some(0) {
        return Err(fail(
            "max_auxiliary = 0: the surrogates would have nothing to learn from",
        ));
    }
    Ok(())
}

/// What the attack needs from its prior, checked.
struct Pieces<'a> {
    body: &'a AnyModel,
    head: &'a AnyModel,
    tail: &'a AnyModel,
    auxiliary: &'a [(TokenBatch, Labels)],
    evaluation: &'a [(TokenBatch, Labels)],
}

impl<'a> Pieces<'a> {
    fn of(prior: &'a Prior) -> Result<Self, AttackError> {
        let body = prior.body.as_ref().ok_or_else(|| {
            fail("needs the model party's own trained slice, the body, in its prior (`body`)")
        })?;
        let surrogate = prior.surrogate.as_ref().ok_or_else(|| {
            fail(
                "needs public pretrained copies of the data party's head and tail in its prior \
                 (`surrogate`)",
            )
        })?;
        let tail = surrogate.tail.as_ref().ok_or_else(|| {
            fail(
                "needs a surrogate tail in its prior (`surrogate.tail`): model completion is a \
                 Head–Body–Tail attack",
            )
        })?;
        let auxiliary = match &prior.auxiliary {
            Some(a) if !a.batches.is_empty() => &a.batches[..],
            Some(a) => {
                return Err(fail(format!(
                    "its auxiliary examples ({}) hold no batch",
                    a.source
                )));
            }
            None => {
                return Err(fail(
                    "needs labelled auxiliary examples in its prior (`auxiliary`)",
                ));
            }
        };
        let evaluation = match &prior.evaluation {
            Some(e) if !e.is_empty() => &e[..],
            _ => {
                return Err(fail(
                    "needs the held-out examples to predict in its prior (`evaluation`)",
                ));
            }
        };
        let pieces = Self {
            body,
            head: &surrogate.head,
            tail,
            auxiliary,
            evaluation,
        };
        pieces.check_shapes()?;
        Ok(pieces)
    }

    fn check_shapes(&self) -> Result<(), AttackError> {
        if !self.head.spec().embeddings {
            return Err(fail("the surrogate head holds no embeddings"));
        }
        if self.body.spec().top {
            return Err(fail(
                "the body holds the task head (a Head–Tail split): model completion needs the \
                 data party's tail, Head–Body–Tail",
            ));
        }
        if !self.tail.spec().top {
            return Err(fail("the surrogate tail holds no task head"));
        }
        let widths = [
            ("surrogate head", self.head.hidden_size()),
            ("body", self.body.hidden_size()),
            ("surrogate tail", self.tail.hidden_size()),
        ];
        if widths.iter().any(|(_, w)| *w != widths[0].1) {
            return Err(fail(format!(
                "hidden sizes differ: {widths:?}; the surrogates must come from the body's model"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
