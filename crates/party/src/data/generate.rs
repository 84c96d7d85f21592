//! Generation through the split model: each party keeps a KV cache of its own blocks; after the
//! prompt, every step sends one position's activations across each cut.

use std::time::Instant;

use burn::module::Module;
use splitlm_nn::generate::{DecodeSteps, Generation, Sampler, Sampling};
use splitlm_nn::{ModelError, TransformerSlice};
use splitlm_protocol::{Mode, OutputKind};

use super::{ByteCount, DataParty, expect_kind};
use crate::PartyError;

/// A split generation: the tokens, the time, and the bytes of every step.
#[derive(Debug, Clone)]
pub struct SplitGeneration {
    /// Tokens and timings, as for a whole model.
    pub generation: Generation,
    /// Traffic of the prompt step.
    pub prompt_bytes: ByteCount,
    /// Traffic of each one-position step after the prompt.
    pub step_bytes: Vec<ByteCount>,
}

impl DataParty {
    /// Extends `prompt` through the split model under `sampling`. The data party embeds, runs
    /// its head (and tail) with its own caches and picks every token; the model party sees only
    /// activations.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
    ) -> Result<SplitGeneration, PartyError> {
        let mut sampler = Sampler::new(sampling)?;
        let head = self.head.model().valid();
        let tail = self.tail.as_ref().map(|t| t.model().valid());
        if !head.is_causal() {
            return Err(ModelError::Input("generation needs a causal model".into()).into());
        }
        let device = self.device().inner();
        let mut head_cache = head.new_cache();
        let mut tail_cache = tail.as_ref().map(|t| t.new_cache());
        let mut steps = DecodeSteps::new(prompt, &device)?;
        let mut tokens = Vec::new();
        let mut step_bytes = Vec::new();
        let started = Instant::now();
        let mut prefill = None;
        while tokens.len() < sampling.max_new_tokens {
            let before = self.traffic();
            let ctx = self.next_step(false);
            let mode = if steps.is_prompt() {
                Mode::Prefill
            } else {
                Mode::Infer
            };
            let batch = steps.batch().clone();
            let (h1, _) = self
                .link
                .send_head(&ctx, mode, &head, batch, Some(&mut head_cache))?;
            let returned =
                self.link
                    .recv_tail(&ctx, tail.as_ref(), &h1, &device, tail_cache.as_mut())?;
            if tail.is_none() {
                expect_kind(returned.kind, OutputKind::LmLogits)?;
            }
            let logits = returned.output.lm_logits().ok_or_else(|| {
                ModelError::Input("generation needs a causal LM head on the split model".into())
            })?;
            let next = sampler.next_from(logits);

            let bytes = self.bytes_since(&before);
            match prefill {
                None => prefill = Some((started.elapsed(), bytes)),
                Some(_) => step_bytes.push(bytes),
            }
            tokens.push(next);
            if sampling.stop.contains(&next) {
                break;
            }
            steps.advance(next);
        }
        let (prefill, prompt_bytes) = prefill.unwrap_or_default();
        Ok(SplitGeneration {
            generation: Generation {
                tokens,
                prefill,
                decode: started.elapsed() - prefill,
            },
            prompt_bytes,
            step_bytes,
        })
    }
}
