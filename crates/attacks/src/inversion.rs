//! Input inversion from the activations the model party received.
//!
//! VMI (vanilla model inversion, white-box): with a copy of the data party's head as prior,
//! optimise dummy word vectors (initialised at zero) with Adam so that the head maps them onto
//! the observed activations, then read each position as the token whose embedding is most
//! cosine-similar. The reference's defaults: lr 1e-2 and 100 steps (BERT), lr 1e-3 and 400
//! steps (GPT-2). RWI relaxes the tokens instead: per-position logits whose tempered softmax
//! mixes embedding rows (T 0.05, lr 5e-3, 300 steps), decoded by arg-max.

use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_nn::{TokenBatch, TransformerSlice};
use splitlm_zoo::AnyModel;

use crate::optimise::adam;
use crate::{AttackError, AttackerView};

/// VMI settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmiSettings {
    /// Adam steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// What is minimised between the head's output and the observed activations.
    pub objective: VmiObjective,
}

impl Default for VmiSettings {
    fn default() -> Self {
        Self {
            steps: 100,
            lr: 1e-2,
            objective: VmiObjective::Mse,
        }
    }
}

/// VMI's matching objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmiObjective {
    /// Mean squared error over the real positions.
    #[default]
    Mse,
    /// The reference's objective, kept for parity: PyTorch's `CrossEntropyLoss` applied to
    /// `[b, s, d]` tensors, i.e. for each feature a softmax over the sequence positions
    /// scored against the observed values as soft targets.
    CrossEntropy,
}

/// RWI settings (relaxation-based white-box inversion, Song & Raghunathan 2020).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RwiSettings {
    /// Adam steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Softmax temperature of the relaxed tokens.
    pub temperature: f64,
}

impl Default for RwiSettings {
    fn default() -> Self {
        Self {
            steps: 300,
            lr: 5e-3,
            temperature: 0.05,
        }
    }
}

/// The recovered tokens of one observed sample (its real positions only).
pub type Recovered = Vec<u32>;

fn fail(attack: &'static str, reason: impl Into<String>) -> AttackError {
    AttackError {
        attack,
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
    invert_all(view, head, Method::Vmi(*settings), device)
}

/// Runs RWI: optimises per-position logits `Z [s, vocab]` whose tempered softmax mixes the
/// embedding rows fed to the head; each position decodes to `argmax Z`.
pub fn rwi(
    view: &AttackerView,
    head: &AnyModel,
    settings: &RwiSettings,
    device: &Device,
) -> Result<Vec<Recovered>, AttackError> {
    invert_all(view, head, Method::Rwi(*settings), device)
}

#[derive(Clone, Copy)]
enum Method {
    Vmi(VmiSettings),
    Rwi(RwiSettings),
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Vmi(_) => "vmi",
            Method::Rwi(_) => "rwi",
        }
    }
}

fn invert_all(
    view: &AttackerView,
    head: &AnyModel,
    method: Method,
    device: &Device,
) -> Result<Vec<Recovered>, AttackError> {
    let head = head.clone().fork(device);
    let vocabulary = head
        .word_embeddings()
        .ok_or_else(|| fail(method.name(), "the white-box head holds no embeddings"))?
        .inner();
    let mut recovered = Vec::new();
    for o in &view.observations {
        let values = o
            .hidden
            .to_f32()
            .map_err(|e| fail(method.name(), e.to_string()))?;
        let mask = o
            .attention_mask
            .to_i64()
            .map_err(|e| fail(method.name(), e.to_string()))?;
        let [b, s, d]: [usize; 3] = o.hidden.shape.clone().try_into().map_err(|_| {
            fail(
                method.name(),
                format!("step {}: activations are not [b, s, d]", o.step),
            )
        })?;
        // Trailing columns that are padding in every kept row change nothing at the real
        // positions (pads are masked keys; later positions never reach earlier ones): drop them,
        // so the attack's cost follows the sentences' lengths, not the batch's padded width.
        let real = (0..s)
            .rev()
            .find(|&t| (0..b).any(|row| mask[row * s + t] != 0))
            .map_or(0, |t| t + 1);
        let (values, mask, s) = if real < s {
            let keep = |row: usize| row * s..row * s + real;
            let values: Vec<f32> = (0..b)
                .flat_map(|row| values[keep(row).start * d..keep(row).end * d].to_vec())
                .collect();
            let mask: Vec<i64> = (0..b).flat_map(|row| mask[keep(row)].to_vec()).collect();
            (values, mask, real)
        } else {
            (values, mask, s)
        };
        let target =
            Tensor::<3>::from_data(TensorData::new(values, [b, s, d]), &device.clone().inner());
        let tokens = TokenBatch {
            input_ids: Tensor::<2, Int>::zeros([b, s], device),
            attention_mask: Tensor::from_data(TensorData::new(mask.clone(), [b, s]), device),
            token_type_ids: None,
        };
        let [vocab, width] = vocabulary.dims();
        let (steps, lr, objective) = match method {
            Method::Vmi(v) => (v.steps, v.lr, v.objective),
            Method::Rwi(r) => (r.steps, r.lr, VmiObjective::Mse),
        };
        let fit = Fit {
            head: &head,
            tokens: &tokens,
            target,
            device,
            steps,
            lr,
            objective,
            attack: method.name(),
        };
        let ids = match method {
            Method::Vmi(_) => nearest_tokens(fit.run([b, s, width], |w| w)?, vocabulary.clone()),
            Method::Rwi(settings) => {
                let table = Tensor::from_inner(vocabulary.clone());
                let t = settings.temperature;
                let logits = fit.run([b, s, vocab], |z| {
                    softmax(z / t, 2)
                        .reshape([b * s, vocab])
                        .matmul(table.clone())
                        .reshape([b, s, width])
                })?;
                argmax_last(logits)
            }
        };
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

/// One inversion problem: make the head's output on the mask's real positions match `target`.
struct Fit<'a> {
    head: &'a AnyModel,
    tokens: &'a TokenBatch,
    target: Tensor<3>,
    steps: usize,
    lr: f64,
    objective: VmiObjective,
    device: &'a Device,
    attack: &'static str,
}

impl Fit<'_> {
    /// Adam on a variable of `shape` (initialised at zero) that `to_words` maps to the word
    /// vectors fed to the head; returns the variable.
    fn run(
        &self,
        shape: [usize; 3],
        to_words: impl Fn(Tensor<3>) -> Tensor<3>,
    ) -> Result<Tensor<3>, AttackError> {
        let mask = self
            .tokens
            .attention_mask
            .clone()
            .inner()
            .float()
            .unsqueeze_dim::<3>(2);
        let target = Tensor::from_inner(self.target.clone());
        let mask = Tensor::from_inner(mask);
        let start = Tensor::<3>::zeros(shape, &self.device.clone().inner());
        adam(start, self.steps, self.lr, self.attack, |leaf| {
            let embedded = self
                .head
                .embed_vectors(to_words(leaf), self.tokens)
                .map_err(|e| fail(self.attack, e.to_string()))?;
            let hidden = self
                .head
                .forward_blocks(embedded, None)
                .map_err(|e| fail(self.attack, e.to_string()))?;
            Ok(match self.objective {
                VmiObjective::Mse => ((hidden.states - target.clone()) * mask.clone())
                    .powi_scalar(2)
                    .mean(),
                VmiObjective::CrossEntropy => {
                    let [b, _, d] = target.dims();
                    let log_p = log_softmax(hidden.states, 1);
                    (log_p * target.clone() * mask.clone())
                        .sum()
                        .div_scalar(-((b * d) as f64))
                }
            })
        })
    }
}

/// The arg-max over the last axis of `[b, s, vocab]`, flattened.
fn argmax_last(logits: Tensor<3>) -> Vec<u32> {
    let [b, s, vocab] = logits.dims();
    logits
        .reshape([b * s, vocab])
        .argmax(1)
        .into_data()
        .try_into_vec_as::<i64>()
        .expect("int ids")
        .into_iter()
        .map(|i| i as u32)
        .collect()
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
    let vocab = e.dims()[0];
    argmax_last(w.matmul(e.transpose()).reshape([b, s, vocab]))
}

/// The reference's inversion AP, as `VanillaModelInversion_WhiteBox` computes it: recall is the
/// share of the truth's tokens (pads removed, repeats counted) that occur anywhere in the
/// recovered tokens, precision the share of recovered tokens that occur anywhere in the truth.
/// Order and multiplicity are ignored — ROUGE-L and exact match ([`crate::score`]) are the
/// order-aware measures.
pub fn token_precision_recall(truth: &[u32], recovered: &[u32]) -> (f64, f64) {
    let truth_set: std::collections::HashSet<u32> = truth.iter().copied().collect();
    let recovered_set: std::collections::HashSet<u32> = recovered.iter().copied().collect();
    let share = |of: &[u32], within: &std::collections::HashSet<u32>| {
        if of.is_empty() {
            0.0
        } else {
            of.iter().filter(|t| within.contains(t)).count() as f64 / of.len() as f64
        }
    };
    (share(recovered, &truth_set), share(truth, &recovered_set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bag_of_tokens_follows_the_reference() {
        assert_eq!(
            token_precision_recall(&[1, 2, 3, 4], &[4, 3, 2, 1]),
            (1.0, 1.0)
        );
        // Membership, not multiset matching: three recovered 1s all occur in the truth, and
        // the truth's two 1s both occur in the recovered tokens; its 2 does not.
        assert_eq!(
            token_precision_recall(&[1, 1, 2], &[1, 1, 1]),
            (1.0, 2.0 / 3.0)
        );
        assert_eq!(
            token_precision_recall(&[1, 2], &[1, 1, 7]),
            (2.0 / 3.0, 0.5)
        );
        assert_eq!(token_precision_recall(&[5, 6], &[5]), (1.0, 0.5));
        assert_eq!(token_precision_recall(&[], &[]), (0.0, 0.0));
    }
}
