//! The data party's [`DefenseEnv`]: what its configured defenses ask for ([`Needs`]), taken
//! from the pretrained model, the tokenizer and the training inputs (docs/ARCHITECTURE.md,
//! "Defense environment").

use std::sync::Arc;

use burn::tensor::Device;
use splitlm_defenses::{DefenseConfig, DefenseEnv, TextCodec};
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::{Hidden, SliceSpec, TaskHead, TransformerSlice};
use splitlm_partition::PartySlices as Slices;
use splitlm_zoo::Pretrained;
use tokenizers::Tokenizer;

use crate::error::TrainError;

/// What the data party has beside its model for text-level and preparing defenses: its
/// tokenizer as the task uses it, and the training inputs.
#[derive(Clone)]
pub struct DefenseData {
    /// The task's tokenizer.
    pub text: Arc<dyn TextCodec>,
    /// The training inputs, one id sequence per example, unpadded.
    pub training_inputs: Arc<Vec<Vec<u32>>>,
}

impl std::fmt::Debug for DefenseData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefenseData")
            .field("training_inputs", &self.training_inputs.len())
            .finish_non_exhaustive()
    }
}

/// A Hugging Face tokenizer as the task encodes with it.
pub struct TokenizerCodec {
    tokenizer: Tokenizer,
    pad_id: u32,
    side: PaddingSide,
}

impl TokenizerCodec {
    /// `tokenizer` (with the task's truncation), padding with `pad_id` on `side`.
    pub fn new(tokenizer: Tokenizer, pad_id: u32, side: PaddingSide) -> Self {
        Self {
            tokenizer,
            pad_id,
            side,
        }
    }
}

impl TextCodec for TokenizerCodec {
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .unwrap_or_default()
    }

    fn tokenize(&self, text: &str) -> Vec<String> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_tokens().to_vec())
            .unwrap_or_default()
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        self.tokenizer
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    fn special_ids(&self) -> Vec<u32> {
        self.tokenizer
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect()
    }

    fn pad_id(&self) -> u32 {
        self.pad_id
    }

    fn padding_side(&self) -> PaddingSide {
        self.side
    }
}

/// The environment `configs` need, on the data party's `device`.
pub fn defense_env(
    configs: &[DefenseConfig],
    data: Option<&DefenseData>,
    pretrained: &Pretrained,
    task: TaskHead,
    slices: &Slices,
    device: &Device,
) -> Result<DefenseEnv, TrainError> {
    let needs = DefenseConfig::needs_of(configs);
    let mut env = DefenseEnv::bare(
        device.clone(),
        pretrained.hidden_size(),
        pretrained.vocab_size(),
    );
    env.family = pretrained.family().name().to_string();
    env.has_tail = slices.data_tail.is_some();
    env.num_classes = match task {
        TaskHead::SequenceClassification { num_labels } => Some(num_labels),
        _ => None,
    };
    if needs.is_empty() {
        return Ok(env);
    }
    let wanted = |what: &str| TrainError::Invalid {
        key: "defenses".into(),
        detail: format!(
            "the configured defenses need {what}, which this run does not provide to them"
        ),
    };
    if needs.text || needs.training_inputs {
        let data = data.ok_or_else(|| wanted("the tokenizer and the training inputs"))?;
        env.text = Some(data.text.clone());
        env.training_inputs = data.training_inputs.clone();
    }
    if needs.text || needs.embeddings || needs.head {
        let head = pretrained.load(&slices.data_head, task, device)?;
        env.token_embeddings = head.word_embeddings().map(|e| e.detach());
        if needs.head {
            env.head = Some(Arc::new(move |batch| {
                let hidden = head.embed(batch).map_err(|e| e.to_string())?;
                head.forward_blocks(hidden, None)
                    .map(detached)
                    .map_err(|e| e.to_string())
            }));
        }
    }
    if needs.body {
        let spec = SliceSpec {
            top: false,
            ..slices.model.clone()
        };
        let body = pretrained.load(&spec, task, device)?;
        env.body = Some(Arc::new(move |hidden| {
            body.forward_blocks(hidden, None)
                .map(detached)
                .map_err(|e| e.to_string())
        }));
    }
    Ok(env)
}

fn detached(hidden: Hidden) -> Hidden {
    Hidden {
        states: hidden.states.detach(),
        ..hidden
    }
}
