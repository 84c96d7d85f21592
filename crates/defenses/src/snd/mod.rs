//! SnD, split-and-denoise (Mai et al., arXiv 2310.09130), as VFLAIR-LLM (FLAIR-THU/VFLAIR-LLM at
//! ff18565) runs it for the data party.
//!
//! * **Noise.** Every head output that crosses, in training and evaluation alike, carries
//!   noise `l·v` per element with `l ~ Gamma(shape = d, rate = test_eta)` and `v ~ U(−1, 1)`
//!   (`utils/snd_utils.py:4–13`, `party/passive_party.py:995–997`). The noise passes the
//!   head's gradient unchanged (the reference sends a detached copy and backpropagates the
//!   model party's gradient into the clean output).
//! * **Denoiser** (Head–Body–Tail only). When the body's output arrives, a small transformer
//!   (`denoiser.rs`, the reference's `denoiseModelv3_3slice`) maps it, with the clean head
//!   output and the noise of the same step, to an estimate of the body's output on the clean
//!   input, which the tail then reads (`party/passive_party.py:1039–1042`). It is pretrained
//!   when the defense is built (`pretrain.rs`) on the data party's training inputs with the
//!   pretrained head and body, and stays frozen during the run, as in the reference (its
//!   parameters are in no optimizer there); the tail's gradient flows through it to the body's
//!   output. In the paper the model party pretrains it and hands it over; here the data
//!   party's process runs that pretraining itself, as the reference's single process does.
//! * In Head–Tail there is no tail to denoise at: the reference then only adds the noise, and
//!   so does this defense.
//!
//! Differences from the reference, each a named option or stated here:
//! * The reference's Head–Body–Tail runs denoise the tail's pooled output (BERT) or last
//!   position (Mistral) after the tail's own blocks, with `denoiseModelv3`; the data party's
//!   hook here is the body's output before the tail, so every position is denoised with the
//!   per-position `denoiseModelv3_3slice`, the reference's own model for a sequence output,
//!   and pretrained against the body's clean output.
//! * Pretraining's MSE covers the real tokens only (the reference's default denoiser has one
//!   pooled output per example, without padding); the last batch is kept when it is short
//!   (the reference drops it); dropout masks are drawn from the seed; the run uses the
//!   denoiser without dropout (the reference never calls `.eval()` on it).
//! * The clean head output reaches the denoiser detached (in the reference, the tail's loss
//!   also reaches the head through it).
//! * `clip_at_run` (default off, as the reference): also clip the noisy activations that are
//!   sent, per token, to `max_norm`, as pretraining does; the reference clips only in
//!   pretraining, so its denoiser is pretrained on inputs unlike those of the run.
//! * `residual` (default off): the denoiser predicts a correction to the body's output.
//! * `denoise = false`: noise only, also in Head–Body–Tail (an ablation).
//! * `denoise_sample_num`: how many training inputs pretraining uses (default all, as the
//!   reference's code: its configurations carry `denoise_sample_num: 10000`, which it never
//!   reads).

mod denoiser;
mod noise;
mod pretrain;

use burn::tensor::{Int, Tensor};
use splitlm_nn::TokenBatch;
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::seeded::SplitMix64;

use self::denoiser::{Denoiser, DenoiserShape};
use self::pretrain::{PretrainPlan, PretrainRecord};
use crate::{Defense, DefenseEnv, DefenseError, HookContext, Needs};

/// The per-token norm the reference clips noisy activations to in pretraining, by model
/// (`emb_norm_dict`, `evaluates/MainTaskVFL_LLM.py:200–210`): BERT 2.5, GPT-2 4. Llama-family
/// models take the value of the table's Mistral (2), its only model of that architecture.
pub(crate) fn reference_max_norm(family: &str) -> Option<f64> {
    match family {
        "bert" => Some(2.5),
        "gpt2" => Some(4.0),
        "llama" => Some(2.0),
        _ => None,
    }
}

/// SnD's settings; each left out takes the reference's value (its configuration
/// `configs/llm_configs/with_mia_and_defense/2-slice/sst2_snd.json`, keys read by
/// `load/LoadConfigs.py:840–860`), under the reference's key names.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SndSettings {
    /// Rate η of the noise in the denoiser's pretraining (100).
    pub train_eta: f64,
    /// Rate η of the noise on the activations sent during the run (100).
    pub test_eta: f64,
    /// Whether a denoiser runs at the tail in Head–Body–Tail (the reference: yes; `false`
    /// adds the noise only).
    pub denoise: bool,
    /// Pretraining epochs (8).
    pub denoise_epoch: usize,
    /// Pretraining Adam learning rate (1e-4; PyTorch's other Adam defaults).
    pub denoise_lr: f64,
    /// Pretraining batch size (12).
    pub denoise_batch_size: usize,
    /// Noise draws per batch in pretraining (2).
    pub noise_per_sample: usize,
    /// Training inputs pretraining uses, the first ones (default: all, as the reference).
    pub denoise_sample_num: Option<usize>,
    /// The denoiser's encoder layers (6).
    pub num_layers: usize,
    /// Its attention heads (8).
    pub num_heads: usize,
    /// The width of each head (240).
    pub dim_head: usize,
    /// Its feed-forward width (1024).
    pub d_ff: usize,
    /// Its dropout in pretraining (0.2).
    pub dropout: f64,
    /// splitlm's option (default off, the reference's model): the denoiser's output is a
    /// correction added to the body's output, its output layer starting at zero, so that a
    /// denoiser pretrained briefly starts from passing the noisy output on rather than from a
    /// random map.
    pub residual: bool,
    /// The per-token norm noisy activations are clipped to; default: the reference's value for
    /// the model family (`reference_max_norm`).
    pub max_norm: Option<f64>,
    /// Whether pretraining clips the noisy activations (the reference: yes).
    pub clip_pretraining: bool,
    /// Whether the activations sent in the run are clipped too (the reference: no).
    pub clip_at_run: bool,
}

impl Default for SndSettings {
    fn default() -> Self {
        Self {
            train_eta: 100.0,
            test_eta: 100.0,
            denoise: true,
            denoise_epoch: 8,
            denoise_lr: 1e-4,
            denoise_batch_size: 12,
            noise_per_sample: 2,
            denoise_sample_num: None,
            num_layers: 6,
            num_heads: 8,
            dim_head: 240,
            d_ff: 1024,
            dropout: 0.2,
            residual: false,
            max_norm: None,
            clip_pretraining: true,
            clip_at_run: false,
        }
    }
}

fn fail(reason: String) -> DefenseError {
    DefenseError {
        defense: "snd",
        reason,
    }
}

impl SndSettings {
    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), DefenseError> {
        for (name, eta) in [("train_eta", self.train_eta), ("test_eta", self.test_eta)] {
            if !(eta > 0.0 && eta.is_finite()) {
                return Err(fail(format!("{name} = {eta} must be > 0")));
            }
        }
        if !(self.denoise_lr > 0.0 && self.denoise_lr.is_finite()) {
            return Err(fail(format!(
                "denoise_lr = {} must be > 0",
                self.denoise_lr
            )));
        }
        for (name, value) in [
            ("denoise_batch_size", self.denoise_batch_size),
            ("noise_per_sample", self.noise_per_sample),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("dim_head", self.dim_head),
            ("d_ff", self.d_ff),
        ] {
            if value == 0 {
                return Err(fail(format!("{name} = 0 must be ≥ 1")));
            }
        }
        if self.denoise_sample_num == Some(0) {
            return Err(fail(
                "denoise_sample_num = 0: nothing to pretrain on".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(fail(format!(
                "dropout = {} must be in [0, 1)",
                self.dropout
            )));
        }
        if let Some(norm) = self.max_norm
            && !(norm > 0.0 && norm.is_finite())
        {
            return Err(fail(format!("max_norm = {norm} must be > 0")));
        }
        Ok(())
    }

    /// What it needs from the data party: with the denoiser, the pretrained head and body and
    /// the training inputs to pretrain it on (also asked for in Head–Tail, where it goes
    /// unused: the split is not known here).
    pub fn needs(&self) -> Needs {
        Needs {
            text: false,
            embeddings: false,
            training_inputs: self.denoise,
            head: self.denoise,
            body: self.denoise,
        }
    }

    /// The per-token clipping norm for `family`, when some clipping applies (`pretraining`:
    /// whether a denoiser is pretrained).
    fn max_norm_for(&self, family: &str, pretraining: bool) -> Result<Option<f64>, DefenseError> {
        if !((self.clip_pretraining && pretraining) || self.clip_at_run) {
            return Ok(None);
        }
        match self.max_norm.or_else(|| reference_max_norm(family)) {
            Some(norm) => Ok(Some(norm)),
            None => Err(fail(format!(
                "the reference has no clipping norm for model family `{family}`: set max_norm \
                 (or turn clip_pretraining and clip_at_run off)"
            ))),
        }
    }

    /// The defense, its random draws seeded by `seed`; in Head–Body–Tail with `denoise`, the
    /// denoiser is pretrained here (see the module's documentation).
    pub fn build(&self, seed: u64, env: &DefenseEnv) -> Result<Box<dyn Defense>, DefenseError> {
        Ok(Box::new(Snd::new(self.clone(), seed, env)?))
    }
}

/// The denoiser, once pretrained: a copy on the autodiff device for training steps and one
/// without autodiff for evaluation steps.
struct Pretrained {
    training: Denoiser,
    evaluation: Denoiser,
    size: usize,
    record: PretrainRecord,
}

/// What a step's head hook left for its tail hook.
struct Pending {
    clean: Tensor<3>,
    noise: Tensor<3>,
    mask: Option<Tensor<2>>,
}

/// The split-and-denoise defense.
pub struct Snd {
    settings: SndSettings,
    noise_rng: SplitMix64,
    run_max_norm: Option<f64>,
    denoiser: Option<Pretrained>,
    input_mask: Option<Tensor<2, Int>>,
    pending: Option<Pending>,
}

impl Snd {
    /// SnD with `settings` seeded by `seed`, its denoiser (Head–Body–Tail) pretrained with
    /// what `env` offers.
    pub fn new(settings: SndSettings, seed: u64, env: &DefenseEnv) -> Result<Self, DefenseError> {
        settings.validate()?;
        let mut seeds = SplitMix64::new(seed);
        let noise_rng = SplitMix64::new(seeds.next_u64());
        let mut init_rng = SplitMix64::new(seeds.next_u64());
        let mut pretrain_rng = SplitMix64::new(seeds.next_u64());
        let pretraining = env.has_tail && settings.denoise;
        let max_norm = settings.max_norm_for(&env.family, pretraining)?;
        let run_max_norm = max_norm.filter(|_| settings.clip_at_run);
        let denoiser = if pretraining {
            Some(pretrain_denoiser(
                &settings,
                env,
                max_norm.filter(|_| settings.clip_pretraining),
                &mut init_rng,
                &mut pretrain_rng,
            )?)
        } else {
            None
        };
        Ok(Self {
            settings,
            noise_rng,
            run_max_norm,
            denoiser,
            input_mask: None,
            pending: None,
        })
    }

    /// The pretraining's mean MSE per epoch (empty without a denoiser).
    #[cfg(test)]
    pub(crate) fn pretraining_losses(&self) -> Vec<f64> {
        self.denoiser
            .as_ref()
            .map(|d| d.record.epoch_losses.clone())
            .unwrap_or_default()
    }
}

fn pretrain_denoiser(
    settings: &SndSettings,
    env: &DefenseEnv,
    max_norm: Option<f64>,
    init_rng: &mut SplitMix64,
    pretrain_rng: &mut SplitMix64,
) -> Result<Pretrained, DefenseError> {
    let head = env.head("snd")?;
    let body = env.body("snd")?;
    let inputs: Vec<Vec<u32>> = env
        .training_inputs("snd")?
        .iter()
        .filter(|ids| !ids.is_empty())
        .take(settings.denoise_sample_num.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    if inputs.is_empty() {
        return Err(fail("every training input is empty".into()));
    }
    let (pad_id, padding_side) = match &env.text {
        Some(text) => (text.pad_id(), text.padding_side()),
        None => (0, PaddingSide::Right),
    };
    let device = env.device.clone().autodiff();
    let shape = DenoiserShape {
        width: env.hidden_size,
        layers: settings.num_layers,
        heads: settings.num_heads,
        dim_head: settings.dim_head,
        d_ff: settings.d_ff,
        residual: settings.residual,
    };
    let denoiser = Denoiser::new(shape, init_rng, &device);
    let size = denoiser.size();
    let plan = PretrainPlan {
        head,
        body,
        inputs: &inputs,
        pad_id,
        padding_side,
        epochs: settings.denoise_epoch,
        batch_size: settings.denoise_batch_size,
        noise_per_sample: settings.noise_per_sample,
        lr: settings.denoise_lr,
        eta: settings.train_eta,
        max_norm,
        dropout: settings.dropout,
    };
    let (denoiser, record) = pretrain::pretrain(denoiser, &plan, pretrain_rng, &device)?;
    let training = pretrain::frozen(denoiser);
    let evaluation = pretrain::for_evaluation(&training);
    Ok(Pretrained {
        training,
        evaluation,
        size,
        record,
    })
}

impl Defense for Snd {
    fn name(&self) -> &'static str {
        "snd"
    }

    fn params(&self) -> serde_json::Value {
        let mut params = serde_json::to_value(&self.settings).unwrap_or_default();
        if let (Some(d), Some(map)) = (&self.denoiser, params.as_object_mut()) {
            map.insert(
                "pretraining".into(),
                serde_json::json!({
                    "examples": d.record.examples,
                    "epoch_losses": d.record.epoch_losses,
                    "epoch_seconds": d.record.epoch_seconds,
                    "denoiser_parameters": d.size,
                }),
            );
        }
        params
    }

    fn on_input(&mut self, batch: TokenBatch, _ctx: &HookContext) -> TokenBatch {
        if self.denoiser.is_some() {
            self.input_mask = Some(batch.attention_mask.clone());
        }
        batch
    }

    fn on_activation(&mut self, hidden: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        let clean = hidden.clone().detach();
        let mut noise = noise::noise_like(&clean, &mut self.noise_rng, self.settings.test_eta);
        if let Some(max_norm) = self.run_max_norm {
            noise = noise::clip_norm(clean.clone() + noise, max_norm) - clean.clone();
        }
        if self.denoiser.is_some() {
            let [_, s, _] = clean.dims();
            let mask = self.input_mask.take().and_then(|m| {
                let [_, total] = m.dims();
                (total >= s).then(|| m.narrow(1, total - s, s).float())
            });
            self.pending = Some(Pending {
                clean,
                noise: noise.clone(),
                mask,
            });
        }
        // Added to the tracked output: the head's gradient passes the noise unchanged.
        hidden + noise
    }

    fn on_received(&mut self, hidden: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        let (Some(denoiser), Some(pending)) = (&self.denoiser, self.pending.take()) else {
            return hidden;
        };
        if pending.clean.dims() != hidden.dims() {
            // Not this step's crossing (a hook called out of order): nothing to denoise with.
            return hidden;
        }
        let device = hidden.device();
        let model = if device.is_autodiff() {
            &denoiser.training
        } else {
            &denoiser.evaluation
        };
        model.forward(
            pending.clean.to_device(&device),
            pending.noise.to_device(&device),
            hidden,
            pending.mask.map(|m| m.to_device(&device)),
            None,
        )
    }
}

#[cfg(test)]
mod tests;
