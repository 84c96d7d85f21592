use burn::module::Module;
use burn::tensor::Tensor;
use splitlm_bert::BertModel;
use splitlm_gpt2::Gpt2Model;
use splitlm_llama::LlamaModel;
use splitlm_nn::{
    HeadOutput, Hidden, KvCache, ModelError, SliceSpec, TokenBatch, TransformerSlice,
};

/// A slice of a model of any family.
// One value per party, moved only when an optimizer step replaces it: the size gap between
// variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AnyModel {
    /// BERT, RoBERTa, MiniLM.
    Bert(BertModel),
    /// GPT-2.
    Gpt2(Gpt2Model),
    /// Llama, Mistral, Qwen2, SmolLM.
    Llama(LlamaModel),
}

/// Runs `$body` with `$m` bound to the family model inside `$self`.
macro_rules! each_family {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            AnyModel::Bert($m) => $body,
            AnyModel::Gpt2($m) => $body,
            AnyModel::Llama($m) => $body,
        }
    };
}

impl AnyModel {
    /// The token embedding matrix `[vocab, hidden]`, if this slice holds the embeddings.
    pub fn word_embeddings(&self) -> Option<Tensor<2>> {
        each_family!(self, m => m.word_embeddings())
    }

    /// Applies `f` to the family model, whatever its type, keeping the variant. `f` receives
    /// parameter paths relative to the family model (`embeddings.…`, `blocks.N.…`, `top.…`).
    pub fn map_family<F: FamilyMap>(self, f: &F) -> Result<Self, F::Error> {
        Ok(match self {
            AnyModel::Bert(m) => AnyModel::Bert(f.apply(m)?),
            AnyModel::Gpt2(m) => AnyModel::Gpt2(f.apply(m)?),
            AnyModel::Llama(m) => AnyModel::Llama(f.apply(m)?),
        })
    }

    /// The family's name.
    pub fn family_name(&self) -> &'static str {
        match self {
            AnyModel::Bert(_) => "bert",
            AnyModel::Gpt2(_) => "gpt2",
            AnyModel::Llama(_) => "llama",
        }
    }
}

/// A transformation of a module that works for any family model (freezing, LoRA…).
pub trait FamilyMap {
    /// What can go wrong.
    type Error;
    /// Transforms one family model.
    fn apply<M: Module>(&self, module: M) -> Result<M, Self::Error>;
}

impl TransformerSlice for AnyModel {
    fn spec(&self) -> &SliceSpec {
        each_family!(self, m => m.spec())
    }

    fn hidden_size(&self) -> usize {
        each_family!(self, m => m.hidden_size())
    }

    fn is_causal(&self) -> bool {
        each_family!(self, m => m.is_causal())
    }

    fn embed(&self, tokens: &TokenBatch) -> Result<Hidden, ModelError> {
        each_family!(self, m => m.embed(tokens))
    }

    fn embed_vectors(&self, words: Tensor<3>, tokens: &TokenBatch) -> Result<Hidden, ModelError> {
        each_family!(self, m => m.embed_vectors(words, tokens))
    }

    fn forward_blocks(
        &self,
        hidden: Hidden,
        cache: Option<&mut KvCache>,
    ) -> Result<Hidden, ModelError> {
        each_family!(self, m => m.forward_blocks(hidden, cache))
    }

    fn forward_top(&self, hidden: Hidden) -> Result<HeadOutput, ModelError> {
        each_family!(self, m => m.forward_top(hidden))
    }
}

impl From<BertModel> for AnyModel {
    fn from(m: BertModel) -> Self {
        AnyModel::Bert(m)
    }
}

impl From<Gpt2Model> for AnyModel {
    fn from(m: Gpt2Model) -> Self {
        AnyModel::Gpt2(m)
    }
}

impl From<LlamaModel> for AnyModel {
    fn from(m: LlamaModel) -> Self {
        AnyModel::Llama(m)
    }
}
