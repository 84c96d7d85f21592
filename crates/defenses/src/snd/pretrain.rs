//! The denoiser's pretraining, as the reference's `prepare_defense`
//! (`evaluates/MainTaskVFL_LLM.py:193–314`) runs it before training starts.
//!
//! For each batch of training inputs (in order, `denoise_batch_size` at a time) and each of
//! `noise_per_sample` noise draws at rate `train_eta`: the pretrained head's output `h`, noise
//! `n` added, the noisy activations clipped per token to the model's norm (the reference's
//! `emb_norm_dict`) and `n` taken as what clipping left of it; the pretrained body run on `h`
//! (the target) and on `h + n` (the input); `h` and `n` zeroed at padding; one Adam step on
//! the MSE between the denoiser's estimate and the target.
//!
//! In the paper the model party pretrains the denoiser on public data with its body and hands
//! it to the data party; here the data party's own process runs that pretraining with runners
//! of the pretrained slices ([`crate::DefenseEnv`]), on its training inputs, as the reference's
//! single process does.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::seeded::SplitMix64;
use splitlm_nn::{Hidden, TokenBatch};

use super::denoiser::{Denoiser, Dropout};
use super::noise;
use crate::{BodyRunner, DefenseError, HeadRunner};

/// What pretraining needs besides the denoiser.
pub(crate) struct PretrainPlan<'a> {
    pub(crate) head: &'a HeadRunner,
    pub(crate) body: &'a BodyRunner,
    pub(crate) inputs: &'a [Vec<u32>],
    pub(crate) pad_id: u32,
    pub(crate) padding_side: PaddingSide,
    pub(crate) epochs: usize,
    pub(crate) batch_size: usize,
    pub(crate) noise_per_sample: usize,
    pub(crate) lr: f64,
    pub(crate) eta: f64,
    pub(crate) max_norm: Option<f64>,
    pub(crate) dropout: f64,
}

/// What pretraining did, for records.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct PretrainRecord {
    /// Examples used.
    pub(crate) examples: usize,
    /// Mean training MSE of each epoch.
    pub(crate) epoch_losses: Vec<f64>,
    /// Wall-clock seconds of each epoch.
    pub(crate) epoch_seconds: Vec<f64>,
}

fn fail(reason: String) -> DefenseError {
    DefenseError {
        defense: "snd",
        reason,
    }
}

/// `mask` `[b, past + s]` as floats over the last `s` positions.
pub(crate) fn float_mask(hidden: &Hidden) -> Tensor<2> {
    let [_, s, _] = hidden.states.dims();
    let [_, total] = hidden.attention_mask.dims();
    hidden
        .attention_mask
        .clone()
        .narrow(1, total - s, s)
        .float()
}

/// Pretrains `denoiser` (on an autodiff `device`) as planned; noise and dropout from `rng`.
pub(crate) fn pretrain(
    mut denoiser: Denoiser,
    plan: &PretrainPlan,
    rng: &mut SplitMix64,
    device: &Device,
) -> Result<(Denoiser, PretrainRecord), DefenseError> {
    let mut optimizer = AdamConfig::new()
        // PyTorch's Adam defaults (Burn's ε is 1e-5).
        .with_epsilon(1e-8)
        .init();
    let mut record = PretrainRecord {
        examples: plan.inputs.len(),
        epoch_losses: Vec::new(),
        epoch_seconds: Vec::new(),
    };
    for epoch in 0..plan.epochs {
        let start = Instant::now();
        let (mut total, mut steps) = (0.0, 0usize);
        for chunk in plan.inputs.chunks(plan.batch_size) {
            let batch = TokenBatch::from_sequences(chunk, plan.pad_id, plan.padding_side, device)
                .map_err(|e| fail(format!("pretraining batch: {e}")))?;
            let clean =
                (plan.head)(&batch).map_err(|e| fail(format!("the pretrained head: {e}")))?;
            let clean = Hidden {
                states: clean.states.to_device(device).detach(),
                attention_mask: clean.attention_mask.to_device(device),
                positions: clean.positions.to_device(device),
            };
            let target = run_body(plan.body, clean.clone())?;
            let mask = float_mask(&clean);
            let token_mask = mask.clone().unsqueeze_dim::<3>(2);
            for _ in 0..plan.noise_per_sample {
                let h = clean.states.clone();
                let mut noisy = h.clone() + noise::noise_like(&h, rng, plan.eta);
                if let Some(max_norm) = plan.max_norm {
                    noisy = noise::clip_norm(noisy, max_norm);
                }
                let n = noisy.clone() - h.clone();
                let y = run_body(plan.body, clean.clone().with_states(noisy))?;
                let estimate = denoiser.forward(
                    h * token_mask.clone(),
                    n * token_mask.clone(),
                    y,
                    Some(mask.clone()),
                    Some(Dropout {
                        p: plan.dropout,
                        rng: &mut *rng,
                    }),
                );
                let loss = masked_mse(estimate, target.clone(), &token_mask);
                let value = loss.clone().into_scalar::<f32>() as f64;
                if !value.is_finite() {
                    return Err(fail(format!(
                        "denoiser pretraining diverged (loss {value} in epoch {epoch})"
                    )));
                }
                total += value;
                steps += 1;
                let grads = GradientsParams::from_grads(loss.backward(), &denoiser);
                denoiser = optimizer.step(plan.lr, denoiser, grads);
            }
        }
        record.epoch_losses.push(total / steps.max(1) as f64);
        record.epoch_seconds.push(start.elapsed().as_secs_f64());
    }
    Ok((denoiser, record))
}

/// The pretrained body on `hidden`, detached, on `hidden`'s device.
fn run_body(body: &BodyRunner, hidden: Hidden) -> Result<Tensor<3>, DefenseError> {
    let device = hidden.states.device();
    let out = body(hidden).map_err(|e| fail(format!("the pretrained body: {e}")))?;
    Ok(out.states.to_device(&device).detach())
}

/// Mean squared error over the real tokens (`token_mask` `[b, s, 1]`).
pub(crate) fn masked_mse(a: Tensor<3>, b: Tensor<3>, token_mask: &Tensor<3>) -> Tensor<1> {
    let [_, _, d] = a.dims();
    let squared = (a - b).powi_scalar(2) * token_mask.clone();
    let count = token_mask.clone().sum().clamp_min(1.0) * d as f64;
    squared.sum() / count
}

/// The denoiser for evaluation passes (on the plain device, without gradients).
pub(crate) fn for_evaluation(denoiser: &Denoiser) -> Denoiser {
    denoiser.valid()
}

/// The denoiser frozen (its parameters need no gradient): the reference does not train it
/// during the run.
pub(crate) fn frozen(denoiser: Denoiser) -> Denoiser {
    denoiser.no_grad()
}
