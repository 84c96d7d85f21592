//! RanText, InferDPT's perturbation (Tong et al. 2023), as the reference applies it to a data
//! party's input (party/passive_party.py l.327–385 builds its kit, l.889–956 applies it;
//! utils/inferdpt_utils.py).
//!
//! Each token of the row, its word-piece markers (`Ġ`, `▁`, `Ċ`) removed, is looked up in the
//! kit's vocabulary (the tokenizer's tokens with a lower-case letter, `filter_tokens`). Its
//! embedding gets Laplace noise of scale `Δf_j / (ε/2)` per dimension, `Δf_j` the range of
//! dimension `j` over the kit; the noise's norm `d` bounds the candidates, the kit tokens
//! closer than `d`, and one is drawn with probability ∝ `exp(ε/2 · (d − dist)/d)`. A token
//! outside the kit is dropped (the reference's `continue`), punctuation kept, a number kept
//! (or, with `math_numbers`, replaced by a random number in 1..=1000).
//!
//! The reference's configured run (gsm8k_mistral_rantext.json l.78) loads InferDPT's original
//! kit, in which each token's neighbours are sorted by Euclidean distance, ascending: that is
//! what is done here, with the head's input embeddings as the kit's embeddings (the original
//! kit's cl100k embeddings are not available). The reference's fallback kit
//! (`generate_inferdpt_kit`) sorts cosine similarities descending and searches them as if
//! ascending, which keeps either nothing or the whole vocabulary; it is not reproduced.
//! Special tokens and padding stay out of the text (the reference passes the pad and EOS
//! strings through as text) and are never drawn.
//!
//! Cost: one row of distances to the kit (`|kit|` floats) per distinct token, computed on the
//! device for a batch's new tokens at once and kept up to `CACHE_BYTES` (256 MiB).

use std::collections::HashMap;
use std::sync::Arc;

use splitlm_nn::TokenBatch;
use splitlm_nn::seeded::SplitMix64;

use super::geometry::{Candidates, HostEmbeddings};
use super::python::{in_punctuation, is_numeric, sample_weighted};
use super::rewrite::Rewriter;
use crate::{Defense, DefenseEnv, DefenseError, HookContext, Needs};

const NAME: &str = "rantext";

/// The distance rows kept between batches, in bytes.
const CACHE_BYTES: usize = 256 << 20;

/// RanText's settings; each left out takes the value of the reference's configuration
/// (configs/llm_configs/with_mia_and_defense/2-slice/gsm8k_mistral_rantext.json l.76, read by
/// load/LoadConfigs.py l.861–867).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RanTextSettings {
    /// Privacy budget ε (15).
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// The reference's handling of math data sets (its dataset names `MATH`, `GMS8K`:
    /// passive_party.py l.913): a number token becomes a random number in 1..=1000. Off by
    /// default: numbers are kept.
    #[serde(default)]
    pub math_numbers: bool,
}

fn default_epsilon() -> f64 {
    15.0
}

impl Default for RanTextSettings {
    fn default() -> Self {
        Self {
            epsilon: default_epsilon(),
            math_numbers: false,
        }
    }
}

impl RanTextSettings {
    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), DefenseError> {
        if !(self.epsilon > 0.0 && self.epsilon.is_finite()) {
            return Err(DefenseError {
                defense: NAME,
                reason: format!("epsilon must be positive and finite, not {}", self.epsilon),
            });
        }
        Ok(())
    }

    /// What it needs from the data party: the tokenizer and embeddings.
    pub fn needs(&self) -> Needs {
        Needs {
            text: true,
            ..Needs::default()
        }
    }

    /// The defense, its random draws seeded by `seed`.
    pub fn build(&self, seed: u64, env: &DefenseEnv) -> Result<Box<dyn Defense>, DefenseError> {
        self.validate()?;
        Ok(Box::new(RanText::new(self.clone(), seed, env)?))
    }
}

/// inferdpt_utils.py `filter_tokens`: a token joins the kit unless, `▁` removed, it equals its
/// upper case (no lower-case letter).
pub(crate) fn in_kit(token: &str) -> bool {
    let bare = token.replace('▁', "");
    bare != bare.to_uppercase()
}

/// The word-piece markers the reference strips (passive_party.py l.900, l.947).
pub(crate) fn strip_markers(token: &str) -> String {
    token.replace(['Ġ', '▁', 'Ċ'], "")
}

/// inferdpt_utils.py `create_sensitivity_of_embeddings`: each dimension's range.
pub(crate) fn sensitivity(rows: &[f32], dim: usize) -> Vec<f64> {
    (0..dim)
        .map(|j| {
            let column = rows.chunks(dim).map(|r| r[j] as f64);
            let (lo, hi) = column.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            hi - lo
        })
        .collect()
}

/// The candidates closer than `distance` and their weights `exp(ε/2·(d − dist)/d)`
/// (passive_party.py l.903–904, l.934–943, `Δu = 1`), as `(index, weight)`.
pub(crate) fn close_weights(distances: &[f32], distance: f64, epsilon: f64) -> Vec<(usize, f64)> {
    let factor = epsilon / 2.0;
    distances
        .iter()
        .enumerate()
        .filter(|&(_, &dist)| (dist as f64) < distance)
        .map(|(i, &dist)| (i, (factor * (distance - dist as f64) / distance).exp()))
        .collect()
}

/// What happens to each vocabulary id.
#[derive(Debug, Clone)]
enum Source {
    /// Passed through as this text.
    Keep(String),
    /// A number.
    Number(String),
    /// Perturbed from this kit entry.
    Perturb(usize),
    /// Left out.
    Drop,
}

struct RanText {
    settings: RanTextSettings,
    rewriter: Rewriter,
    engine: Engine,
}

/// The kit and the draws.
struct Engine {
    epsilon: f64,
    math_numbers: bool,
    sources: Vec<Source>,
    /// The kit's raw token strings.
    kit_tokens: Vec<String>,
    kit_rows: Vec<f32>,
    kit: Candidates,
    dim: usize,
    /// Per-dimension Laplace scales `Δf / (ε/2)`.
    scales: Vec<f64>,
    cache: HashMap<usize, Arc<[f32]>>,
    rng: SplitMix64,
}

impl RanText {
    fn new(settings: RanTextSettings, seed: u64, env: &DefenseEnv) -> Result<Self, DefenseError> {
        let error = |reason: String| DefenseError {
            defense: NAME,
            reason,
        };
        let codec = env.text(NAME)?.clone();
        let table = HostEmbeddings::of(env.token_embeddings(NAME)?).map_err(error)?;
        let rewriter = Rewriter::new(codec.clone());
        let vocab = codec.vocab_size().min(table.rows);
        let mut kit_tokens = Vec::new();
        let mut kit_rows = Vec::new();
        let mut kit_index = HashMap::new();
        for id in 0..vocab as u32 {
            let Some(token) = codec.id_to_token(id) else {
                continue;
            };
            if rewriter.is_special(id) || !in_kit(&token) {
                continue;
            }
            kit_index.insert(token.clone(), kit_tokens.len());
            kit_rows.extend_from_slice(table.row(id).unwrap_or(&[]));
            kit_tokens.push(token);
        }
        if kit_tokens.is_empty() {
            return Err(error(
                "the tokenizer has no token with a lower-case letter".into(),
            ));
        }
        let sources = (0..codec.vocab_size() as u32)
            .map(|id| {
                let Some(token) = codec.id_to_token(id) else {
                    return Source::Drop;
                };
                let bare = strip_markers(&token);
                if in_punctuation(&bare) {
                    Source::Keep(bare)
                } else if is_numeric(&bare) {
                    Source::Number(bare)
                } else {
                    let bare = bare.strip_prefix(' ').unwrap_or(&bare);
                    kit_index
                        .get(bare)
                        .map_or(Source::Drop, |&i| Source::Perturb(i))
                }
            })
            .collect();
        let scales = sensitivity(&kit_rows, table.dim)
            .iter()
            .map(|df| df / (0.5 * settings.epsilon))
            .collect();
        let kit = Candidates::new(&kit_rows, table.dim, &env.device.clone().inner());
        let engine = Engine {
            epsilon: settings.epsilon,
            math_numbers: settings.math_numbers,
            sources,
            kit_tokens,
            kit_rows,
            kit,
            dim: table.dim,
            scales,
            cache: HashMap::new(),
            rng: SplitMix64::new(seed),
        };
        Ok(Self {
            settings,
            rewriter,
            engine,
        })
    }
}

impl Engine {
    /// Distance rows for the batch's kit tokens not yet cached, in one product.
    fn prepare(&mut self, batch: &TokenBatch) {
        let ids = batch
            .input_ids
            .clone()
            .into_data()
            .try_into_vec_as::<i64>()
            .unwrap_or_default();
        let mut missing: Vec<usize> = ids
            .iter()
            .filter_map(|&id| match self.sources.get(usize::try_from(id).ok()?) {
                Some(Source::Perturb(k)) if !self.cache.contains_key(k) => Some(*k),
                _ => None,
            })
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return;
        }
        let row_bytes = self.kit.len() * 4;
        if (self.cache.len() + missing.len()) * row_bytes > CACHE_BYTES {
            self.cache.clear();
        }
        let queries: Vec<f32> = missing
            .iter()
            .flat_map(|&k| self.kit_rows[k * self.dim..(k + 1) * self.dim].to_vec())
            .collect();
        let distances = self.kit.distances(&queries);
        for (k, row) in missing.iter().zip(distances.chunks(self.kit.len())) {
            self.cache.insert(*k, row.into());
        }
    }

    /// The norm of a Laplace noise vector with the kit's scales.
    fn noise_norm(&mut self) -> f64 {
        let mut sq = 0.0;
        for &b in &self.scales {
            // `uniform()` is in (0, 1]: `v` in [−0.5, 0.5), never at the pole.
            let v = 0.5 - self.rng.uniform();
            let x = -b * v.signum() * (1.0 - 2.0 * v.abs()).ln();
            sq += x * x;
        }
        sq.sqrt()
    }

    /// The reference's per-token loop on one row's ids (passive_party.py l.891–946).
    fn sanitize(&mut self, ids: &[u32]) -> Vec<String> {
        let mut out = Vec::new();
        for &id in ids {
            match self
                .sources
                .get(id as usize)
                .cloned()
                .unwrap_or(Source::Drop)
            {
                Source::Keep(text) => out.push(text),
                Source::Number(text) if !self.math_numbers => out.push(text),
                Source::Number(_) => {
                    out.push((1 + self.rng.next_u64() % 1000).to_string());
                }
                Source::Drop => {}
                Source::Perturb(k) => {
                    let distance = self.noise_norm();
                    let Some(row) = self.row(k) else { continue };
                    let close = close_weights(&row, distance, self.epsilon);
                    let weights: Vec<f64> = close.iter().map(|&(_, w)| w).collect();
                    if let Some(i) = sample_weighted(&weights, &mut self.rng) {
                        out.push(strip_markers(&self.kit_tokens[close[i].0]));
                    }
                }
            }
        }
        out
    }

    fn row(&mut self, k: usize) -> Option<Arc<[f32]>> {
        if let Some(row) = self.cache.get(&k) {
            return Some(row.clone());
        }
        let query = self
            .kit_rows
            .get(k * self.dim..(k + 1) * self.dim)?
            .to_vec();
        let row: Arc<[f32]> = self.kit.distances(&query).into();
        self.cache.insert(k, row.clone());
        Some(row)
    }
}

impl Defense for RanText {
    fn name(&self) -> &'static str {
        NAME
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "epsilon": self.settings.epsilon,
            "math_numbers": self.settings.math_numbers,
            "kit": "input_embeddings_euclidean",
            "kit_tokens": self.engine.kit_tokens.len(),
        })
    }

    fn on_input(&mut self, batch: TokenBatch, _ctx: &HookContext) -> TokenBatch {
        let engine = &mut self.engine;
        engine.prepare(&batch);
        self.rewriter
            .rewrite(batch, |ids| engine.sanitize(ids).join(" "))
    }
}
