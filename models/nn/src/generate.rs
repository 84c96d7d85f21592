//! Greedy decoding through a whole decoder with a KV cache (the reference path that split
//! generation is compared against).

use std::time::{Duration, Instant};

use burn::tensor::{Device, Tensor};

use crate::batch::{PaddingSide, int_tensor};
use crate::{ModelError, TokenBatch, TransformerSlice};

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
/// The prompt is encoded once; each later step feeds one position against the cache.
pub fn greedy(
    model: &dyn TransformerSlice,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
    device: &Device,
) -> Result<Vec<u32>, ModelError> {
    greedy_timed(model, prompt, max_new, stop, device).map(|g| g.tokens)
}

/// [`greedy`], also reporting prompt and decoding times.
pub fn greedy_timed(
    model: &dyn TransformerSlice,
    prompt: &[u32],
    max_new: usize,
    stop: &[u32],
    device: &Device,
) -> Result<Generation, ModelError> {
    if !model.is_causal() {
        return Err(ModelError::Input(
            "greedy decoding needs a causal model".into(),
        ));
    }
    let mut cache = model.new_cache();
    let mut batch = TokenBatch::from_sequences(&[prompt.to_vec()], 0, PaddingSide::Left, device)?;
    let mut generated = Vec::new();
    let started = Instant::now();
    let mut prefill = None;
    while generated.len() < max_new {
        let logits = model
            .forward(&batch, Some(&mut cache))?
            .lm_logits()
            .ok_or_else(|| ModelError::Input("greedy decoding needs a causal LM head".into()))?;
        let next = argmax_last(logits);
        prefill.get_or_insert_with(|| started.elapsed());
        generated.push(next);
        if stop.contains(&next) {
            break;
        }
        let total = cache.past_len() + 1;
        batch = TokenBatch {
            input_ids: int_tensor(vec![next as i64], [1, 1], device),
            attention_mask: int_tensor(vec![1; total], [1, total], device),
            token_type_ids: None,
        };
    }
    let prefill = prefill.unwrap_or_default();
    Ok(Generation {
        tokens: generated,
        prefill,
        decode: started.elapsed() - prefill,
    })
}

/// The arg-max token of the last position of `[1, seq, vocab]` logits.
fn argmax_last(logits: Tensor<3>) -> u32 {
    let [_, seq, vocab] = logits.dims();
    let last = logits.narrow(1, seq - 1, 1).reshape([vocab]);
    last.argmax(0).into_scalar::<i64>() as u32
}
