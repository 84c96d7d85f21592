//! What a model family knows about itself, as types the compiler checks.
//!
//! Each family's slice type (`BertModel`, `Gpt2Model`, `LlamaModel`) implements
//! [`ModelFamily`] in its own crate; `splitlm-zoo` registers every family once and answers
//! family questions (name, accepted checkpoints, LoRA defaults) from these impls, so no other
//! crate matches on family names as strings.

use std::path::Path;

use burn::tensor::Device;
use splitlm_weights::TensorSource;

use crate::{ModelError, SliceSpec, TaskHead, TransformerSlice};

/// A family's Hugging Face configuration (`config.json`), as far as shared code needs it.
pub trait FamilyConfig {
    /// Reads and validates `config.json` from a checkpoint directory.
    fn from_dir(dir: &Path) -> Result<Self, ModelError>
    where
        Self: Sized;
    /// Number of transformer blocks.
    fn num_layers(&self) -> usize;
    /// Width of the hidden states (what crosses a cut per token).
    fn hidden_size(&self) -> usize;
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
}

/// A model family: its facts and how to load a slice of it.
pub trait ModelFamily: TransformerSlice + Sized {
    /// Short lowercase name, as written in configurations, logs and reports (`bert`).
    const NAME: &'static str;
    /// The Hugging Face `config.json` `model_type` values this family loads.
    const MODEL_TYPES: &'static [&'static str];
    /// The projections LoRA adapts when a configuration names none (those of the reference).
    const DEFAULT_LORA_TARGETS: &'static [&'static str];

    /// The family's configuration.
    type Config: FamilyConfig;

    /// Loads the parts named by `spec` from `source`; only their tensors are read.
    fn load(
        source: &dyn TensorSource,
        config: &Self::Config,
        spec: &SliceSpec,
        task: TaskHead,
        device: &Device,
    ) -> Result<Self, ModelError>;
}
