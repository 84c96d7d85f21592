//! Decoding: choosing the next token (greedy, temperature, top-k, top-p) and generation through a
//! whole decoder with a KV cache — the reference path that split generation is compared with.

use std::time::{Duration, Instant};

use burn::tensor::{Device, Tensor};

use crate::batch::{PaddingSide, int_tensor};
use crate::seeded::SplitMix64;
use crate::{ModelError, TokenBatch, TransformerSlice};

/// How the next token is chosen and when generation stops.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sampling {
    /// Upper bound on generated tokens (the stop token included).
    pub max_new_tokens: usize,
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Sample among the `top_k` most likely tokens only; 0 keeps all.
    pub top_k: usize,
    /// Sample among the smallest set of most likely tokens whose probability reaches `top_p`;
    /// 1 keeps all.
    pub top_p: f32,
    /// Generation ends after any of these ids.
    pub stop: Vec<u32>,
    /// Seed of the sampling draws.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            max_new_tokens: 64,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            stop: Vec::new(),
            seed: 0,
        }
    }
}

impl Sampling {
    /// Greedy decoding of at most `max_new_tokens`, ending after any id in `stop`.
    pub fn greedy(max_new_tokens: usize, stop: &[u32]) -> Self {
        Self {
            max_new_tokens,
            stop: stop.to_vec(),
            ..Self::default()
        }
    }

    /// Whether the most likely token is always taken.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == 1
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |what: String| Err(ModelError::Input(format!("sampling: {what}")));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad(format!(
                "temperature must be finite and ≥ 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        Ok(())
    }
}

/// Picks tokens from logits under a [`Sampling`] setting, with its own seeded random stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    settings: Sampling,
    rng: SplitMix64,
}

impl Sampler {
    /// A sampler for `settings` (validated).
    pub fn new(settings: &Sampling) -> Result<Self, ModelError> {
        settings.validate()?;
        Ok(Self {
            settings: settings.clone(),
            rng: SplitMix64::new(settings.seed),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Sampling {
        &self.settings
    }

    /// The next token from the logits of the last position of `[1, seq, vocab]`.
    pub fn next_from(&mut self, logits: Tensor<3>) -> u32 {
        let [_, seq, vocab] = logits.dims();
        let last = logits.narrow(1, seq - 1, 1).reshape([vocab]);
        if self.settings.is_greedy() {
            return last.argmax(0).into_scalar::<i64>() as u32;
        }
        let values: Vec<f32> = last
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("float logits");
        self.sample(&values)
    }

    /// The next token from host logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.settings.is_greedy() {
            return argmax(logits);
        }
        let t = self.settings.temperature as f64;
        let mut order: Vec<usize> = (0..logits.len()).collect();
        // Most likely first; ties by id so the result does not depend on the sort.
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if self.settings.top_k > 0 {
            order.truncate(self.settings.top_k);
        }
        let top = logits[order[0]] as f64;
        let mut weights: Vec<f64> = order
            .iter()
            .map(|&i| ((logits[i] as f64 - top) / t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        if self.settings.top_p < 1.0 {
            let mut cumulative = 0.0;
            let keep = weights
                .iter()
                .position(|w| {
                    cumulative += w / total;
                    cumulative >= self.settings.top_p as f64
                })
                .map_or(weights.len(), |i| i + 1);
            weights.truncate(keep);
        }
        let total: f64 = weights.iter().sum();
        let mut draw = self.rng.uniform() * total;
        for (w, &id) in weights.iter().zip(&order) {
            draw -= w;
            if draw <= 0.0 {
                return id as u32;
            }
        }
        order[weights.len() - 1] as u32
    }
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Generated tokens and where the time went.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The new tokens, the stop token included if one was produced.
    pub tokens: Vec<u32>,
    /// Time of the prompt pass (which also yields the first token).
    pub prefill: Duration,
    /// Time of the one-position steps after it.
    pub decode: Duration,
}

impl Generation {
    /// Tokens per second of the one-position steps (`None` before any).
    pub fn decode_rate(&self) -> Option<f64> {
        let steps = self.tokens.len().saturating_sub(1);
        (steps > 0).then(|| steps as f64 / self.decode.as_secs_f64())
    }
}

/// Greedily extends `prompt` by at most `max_new` tokens, stopping after any id in `stop`.
pub fn greedy(
    model: &dyn TransformerSlice,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
    device: &Device,
) -> Result<Vec<u32>, ModelError> {
    generate(model, prompt, &Sampling::greedy(max_new, stop), device).map(|g| g.tokens)
}

/// Extends `prompt` through a whole decoder: the prompt is encoded once, each later step feeds
/// one position against the cache.
pub fn generate(
    model: &dyn TransformerSlice,
    prompt: &[u32],
    sampling: &Sampling,
    device: &Device,
) -> Result<Generation, ModelError> {
    if !model.is_causal() {
        return Err(ModelError::Input("generation needs a causal model".into()));
    }
    let mut sampler = Sampler::new(sampling)?;
    let mut cache = model.new_cache();
    let mut steps = DecodeSteps::new(prompt, device)?;
    let mut generated = Vec::new();
    let started = Instant::now();
    let mut prefill = None;
    while generated.len() < sampling.max_new_tokens {
        let logits = model
            .forward(steps.batch(), Some(&mut cache))?
            .lm_logits()
            .ok_or_else(|| ModelError::Input("generation needs a causal LM head".into()))?;
        let next = sampler.next_from(logits);
        prefill.get_or_insert_with(|| started.elapsed());
        generated.push(next);
        if sampling.stop.contains(&next) {
            break;
        }
        steps.advance(next);
    }
    let prefill = prefill.unwrap_or_default();
    Ok(Generation {
        tokens: generated,
        prefill,
        decode: started.elapsed() - prefill,
    })
}

/// The token batches of one sequence's decoding: the prompt, then one new token at a time with
/// the attention mask over everything so far.
#[derive(Debug, Clone)]
pub struct DecodeSteps {
    batch: TokenBatch,
    total: usize,
    device: Device,
}

impl DecodeSteps {
    /// Starts with the whole prompt.
    pub fn new(prompt: &[u32], device: &Device) -> Result<Self, ModelError> {
        if prompt.is_empty() {
            return Err(ModelError::Input(
                "generation needs a non-empty prompt".into(),
            ));
        }
        let batch = TokenBatch::from_sequences(&[prompt.to_vec()], 0, PaddingSide::Left, device)?;
        Ok(Self {
            batch,
            total: prompt.len(),
            device: device.clone(),
        })
    }

    /// The batch of the current step.
    pub fn batch(&self) -> &TokenBatch {
        &self.batch
    }

    /// Whether the current step is the prompt.
    pub fn is_prompt(&self) -> bool {
        self.batch.dims()[1] == self.total
    }

    /// Moves to the step that feeds `next`.
    pub fn advance(&mut self, next: u32) {
        self.total += 1;
        self.batch = TokenBatch {
            input_ids: int_tensor(vec![next as i64], [1, 1], &self.device),
            attention_mask: int_tensor(vec![1; self.total], [1, self.total], &self.device),
            token_type_ids: None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> Sampler {
        Sampler::new(&Sampling {
            temperature,
            top_k,
            top_p,
            seed,
            ..Sampling::default()
        })
        .unwrap()
    }

    fn frequencies(s: &mut Sampler, logits: &[f32], draws: usize) -> Vec<f64> {
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..draws {
            counts[s.sample(logits) as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn greedy_takes_the_most_likely_token() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        assert_eq!(sampler(0.0, 0, 1.0, 0).sample(&logits), 1);
        // top-k = 1 is greedy whatever the temperature.
        assert_eq!(sampler(5.0, 1, 1.0, 7).sample(&logits), 1);
    }

    #[test]
    fn temperature_one_samples_the_softmax() {
        let logits = [1f32.ln(), 2f32.ln(), 3f32.ln()];
        let f = frequencies(&mut sampler(1.0, 0, 1.0, 3), &logits, 60_000);
        for (got, want) in f.iter().zip([1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]) {
            assert!((got - want).abs() < 0.01, "{f:?}");
        }
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let logits = [0.0, 1.0];
        let cold = frequencies(&mut sampler(0.25, 0, 1.0, 1), &logits, 20_000)[1];
        let warm = frequencies(&mut sampler(4.0, 0, 1.0, 1), &logits, 20_000)[1];
        // p(1) = 1 / (1 + e^{-1/T}): 0.982 at T = 0.25, 0.562 at T = 4.
        assert!((cold - 0.982).abs() < 0.01, "{cold}");
        assert!((warm - 0.562).abs() < 0.015, "{warm}");
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let logits = [3f32.ln(), 2f32.ln(), 1f32.ln(), 0.5f32.ln()];
        let k2 = frequencies(&mut sampler(1.0, 2, 1.0, 5), &logits, 20_000);
        assert_eq!((k2[2], k2[3]), (0.0, 0.0));
        assert!((k2[0] - 0.6).abs() < 0.015, "{k2:?}");
        // Probabilities 3/6.5, 2/6.5, 1/6.5, 0.5/6.5: top-p 0.7 keeps the first two (0.769).
        let p = frequencies(&mut sampler(1.0, 0, 0.7, 5), &logits, 20_000);
        assert_eq!((p[2], p[3]), (0.0, 0.0));
        let tiny = frequencies(&mut sampler(1.0, 0, 0.01, 5), &logits, 1_000);
        assert_eq!(tiny[0], 1.0);
    }

    #[test]
    fn draws_are_reproducible_from_the_seed() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut s = sampler(0.8, 20, 0.9, seed);
            (0..30).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |s: Sampling| Sampler::new(&s).unwrap_err().to_string();
        let e = err(Sampling {
            temperature: -1.0,
            ..Sampling::default()
        });
        assert!(e.contains("temperature"), "{e}");
        let e = err(Sampling {
            top_p: 0.0,
            ..Sampling::default()
        });
        assert!(e.contains("top_p"), "{e}");
        let e = err(Sampling {
            max_new_tokens: 0,
            ..Sampling::default()
        });
        assert!(e.contains("max_new_tokens"), "{e}");
    }
}
