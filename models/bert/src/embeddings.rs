use burn::module::Module;
use burn::nn::{Embedding, LayerNorm};
use burn::tensor::{Int, Tensor};
use splitlm_nn::{ModelError, TokenBatch, Weights};

use crate::BertConfig;

/// Word + position + token-type embeddings, then LayerNorm.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
    position_offset: i64,
}

impl BertEmbeddings {
    pub(crate) fn load(weights: &Weights, config: &BertConfig) -> Result<Self, ModelError> {
        let d = config.hidden_size;
        Ok(Self {
            words: weights.embedding("word_embeddings", config.vocab_size, d)?,
            positions: weights.embedding(
                "position_embeddings",
                config.max_position_embeddings,
                d,
            )?,
            token_types: weights.embedding("token_type_embeddings", config.type_vocab_size, d)?,
            norm: weights.layer_norm("LayerNorm", d, config.layer_norm_eps)?,
            position_offset: config.position_offset(),
        })
    }

    /// `[batch, seq, hidden]` embeddings of the tokens at `positions`.
    pub fn forward(&self, tokens: &TokenBatch, positions: Tensor<2, Int>) -> Tensor<3> {
        self.forward_words(
            self.words.forward(tokens.input_ids.clone()),
            tokens,
            positions,
        )
    }

    /// [`BertEmbeddings::forward`] with the word vectors given instead of looked up.
    pub fn forward_words(
        &self,
        words: Tensor<3>,
        tokens: &TokenBatch,
        positions: Tensor<2, Int>,
    ) -> Tensor<3> {
        let token_types = tokens
            .token_type_ids
            .clone()
            .unwrap_or_else(|| tokens.input_ids.zeros_like());
        let x = words
            + self.positions.forward(positions + self.position_offset)
            + self.token_types.forward(token_types);
        self.norm.forward(x)
    }

    /// The word-embedding matrix `[vocab, hidden]` (inversion attacks decode against it).
    pub fn word_embeddings(&self) -> Tensor<2> {
        self.words.weight.val()
    }
}
