use burn::tensor::{Device, Int, Tensor, TensorData};

/// Rotary position embeddings in Hugging Face's half-rotation layout: dimension `i` pairs with
/// `i + head_dim / 2`.
#[derive(Debug, Clone)]
pub struct Rope {
    /// `[head_dim / 2]` inverse frequencies `θ^(-2i / head_dim)`.
    inv_freq: Vec<f32>,
}

impl Rope {
    /// RoPE for heads of `head_dim` with base `theta`.
    pub fn new(head_dim: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        let inv_freq = (0..half)
            .map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32)
            .collect();
        Self { inv_freq }
    }

    /// Rotates queries and keys `[batch, heads, seq, head_dim]` by the angles of `positions`
    /// `[batch, seq]`; the angles are computed once for both.
    pub fn apply(
        &self,
        q: Tensor<4>,
        k: Tensor<4>,
        positions: &Tensor<2, Int>,
    ) -> (Tensor<4>, Tensor<4>) {
        let [b, _, s, hd] = q.dims();
        let (cos, sin) = self.cos_sin(positions, &q.device());
        let cos = cos.reshape([b, 1, s, hd]);
        let sin = sin.reshape([b, 1, s, hd]);
        (rotate(q, cos.clone(), sin.clone()), rotate(k, cos, sin))
    }

    /// `[batch, seq, head_dim]` cosines and sines, each half repeated.
    fn cos_sin(&self, positions: &Tensor<2, Int>, device: &Device) -> (Tensor<3>, Tensor<3>) {
        let [b, s] = positions.dims();
        let half = self.inv_freq.len();
        let inv_freq =
            Tensor::<1>::from_data(TensorData::new(self.inv_freq.clone(), [half]), device)
                .reshape([1, 1, half]);
        let angles = positions.clone().float().reshape([b, s, 1]) * inv_freq;
        let angles = Tensor::cat(vec![angles.clone(), angles], 2);
        (angles.clone().cos(), angles.sin())
    }
}

/// `x·cos + rotate_half(x)·sin`, pairing dimension `i` with `i + head_dim / 2`.
fn rotate(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    let half = x.dims()[3] / 2;
    let first = x.clone().narrow(3, 0, half);
    let second = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![second.neg(), first], 3);
    x * cos + rotated * sin
}
