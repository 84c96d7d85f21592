use serde::Deserialize;
use splitlm_nn::{Activation, ModelError, hf_config};

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
        let config: Self = hf_config::read_config(dir)?;
        config.validate(&dir.display().to_string())?;
        Ok(config)
    }

    /// Checks the architecture and the numbers.
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        hf_config::expect_model_type(
            &self.model_type,
            &["bert", "roberta", "xlm-roberta", "camembert"],
            origin,
        )?;
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
