//! Scaled dot-product attention with padding and causal masks and grouped-query heads.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Int, Tensor};

/// Score given to masked keys. Finite, so a query that sees no key (a padding row) gets a
/// uniform distribution instead of NaN.
const MASKED_SCORE: f32 = -1.0e30;

/// `[batch, 1, seq, past + seq]`: `true` where a query must not look at a key.
#[derive(Debug, Clone)]
pub struct AttentionMask(Tensor<4, Bool>);

impl AttentionMask {
    /// Builds the mask of `seq` new queries against all `past + seq` keys of `attention_mask`
    /// (`[batch, past + seq]`, 1 = real token). With `causal`, query `i` (absolute index
    /// `past + i`) sees keys `0..=past + i` only.
    pub fn new(attention_mask: &Tensor<2, Int>, seq: usize, causal: bool) -> Self {
        let [batch, total] = attention_mask.dims();
        let device = attention_mask.device();
        let padding = attention_mask
            .clone()
            .equal_elem(0)
            .reshape([batch, 1, 1, total])
            .expand([batch, 1, seq, total]);
        let mask = if causal {
            let past = (total - seq) as i64;
            let future = Tensor::<2, Bool>::tril_mask([seq, total], past, &device)
                .reshape([1, 1, seq, total])
                .expand([batch, 1, seq, total]);
            padding.bool_or(future)
        } else {
            padding
        };
        Self(mask)
    }
}

/// Attention of `q` `[b, heads, s, hd]` over `k`, `v` `[b, kv_heads, t, hd]`; `heads` must be a
/// multiple of `kv_heads` (grouped-query attention: head `i` reads kv head `i / (heads /
/// kv_heads)`). Returns `[b, s, heads * hd]`.
pub fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: &AttentionMask) -> Tensor<3> {
    let [b, heads, s, hd] = q.dims();
    let kv_heads = k.dims()[1];
    let t = k.dims()[2];
    let k = repeat_kv(k, heads / kv_heads);
    let v = repeat_kv(v, heads / kv_heads);
    let scores = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt();
    let scores = scores.mask_fill(mask.0.clone().expand([b, heads, s, t]), MASKED_SCORE);
    let weights = softmax(scores, 3);
    weights
        .matmul(v)
        .swap_dims(1, 2)
        .reshape([b, s, heads * hd])
}

fn repeat_kv(x: Tensor<4>, times: usize) -> Tensor<4> {
    if times == 1 {
        return x;
    }
    let [b, kv_heads, t, hd] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kv_heads, times, t, hd])
        .reshape([b, kv_heads * times, t, hd])
}

/// Splits `[b, s, heads * hd]` into `[b, heads, s, hd]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, s, width] = x.dims();
    x.reshape([b, s, heads, width / heads]).swap_dims(1, 2)
}
