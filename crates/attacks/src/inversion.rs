//! Input inversion from the activations the model party received.
//!
//! VMI (vanilla model inversion, white-box; `VanillaModelInversion_WhiteBox.py` in VFLAIR-LLM):
//! with a copy of the data party's head as prior, optimise dummy word vectors (initialised at
//! zero, l.238) with Adam so that the head maps them onto the observed activations, then read
//! each position as the token whose embedding is most cosine-similar (l.296–310). RWI
//! (relaxation-based white-box inversion, Song & Raghunathan 2020; `WhiteBoxInversion.py`)
//! relaxes the tokens instead: per-position logits `Z` (zeros, l.209) whose tempered softmax
//! mixes embedding rows (l.217–221), decoded by arg-max (l.274).
//!
//! Defaults are the reference's:
//!
//! * the objective is its default `loss_type = "cross_entropy"` (VMI l.90–96, RWI l.51–57):
//!   PyTorch's `CrossEntropyLoss` on `[1, s, d]` tensors, i.e. for each feature a softmax over
//!   the sequence positions scored against the observed values as real-valued soft targets,
//!   averaged over the features; `objective = "mse"` is its other choice;
//! * `mask = "none"`: the reference runs the dummy head without an attention mask (its
//!   `hasattr(real_results, 'attention_mask')` on a dict is always false, VMI l.221, RWI l.190),
//!   compares every padded position and decodes every padded position, so each recovered
//!   sequence has the padded length; `mask = "real"` is splitlm's own variant: the head sees the
//!   observed mask, the objective only the real positions, and only those are decoded;
//! * steps and rates from the reference's configurations: VMI lr 1e-2 and 100 epochs as in its
//!   SST-2 (BERT) configs (its Lambada GPT-2 ones use lr 1e-3 and 400); RWI T 0.05, lr 5e-3 and
//!   300 epochs as in its Lambada configs (its SST-2 and Alpaca ones use 500 epochs).
//!
//! The reference inverts one sample at a time; splitlm inverts an observed batch at once. With
//! `mask = "none"` the batch's objective is the sum of the per-sample objectives and the rows
//! never meet (each row attends only to itself), so every row's gradient and Adam step are the
//! reference's. The reference also feeds the head the sample's real `token_type_ids` (VMI
//! l.233–236); the model party does not observe them ([`splitlm_party::Observation`] carries the
//! activations and the attention mask), so the head gets segment 0 everywhere, which is what a
//! single-sentence input has.

use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_nn::{TokenBatch, TransformerSlice};
use splitlm_zoo::AnyModel;

use crate::optimise::adam;
use crate::{AttackConfig, AttackError, AttackerView};

/// VMI settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmiSettings {
    /// Adam steps (the reference's `epochs`).
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// What is minimised between the head's output and the observed activations.
    pub objective: InversionObjective,
    /// Which positions the head attends to, the objective compares and the attack decodes.
    pub mask: InversionMask,
}

impl Default for VmiSettings {
    fn default() -> Self {
        Self {
            steps: 100,
            lr: 1e-2,
            objective: InversionObjective::default(),
            mask: InversionMask::default(),
        }
    }
}

/// What VMI and RWI minimise between the head's output `h` and the observed activations `y`,
/// both `[b, s, d]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InversionObjective {
    /// The reference's default (`nn.CrossEntropyLoss()` on `[1, s, d]`, VMI l.96 and l.266):
    /// PyTorch reads the sequence axis as the classes, so each sample scores
    /// `−(1/d) Σ_{t,j} y[t,j] · log_softmax_t(h)[t,j]`, the observed values being real-valued
    /// soft targets (not token ids, and not a probability distribution).
    #[default]
    CrossEntropy,
    /// Mean squared error (the reference's `loss_type = "mse"`, `nn.MSELoss()`).
    Mse,
}

/// VMI's objective, under the name it had before RWI got the same choice.
pub type VmiObjective = InversionObjective;

/// Which positions VMI and RWI work on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InversionMask {
    /// The reference's: the head runs without an attention mask (every position attends to
    /// every position it may, pads included; positions 0..s−1), the objective covers every
    /// padded position, and every padded position is decoded, so each recovered sequence has
    /// the observation's padded length (and token precision counts the pad positions).
    #[default]
    None,
    /// splitlm's: the head runs with the observed attention mask, the objective covers the real
    /// positions only, only they are decoded, and padding that trails in every row is dropped
    /// before optimising.
    Real,
}

/// RWI settings (relaxation-based white-box inversion, Song & Raghunathan 2020).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RwiSettings {
    /// Adam steps (the reference's `epochs`).
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Softmax temperature of the relaxed tokens (the reference's `T`).
    pub temperature: f64,
    /// What is minimised between the head's output and the observed activations.
    pub objective: InversionObjective,
    /// Which positions the head attends to, the objective compares and the attack decodes.
    pub mask: InversionMask,
}

impl Default for RwiSettings {
    fn default() -> Self {
        Self {
            steps: 300,
            lr: 5e-3,
            temperature: 0.05,
            objective: InversionObjective::default(),
            mask: InversionMask::default(),
        }
    }
}

/// The recovered tokens of one observed sample: every padded position with
/// [`InversionMask::None`], its real positions with [`InversionMask::Real`].
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

    fn mask(self) -> InversionMask {
        match self {
            Method::Vmi(s) => s.mask,
            Method::Rwi(s) => s.mask,
        }
    }

    fn objective(self) -> InversionObjective {
        match self {
            Method::Vmi(s) => s.objective,
            Method::Rwi(s) => s.objective,
        }
    }

    fn steps_and_lr(self) -> (usize, f64) {
        match self {
            Method::Vmi(s) => (s.steps, s.lr),
            Method::Rwi(s) => (s.steps, s.lr),
        }
    }
}

/// One observed batch as host values.
struct Observed {
    values: Vec<f32>,
    mask: Vec<i64>,
    token_types: Option<Vec<i64>>,
    shape: [usize; 3],
}

impl Observed {
    /// Drops the trailing columns that are padding in every row. With the observed mask they
    /// change nothing at the real positions (pads are masked keys; later positions never reach
    /// earlier ones), so the attack's cost follows the sentences' lengths, not the batch's
    /// padded width.
    fn trim_trailing_padding(self) -> Self {
        let [b, s, d] = self.shape;
        let real = (0..s)
            .rev()
            .find(|&t| (0..b).any(|row| self.mask[row * s + t] != 0))
            .map_or(0, |t| t + 1);
        if real == s {
            return self;
        }
        let rows = |v: &[i64]| -> Vec<i64> {
            (0..b)
                .flat_map(|row| v[row * s..row * s + real].to_vec())
                .collect()
        };
        Self {
            values: (0..b)
                .flat_map(|row| self.values[row * s * d..(row * s + real) * d].to_vec())
                .collect(),
            mask: rows(&self.mask),
            token_types: self.token_types.as_deref().map(rows),
            shape: [b, real, d],
        }
    }
}

/// One inversion problem: a white-box head, the activations it must reproduce, and what the
/// head is fed besides the optimised word vectors.
struct Fit {
    head: AnyModel,
    /// `[vocab, width]` on the inner device.
    vocabulary: Tensor<2>,
    method: Method,
    /// The observed activations `[b, s, d]`, on the inner device.
    target: Tensor<3>,
    /// The head's mask and segments (its ids are never read).
    tokens: TokenBatch,
    /// `[b, s, 1]`, 1 at the real positions (with [`InversionMask::Real`]), inner device.
    real: Option<Tensor<3>>,
    /// The decoded positions of each row.
    decoded: Vec<Vec<usize>>,
    device: Device,
}

impl Fit {
    /// `head` must already live on the autodiff `device`.
    fn new(
        head: AnyModel,
        method: Method,
        observed: Observed,
        device: &Device,
    ) -> Result<Self, AttackError> {
        let vocabulary = head
            .word_embeddings()
            .ok_or_else(|| fail(method.name(), "the white-box head holds no embeddings"))?
            .inner();
        let [b, s, d] = observed.shape;
        if observed.values.len() != b * s * d || observed.mask.len() != b * s {
            return Err(fail(
                method.name(),
                "activations and mask disagree in shape",
            ));
        }
        if let Some(types) = &observed.token_types
            && types.len() != b * s
        {
            return Err(fail(
                method.name(),
                "token types and mask disagree in shape",
            ));
        }
        let mode = method.mask();
        let observed = match mode {
            InversionMask::None => observed,
            InversionMask::Real => observed.trim_trailing_padding(),
        };
        let Observed {
            values,
            mask,
            token_types,
            shape: [b, s, d],
        } = observed;
        let inner = device.clone().inner();
        let ints = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [b, s]), device);
        let (head_mask, real, decoded) = match mode {
            InversionMask::None => (vec![1i64; b * s], None, vec![(0..s).collect(); b]),
            InversionMask::Real => {
                let real =
                    Tensor::<2, Int>::from_data(TensorData::new(mask.clone(), [b, s]), &inner)
                        .float()
                        .unsqueeze_dim::<3>(2);
                let decoded = (0..b)
                    .map(|row| (0..s).filter(|&t| mask[row * s + t] != 0).collect())
                    .collect();
                (mask, Some(real), decoded)
            }
        };
        Ok(Self {
            head,
            vocabulary,
            method,
            target: Tensor::from_data(TensorData::new(values, [b, s, d]), &inner),
            tokens: TokenBatch {
                input_ids: Tensor::<2, Int>::zeros([b, s], device),
                attention_mask: ints(head_mask),
                token_type_ids: token_types.map(ints),
            },
            real,
            decoded,
            device: device.clone(),
        })
    }

    /// The optimised variable at its start: zeros of `[b, s, width]` (VMI's dummy word
    /// vectors) or `[b, s, vocab]` (RWI's logits), on the inner device.
    fn start(&self) -> Tensor<3> {
        let [b, s, _] = self.target.dims();
        let [vocab, width] = self.vocabulary.dims();
        let last = match self.method {
            Method::Vmi(_) => width,
            Method::Rwi(_) => vocab,
        };
        Tensor::zeros([b, s, last], &self.device.clone().inner())
    }

    /// The word vectors the variable stands for (autodiff device).
    fn words(&self, x: Tensor<3>) -> Tensor<3> {
        match self.method {
            Method::Vmi(_) => x,
            Method::Rwi(settings) => {
                let [b, s, vocab] = x.dims();
                let width = self.vocabulary.dims()[1];
                softmax(x / settings.temperature, 2)
                    .reshape([b * s, vocab])
                    .matmul(Tensor::from_inner(self.vocabulary.clone()))
                    .reshape([b, s, width])
            }
        }
    }

    /// The objective at `x` (autodiff device). With [`InversionMask::None`], the sum over the
    /// samples of the reference's per-sample loss; with [`InversionMask::Real`], splitlm's
    /// batch means over the real positions.
    fn loss(&self, x: Tensor<3>) -> Result<Tensor<1>, AttackError> {
        let attack = self.method.name();
        let embedded = self
            .head
            .embed_vectors(self.words(x), &self.tokens)
            .map_err(|e| fail(attack, e.to_string()))?;
        let hidden = self
            .head
            .forward_blocks(embedded, None)
            .map_err(|e| fail(attack, e.to_string()))?
            .states;
        let target = Tensor::from_inner(self.target.clone());
        Ok(objective(
            hidden,
            target,
            self.real.clone(),
            self.method.objective(),
        ))
    }

    /// Adam from [`Fit::start`]; returns the variable (inner device).
    fn optimise(&self) -> Result<Tensor<3>, AttackError> {
        let (steps, lr) = self.method.steps_and_lr();
        adam(self.start(), steps, lr, self.method.name(), |leaf| {
            self.loss(leaf)
        })
    }

    /// Each sample's tokens read off the variable at its decoded positions.
    fn decode(&self, x: Tensor<3>) -> Vec<Recovered> {
        let s = x.dims()[1];
        let ids = match self.method {
            Method::Vmi(_) => nearest_tokens(x, self.vocabulary.clone()),
            Method::Rwi(_) => argmax_last(x),
        };
        self.decoded
            .iter()
            .enumerate()
            .map(|(row, positions)| positions.iter().map(|&t| ids[row * s + t]).collect())
            .collect()
    }
}

fn invert_all(
    view: &AttackerView,
    head: &AnyModel,
    method: Method,
    device: &Device,
) -> Result<Vec<Recovered>, AttackError> {
    let head = head.clone().fork(device);
    let mut recovered = Vec::new();
    for o in &view.observations {
        let shape: [usize; 3] = o.hidden.shape.clone().try_into().map_err(|_| {
            fail(
                method.name(),
                format!("step {}: activations are not [b, s, d]", o.step),
            )
        })?;
        let observed = Observed {
            values: o
                .hidden
                .to_f32()
                .map_err(|e| fail(method.name(), e.to_string()))?,
            mask: o
                .attention_mask
                .to_i64()
                .map_err(|e| fail(method.name(), e.to_string()))?,
            // Not observed: the data party embeds its tokens itself.
            token_types: None,
            shape,
        };
        let fit = Fit::new(head.clone(), method, observed, device)?;
        recovered.extend(fit.decode(fit.optimise()?));
    }
    Ok(recovered)
}

/// One observed batch as plain values, for [`probe_objective`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ProbeBatch<'a> {
    /// The observed activations, `[b, s, d]` row-major.
    pub hidden: &'a [f32],
    /// `[b, s, d]`.
    pub shape: [usize; 3],
    /// `[b, s]`.
    pub attention_mask: &'a [i64],
    /// `[b, s]` segment ids fed to the head (the reference feeds the real ones; the model party
    /// does not observe them, so [`vmi`] and [`rwi`] feed none).
    pub token_type_ids: Option<&'a [i64]>,
}

/// What [`probe_objective`] measured.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct ObjectiveProbe {
    /// The objective at the start of the optimisation (the variable at zero).
    pub loss: f64,
    /// Its gradient with respect to the optimised variable, row-major: the dummy word vectors
    /// `[b, s, d]` (VMI) or the logits `Z` `[b, s, vocab]` (RWI).
    pub gradient: Vec<f32>,
    /// The variable after the settings' Adam steps, row-major.
    pub optimised: Vec<f32>,
    /// What the attack decodes from it.
    pub recovered: Vec<Recovered>,
}

/// VMI's or RWI's objective, gradient, optimisation and decoding on one batch: the seam that
/// the reference fixtures (`fixtures/vflair/inversion.py`) check. Not part of the API.
#[doc(hidden)]
pub fn probe_objective(
    head: &AnyModel,
    attack: &AttackConfig,
    batch: ProbeBatch<'_>,
    device: &Device,
) -> Result<ObjectiveProbe, AttackError> {
    let method = match attack {
        AttackConfig::Vmi(s) => Method::Vmi(*s),
        AttackConfig::Rwi(s) => Method::Rwi(*s),
        other => return Err(fail(other.name(), "not an inversion")),
    };
    let observed = Observed {
        values: batch.hidden.to_vec(),
        mask: batch.attention_mask.to_vec(),
        token_types: batch.token_type_ids.map(<[i64]>::to_vec),
        shape: batch.shape,
    };
    let fit = Fit::new(head.clone().fork(device), method, observed, device)?;
    let host = |t: Tensor<3>| -> Vec<f32> {
        t.into_data()
            .try_into_vec_as::<f32>()
            .expect("float tensor")
    };
    let leaf = Tensor::from_inner(fit.start()).require_grad();
    let loss = fit.loss(leaf.clone())?;
    let value = loss.clone().inner().into_scalar::<f64>();
    let grads = loss.backward();
    let gradient = leaf
        .grad(&grads)
        .ok_or_else(|| fail(method.name(), "no gradient reached the optimised tensor"))?;
    let optimised = fit.optimise()?;
    Ok(ObjectiveProbe {
        loss: value,
        gradient: host(gradient),
        optimised: host(optimised.clone()),
        recovered: fit.decode(optimised),
    })
}
/// The inversion objective of `hidden` against the observed `target` (autodiff device): with
/// no `real` mask ([`InversionMask::None`]), the sum over the samples of the reference's
/// per-sample loss; with `real` `[b, s, 1]` (inner device, [`InversionMask::Real`]), splitlm's
/// batch means over the real positions.
pub(crate) fn objective(
    hidden: Tensor<3>,
    target: Tensor<3>,
    real: Option<Tensor<3>>,
    objective: InversionObjective,
) -> Tensor<1> {
    let [b, s, d] = target.dims();
    match real {
        None => match objective {
            // MSELoss: the mean over the sample's s·d values.
            InversionObjective::Mse => (hidden - target)
                .powi_scalar(2)
                .sum()
                .div_scalar((s * d) as f64),
            // CrossEntropyLoss on [1, s, d]: softmax over dim 1, mean over the d features.
            InversionObjective::CrossEntropy => (log_softmax(hidden, 1) * target)
                .sum()
                .div_scalar(-(d as f64)),
        },
        Some(real) => {
            let real = Tensor::from_inner(real);
            match objective {
                InversionObjective::Mse => ((hidden - target) * real).powi_scalar(2).mean(),
                InversionObjective::CrossEntropy => (log_softmax(hidden, 1) * target * real)
                    .sum()
                    .div_scalar(-((b * d) as f64)),
            }
        }
    }
}

/// The arg-max over the last axis of `[b, s, vocab]`, flattened.
pub(crate) fn argmax_last(logits: Tensor<3>) -> Vec<u32> {
    let [b, s, vocab] = logits.dims();
    logits
        .reshape([b * s, vocab])
        .argmax(1)
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i as u32)
        .collect()
}

/// For each position of `[b, s, width]`, the vocabulary row of highest cosine similarity.
pub(crate) fn nearest_tokens(words: Tensor<3>, vocabulary: Tensor<2>) -> Vec<u32> {
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
