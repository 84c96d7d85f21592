use burn::module::Module;
use burn::nn::{Embedding, RmsNorm};
use burn::tensor::{Device, Tensor};
use splitlm_nn::decoder::{DecoderHead, LmHeadWeights, run_causal_blocks};
use splitlm_nn::transformer::missing_part;
use splitlm_nn::{
    FamilyConfig, HeadOutput, Hidden, KvCache, ModelError, ModelFamily, SliceSpec, TaskHead,
    TokenBatch, TransformerSlice, Weights,
};
use splitlm_weights::TensorSource;

use crate::{LlamaBlock, LlamaConfig};

/// The final RMSNorm and the task head.
#[derive(Module, Debug)]
struct LlamaTop {
    norm: RmsNorm,
    head: DecoderHead,
}

/// A slice of a Llama-style decoder: optional embeddings, blocks `spec.blocks`, optional top.
#[derive(Module, Debug)]
pub struct LlamaModel {
    embeddings: Option<Embedding>,
    blocks: Vec<LlamaBlock>,
    top: Option<LlamaTop>,
    #[module(skip)]
    spec: SliceSpec,
    #[module(skip)]
    hidden_size: usize,
}

impl LlamaModel {
    /// Loads the parts named by `spec` from `source` (HF names; wrap a GGUF file in
    /// [`crate::GgufLlamaSource`]); only their tensors are read.
    pub fn load(
        source: &dyn TensorSource,
        config: &LlamaConfig,
        spec: &SliceSpec,
        task: TaskHead,
        device: &Device,
    ) -> Result<Self, ModelError> {
        spec.validate(config.num_hidden_layers)?;
        let root = Weights::new(source, device);
        let body = root.at("model");
        let d = config.hidden_size;
        let embeddings = spec
            .embeddings
            .then(|| body.embedding("embed_tokens", config.vocab_size, d))
            .transpose()?;
        let blocks = spec
            .blocks
            .ids()
            .map(|id| LlamaBlock::load(&body.at(format!("layers.{id}")), config))
            .collect::<Result<Vec<_>, _>>()?;
        let tied = config.tie_word_embeddings || !source.contains("lm_head.weight");
        let lm_weights = match (tied, spec.embeddings) {
            (true, true) => LmHeadWeights::TiedInSlice,
            (true, false) => LmHeadWeights::Tensor(body.name("embed_tokens.weight")),
            (false, _) => LmHeadWeights::Tensor("lm_head.weight".into()),
        };
        let top = spec
            .top
            .then(|| -> Result<_, ModelError> {
                Ok(LlamaTop {
                    norm: body.rms_norm("norm", d, config.rms_norm_eps)?,
                    head: DecoderHead::load(&root, task, d, config.vocab_size, lm_weights)?,
                })
            })
            .transpose()?;
        Ok(Self {
            embeddings,
            blocks,
            top,
            spec: spec.clone(),
            hidden_size: d,
        })
    }

    /// The token embedding matrix `[vocab, hidden]`, if this slice holds it.
    pub fn word_embeddings(&self) -> Option<Tensor<2>> {
        self.embeddings.as_ref().map(|e| e.weight.val())
    }
}

impl TransformerSlice for LlamaModel {
    fn spec(&self) -> &SliceSpec {
        &self.spec
    }

    fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn is_causal(&self) -> bool {
        true
    }

    fn embed(&self, tokens: &TokenBatch) -> Result<Hidden, ModelError> {
        let embed = self
            .embeddings
            .as_ref()
            .ok_or_else(|| missing_part("embeddings", &self.spec))?;
        self.embed_vectors(embed.forward(tokens.input_ids.clone()), tokens)
    }

    fn embed_vectors(&self, words: Tensor<3>, tokens: &TokenBatch) -> Result<Hidden, ModelError> {
        if self.embeddings.is_none() {
            return Err(missing_part("embeddings", &self.spec));
        }
        Ok(Hidden {
            states: words,
            attention_mask: tokens.attention_mask.clone(),
            positions: tokens.positions(),
        })
    }

    fn forward_blocks(
        &self,
        hidden: Hidden,
        cache: Option<&mut KvCache>,
    ) -> Result<Hidden, ModelError> {
        run_causal_blocks(&self.blocks, hidden, cache, self.hidden_size)
    }

    fn forward_top(&self, hidden: Hidden) -> Result<HeadOutput, ModelError> {
        let top = self
            .top
            .as_ref()
            .ok_or_else(|| missing_part("top", &self.spec))?;
        hidden.validate(self.hidden_size)?;
        let states = top.norm.forward(hidden.states);
        Ok(top
            .head
            .forward(states, &hidden.attention_mask, self.word_embeddings()))
    }
}

impl ModelFamily for LlamaModel {
    const NAME: &'static str = "llama";
    const MODEL_TYPES: &'static [&'static str] = &["llama", "mistral", "qwen2"];
    const DEFAULT_LORA_TARGETS: &'static [&'static str] = &["q_proj", "v_proj"];

    type Config = LlamaConfig;

    fn load(
        source: &dyn TensorSource,
        config: &LlamaConfig,
        spec: &SliceSpec,
        task: TaskHead,
        device: &Device,
    ) -> Result<Self, ModelError> {
        LlamaModel::load(source, config, spec, task, device)
    }
}

impl FamilyConfig for LlamaConfig {
    fn from_dir(dir: &std::path::Path) -> Result<Self, ModelError> {
        LlamaConfig::from_dir(dir)
    }

    fn num_layers(&self) -> usize {
        self.num_hidden_layers
    }

    fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}
