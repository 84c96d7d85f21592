//! The trained NaMoE in the [`ArtifactCache`]. Its key is everything phase 1 reads: every
//! parameter of the white-box head (so the model, the cut and the fine-tuning state, with
//! whatever a defense changed in them), the auxiliary examples' tokens, and the settings that
//! shape training (epochs as scaled, learning rate, noise scales, widths, dropout, noise site,
//! gate stage and attention, seed). The reference caches by dataset and model type alone
//! (BiSR.py l.187–205), so it reuses an inverter trained on other weights.
//!
//! Phase 2 draws no random numbers from the generator phase 1 used, so a run from a cached
//! inverter recovers exactly what a run that trains it does.

use std::collections::HashMap;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use splitlm_nn::{Labels, TokenBatch};
use splitlm_zoo::AnyModel;

use super::inverter::{NaMoE, Shape};
use super::{BisrSettings, GateAttention, GateStage, NoiseSite};
use crate::cache::{ArtifactCache, CacheKey, KeyBuilder};

/// The cache's entries of this kind.
const KIND: &str = "bisr-inverter";
/// Bumped whenever the inverter or its training changes what it learns.
const FORMAT: u32 = 1;
/// Metadata key of the gate's attention axis.
const ATTENTION: &str = "gate_attention";

/// What phase 1's training depends on among the settings.
#[derive(serde::Serialize)]
struct Phase1<'a> {
    epochs: [usize; 3],
    inverter_lr: f64,
    expert_scales: &'a [f64],
    hidden_size: usize,
    gate_heads: usize,
    dropout: f64,
    noise_site: NoiseSite,
    gate_stage: GateStage,
    gate_attention: GateAttention,
    seed: u64,
}

/// The key of the inverter trained on `auxiliary` through `head` with `settings`.
pub(super) fn key(
    head: &AnyModel,
    auxiliary: &[(TokenBatch, Labels)],
    settings: &BisrSettings,
) -> CacheKey {
    let mut key = KeyBuilder::new(KIND, FORMAT);
    key.model("head", head);
    for (batch, _) in auxiliary {
        key.batch("auxiliary", batch);
    }
    let phase1 = Phase1 {
        epochs: [
            settings.scaled(settings.expert_epochs),
            settings.scaled(settings.gate_epochs),
            settings.scaled(settings.full_epochs),
        ],
        inverter_lr: settings.inverter_lr,
        expert_scales: &settings.expert_scales,
        hidden_size: settings.hidden_size,
        gate_heads: settings.gate_heads,
        dropout: settings.dropout,
        noise_site: settings.noise_site,
        gate_stage: settings.gate_stage,
        gate_attention: settings.gate_attention,
        seed: settings.seed,
    };
    key.text(
        "settings",
        &serde_json::to_string(&phase1).expect("plain settings serialise"),
    );
    key.finish()
}

/// The cached inverter of `key`, if there is a sound one; an unreadable or mismatched entry is
/// reported and ignored (it is then retrained and overwritten).
pub(super) fn load(
    cache: &ArtifactCache,
    key: &CacheKey,
    shape: Shape,
    attention: GateAttention,
    device: &Device,
) -> Option<NaMoE> {
    let bytes = cache.read(KIND, key)?;
    match decode(&bytes, shape, attention, device) {
        Ok(moe) => Some(moe),
        Err(reason) => {
            log::warn!(
                "ignoring the cached BiSR inverter {}: {reason}; training it again",
                cache.path(KIND, key).display()
            );
            None
        }
    }
}

/// Stores `moe` under `key`; a failure is reported, not fatal (the run goes on uncached).
pub(super) fn store(cache: &ArtifactCache, key: &CacheKey, moe: &NaMoE) {
    let stored = encode(moe).and_then(|bytes| {
        cache
            .write(KIND, key, &bytes)
            .map_err(|e| format!("cannot write it: {e}"))
    });
    match stored {
        Ok(path) => log::info!("cached the BiSR inverter in {}", path.display()),
        Err(reason) => log::warn!("the BiSR inverter is not cached: {reason}"),
    }
}

fn encode(moe: &NaMoE) -> Result<Vec<u8>, String> {
    let bytes: Vec<(Vec<usize>, Vec<u8>)> = moe
        .params
        .iter()
        .map(|p| {
            let values: Vec<f32> = p
                .clone()
                .into_data()
                .try_into_vec_as()
                .map_err(|e| format!("{e:?}"))?;
            Ok((
                p.dims().to_vec(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ))
        })
        .collect::<Result<_, String>>()?;
    let views = bytes
        .iter()
        .enumerate()
        .map(|(i, (dims, data))| {
            TensorView::new(Dtype::F32, dims.clone(), data)
                .map(|view| (format!("{i:03}"), view))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let attention = serde_json::to_string(&moe.attention).expect("an enum serialises");
    let metadata = HashMap::from([(ATTENTION.to_string(), attention)]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())
}

fn decode(
    bytes: &[u8],
    shape: Shape,
    attention: GateAttention,
    device: &Device,
) -> Result<NaMoE, String> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
    let stored: Option<GateAttention> = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(ATTENTION))
        .and_then(|a| serde_json::from_str(a).ok());
    if stored != Some(attention) {
        return Err(format!(
            "its gate attention is {stored:?}, the settings' {attention:?}"
        ));
    }
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut named = tensors.tensors();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut params = Vec::with_capacity(named.len());
    for (name, view) in named {
        let &[rows, cols] = view.shape() else {
            return Err(format!("tensor {name} is {:?}, not a matrix", view.shape()));
        };
        if view.dtype() != Dtype::F32 {
            return Err(format!("tensor {name} is {:?}, not F32", view.dtype()));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(format!("tensor {name} holds NaN or infinite values"));
        }
        params.push(Tensor::<2>::from_data(
            TensorData::new(values, [rows, cols]),
            device,
        ));
    }
    NaMoE::with_params(shape, attention, params)
}
