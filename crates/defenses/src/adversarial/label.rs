//! The tail's imagined label adversary: a model that reads the gradient the data party sends
//! back (`[b, s, d]`, the gradient of the task loss on the body's output) and predicts the
//! step's labels from it (party/passive_party.py:789–812, trained at l.1260–1265).
//!
//! The reference builds it by task (l.206–221):
//!
//! * classification: `ImaginedAdversary_Tail_MLP3` (models/imagined_adversary_models.py:
//!   170–222) at the *mapping's* hidden width (`adversarial_model_hidden_size`, which l.218
//!   passes): per position `ReLU(LN(Linear))` twice, the mean over positions, `Linear` to the
//!   classes and a softmax; its loss is `nn.CrossEntropyLoss()` of that softmax's output
//!   against the one-hot labels, so PyTorch applies a second (log-)softmax to probabilities.
//! * causal LM: the class named by `imagined_adversary`, called as
//!   `(embed_dim, vocab_size, hidden_dim=imagined_adversary_hidden_size, num_layers,
//!   num_heads)` (l.209–214), a signature only `ImaginedAdversary_Tail_MLP3_for_generation`
//!   (l.104–164) has: one transformer decoder layer, then `Linear, GELU, Linear, GELU,
//!   Linear` to the vocabulary (Xavier-uniform weights, zero biases), a cross entropy over the
//!   vocabulary at every position.
//!
//! Both train with their own Adam at `imagined_adversary_lr` on the attack loss alone,
//! descending it (l.220–221, 1263–1265).

use burn::tensor::activation::{gelu, log_softmax, softmax};
use burn::tensor::{Device, Gradients, Int, Tensor, TensorData};
use splitlm_nn::Labels;
use splitlm_nn::seeded::SplitMix64;

use super::mlp::Mlp3;
use super::params::{HostParams, Leaves, linear, uniform};

/// What the label adversary made of one training step: its loss and accuracy on that step's
/// gradient, before its own update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelAdversaryStep {
    /// The data party's step.
    pub step: u64,
    /// Its attack loss (the reference's `tail_adversary_attack_loss`).
    pub loss: f32,
    /// The share of labels its arg-max predicts right (examples, or trained positions).
    pub accuracy: f32,
    /// How many labels it predicted.
    pub labels: usize,
}

/// The label adversary's loss and accuracy on one step, before [`LabelAdversary::step`].
pub(crate) struct Fit {
    pub(crate) loss: f32,
    pub(crate) accuracy: f32,
    pub(crate) labels: usize,
}

/// The adversary's output sizes: the task's classes, the vocabulary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LabelSizes {
    pub(crate) classes: Option<usize>,
    pub(crate) vocab: usize,
}

/// The adversary, by the kind of labels it predicts.
pub(crate) enum LabelAdversary {
    /// `ImaginedAdversary_Tail_MLP3`: one class per example.
    Classes(Mlp3),
    /// The MLP of `ImaginedAdversary_Tail_MLP3_for_generation`: one token per position.
    Tokens(GeluMlp3),
}

/// The step's labels on the host, as the adversary predicts them: one id per row of its
/// output, each with its weight in the loss.
struct Targets {
    ids: Vec<i64>,
    weights: Vec<f32>,
}

impl LabelAdversary {
    /// A fresh adversary for `labels` on gradients of width `width`; `class_hidden` and
    /// `token_hidden` are the hidden widths the reference gives each kind.
    pub(crate) fn for_labels(
        labels: &Labels,
        width: usize,
        sizes: LabelSizes,
        class_hidden: usize,
        token_hidden: usize,
        rng: &mut SplitMix64,
    ) -> Result<Self, String> {
        match labels {
            Labels::Classes(_) => {
                let classes = sizes.classes.ok_or(
                    "class labels, but the task's number of classes is unknown \
                     (DefenseEnv::num_classes)",
                )?;
                Ok(Self::Classes(Mlp3::new(width, class_hidden, classes, rng)))
            }
            Labels::Tokens { .. } => Ok(Self::Tokens(GeluMlp3::new(
                width,
                token_hidden,
                sizes.vocab,
                rng,
            ))),
            other => Err(unsupported(other)),
        }
    }

    /// The loss and accuracy on `grad` `[b, s, d]` (detached: nothing reaches what produced
    /// it) against `labels`, and the leaves whose gradients [`LabelAdversary::step`] reads.
    pub(crate) fn fit(
        &self,
        grad: Tensor<3>,
        labels: &Labels,
    ) -> Result<(Fit, Tensor<1>, Leaves), String> {
        let [b, s, d] = grad.dims();
        let (input, outputs) = self.widths();
        if d != input {
            return Err(format!(
                "the gradient's width {d} is not the {input} the label adversary was built for"
            ));
        }
        let targets = self.targets(labels, b, s)?;
        if let Some(&id) = targets
            .ids
            .iter()
            .find(|&&id| id < 0 || id as usize >= outputs)
        {
            return Err(format!(
                "label {id} is outside the label adversary's {outputs} outputs"
            ));
        }
        let labels = targets.weights.iter().filter(|&&w| w > 0.0).count();
        if labels == 0 {
            return Err("no label of the step is trained (every weight is 0)".into());
        }
        let grad = grad.detach().autodiff();
        let device = grad.device();
        let rows = grad.reshape([b * s, d]);
        let (scores, leaves) = match self {
            Self::Classes(mlp) => {
                let leaves = mlp.leaves(&device, true);
                let hidden = mlp.trunk(&leaves, rows);
                let width = hidden.dims()[1];
                let pooled = hidden
                    .reshape([b, s, width])
                    .mean_dim(1)
                    .reshape([b, width]);
                (softmax(mlp.last_linear(&leaves, pooled), 1), leaves)
            }
            Self::Tokens(mlp) => {
                let leaves = mlp.params.leaves(&device, true);
                (mlp.forward(&leaves, rows), leaves)
            }
        };
        let (loss, accuracy) = cross_entropy(scores, &targets, &device)?;
        let value = loss.clone().into_scalar::<f32>();
        let fit = Fit {
            loss: value,
            accuracy,
            labels,
        };
        Ok((fit, loss, leaves))
    }

    /// One Adam step at `lr` descending the loss whose gradients `grads` holds.
    pub(crate) fn step(&mut self, leaves: &Leaves, grads: &Gradients, lr: f64) {
        match self {
            Self::Classes(mlp) => mlp.step(leaves, grads, 1.0, lr),
            Self::Tokens(mlp) => mlp.params.step(leaves, grads, 1.0, lr),
        }
    }

    /// `(input, outputs)` widths.
    fn widths(&self) -> (usize, usize) {
        match self {
            Self::Classes(mlp) => (mlp.input(), mlp.output()),
            Self::Tokens(mlp) => (mlp.input, mlp.output),
        }
    }

    /// `labels` as this adversary predicts them, checked against a gradient `[b, s, ·]`.
    fn targets(&self, labels: &Labels, b: usize, s: usize) -> Result<Targets, String> {
        match (self, labels) {
            (Self::Classes(_), Labels::Classes(classes)) => {
                let n = classes.dims()[0];
                if n != b {
                    return Err(format!(
                        "class labels for {n} examples, but the gradient is [{b}, {s}, _]"
                    ));
                }
                Ok(Targets {
                    ids: int_values(classes.clone())?,
                    weights: vec![1.0; b],
                })
            }
            (Self::Tokens(_), Labels::Tokens { targets, weights }) => {
                if targets.dims() != [b, s] || weights.dims() != [b, s] {
                    return Err(format!(
                        "token labels {:?} (weights {:?}) do not match the gradient [{b}, {s}, _]",
                        targets.dims(),
                        weights.dims()
                    ));
                }
                let weights = weights
                    .clone()
                    .into_data()
                    .try_into_vec_as::<f32>()
                    .map_err(|e| format!("the token weights cannot be read: {e:?}"))?;
                Ok(Targets {
                    ids: int_values(targets.clone())?,
                    weights,
                })
            }
            (Self::Classes(_), Labels::Tokens { .. }) | (Self::Tokens(_), Labels::Classes(_)) => {
                Err(format!(
                    "{} labels, but the label adversary was built for {} labels",
                    kind(labels),
                    match self {
                        Self::Classes(_) => "class",
                        Self::Tokens(_) => "token",
                    }
                ))
            }
            (_, other) => Err(unsupported(other)),
        }
    }
}

/// The weighted mean cross entropy of `scores` `[n, k]` (read as logits, as PyTorch's
/// `CrossEntropyLoss` does) against the targets, and the weighted share of rows whose
/// arg-max is the target.
fn cross_entropy(
    scores: Tensor<2>,
    targets: &Targets,
    device: &Device,
) -> Result<(Tensor<1>, f32), String> {
    let n = targets.ids.len();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(targets.ids.clone(), [n, 1]), device);
    let weights = Tensor::<1>::from_data(TensorData::new(targets.weights.clone(), [n]), device);
    let total: f32 = targets.weights.iter().sum();
    let picked = log_softmax(scores.clone(), 1).gather(1, ids).reshape([n]);
    let loss = -(picked * weights).sum() / total as f64;
    let predicted = int_values(scores.detach().argmax(1).reshape([n]))?;
    let right: f32 = predicted
        .iter()
        .zip(&targets.ids)
        .zip(&targets.weights)
        .filter(|((p, t), _)| p == t)
        .map(|(_, &w)| w)
        .sum();
    Ok((loss, right / total))
}

/// An integer tensor's values on the host.
fn int_values<const D: usize>(t: Tensor<D, Int>) -> Result<Vec<i64>, String> {
    t.into_data()
        .try_into_vec_as::<i64>()
        .map_err(|e| format!("the labels cannot be read: {e:?}"))
}

/// The labels' kind, in words.
fn kind(labels: &Labels) -> &'static str {
    match labels {
        Labels::Classes(_) => "class",
        Labels::Scores(_) => "regression",
        Labels::Tokens { .. } => "token",
        Labels::Spans { .. } => "span",
    }
}

/// Why `labels` cannot be predicted.
fn unsupported(labels: &Labels) -> String {
    format!(
        "the label adversary predicts class or token labels, not {} labels",
        kind(labels)
    )
}

/// `in → hidden → hidden → out`: `Linear, GELU, Linear, GELU, Linear`, the output logits
/// (`mlp_tail` of `ImaginedAdversary_Tail_MLP3_for_generation`,
/// models/imagined_adversary_models.py:123–129). Linear weights kept as `[in, out]`.
pub(crate) struct GeluMlp3 {
    input: usize,
    hidden: usize,
    output: usize,
    /// `w1, b1, w2, b2, w3, b3`.
    params: HostParams,
}

impl GeluMlp3 {
    /// As the reference initialises it (`init_weights`, l.134–140): Xavier-uniform weights
    /// (±√(6 / (fan_in + fan_out))), zero biases; drawn from `rng`.
    pub(crate) fn new(input: usize, hidden: usize, output: usize, rng: &mut SplitMix64) -> Self {
        let mut xavier = |fan_in: usize, fan_out: usize| {
            uniform(
                rng,
                fan_in * fan_out,
                (6.0 / (fan_in + fan_out) as f64).sqrt(),
            )
        };
        let values = vec![
            xavier(input, hidden),
            vec![0.0; hidden],
            xavier(hidden, hidden),
            vec![0.0; hidden],
            xavier(hidden, output),
            vec![0.0; output],
        ];
        Self {
            input,
            hidden,
            output,
            params: HostParams::new(values),
        }
    }

    /// The MLP on rows `x` `[n, in]`: logits `[n, out]`.
    fn forward(&self, leaves: &Leaves, x: Tensor<2>) -> Tensor<2> {
        let (i, h, o) = (self.input, self.hidden, self.output);
        let p = |k| leaves.get(k);
        let x = gelu(linear(x, p(0), p(1), i, h));
        let x = gelu(linear(x, p(2), p(3), h, h));
        linear(x, p(4), p(5), h, o)
    }
}
