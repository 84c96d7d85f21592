use burn::module::Module;
use burn::nn::{Linear, RmsNorm};
use burn::tensor::{Int, Tensor};
use splitlm_nn::attention::split_heads;
use splitlm_nn::decoder::{CacheSlot, CausalBlock, with_cache};
use splitlm_nn::{Activation, AttentionMask, ModelError, Weights, attend};

use crate::{LlamaConfig, Rope};

/// One Llama-style block: RMSNorm → grouped-query attention with RoPE → residual, RMSNorm →
/// SwiGLU → residual.
#[derive(Module, Debug)]
pub struct LlamaBlock {
    input_norm: RmsNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    post_attention_norm: RmsNorm,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    heads: usize,
    kv_heads: usize,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    rope: Rope,
}

impl LlamaBlock {
    /// Loads `model.layers.{id}` from `weights` (already scoped to that prefix).
    pub(crate) fn load(weights: &Weights, config: &LlamaConfig) -> Result<Self, ModelError> {
        let d = config.hidden_size;
        let hd = config.head_size();
        let heads = config.num_attention_heads;
        let kv_heads = config.kv_heads();
        let ff = config.intermediate_size;
        let eps = config.rms_norm_eps;
        let attn = weights.at("self_attn");
        let mlp = weights.at("mlp");
        Ok(Self {
            input_norm: weights.rms_norm("input_layernorm", d, eps)?,
            q_proj: attn.linear("q_proj", d, heads * hd, config.qkv_bias())?,
            k_proj: attn.linear("k_proj", d, kv_heads * hd, config.qkv_bias())?,
            v_proj: attn.linear("v_proj", d, kv_heads * hd, config.qkv_bias())?,
            o_proj: attn.linear("o_proj", heads * hd, d, config.o_bias())?,
            post_attention_norm: weights.rms_norm("post_attention_layernorm", d, eps)?,
            gate_proj: mlp.linear("gate_proj", d, ff, false)?,
            up_proj: mlp.linear("up_proj", d, ff, false)?,
            down_proj: mlp.linear("down_proj", ff, d, false)?,
            heads,
            kv_heads,
            activation: config.activation(),
            rope: Rope::new(hd, config.theta()),
        })
    }
}

impl CausalBlock for LlamaBlock {
    fn forward(
        &self,
        x: Tensor<3>,
        positions: &Tensor<2, Int>,
        mask: &AttentionMask,
        cache: CacheSlot<'_>,
    ) -> Tensor<3> {
        let h = self.input_norm.forward(x.clone());
        let q = split_heads(self.q_proj.forward(h.clone()), self.heads);
        let k = split_heads(self.k_proj.forward(h.clone()), self.kv_heads);
        let v = split_heads(self.v_proj.forward(h), self.kv_heads);
        let (q, k) = self.rope.apply(q, k, positions);
        let (k, v) = with_cache(k, v, cache);
        let x = x + self.o_proj.forward(attend(q, k, v, mask));
        let h = self.post_attention_norm.forward(x.clone());
        let gated =
            self.activation.forward(self.gate_proj.forward(h.clone())) * self.up_proj.forward(h);
        x + self.down_proj.forward(gated)
    }
}
