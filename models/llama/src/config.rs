use serde::Deserialize;
use splitlm_nn::{Activation, ModelError, ModelFamily, hf_config};

use crate::LlamaModel;

/// The fields of a Hugging Face Llama/Mistral/Qwen2 `config.json` the core needs.
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    /// `llama`, `mistral` or `qwen2` (checked at load).
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the SwiGLU feed-forward.
    pub intermediate_size: usize,
    /// Number of blocks.
    pub num_hidden_layers: usize,
    /// Query heads per block.
    pub num_attention_heads: usize,
    /// Key/value heads per block (grouped-query attention); `num_attention_heads` when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; `hidden_size / num_attention_heads` when absent.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RoPE base θ (transformers < 5 writes it at the top level).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// RoPE settings as transformers ≥ 5 writes them: `{"rope_theta": .., "rope_type": ..}`.
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Whether the LM head shares the token embeddings.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v/o (Llama's `attention_bias`); Qwen2 always has q/k/v biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Feed-forward activation (SwiGLU gate).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// RoPE scaling variants are not supported; a non-null value is rejected at load.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
}

/// The `rope_parameters` object of transformers ≥ 5.
#[derive(Debug, Clone, Deserialize)]
pub struct RopeParameters {
    /// RoPE base θ.
    pub rope_theta: Option<f64>,
    /// Only `default` (plain RoPE) is supported.
    #[serde(default)]
    pub rope_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}

fn default_act() -> String {
    "silu".into()
}

impl LlamaConfig {
    /// Reads `config.json` from a checkpoint directory.
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, ModelError> {
        let config: Self = hf_config::read_config(dir)?;
        config.validate(&dir.display().to_string())?;
        Ok(config)
    }

    /// Checks the architecture and the numbers.
    pub fn validate(&self, origin: &str) -> Result<(), ModelError> {
        hf_config::expect_model_type(&self.model_type, LlamaModel::MODEL_TYPES, origin)?;
        Activation::from_hf(&self.hidden_act, origin)?;
        if let Some(scaling) = self.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            return Err(ModelError::config(
                origin,
                format!("rope_scaling {scaling} is not supported"),
            ));
        }
        let rope_type = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.rope_type.as_deref());
        if let Some(kind) = rope_type.filter(|kind| *kind != "default") {
            return Err(ModelError::config(
                origin,
                format!("rope_type `{kind}` is not supported (only `default`)"),
            ));
        }
        let heads = self.num_attention_heads;
        let kv = self.kv_heads();
        if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) {
            return Err(ModelError::config(
                origin,
                format!(
                    "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}"
                ),
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(heads) {
            return Err(ModelError::config(
                origin,
                format!(
                    "hidden_size {} is not a multiple of {heads} heads",
                    self.hidden_size
                ),
            ));
        }
        if !self.head_size().is_multiple_of(2) {
            return Err(ModelError::config(origin, "RoPE needs an even head_dim"));
        }
        Ok(())
    }

    /// RoPE base θ, wherever the config keeps it (10 000 when absent).
    pub fn theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10_000.0)
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_size(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Whether q/k/v projections carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias || self.model_type == "qwen2"
    }

    /// Whether the output projection carries a bias.
    pub fn o_bias(&self) -> bool {
        self.attention_bias && self.model_type != "qwen2"
    }

    /// The feed-forward activation.
    pub fn activation(&self) -> Activation {
        Activation::from_hf(&self.hidden_act, "config").expect("validated at load")
    }
}
