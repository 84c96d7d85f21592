use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::Tensor;
use splitlm_nn::attention::split_heads;
use splitlm_nn::{Activation, AttentionMask, ModelError, Weights, attend};

use crate::BertConfig;

/// One post-LN encoder block: self-attention, add & norm, feed-forward, add & norm.
#[derive(Module, Debug)]
pub struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    #[module(skip)]
    activation: Activation,
}

impl BertLayer {
    /// Loads `encoder.layer.{id}` from `weights` (already scoped to that prefix).
    pub(crate) fn load(weights: &Weights, config: &BertConfig) -> Result<Self, ModelError> {
        let d = config.hidden_size;
        let i = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let attention = weights.at("attention");
        Ok(Self {
            query: attention.linear("self.query", d, d, true)?,
            key: attention.linear("self.key", d, d, true)?,
            value: attention.linear("self.value", d, d, true)?,
            attention_out: attention.linear("output.dense", d, d, true)?,
            attention_norm: attention.layer_norm("output.LayerNorm", d, eps)?,
            intermediate: weights.linear("intermediate.dense", d, i, true)?,
            output: weights.linear("output.dense", i, d, true)?,
            output_norm: weights.layer_norm("output.LayerNorm", d, eps)?,
            heads: config.num_attention_heads,
            activation: config.activation(),
        })
    }

    /// `[batch, seq, hidden]` → same shape.
    pub fn forward(&self, x: Tensor<3>, mask: &AttentionMask) -> Tensor<3> {
        let q = split_heads(self.query.forward(x.clone()), self.heads);
        let k = split_heads(self.key.forward(x.clone()), self.heads);
        let v = split_heads(self.value.forward(x.clone()), self.heads);
        let context = attend(q, k, v, mask);
        let x = self
            .attention_norm
            .forward(x + self.attention_out.forward(context));
        let ff = self.output.forward(
            self.activation
                .forward(self.intermediate.forward(x.clone())),
        );
        self.output_norm.forward(x + ff)
    }
}
