use serde::Deserialize;
use splitlm_nn::{Activation, ModelError, ModelFamily, hf_config};

use crate::Gpt2Model;

/// The fields of a Hugging Face GPT-2 `config.json` the core needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    /// `gpt2` (checked at load).
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Size of the learned position table.
    pub n_positions: usize,
    /// Width of the hidden states.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Width of the MLP; `4 * n_embd` when absent.
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// MLP activation name.
    #[serde(default = "default_activation")]
    pub activation_function: String,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Whether the LM head shares the token embeddings.
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
}

fn default_activation() -> String {
    "gelu_new".into()
}

fn default_eps() -> f64 {
    1e-5
}

fn default_true() -> bool {
    true
}

impl Gpt2Config {
    /// Reads `config.json` from a checkpoint directory.
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, ModelError> {
        let config: Self = hf_config::read_config(dir)?;
        config.validate(&dir.display().to_string())?;
        Ok(config)
    }

    /// Checks the architecture and the numbers.
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        hf_config::expect_model_type(&self.model_type, Gpt2Model::MODEL_TYPES, origin)?;
        Activation::from_hf(&self.activation_function, origin)?;
        if self.n_head == 0 || !self.n_embd.is_multiple_of(self.n_head) {
            return Err(ModelError::config(
                origin,
                format!(
                    "n_embd {} is not a multiple of n_head {}",
                    self.n_embd, self.n_head
                ),
            ));
        }
        Ok(())
    }

    /// Width of the MLP.
    pub fn inner_size(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// The MLP activation.
    pub fn activation(&self) -> Activation {
        Activation::from_hf(&self.activation_function, "config").expect("validated at load")
    }
}
