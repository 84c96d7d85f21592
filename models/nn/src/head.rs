//! Task heads a slice's top can carry, and what they produce.

use burn::tensor::{Int, Tensor};

/// The task head on top of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TaskHead {
    /// No head: the final hidden states (after the final norm, if the family has one).
    Hidden,
    /// Next-token logits over the vocabulary.
    CausalLm,
    /// One vector of `num_labels` logits per sequence (a regression when `num_labels == 1`).
    SequenceClassification {
        /// Number of classes.
        num_labels: usize,
    },
    /// Start and end logits per token for extractive question answering.
    SpanQa,
}

/// What a head produced.
// One value per forward pass: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum HeadOutput {
    /// `[batch, seq, hidden]` final hidden states.
    Hidden(Tensor<3>),
    /// `[batch, seq, vocab]` next-token logits.
    LmLogits(Tensor<3>),
    /// `[batch, num_labels]` sequence logits.
    ClassLogits(Tensor<2>),
    /// `[batch, seq]` start and end logits.
    SpanLogits {
        /// Start-of-answer logits.
        start: Tensor<2>,
        /// End-of-answer logits.
        end: Tensor<2>,
    },
}

impl HeadOutput {
    /// The hidden states, if that is what this is.
    pub fn hidden(self) -> Option<Tensor<3>> {
        match self {
            Self::Hidden(t) => Some(t),
            _ => None,
        }
    }

    /// The LM logits, if that is what this is.
    pub fn lm_logits(self) -> Option<Tensor<3>> {
        match self {
            Self::LmLogits(t) => Some(t),
            _ => None,
        }
    }

    /// The class logits, if that is what this is.
    pub fn class_logits(self) -> Option<Tensor<2>> {
        match self {
            Self::ClassLogits(t) => Some(t),
            _ => None,
        }
    }

    /// The span logits, if that is what this is.
    pub fn span_logits(self) -> Option<(Tensor<2>, Tensor<2>)> {
        match self {
            Self::SpanLogits { start, end } => Some((start, end)),
            _ => None,
        }
    }
}

/// `[batch, hidden]`: the states of the last real token of each row (`[batch, seq]` mask),
/// which is right for both left and right padding.
pub fn last_token_states(states: Tensor<3>, attention_mask: &Tensor<2, Int>) -> Tensor<2> {
    let [batch, seq, hidden] = states.dims();
    let device = states.device();
    // Position index where the mask is 1, else -1; the max is the last real token.
    let index = Tensor::<1, Int>::arange(0..seq as i64, &device)
        .reshape([1, seq])
        .expand([batch, seq]);
    let valid = attention_mask.clone().equal_elem(1);
    let last = index
        .mask_fill(valid.bool_not(), -1)
        .max_dim(1)
        .clamp_min(0)
        .reshape([batch, 1, 1])
        .expand([batch, 1, hidden]);
    states.gather(1, last).reshape([batch, hidden])
}

/// Scales each row of `[batch, hidden]` to unit L2 norm (cosine similarity is then a matmul).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// `[batch, hidden]`: mean of the states over real tokens (sentence-transformers pooling).
pub fn mean_pool(states: Tensor<3>, attention_mask: &Tensor<2, Int>) -> Tensor<2> {
    let [batch, seq, hidden] = states.dims();
    let mask = attention_mask.clone().float().reshape([batch, seq, 1]);
    let summed = (states * mask.clone()).sum_dim(1).reshape([batch, hidden]);
    let counts = mask.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
    summed / counts
}
