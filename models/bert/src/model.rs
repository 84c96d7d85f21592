use burn::module::Module;
use burn::tensor::{Device, Tensor};
use splitlm_nn::transformer::missing_part;
use splitlm_nn::{
    AttentionMask, FamilyConfig, HeadOutput, Hidden, KvCache, ModelError, ModelFamily, SliceSpec,
    TaskHead, TokenBatch, TransformerSlice, Weights,
};
use splitlm_weights::TensorSource;

use crate::{BertConfig, BertEmbeddings, BertHead, BertLayer};

/// A slice of a BERT-style encoder: optional embeddings, blocks `spec.blocks`, optional top
/// (pooler and task head).
#[derive(Module, Debug)]
pub struct BertModel {
    embeddings: Option<BertEmbeddings>,
    blocks: Vec<BertLayer>,
    top: Option<BertHead>,
    #[module(skip)]
    spec: SliceSpec,
    #[module(skip)]
    hidden_size: usize,
}

/// Name prefixes under which Hugging Face stores the encoder body.
const BODY_PREFIXES: [&str; 3] = ["", "bert", "roberta"];

impl BertModel {
    /// Loads the parts named by `spec` from `source`; only their tensors are read.
    pub fn load(
        source: &dyn TensorSource,
        config: &BertConfig,
        spec: &SliceSpec,
        task: TaskHead,
        device: &Device,
    ) -> Result<Self, ModelError> {
        spec.validate(config.num_hidden_layers)?;
        let root = Weights::new(source, device);
        let body = body_weights(&root, source)?;
        let embeddings = spec
            .embeddings
            .then(|| BertEmbeddings::load(&body.at("embeddings"), config))
            .transpose()?;
        let blocks = spec
            .blocks
            .ids()
            .map(|id| BertLayer::load(&body.at(format!("encoder.layer.{id}")), config))
            .collect::<Result<Vec<_>, _>>()?;
        let head = spec
            .top
            .then(|| BertHead::load(&root, &body, config, task))
            .transpose()?;
        Ok(Self {
            embeddings,
            blocks,
            top: head,
            spec: spec.clone(),
            hidden_size: config.hidden_size,
        })
    }

    /// The embeddings, if this slice holds them.
    pub fn embeddings(&self) -> Option<&BertEmbeddings> {
        self.embeddings.as_ref()
    }

    /// The token embedding matrix `[vocab, hidden]`, if this slice holds the embeddings.
    pub fn word_embeddings(&self) -> Option<Tensor<2>> {
        self.embeddings.as_ref().map(|e| e.word_embeddings())
    }

    /// The top, if this slice holds it.
    pub fn head(&self) -> Option<&BertHead> {
        self.top.as_ref()
    }

    /// BERT's pooled output for final hidden states, if the top has a pooler.
    pub fn pool(&self, states: &Tensor<3>) -> Option<Tensor<2>> {
        self.top.as_ref().and_then(|head| head.pool(states))
    }
}

fn body_weights<'a>(
    root: &Weights<'a>,
    source: &dyn TensorSource,
) -> Result<Weights<'a>, ModelError> {
    BODY_PREFIXES
        .iter()
        .map(|prefix| root.at(prefix))
        .find(|body| body.contains("embeddings.word_embeddings.weight"))
        .ok_or_else(|| {
            ModelError::Checkpoint(splitlm_weights::CheckpointError::MissingTensor {
                source_desc: source.describe(),
                name: "embeddings.word_embeddings.weight (under `bert.`, `roberta.` or no prefix)"
                    .into(),
            })
        })
}

impl TransformerSlice for BertModel {
    fn spec(&self) -> &SliceSpec {
        &self.spec
    }

    fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn is_causal(&self) -> bool {
        false
    }

    fn embed(&self, tokens: &TokenBatch) -> Result<Hidden, ModelError> {
        let embeddings = self
            .embeddings
            .as_ref()
            .ok_or_else(|| missing_part("embeddings", &self.spec))?;
        let positions = tokens.positions();
        Ok(Hidden {
            states: embeddings.forward(tokens, positions.clone()),
            attention_mask: tokens.attention_mask.clone(),
            positions,
        })
    }

    fn embed_vectors(&self, words: Tensor<3>, tokens: &TokenBatch) -> Result<Hidden, ModelError> {
        let embeddings = self
            .embeddings
            .as_ref()
            .ok_or_else(|| missing_part("embeddings", &self.spec))?;
        let positions = tokens.positions();
        Ok(Hidden {
            states: embeddings.forward_words(words, tokens, positions.clone()),
            attention_mask: tokens.attention_mask.clone(),
            positions,
        })
    }

    fn forward_blocks(
        &self,
        hidden: Hidden,
        _cache: Option<&mut KvCache>,
    ) -> Result<Hidden, ModelError> {
        hidden.validate(self.hidden_size)?;
        let seq = hidden.states.dims()[1];
        let mask = AttentionMask::new(&hidden.attention_mask, seq, false);
        let states = self
            .blocks
            .iter()
            .fold(hidden.states.clone(), |x, layer| layer.forward(x, &mask));
        Ok(hidden.with_states(states))
    }

    fn forward_top(&self, hidden: Hidden) -> Result<HeadOutput, ModelError> {
        let head = self
            .top
            .as_ref()
            .ok_or_else(|| missing_part("top", &self.spec))?;
        hidden.validate(self.hidden_size)?;
        Ok(head.forward(hidden.states, &hidden.attention_mask))
    }
}

impl ModelFamily for BertModel {
    const NAME: &'static str = "bert";
    const MODEL_TYPES: &'static [&'static str] = &["bert", "roberta", "xlm-roberta", "camembert"];
    const DEFAULT_LORA_TARGETS: &'static [&'static str] = &["query", "value"];

    type Config = BertConfig;

    fn load(
        source: &dyn TensorSource,
        config: &BertConfig,
        spec: &SliceSpec,
        task: TaskHead,
        device: &Device,
    ) -> Result<Self, ModelError> {
        BertModel::load(source, config, spec, task, device)
    }
}

impl FamilyConfig for BertConfig {
    fn from_dir(dir: &std::path::Path) -> Result<Self, ModelError> {
        BertConfig::from_dir(dir)
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
