//! Generation through the split model: each party keeps a KV cache of its own blocks; after the
//! prompt, every step sends one position's activations across each cut.

use std::time::Instant;

use burn::module::Module;
use splitlm_defenses::HookContext;
use splitlm_nn::generate::{DecodeSteps, Generation, Sampler, Sampling};
use splitlm_nn::{HeadOutput, ModelError, TransformerSlice};
use splitlm_protocol::{Mode, OutputKind};

use super::{DataParty, expect_kind};
use crate::PartyError;
use crate::wire::{self, expect_shape};

/// Bytes one party moved, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteCount {
    /// Bytes sent.
    pub sent: u64,
    /// Bytes received.
    pub received: u64,
}

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
            let step = self.take_step();
            let mode = if steps.is_prompt() {
                Mode::Prefill
            } else {
                Mode::Infer
            };
            let ctx = HookContext {
                step,
                training: false,
            };
            let batch = self.defenses.on_input(steps.batch().clone(), &ctx);
            let h1 = head.forward_blocks(head.embed(&batch)?, Some(&mut head_cache))?;
            let [_, new, _] = h1.states.dims();
            let [_, total] = h1.attention_mask.dims();
            let new_mask = h1.attention_mask.clone().narrow(1, total - new, new);
            let sent = self.defenses.on_activation(h1.states.clone(), &ctx);
            self.send_forward(step, mode, &sent, new_mask, &h1.positions)?;

            let (kind, frame) = self.recv_output(step)?;
            let received = wire::output_tensor(kind, &frame, &device)?;
            let logits = match (&tail, &mut tail_cache) {
                (Some(tail), Some(cache)) => {
                    expect_kind(kind, OutputKind::Hidden)?;
                    expect_shape(&received.dims(), &h1.states.dims(), "the body's output")?;
                    let received = self.defenses.on_received(received, &ctx);
                    let hidden = tail.forward_blocks(h1.with_states(received), Some(cache))?;
                    tail.forward_top(hidden.last_position())?
                }
                _ => {
                    expect_kind(kind, OutputKind::LmLogits)?;
                    HeadOutput::LmLogits(received)
                }
            };
            let logits = logits.lm_logits().ok_or_else(|| {
                ModelError::Input("generation needs a causal LM head on the split model".into())
            })?;
            let next = sampler.next_from(logits);

            let after = self.traffic();
            let bytes = ByteCount {
                sent: after.bytes_sent - before.bytes_sent,
                received: after.bytes_received - before.bytes_received,
            };
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
