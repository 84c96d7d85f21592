//! Phase 1: the NaMoE trained on the auxiliary examples sent through the white-box head, in the
//! reference's three stages (BiSR.py l.209–375), each with a fresh Adam (PyTorch's defaults at
//! `inverter_lr`) and the loss `calc_unshift_loss`: cross-entropy of every position's logits
//! against the token at that position, padding included (l.95–99).
//!
//! 1. Experts (`expert_epochs`): expert `i` reads the activations noised at `expert_scales[i]`;
//!    the loss sums the experts' losses; experts and the output Linear learn (l.221–275).
//! 2. Gate (`gate_epochs`): the mixture on activations noised at a random scale
//!    ([`super::noise::random_scale`]); the reference unfreezes everything
//!    ([`super::GateStage`]).
//! 3. Full (`full_epochs`): the same, everything learning (l.328–372).

use std::ops::Range;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;
use splitlm_nn::{Labels, TokenBatch, TransformerSlice};
use splitlm_zoo::AnyModel;

use super::inverter::{Dropout, NaMoE, Shape};
use super::noise::{dx_privacy, random_scale};
use super::{BisrSettings, GateStage, NoiseSite, fail};
use crate::AttackError;

/// Adam's constants (PyTorch's defaults).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// One auxiliary batch, ready for training.
struct Example {
    /// The tokens as the head is fed them (autodiff device).
    tokens: TokenBatch,
    /// `[b, s]` on the inner device: the inverter's targets.
    ids: Tensor<2, Int>,
    /// The head's clean output (inner device), when the noise goes on it.
    clean: Option<Tensor<3>>,
}

/// The inverter after the three stages (`settings`' epochs), on the inner device.
pub(super) fn train(
    head: &AnyModel,
    vocabulary: &Tensor<2>,
    batches: &[(TokenBatch, Labels)],
    settings: &BisrSettings,
    rng: &mut SplitMix64,
) -> Result<NaMoE, AttackError> {
    let shape = shape(head, vocabulary, settings)?;
    let (vocab, inner) = (shape.vocab, vocabulary.device());
    let mut examples = Vec::with_capacity(batches.len());
    for (i, (batch, _)) in batches.iter().enumerate() {
        examples.push(example(head, batch, vocab, settings.noise_site, i)?);
    }
    let mut moe = NaMoE::new(shape, settings.gate_attention, rng, &inner);
    let all = 0..moe.params.len();
    let experts_and_output = [moe.expert_params(), moe.output_params()];
    let gate_stage = match settings.gate_stage {
        GateStage::All => vec![all.clone()],
        GateStage::GateOnly => vec![moe.gate_params()],
    };
    let noisy = |rng: &mut SplitMix64, ex: &Example, scale: f64| {
        activations(head, vocabulary, ex, scale, rng)
    };
    // 1. Experts, each on its own scale.
    let mut adam = Adam::new(&moe, &experts_and_output);
    for _ in 0..settings.scaled(settings.expert_epochs) {
        for ex in &examples {
            let inputs = settings
                .expert_scales
                .iter()
                .map(|&scale| noisy(rng, ex, scale))
                .collect::<Result<Vec<_>, _>>()?;
            adam.step(
                &mut moe,
                settings.inverter_lr,
                rng,
                settings.dropout,
                |m, p, drop| {
                    let mut total: Option<Tensor<1>> = None;
                    for (e, x) in inputs.iter().enumerate() {
                        let logits = m.expert_logits(p, e, Tensor::from_inner(x.clone()), drop);
                        let loss = cross_entropy(logits, &ex.ids);
                        total = Some(match total {
                            None => loss,
                            Some(t) => t + loss,
                        });
                    }
                    total.ok_or_else(|| fail("no expert to train"))
                },
            )?;
        }
    }
    // 2. Gate and 3. full: the mixture on a random scale per batch.
    for (epochs, groups) in [
        (settings.scaled(settings.gate_epochs), gate_stage),
        (settings.scaled(settings.full_epochs), vec![all]),
    ] {
        let mut adam = Adam::new(&moe, &groups);
        for _ in 0..epochs {
            for ex in &examples {
                let scale = random_scale(&settings.expert_scales, rng);
                let x = noisy(rng, ex, scale)?;
                adam.step(
                    &mut moe,
                    settings.inverter_lr,
                    rng,
                    settings.dropout,
                    |m, p, drop| {
                        Ok(cross_entropy(
                            m.logits(p, Tensor::from_inner(x.clone()), drop),
                            &ex.ids,
                        ))
                    },
                )?;
            }
        }
    }
    Ok(moe)
}

/// The shape of the NaMoE that reads `head`'s outputs.
pub(super) fn shape(
    head: &AnyModel,
    vocabulary: &Tensor<2>,
    settings: &BisrSettings,
) -> Result<Shape, AttackError> {
    let [vocab, width] = vocabulary.dims();
    let shape = Shape {
        width: head.hidden_size(),
        hidden: settings.hidden_size,
        experts: settings.expert_scales.len(),
        heads: settings.gate_heads,
        vocab,
    };
    if shape.width != width {
        return Err(fail(format!(
            "the head's embeddings are {width} wide but its blocks {}: the dχ noise snaps \
             activations to embeddings, which needs one width",
            shape.width
        )));
    }
    Ok(shape)
}

/// One auxiliary batch checked against the vocabulary and moved to the head's device.
fn example(
    head: &AnyModel,
    batch: &TokenBatch,
    vocab: usize,
    site: NoiseSite,
    index: usize,
) -> Result<Example, AttackError> {
    let device = head
        .word_embeddings()
        .ok_or_else(|| fail("the white-box head holds no embeddings"))?
        .device();
    let [b, s] = batch.input_ids.dims();
    let ids: Vec<i64> = batch
        .input_ids
        .clone()
        .into_data()
        .try_into_vec_as::<i64>()
        .map_err(|e| fail(format!("auxiliary batch {index}: {e:?}")))?;
    let mask: Vec<i64> = batch
        .attention_mask
        .clone()
        .into_data()
        .try_into_vec_as::<i64>()
        .map_err(|e| fail(format!("auxiliary batch {index}: {e:?}")))?;
    if mask.len() != b * s {
        return Err(fail(format!(
            "auxiliary batch {index}: mask {:?} for ids [{b}, {s}]",
            batch.attention_mask.dims()
        )));
    }
    if let Some(bad) = ids.iter().find(|&&i| i < 0 || i as usize >= vocab) {
        return Err(fail(format!(
            "auxiliary batch {index}: token {bad} is outside the head's vocabulary of {vocab}"
        )));
    }
    let ints = |v: Vec<i64>, d: &burn::tensor::Device| {
        Tensor::<2, Int>::from_data(TensorData::new(v, [b, s]), d)
    };
    let tokens = TokenBatch {
        input_ids: ints(ids.clone(), &device),
        attention_mask: ints(mask, &device),
        token_type_ids: None,
    };
    let inner = device.clone().inner();
    let clean = match site {
        NoiseSite::HeadOutput => Some(head_output(head, &tokens, None)?.inner()),
        NoiseSite::Embeddings => None,
    };
    Ok(Example {
        tokens,
        ids: ints(ids, &inner),
        clean,
    })
}

/// The head's output on `tokens`, with `noisy` word vectors in place of the lookup if given.
fn head_output(
    head: &AnyModel,
    tokens: &TokenBatch,
    noisy: Option<Tensor<3>>,
) -> Result<Tensor<3>, AttackError> {
    let embedded = match noisy {
        None => head.embed(tokens),
        Some(words) => head.embed_vectors(words, tokens),
    }
    .map_err(|e| fail(e.to_string()))?;
    Ok(head
        .forward_blocks(embedded, None)
        .map_err(|e| fail(e.to_string()))?
        .states
        .detach())
}

/// The inverter's input for `ex` at dχ scale `scale` (inner device): noise on the head's
/// output if `ex` kept it clean, else on the word vectors before the blocks.
fn activations(
    head: &AnyModel,
    vocabulary: &Tensor<2>,
    ex: &Example,
    scale: f64,
    rng: &mut SplitMix64,
) -> Result<Tensor<3>, AttackError> {
    match &ex.clean {
        Some(clean) => Ok(dx_privacy(clean.clone(), vocabulary, scale, rng)),
        None => {
            if scale == 0.0 {
                return Ok(head_output(head, &ex.tokens, None)?.inner());
            }
            let [b, s] = ex.ids.dims();
            let words = vocabulary
                .clone()
                .select(0, ex.ids.clone().reshape([b * s]))
                .reshape([b, s, vocabulary.dims()[1]]);
            let noisy = dx_privacy(words, vocabulary, scale, rng);
            Ok(head_output(head, &ex.tokens, Some(Tensor::from_inner(noisy)))?.inner())
        }
    }
}

/// `calc_unshift_loss`: the mean cross-entropy of every position against its own token.
fn cross_entropy(logits: Tensor<3>, ids: &Tensor<2, Int>) -> Tensor<1> {
    let [b, s] = ids.dims();
    let picked = log_softmax(logits, 2).gather(
        2,
        Tensor::<2, Int>::from_inner(ids.clone()).reshape([b, s, 1]),
    );
    -picked.mean()
}

/// Adam over a chosen set of the NaMoE's parameters (the others stay as they are).
struct Adam {
    trained: Vec<bool>,
    moments: Vec<Option<(Tensor<2>, Tensor<2>)>>,
    step: i32,
}

impl Adam {
    fn new(moe: &NaMoE, groups: &[Range<usize>]) -> Self {
        let n = moe.params.len();
        let trained = (0..n)
            .map(|i| groups.iter().any(|g| g.contains(&i)))
            .collect();
        Self {
            trained,
            moments: vec![None; n],
            step: 0,
        }
    }

    /// One step on the loss `f(moe, params, dropout)`.
    fn step(
        &mut self,
        moe: &mut NaMoE,
        lr: f64,
        rng: &mut SplitMix64,
        dropout: f64,
        f: impl FnOnce(&NaMoE, &[Tensor<2>], &mut Option<Dropout<'_>>) -> Result<Tensor<1>, AttackError>,
    ) -> Result<(), AttackError> {
        let leaves: Vec<Tensor<2>> = moe
            .params
            .iter()
            .zip(&self.trained)
            .map(|(p, &t)| {
                let leaf = Tensor::from_inner(p.clone());
                if t { leaf.require_grad() } else { leaf }
            })
            .collect();
        let mut drop = Some(Dropout { rng, p: dropout });
        let loss = f(moe, &leaves, &mut drop)?;
        let value = loss.clone().inner().into_scalar::<f64>();
        if !value.is_finite() {
            return Err(fail(format!("the inverter's training loss is {value}")));
        }
        let grads = loss.backward();
        self.step += 1;
        let (c1, c2) = (1.0 - BETA1.powi(self.step), 1.0 - BETA2.powi(self.step));
        for (i, leaf) in leaves.iter().enumerate() {
            if !self.trained[i] {
                continue;
            }
            let Some(g) = leaf.grad(&grads) else {
                continue;
            };
            let (m, v) = self
                .moments
                .get_mut(i)
                .and_then(Option::take)
                .unwrap_or_else(|| (g.zeros_like(), g.zeros_like()));
            let m = m * BETA1 + g.clone() * (1.0 - BETA1);
            let v = v * BETA2 + g.powi_scalar(2) * (1.0 - BETA2);
            let update = (m.clone() / c1) * lr / ((v.clone() / c2).sqrt() + EPS);
            moe.params[i] = moe.params[i].clone() - update;
            self.moments[i] = Some((m, v));
        }
        Ok(())
    }
}
