//! What decoder families (GPT-2, Llama-style) share: causal block stacks with KV caches and
//! the LM head.

use burn::module::{Module, Param};
use burn::tensor::{Int, Tensor};

use crate::{AttentionMask, Hidden, KvCache, ModelError};

/// The cache slot of one block: the slice's cache and the block's index inside the slice.
pub type CacheSlot<'a> = Option<(&'a mut KvCache, usize)>;

/// A causal transformer block.
pub trait CausalBlock {
    /// `[batch, seq, hidden]` → same shape. `positions` are those of the `seq` new tokens.
    fn forward(
        &self,
        x: Tensor<3>,
        positions: &Tensor<2, Int>,
        mask: &AttentionMask,
        cache: CacheSlot<'_>,
    ) -> Tensor<3>;
}

/// Appends new keys/values to the cache slot, if any, and returns those to attend over.
pub fn with_cache(k: Tensor<4>, v: Tensor<4>, cache: CacheSlot<'_>) -> (Tensor<4>, Tensor<4>) {
    match cache {
        Some((cache, local)) => cache.append(local, k, v),
        None => (k, v),
    }
}

/// Runs `blocks` causally over `hidden`; with a cache, `hidden.attention_mask` must cover the
/// cached positions plus the new ones.
pub fn run_causal_blocks<B: CausalBlock>(
    blocks: &[B],
    hidden: Hidden,
    mut cache: Option<&mut KvCache>,
    hidden_size: usize,
) -> Result<Hidden, ModelError> {
    hidden.validate(hidden_size)?;
    let seq = hidden.states.dims()[1];
    let total = hidden.attention_mask.dims()[1];
    let past = cache.as_ref().map(|c| c.past_len()).unwrap_or(0);
    // A slice without blocks caches nothing, so it cannot tell how long the past is.
    if !blocks.is_empty() && total != past + seq {
        return Err(ModelError::Input(format!(
            "attention mask covers {total} positions but the cache holds {past} and {seq} are new"
        )));
    }
    let mask = AttentionMask::new(&hidden.attention_mask, seq, true);
    let mut x = hidden.states.clone();
    for (local, block) in blocks.iter().enumerate() {
        let slot = cache.as_deref_mut().map(|c| (c, local));
        x = block.forward(x, &hidden.positions, &mask, slot);
    }
    Ok(hidden.with_states(x))
}

/// Next-token logits from final hidden states.
#[derive(Module, Debug)]
pub struct LmHead {
    /// `[vocab, hidden]`; `None` when tied to the embeddings of the same slice.
    weight: Option<Param<Tensor<2>>>,
}

impl LmHead {
    /// A head that reuses the slice's own token embeddings.
    pub fn tied() -> Self {
        Self { weight: None }
    }

    /// A head with its own `[vocab, hidden]` matrix.
    pub fn own(weight: Param<Tensor<2>>) -> Self {
        Self {
            weight: Some(weight),
        }
    }

    /// `[batch, seq, hidden]` → `[batch, seq, vocab]`; `embeddings` is the slice's token
    /// embedding matrix, required when the head is tied.
    pub fn forward(&self, states: Tensor<3>, embeddings: Option<Tensor<2>>) -> Tensor<3> {
        let weight = match &self.weight {
            Some(w) => w.val(),
            None => embeddings.expect("a tied LM head needs the slice's embeddings"),
        };
        let [b, s, d] = states.dims();
        let vocab = weight.dims()[0];
        // `weight · statesᵀ` reads the large `[vocab, hidden]` matrix in its stored order;
        // `states · weightᵀ` made CPU backends copy it transposed on every call (10× slower
        // decoding for SmolLM2).
        weight
            .matmul(states.reshape([b * s, d]).transpose())
            .transpose()
            .reshape([b, s, vocab])
    }
}

/// Where a decoder's LM head weights come from.
#[derive(Debug, Clone)]
pub enum LmHeadWeights {
    /// Tied to the token embeddings, which this slice also holds.
    TiedInSlice,
    /// A `[vocab, hidden]` checkpoint tensor: `lm_head.weight`, or the embedding matrix of a
    /// tied model whose embeddings live in another slice (the copy then trains on its own).
    Tensor(String),
}

/// The task heads of a decoder, on top of the final norm.
#[derive(Module, Debug)]
pub struct DecoderHead {
    lm_head: Option<LmHead>,
    score: Option<burn::nn::Linear>,
    qa_outputs: Option<burn::nn::Linear>,
    #[module(skip)]
    task: crate::TaskHead,
}

impl DecoderHead {
    /// Loads the head of `task` (absent classification/QA layers are initialised).
    pub fn load(
        root: &crate::Weights,
        task: crate::TaskHead,
        hidden: usize,
        vocab: usize,
        lm_weights: LmHeadWeights,
    ) -> Result<Self, ModelError> {
        use crate::TaskHead;
        let mut head = Self {
            lm_head: None,
            score: None,
            qa_outputs: None,
            task,
        };
        match task {
            TaskHead::Hidden => {}
            TaskHead::CausalLm => {
                head.lm_head = Some(match lm_weights {
                    LmHeadWeights::TiedInSlice => LmHead::tied(),
                    LmHeadWeights::Tensor(name) => LmHead::own(root.param(&name, [vocab, hidden])?),
                });
            }
            TaskHead::SequenceClassification { num_labels } => {
                head.score = Some(root.linear_or_new("score", hidden, num_labels, false)?);
            }
            TaskHead::SpanQa => {
                head.qa_outputs = Some(root.linear_or_new("qa_outputs", hidden, 2, true)?);
            }
        }
        Ok(head)
    }

    /// The task this head computes.
    pub fn task(&self) -> crate::TaskHead {
        self.task
    }

    /// Applies the head to normalised final states.
    pub fn forward(
        &self,
        states: Tensor<3>,
        attention_mask: &Tensor<2, Int>,
        embeddings: Option<Tensor<2>>,
    ) -> crate::HeadOutput {
        use crate::HeadOutput;
        if let Some(lm_head) = &self.lm_head {
            return HeadOutput::LmLogits(lm_head.forward(states, embeddings));
        }
        if let Some(score) = &self.score {
            // Score every position, then pick the last real token of each row (what HF does).
            let seq = states.dims()[1];
            let mask = attention_mask
                .clone()
                .narrow(1, attention_mask.dims()[1] - seq, seq);
            let last = crate::head::last_token_states(states, &mask);
            return HeadOutput::ClassLogits(score.forward(last));
        }
        if let Some(qa) = &self.qa_outputs {
            let logits = qa.forward(states);
            let [b, s, _] = logits.dims();
            let start = logits.clone().narrow(2, 0, 1).reshape([b, s]);
            let end = logits.narrow(2, 1, 1).reshape([b, s]);
            return HeadOutput::SpanLogits { start, end };
        }
        HeadOutput::Hidden(states)
    }
}
