use serde::Deserialize;
use splitlm_nn::{Activation, ModelError, ModelFamily, hf_config};

use crate::BertModel;

/// The fields of a Hugging Face BERT/RoBERTa `config.json` the core needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// `bert`, `roberta`, ... (checked at load).
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of blocks.
    pub num_hidden_layers: usize,
    /// Attention heads per block.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation name.
    pub hidden_act: String,
    /// Size of the learned position table.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// How a sentence-transformers checkpoint pools sentences (`1_Pooling/config.json`); a
    /// classifier then reads that pooled vector instead of BERT's pooler on `[CLS]`.
    #[serde(skip)]
    pub sentence_pooling: Option<SentencePooling>,
}

/// The sentence pooling a sentence-transformers checkpoint was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentencePooling {
    /// Mean of the token states over the attention mask.
    Mean,
    /// The first (`[CLS]`) token's state.
    Cls,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
}

fn default_type_vocab() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Reads `config.json` from a checkpoint directory.
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, ModelError> {
        let mut config: Self = hf_config::read_config(dir)?;
        config.validate(&dir.display().to_string())?;
        let pooling = dir.join("1_Pooling/config.json");
        if pooling.is_file() {
            let p: PoolingConfig = hf_config::read_config(&pooling)?;
            config.sentence_pooling = match (p.pooling_mode_mean_tokens, p.pooling_mode_cls_token) {
                (true, _) => Some(SentencePooling::Mean),
                (false, true) => Some(SentencePooling::Cls),
                _ => None,
            };
        }
        Ok(config)
    }

    /// Checks the architecture and the numbers.
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        hf_config::expect_model_type(&self.model_type, BertModel::MODEL_TYPES, origin)?;
        Activation::from_hf(&self.hidden_act, origin)?;
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(ModelError::config(
                origin,
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            ));
        }
        Ok(())
    }

    /// The feed-forward activation.
    pub fn activation(&self) -> Activation {
        Activation::from_hf(&self.hidden_act, "config").expect("validated at load")
    }

    /// RoBERTa counts positions from `pad_token_id + 1`; BERT from 0.
    pub fn position_offset(&self) -> i64 {
        if self.model_type.contains("roberta") || self.model_type == "camembert" {
            self.pad_token_id.unwrap_or(1) as i64 + 1
        } else {
            0
        }
    }

    /// Whether the sequence-classification head is RoBERTa's (dense + tanh + out_proj on the
    /// first token) rather than BERT's (pooler + classifier).
    pub fn roberta_style(&self) -> bool {
        self.position_offset() > 0
    }
}
