use burn::module::Module;
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{Device, Tensor};
use splitlm_nn::decoder::{DecoderHead, LmHeadWeights, run_causal_blocks};
use splitlm_nn::transformer::missing_part;
use splitlm_nn::{
    FamilyConfig, HeadOutput, Hidden, KvCache, ModelError, ModelFamily, SliceSpec, TaskHead,
    TokenBatch, TransformerSlice, Weights,
};
use splitlm_weights::{CheckpointError, TensorSource};

use crate::{Gpt2Block, Gpt2Config};

/// Token and learned position embeddings.
#[derive(Module, Debug)]
pub struct Gpt2Embeddings {
    wte: Embedding,
    wpe: Embedding,
}

impl Gpt2Embeddings {
    /// The token embedding matrix `[vocab, hidden]`.
    pub fn word_embeddings(&self) -> Tensor<2> {
        self.wte.weight.val()
    }
}

/// The final LayerNorm and the task head.
#[derive(Module, Debug)]
struct Gpt2Top {
    ln_f: LayerNorm,
    head: DecoderHead,
}

/// A slice of GPT-2: optional embeddings, blocks `spec.blocks`, optional top.
#[derive(Module, Debug)]
pub struct Gpt2Model {
    embeddings: Option<Gpt2Embeddings>,
    blocks: Vec<Gpt2Block>,
    top: Option<Gpt2Top>,
    #[module(skip)]
    spec: SliceSpec,
    #[module(skip)]
    hidden_size: usize,
}

impl Gpt2Model {
    /// Loads the parts named by `spec` from `source`; only their tensors are read.
    pub fn load(
        source: &dyn TensorSource,
        config: &Gpt2Config,
        spec: &SliceSpec,
        task: TaskHead,
        device: &Device,
    ) -> Result<Self, ModelError> {
        spec.validate(config.n_layer)?;
        let root = Weights::new(source, device);
        let body = ["transformer", ""]
            .iter()
            .map(|prefix| root.at(prefix))
            .find(|body| body.contains("wte.weight"))
            .ok_or_else(|| CheckpointError::MissingTensor {
                source_desc: source.describe(),
                name: "wte.weight (under `transformer.` or no prefix)".into(),
            })?;
        let d = config.n_embd;
        let embeddings = spec
            .embeddings
            .then(|| -> Result<_, ModelError> {
                Ok(Gpt2Embeddings {
                    wte: body.embedding("wte", config.vocab_size, d)?,
                    wpe: body.embedding("wpe", config.n_positions, d)?,
                })
            })
            .transpose()?;
        let blocks = spec
            .blocks
            .ids()
            .map(|id| Gpt2Block::load(&body.at(format!("h.{id}")), config))
            .collect::<Result<Vec<_>, _>>()?;
        let lm_weights = match (config.tie_word_embeddings, spec.embeddings) {
            (true, true) => LmHeadWeights::TiedInSlice,
            (true, false) => LmHeadWeights::Tensor(body.name("wte.weight")),
            (false, _) => LmHeadWeights::Tensor("lm_head.weight".into()),
        };
        let top = spec
            .top
            .then(|| -> Result<_, ModelError> {
                Ok(Gpt2Top {
                    ln_f: body.layer_norm("ln_f", d, config.layer_norm_epsilon)?,
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

    /// The embeddings, if this slice holds them.
    pub fn embeddings(&self) -> Option<&Gpt2Embeddings> {
        self.embeddings.as_ref()
    }

    /// The token embedding matrix `[vocab, hidden]`, if this slice holds the embeddings.
    pub fn word_embeddings(&self) -> Option<Tensor<2>> {
        self.embeddings.as_ref().map(|e| e.word_embeddings())
    }
}

impl TransformerSlice for Gpt2Model {
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
        let embeddings = self
            .embeddings
            .as_ref()
            .ok_or_else(|| missing_part("embeddings", &self.spec))?;
        self.embed_vectors(embeddings.wte.forward(tokens.input_ids.clone()), tokens)
    }

    fn embed_vectors(&self, words: Tensor<3>, tokens: &TokenBatch) -> Result<Hidden, ModelError> {
        let embeddings = self
            .embeddings
            .as_ref()
            .ok_or_else(|| missing_part("embeddings", &self.spec))?;
        let positions = tokens.positions();
        Ok(Hidden {
            states: words + embeddings.wpe.forward(positions.clone()),
            attention_mask: tokens.attention_mask.clone(),
            positions,
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
        let states = top.ln_f.forward(hidden.states);
        let embeddings = self
            .embeddings
            .as_ref()
            .map(Gpt2Embeddings::word_embeddings);
        Ok(top.head.forward(states, &hidden.attention_mask, embeddings))
    }
}

impl ModelFamily for Gpt2Model {
    const NAME: &'static str = "gpt2";
    const MODEL_TYPES: &'static [&'static str] = &["gpt2"];
    const DEFAULT_LORA_TARGETS: &'static [&'static str] = &["c_attn"];

    type Config = Gpt2Config;

    fn load(
        source: &dyn TensorSource,
        config: &Gpt2Config,
        spec: &SliceSpec,
        task: TaskHead,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Gpt2Model::load(source, config, spec, task, device)
    }
}

impl FamilyConfig for Gpt2Config {
    fn from_dir(dir: &std::path::Path) -> Result<Self, ModelError> {
        Gpt2Config::from_dir(dir)
    }

    fn num_layers(&self) -> usize {
        self.n_layer
    }

    fn hidden_size(&self) -> usize {
        self.n_embd
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}
