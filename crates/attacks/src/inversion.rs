//! Input inversion from the activations the model party received.
//!
//! VMI (vanilla model inversion, white-box): with a copy of the data party's head as prior,
//! optimise dummy word vectors (initialised at zero) with Adam so that the head maps them onto
//! the observed activations, then read each position as the token whose embedding is most
//! cosine-similar. The reference's defaults: lr 1e-2 and 100 steps (BERT), lr 1e-3 and 400
//! steps (GPT-2).

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_nn::{TokenBatch, TransformerSlice};
use splitlm_zoo::AnyModel;

use crate::{AttackError, AttackerView};

/// VMI settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmiSettings {
    /// Adam steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
}

impl Default for VmiSettings {
    fn default() -> Self {
        Self {
            steps: 100,
            lr: 1e-2,
        }
    }
}

/// The recovered tokens of one observed sample (its real positions only).
pub type Recovered = Vec<u32>;

fn fail(reason: impl Into<String>) -> AttackError {
    AttackError {
        attack: "vmi",
        reason: reason.into(),
    }
}

/// Runs VMI on every observed sample with `head` (a white-box copy of the data party's head:
/// embeddings and its blocks) on the autodiff `device`.
pub fn vmi(
    view: &AttackerView,
    head: &AnyModel,
    settings: &VmiSettings,
    device: &Device,
) -> Result<Vec<Recovered>, AttackError> {
    let head = head.clone().fork(device);
    let vocabulary = head
        .word_embeddings()
        .ok_or_else(|| fail("the white-box head holds no embeddings"))?
        .inner();
    let mut recovered = Vec::new();
    for o in &view.observations {
        let values = o.hidden.to_f32().map_err(|e| fail(e.to_string()))?;
        let mask = o.attention_mask.to_i64().map_err(|e| fail(e.to_string()))?;
        let [b, s, d]: [usize; 3] = o
            .hidden
            .shape
            .clone()
            .try_into()
            .map_err(|_| fail(format!("step {}: activations are not [b, s, d]", o.step)))?;
        let target =
            Tensor::<3>::from_data(TensorData::new(values, [b, s, d]), &device.clone().inner());
        let tokens = TokenBatch {
            input_ids: Tensor::<2, Int>::zeros([b, s], device),
            attention_mask: Tensor::from_data(TensorData::new(mask.clone(), [b, s]), device),
            token_type_ids: None,
        };
        let words = invert(
            &head,
            &tokens,
            target,
            vocabulary.dims()[1],
            settings,
            device,
        )?;
        let ids = nearest_tokens(words, vocabulary.clone());
        for row in 0..b {
            recovered.push(
                (0..s)
                    .filter(|&t| mask[row * s + t] != 0)
                    .map(|t| ids[row * s + t])
                    .collect(),
            );
        }
    }
    Ok(recovered)
}

/// Adam on word vectors `[b, s, width]` so that the head's output matches `target`.
fn invert(
    head: &AnyModel,
    tokens: &TokenBatch,
    target: Tensor<3>,
    width: usize,
    settings: &VmiSettings,
    device: &Device,
) -> Result<Tensor<3>, AttackError> {
    let [b, s, _] = target.dims();
    let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let inner = device.clone().inner();
    let mut words = Tensor::<3>::zeros([b, s, width], &inner);
    let mut m = words.zeros_like();
    let mut v = words.zeros_like();
    let mask = tokens
        .attention_mask
        .clone()
        .inner()
        .float()
        .unsqueeze_dim::<3>(2);
    for step in 1..=settings.steps {
        let leaf = Tensor::from_inner(words.clone()).require_grad();
        let hidden = head
            .forward_blocks(
                head.embed_vectors(leaf.clone(), tokens)
                    .map_err(|e| fail(e.to_string()))?,
                None,
            )
            .map_err(|e| fail(e.to_string()))?;
        let diff =
            (hidden.states - Tensor::from_inner(target.clone())) * Tensor::from_inner(mask.clone());
        let loss = diff.powi_scalar(2).mean();
        let grads = loss.backward();
        let g = leaf
            .grad(&grads)
            .ok_or_else(|| fail("no gradient reached the inputs"))?;
        m = m * beta1 + g.clone() * (1.0 - beta1);
        v = v * beta2 + g.powi_scalar(2) * (1.0 - beta2);
        let m_hat = m.clone() / (1.0 - beta1.powi(step as i32));
        let v_hat = v.clone() / (1.0 - beta2.powi(step as i32));
        words = words - m_hat * settings.lr / (v_hat.sqrt() + eps);
    }
    Ok(words)
}

/// For each position of `[b, s, width]`, the vocabulary row of highest cosine similarity.
fn nearest_tokens(words: Tensor<3>, vocabulary: Tensor<2>) -> Vec<u32> {
    let [b, s, width] = words.dims();
    let unit = |x: Tensor<2>| {
        let norms = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
        x / norms
    };
    let w = unit(words.reshape([b * s, width]));
    let e = unit(vocabulary);
    w.matmul(e.transpose())
        .argmax(1)
        .into_data()
        .try_into_vec_as::<i64>()
        .expect("int ids")
        .into_iter()
        .map(|i| i as u32)
        .collect()
}

/// The reference's inversion AP: bag-of-tokens precision and recall (order ignored, each
/// recovered token matched at most as often as it occurs in the truth).
pub fn token_precision_recall(truth: &[u32], recovered: &[u32]) -> (f64, f64) {
    let mut left = std::collections::HashMap::<u32, usize>::new();
    for &t in truth {
        *left.entry(t).or_default() += 1;
    }
    let mut hits = 0usize;
    for r in recovered {
        if let Some(n) = left.get_mut(r).filter(|n| **n > 0) {
            *n -= 1;
            hits += 1;
        }
    }
    let ratio = |den: usize| {
        if den == 0 {
            0.0
        } else {
            hits as f64 / den as f64
        }
    };
    (ratio(recovered.len()), ratio(truth.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bag_of_tokens_counts_multiplicity() {
        assert_eq!(
            token_precision_recall(&[1, 2, 3, 4], &[4, 3, 2, 1]),
            (1.0, 1.0)
        );
        assert_eq!(
            token_precision_recall(&[1, 1, 2], &[1, 1, 1]),
            (2.0 / 3.0, 2.0 / 3.0)
        );
        assert_eq!(token_precision_recall(&[5, 6], &[5]), (1.0, 0.5));
        assert_eq!(token_precision_recall(&[], &[]), (0.0, 0.0));
    }
}
