use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Int, Tensor};
use splitlm_nn::attention::split_heads;
use splitlm_nn::decoder::{CacheSlot, CausalBlock, with_cache};
use splitlm_nn::{Activation, AttentionMask, ModelError, Weights, attend};

use crate::Gpt2Config;

/// One pre-LN GPT-2 block.
#[derive(Module, Debug)]
pub struct Gpt2Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    attn_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
    heads: usize,
    #[module(skip)]
    activation: Activation,
}

impl Gpt2Block {
    /// Loads `h.{id}` from `weights` (already scoped to that prefix).
    pub(crate) fn load(weights: &Weights, config: &Gpt2Config) -> Result<Self, ModelError> {
        let d = config.n_embd;
        let inner = config.inner_size();
        let eps = config.layer_norm_epsilon;
        Ok(Self {
            ln_1: weights.layer_norm("ln_1", d, eps)?,
            c_attn: weights.conv1d("attn.c_attn", d, 3 * d)?,
            attn_proj: weights.conv1d("attn.c_proj", d, d)?,
            ln_2: weights.layer_norm("ln_2", d, eps)?,
            c_fc: weights.conv1d("mlp.c_fc", d, inner)?,
            mlp_proj: weights.conv1d("mlp.c_proj", inner, d)?,
            heads: config.n_head,
            activation: config.activation(),
        })
    }
}

impl CausalBlock for Gpt2Block {
    fn forward(
        &self,
        x: Tensor<3>,
        _positions: &Tensor<2, Int>,
        mask: &AttentionMask,
        cache: CacheSlot<'_>,
    ) -> Tensor<3> {
        let d = x.dims()[2];
        let qkv = self.c_attn.forward(self.ln_1.forward(x.clone()));
        let q = split_heads(qkv.clone().narrow(2, 0, d), self.heads);
        let k = split_heads(qkv.clone().narrow(2, d, d), self.heads);
        let v = split_heads(qkv.narrow(2, 2 * d, d), self.heads);
        let (k, v) = with_cache(k, v, cache);
        let x = x + self.attn_proj.forward(attend(q, k, v, mask));
        let h = self
            .activation
            .forward(self.c_fc.forward(self.ln_2.forward(x.clone())));
        x + self.mlp_proj.forward(h)
    }
}
