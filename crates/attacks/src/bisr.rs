//! BiSR, Bidirectional Semi-white-box Reconstruction (Chen et al., CCS'24, arXiv 2409.00960;
//! VFLAIR-LLM's `evaluates/attacks/BiSR.py`).
//!
//! **Phase 1** trains a learned inverter, the NaMoE (noise-adaptive mixture of experts,
//! `models/namoe_models.py` `MOEDRInverter`), on the attacker's auxiliary examples sent through
//! its white-box copy of the data party's head, with dχ-privacy noise at several scales so that
//! it keeps working on perturbed activations (`bisr::inverter`, `bisr::noise`, `bisr::training`).
//!
//! **Phase 2** refines what the inverter reads off the observed step:
//!
//! * forward ([`BisrMode::Forward`], the reference's only one): VMI started from the
//!   embeddings of the inverter's tokens instead of zeros (BiSR.py l.477–485), with the same
//!   objective, mask and decoding as [`crate::vmi`];
//! * backward ([`BisrMode::Backward`], the paper's BiSR(b), which the reference lacks): the
//!   gradient the model party received back is matched by the one dummy labels would induce.
//!   In a language-model task the labels are the input shifted by one, so matching recovers the
//!   input (`bisr::backward` has the design for Head–Tail and Head–Body–Tail);
//! * both ([`BisrMode::Both`]): backward from the inverter's logits, then forward from the
//!   resulting tokens (the paper's BiSR(b+f) order).
//!
//! Deviations from the reference, besides the named options: the inverter's start tokens are
//! the arg-max of its logits (the reference casts the logits to integers first, BiSR.py
//! l.477–478, which ties most positions); the trained inverter reads in evaluation mode (the
//! reference reloads it and leaves it in training mode, so dropout stays on, l.379–380); and
//! phase 2 works on whole observed batches, each row its own problem, like [`crate::vmi`].
//!
//! Given an [`ArtifactCache`], the trained inverter is kept there under the digest of
//! everything phase 1 reads (`bisr::cache`), and later runs on the same head, auxiliary data
//! and settings load it instead of training it again.

mod backward;
mod cache;
mod forward;
mod inverter;
mod noise;
mod training;

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;

use crate::cache::{ArtifactCache, CacheKey};
use crate::inversion::{InversionMask, InversionObjective, Recovered, argmax_last};
use crate::{AttackError, AttackerView, Prior};

/// Which directions of the split BiSR's second phase optimises through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BisrMode {
    /// Match the observed activations (the reference's).
    #[default]
    Forward,
    /// Match the observed gradient (language-model tasks only).
    Backward,
    /// Backward, then forward from its tokens.
    Both,
}

/// Where the dχ-privacy noise of the inverter's training data is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseSite {
    /// The reference's: on the head's output, snapped to the nearest token embedding
    /// (BiSR.py l.258–260, l.315–317).
    #[default]
    HeadOutput,
    /// On the word embeddings before the head's blocks, where a dχ-privacy defense acts (the
    /// paper's setting).
    Embeddings,
}

/// What the second training stage ("gate learning") updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateStage {
    /// The reference's: everything (its `freeze_parts` calls unfreeze both parts, BiSR.py
    /// l.280–281).
    #[default]
    All,
    /// The gate only, experts and output layer frozen (the paper's description).
    GateOnly,
}

/// Which axis the gate's self-attention mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateAttention {
    /// The reference's: `nn.MultiheadAttention` without `batch_first` reads `[b, s, h]` as
    /// `[seq, batch, h]`, so each position attends across the samples of the batch
    /// (namoe_models.py l.228, l.270).
    #[default]
    AcrossBatch,
    /// Over the positions of each sample (what the paper describes).
    AcrossPositions,
}

/// BiSR's settings; each left out takes the reference's value (its configurations, e.g.
/// `configs/multi_party/2-slice/sst2_mid.json`, and `models/namoe_models.py` l.215).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BisrSettings {
    /// Which directions phase 2 optimises through.
    pub mode: BisrMode,
    /// Epochs of the experts stage (`expert_epoch`, 20).
    pub expert_epochs: usize,
    /// Epochs of the gate stage (`gate_epoch`, 15).
    pub gate_epochs: usize,
    /// Epochs of the full stage (`full_epoch`, 4).
    pub full_epochs: usize,
    /// Multiplies the three epoch counts (rounded, at least 1 where the count is not 0): 1 is
    /// the reference's; tests and grids train quickly with less.
    pub epoch_scale: f64,
    /// Adam learning rate of the inverter (`phase1_lr`, 1e-3).
    pub inverter_lr: f64,
    /// dχ-privacy scales ε, one expert each (`expert_scales`, [0, 10, 7.5, 5]); 0 is clean.
    pub expert_scales: Vec<f64>,
    /// Width of the experts and the gate (`hidden_size`, 256).
    pub hidden_size: usize,
    /// Heads of the gate's attention (4).
    pub gate_heads: usize,
    /// Dropout of the experts' outputs and the gate's attention weights while training (0.1).
    pub dropout: f64,
    /// Where the training noise is applied.
    pub noise_site: NoiseSite,
    /// What the gate stage updates.
    pub gate_stage: GateStage,
    /// Which axis the gate's attention mixes.
    pub gate_attention: GateAttention,
    /// Forward phase: Adam steps (`epochs`, 100).
    pub steps: usize,
    /// Forward phase: Adam learning rate (`lr`, 0.01).
    pub lr: f64,
    /// Forward phase: the objective (the reference's default `loss_type`, cross-entropy).
    pub objective: InversionObjective,
    /// Forward phase: which positions the head attends to, are compared and decoded.
    pub mask: InversionMask,
    /// Backward phase: Adam steps (splitlm's choice, 100, as the forward phase).
    pub backward_steps: usize,
    /// Backward phase: Adam learning rate on the dummy label logits (splitlm's choice, 0.1:
    /// logits move by about `lr` a step, and the inverter's start is several units deep).
    pub backward_lr: f64,
    /// Backward phase in Head–Body–Tail: the relative step of the finite-difference
    /// Jacobian-vector product through the tail (splitlm's choice, 1e-3).
    pub jvp_step: f64,
    /// Seeds the inverter's initial weights, its noise, dropout and scale draws.
    pub seed: u64,
}

impl Default for BisrSettings {
    fn default() -> Self {
        Self {
            mode: BisrMode::Forward,
            expert_epochs: 20,
            gate_epochs: 15,
            full_epochs: 4,
            epoch_scale: 1.0,
            inverter_lr: 1e-3,
            expert_scales: vec![0.0, 10.0, 7.5, 5.0],
            hidden_size: 256,
            gate_heads: 4,
            dropout: 0.1,
            noise_site: NoiseSite::HeadOutput,
            gate_stage: GateStage::All,
            gate_attention: GateAttention::AcrossBatch,
            steps: 100,
            lr: 1e-2,
            objective: InversionObjective::CrossEntropy,
            mask: InversionMask::None,
            backward_steps: 100,
            backward_lr: 0.1,
            jvp_step: 1e-3,
            seed: 0,
        }
    }
}

impl BisrSettings {
    /// Refuses settings that cannot run, naming the field.
    pub fn validate(&self) -> Result<(), AttackError> {
        let positive = |name: &str, v: f64| {
            if v > 0.0 && v.is_finite() {
                Ok(())
            } else {
                Err(fail(format!("{name} = {v} must be > 0")))
            }
        };
        positive("epoch_scale", self.epoch_scale)?;
        positive("inverter_lr", self.inverter_lr)?;
        positive("lr", self.lr)?;
        positive("backward_lr", self.backward_lr)?;
        positive("jvp_step", self.jvp_step)?;
        if self.expert_scales.is_empty() {
            return Err(fail(
                "expert_scales is empty: the NaMoE needs one expert at least",
            ));
        }
        if let Some(bad) = self
            .expert_scales
            .iter()
            .find(|s| !(**s >= 0.0 && s.is_finite()))
        {
            return Err(fail(format!("expert_scales holds {bad}: scales are ε ≥ 0")));
        }
        if self.hidden_size == 0
            || self.gate_heads == 0
            || !self.hidden_size.is_multiple_of(self.gate_heads)
        {
            return Err(fail(format!(
                "hidden_size = {} must be a positive multiple of gate_heads = {}",
                self.hidden_size, self.gate_heads
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(fail(format!(
                "dropout = {} must be in [0, 1)",
                self.dropout
            )));
        }
        let phase2 = match self.mode {
            BisrMode::Forward => self.steps,
            BisrMode::Backward => self.backward_steps,
            BisrMode::Both => self.steps.min(self.backward_steps),
        };
        if phase2 == 0 {
            return Err(fail("steps = 0: phase 2 would not optimise at all"));
        }
        Ok(())
    }

    /// An epoch count scaled by [`BisrSettings::epoch_scale`].
    fn scaled(&self, epochs: usize) -> usize {
        if epochs == 0 {
            0
        } else {
            ((epochs as f64 * self.epoch_scale).round() as usize).max(1)
        }
    }
}

fn fail(reason: impl Into<String>) -> AttackError {
    AttackError {
        attack: "bisr",
        reason: reason.into(),
    }
}

/// Where a run's inverter came from, for its record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InverterSource {
    /// Its cache key: the digest of the head, the auxiliary data and phase 1's settings.
    pub key: CacheKey,
    /// Loaded from the cache (else trained in this run).
    pub cached: bool,
    /// Seconds spent training or loading it.
    pub seconds: f64,
}

/// What a BiSR run recovered, and where its inverter came from.
#[derive(Debug, Clone)]
pub struct BisrRun {
    /// One per observed sample, like [`crate::vmi`].
    pub recovered: Vec<Recovered>,
    /// The inverter's provenance.
    pub inverter: InverterSource,
}

/// Runs BiSR on every observed step: trains the NaMoE on `prior.auxiliary` through
/// `prior.head` (or loads it from `cache`, where it is stored after training), then refines
/// its reading of each step as `settings.mode` says. One [`Recovered`] per observed sample,
/// like [`crate::vmi`] (every padded position with [`InversionMask::None`], the real ones with
/// [`InversionMask::Real`]).
pub fn bisr(
    view: &AttackerView,
    prior: &Prior,
    settings: &BisrSettings,
    cache: Option<&ArtifactCache>,
    device: &Device,
) -> Result<BisrRun, AttackError> {
    settings.validate()?;
    let head = prior
        .head
        .as_ref()
        .map(|h| &h.model)
        .ok_or_else(|| fail("needs a white-box copy of the data party's head in its prior"))?;
    let auxiliary = prior.auxiliary.as_ref().ok_or_else(|| {
        fail("needs auxiliary examples in its prior (the inverter is trained on them)")
    })?;
    if auxiliary.batches.is_empty() {
        return Err(fail(format!(
            "the auxiliary examples ({}) hold no batch",
            auxiliary.source
        )));
    }
    if view.observations.is_empty() {
        return Err(fail("no step was observed"));
    }
    let head = head.clone().fork(device);
    let vocabulary = head
        .word_embeddings()
        .ok_or_else(|| fail("the white-box head holds no embeddings"))?
        .inner();
    let started = Instant::now();
    let key = cache::key(&head, &auxiliary.batches, settings);
    let shape = training::shape(&head, &vocabulary, settings)?;
    let cached = cache.and_then(|c| {
        cache::load(
            c,
            &key,
            shape,
            settings.gate_attention,
            &vocabulary.device(),
        )
    });
    let inverter = match &cached {
        Some(moe) => moe.clone(),
        None => {
            let mut rng = SplitMix64::new(settings.seed);
            let moe = training::train(&head, &vocabulary, &auxiliary.batches, settings, &mut rng)?;
            if let Some(c) = cache {
                cache::store(c, &key, &moe);
            }
            moe
        }
    };
    let source = InverterSource {
        key,
        cached: cached.is_some(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let mut recovered = Vec::new();
    for o in &view.observations {
        let observed = forward::Observed::of(o)?;
        let logits = inverter.read(&observed.activations(&vocabulary.device()))?;
        let start_ids = match settings.mode {
            BisrMode::Forward => argmax_last(logits),
            BisrMode::Backward | BisrMode::Both => {
                backward::refine(o, prior, logits, settings, device)?
            }
        };
        let tokens = match settings.mode {
            BisrMode::Backward => observed.decoded_rows(&start_ids, settings.mask),
            BisrMode::Forward | BisrMode::Both => {
                let start = embeddings_of(&vocabulary, &start_ids, observed.shape);
                forward::invert(&head, &vocabulary, &observed, start, settings, device)?
            }
        };
        recovered.extend(tokens);
    }
    Ok(BisrRun {
        recovered,
        inverter: source,
    })
}

/// The vocabulary rows of `ids` (`b·s` of them), as `[b, s, width]`.
fn embeddings_of(vocabulary: &Tensor<2>, ids: &[u32], [b, s, _]: [usize; 3]) -> Tensor<3> {
    let width = vocabulary.dims()[1];
    let index = Tensor::<1, burn::tensor::Int>::from_data(
        TensorData::new(
            ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [ids.len()],
        ),
        &vocabulary.device(),
    );
    vocabulary.clone().select(0, index).reshape([b, s, width])
}

/// Host values of a float tensor.
fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap_or_default()
}
