//! The interface every family's core offers, whatever slice of the model it holds.

use burn::tensor::Tensor;

use crate::{HeadOutput, Hidden, KvCache, ModelError, SliceSpec, TokenBatch};

/// A slice of a transformer: optional embeddings, a range of blocks, optional top (final norm
/// and task head). Parties drive slices through this trait without knowing the family.
pub trait TransformerSlice {
    /// What this slice holds.
    fn spec(&self) -> &SliceSpec;

    /// Width of the hidden states crossing slice boundaries.
    fn hidden_size(&self) -> usize;

    /// Whether blocks attend causally (decoders) and so support a [`KvCache`].
    fn is_causal(&self) -> bool;

    /// Embeds tokens. Errors if the slice holds no embeddings.
    fn embed(&self, tokens: &TokenBatch) -> Result<Hidden, ModelError>;

    /// Embeds given word vectors `[b, s, hidden]` in place of the token lookup, adding what the
    /// family adds to them (positions, segments, normalisation); `tokens` gives the mask and
    /// the segment ids. What inversion attacks optimise through. Errors if the slice holds no
    /// embeddings.
    fn embed_vectors(&self, words: Tensor<3>, tokens: &TokenBatch) -> Result<Hidden, ModelError>;

    /// Runs the slice's blocks. With a cache (decoders only), keys and values of the new
    /// positions are appended to it and attention covers everything cached.
    fn forward_blocks(
        &self,
        hidden: Hidden,
        cache: Option<&mut KvCache>,
    ) -> Result<Hidden, ModelError>;

    /// Applies the final norm and the task head. Errors if the slice holds no top.
    fn forward_top(&self, hidden: Hidden) -> Result<HeadOutput, ModelError>;

    /// Embeddings → blocks → top, for a slice that holds all three.
    fn forward(
        &self,
        tokens: &TokenBatch,
        cache: Option<&mut KvCache>,
    ) -> Result<HeadOutput, ModelError> {
        let hidden = self.embed(tokens)?;
        let hidden = self.forward_blocks(hidden, cache)?;
        self.forward_top(hidden)
    }

    /// A fresh cache sized for this slice's blocks.
    fn new_cache(&self) -> KvCache {
        KvCache::new(self.spec().blocks.len())
    }
}

/// The error for a slice asked to run a part it does not hold.
pub fn missing_part(part: &str, spec: &SliceSpec) -> ModelError {
    ModelError::Slice(format!(
        "this slice (embeddings: {}, blocks {}, top: {}) holds no {part}",
        spec.embeddings, spec.blocks, spec.top
    ))
}
