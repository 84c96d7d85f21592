use burn::module::Module;
use burn::tensor::Tensor;

use crate::AnyModel;
use splitlm_nn::{
    HeadOutput, Hidden, KvCache, ModelError, SliceSpec, TokenBatch, TransformerSlice,
};

impl AnyModel {
    /// The token embedding matrix `[vocab, hidden]`, if this slice holds the embeddings.
    pub fn word_embeddings(&self) -> Option<Tensor<2>> {
        each_model!(self, m => m.word_embeddings())
    }

    /// Applies `f` to the family model, whatever its type, keeping the variant. `f` receives
    /// parameter paths relative to the family model (`embeddings.…`, `blocks.N.…`, `top.…`).
    pub fn map_family<F: FamilyMap>(self, f: &F) -> Result<Self, F::Error> {
        Ok(each_model!(self, m => AnyModel::from(f.apply(m)?)))
    }

    /// The family's name (`bert`); see [`crate::Family::name`].
    pub fn family_name(&self) -> &'static str {
        self.family().name()
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
        each_model!(self, m => m.spec())
    }

    fn hidden_size(&self) -> usize {
        each_model!(self, m => m.hidden_size())
    }

    fn is_causal(&self) -> bool {
        each_model!(self, m => m.is_causal())
    }

    fn embed(&self, tokens: &TokenBatch) -> Result<Hidden, ModelError> {
        each_model!(self, m => m.embed(tokens))
    }

    fn embed_vectors(&self, words: Tensor<3>, tokens: &TokenBatch) -> Result<Hidden, ModelError> {
        each_model!(self, m => m.embed_vectors(words, tokens))
    }

    fn forward_blocks(
        &self,
        hidden: Hidden,
        cache: Option<&mut KvCache>,
    ) -> Result<Hidden, ModelError> {
        each_model!(self, m => m.forward_blocks(hidden, cache))
    }

    fn forward_top(&self, hidden: Hidden) -> Result<HeadOutput, ModelError> {
        each_model!(self, m => m.forward_top(hidden))
    }
}
