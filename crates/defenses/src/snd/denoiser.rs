//! SnD's denoiser: the reference's `denoiseModelv3_3slice` (`models/denoise_model.py:239–268`),
//! the one it defines for a Head–Body–Tail split, whose output has a sequence dimension.
//!
//! For each position `t` of the body's output `y` `[b, s, d]`, a transformer encoder reads the
//! sequence `[y_t, h_1…h_s, n_1…n_s]` (the clean head output `h` and the noise `n` the data
//! party added, both `[b, s, d]`), keys masked at padding (`[1, mask, mask]`), and its `fc`
//! layer's output at the first position is the estimate of the body's output at `t` on the
//! clean input. The encoder (`Transformer`, `EncoderLayer`, `MultiHeadAttention`,
//! `PositionWiseFeedForward` there) is post-norm: `x = LN₁(x + drop(MHA(x)))`,
//! `x = LN₂(x + drop(W₂ ReLU(W₁ x)))`, with `heads` heads of `dim_head` each and scores scaled
//! by `1/√dim_head`. The reference loops over positions; here the `b·s` sequences run as one
//! batch, and the last layer computes its first position only (the only one read).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;

/// The denoiser's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DenoiserShape {
    /// Hidden size of the model (the width of `h`, `n` and `y`).
    pub(crate) width: usize,
    /// Encoder layers.
    pub(crate) layers: usize,
    /// Attention heads.
    pub(crate) heads: usize,
    /// Width of each head.
    pub(crate) dim_head: usize,
    /// Width of the feed-forward layer.
    pub(crate) d_ff: usize,
    /// Whether the output is a correction added to the body's output, the output layer
    /// starting at zero (so the untrained denoiser is the identity); the reference's is not.
    pub(crate) residual: bool,
}

/// Dropout in a training pass: its probability and the generator of its masks.
pub(crate) struct Dropout<'a> {
    pub(crate) p: f64,
    pub(crate) rng: &'a mut SplitMix64,
}

impl Dropout<'_> {
    /// `x` with each element zeroed with probability `p`, the rest scaled by `1/(1 − p)`.
    fn apply<const D: usize>(&mut self, x: Tensor<D>) -> Tensor<D> {
        if self.p <= 0.0 {
            return x;
        }
        let dims = x.dims();
        let n: usize = dims.iter().product();
        // Four 16-bit draws per generator step: the masks of a training pass are large.
        let threshold = (self.p * 65536.0).round() as u64;
        let keep = (1.0 / (1.0 - self.p)) as f32;
        let mut mask = Vec::with_capacity(n);
        while mask.len() < n {
            let bits = self.rng.next_u64();
            for k in 0..4 {
                if mask.len() == n {
                    break;
                }
                let draw = (bits >> (16 * k)) & 0xffff;
                mask.push(if draw < threshold { 0.0 } else { keep });
            }
        }
        let mask = Tensor::<D>::from_data(TensorData::new(mask, dims), &x.device());
        x * mask
    }
}

/// One post-norm encoder layer.
#[derive(Module, Debug)]
struct EncoderLayer {
    w_q: Linear,
    w_k: Linear,
    w_v: Linear,
    w_o: Linear,
    fc1: Linear,
    fc2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    heads: usize,
    dim_head: usize,
}

impl EncoderLayer {
    /// `x` `[n, l, d]` with key bias `[n, l]` (0 or a large negative number); with
    /// `first_only`, only position 0 is computed (`[n, 1, d]`).
    fn forward(
        &self,
        x: Tensor<3>,
        key_bias: &Tensor<2>,
        first_only: bool,
        dropout: &mut Option<Dropout>,
    ) -> Tensor<3> {
        let [n, l, _] = x.dims();
        let (h, dk) = (self.heads, self.dim_head);
        let queries = if first_only {
            x.clone().narrow(1, 0, 1)
        } else {
            x.clone()
        };
        let lq = queries.dims()[1];
        let split = |t: Tensor<3>, len: usize| t.reshape([n, len, h, dk]).swap_dims(1, 2);
        let q = split(self.w_q.forward(queries.clone()), lq);
        let k = split(self.w_k.forward(x.clone()), l);
        let v = split(self.w_v.forward(x), l);
        let scores = q.matmul(k.swap_dims(2, 3)) / (dk as f64).sqrt()
            + key_bias.clone().reshape([n, 1, 1, l]);
        let attended = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([n, lq, h * dk]);
        let mut attended = self.w_o.forward(attended);
        if let Some(d) = dropout {
            attended = d.apply(attended);
        }
        let x = self.norm1.forward(queries + attended);
        let mut fed = self.fc2.forward(relu(self.fc1.forward(x.clone())));
        if let Some(d) = dropout {
            fed = d.apply(fed);
        }
        self.norm2.forward(x + fed)
    }
}

/// The denoiser (see the module's documentation).
#[derive(Module, Debug)]
pub(crate) struct Denoiser {
    layers: Vec<EncoderLayer>,
    fc: Linear,
    /// splitlm's option: the output is a correction added to the body's output.
    residual: bool,
}

/// A PyTorch `nn.Linear` initialisation: weight and bias uniform in ±1/√fan_in.
fn torch_linear(d_in: usize, d_out: usize, rng: &mut SplitMix64, device: &Device) -> Linear {
    let bound = 1.0 / (d_in as f64).sqrt();
    let mut uniform = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| (bound * (2.0 * rng.uniform() - 1.0)) as f32)
            .collect()
    };
    let weight = uniform(d_in * d_out);
    let bias = uniform(d_out);
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [d_in, d_out]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [d_out]),
            device,
        ))),
    }
}

impl Denoiser {
    /// A denoiser of `shape` initialised as PyTorch initialises the reference's layers
    /// (linear layers uniform in ±1/√fan_in, layer norms at scale 1 and shift 0, ε = 1e-5),
    /// drawn from `rng`.
    pub(crate) fn new(shape: DenoiserShape, rng: &mut SplitMix64, device: &Device) -> Self {
        let DenoiserShape {
            width: d,
            layers,
            heads,
            dim_head,
            d_ff,
            residual,
        } = shape;
        let inner = heads * dim_head;
        let layers = (0..layers)
            .map(|_| EncoderLayer {
                w_q: torch_linear(d, inner, rng, device),
                w_k: torch_linear(d, inner, rng, device),
                w_v: torch_linear(d, inner, rng, device),
                w_o: torch_linear(inner, d, rng, device),
                fc1: torch_linear(d, d_ff, rng, device),
                fc2: torch_linear(d_ff, d, rng, device),
                norm1: LayerNormConfig::new(d).init(device),
                norm2: LayerNormConfig::new(d).init(device),
                heads,
                dim_head,
            })
            .collect();
        let mut fc = torch_linear(d, d, rng, device);
        if residual {
            fc.weight = Param::from_tensor(Tensor::zeros([d, d], device));
            fc.bias = Some(Param::from_tensor(Tensor::zeros([d], device)));
        }
        Self {
            layers,
            fc,
            residual,
        }
    }

    /// The estimate `[b, s, d]` of the body's output on the clean input, from its output `y`
    /// on the noisy input, the clean head output `clean` and the `noise`, all `[b, s, d]`;
    /// `mask` `[b, s]` is 1 at real tokens and 0 at padding (`None`: all real). Dropout only
    /// when given (pretraining).
    pub(crate) fn forward(
        &self,
        clean: Tensor<3>,
        noise: Tensor<3>,
        y: Tensor<3>,
        mask: Option<Tensor<2>>,
        mut dropout: Option<Dropout>,
    ) -> Tensor<3> {
        let [b, s, d] = y.dims();
        let rows = b * s;
        let context = Tensor::cat(vec![clean, noise], 1)
            .unsqueeze_dim::<4>(1)
            .expand([b, s, 2 * s, d])
            .reshape([rows, 2 * s, d]);
        let mut x = Tensor::cat(vec![y.clone().reshape([rows, 1, d]), context], 1);
        let device = x.device();
        let key_mask = match mask {
            Some(mask) => Tensor::cat(vec![Tensor::ones([b, 1], &device), mask.clone(), mask], 1),
            None => Tensor::ones([b, 2 * s + 1], &device),
        };
        // The reference fills masked scores with −∞; −1e9 gives the same softmax without NaN
        // gradients.
        let key_bias = (key_mask - 1.0) * 1e9;
        let key_bias = key_bias
            .unsqueeze_dim::<3>(1)
            .expand([b, s, 2 * s + 1])
            .reshape([rows, 2 * s + 1]);
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, &key_bias, i == last, &mut dropout);
        }
        let out = self.fc.forward(x.narrow(1, 0, 1)).reshape([b, s, d]);
        if self.residual { out + y } else { out }
    }

    /// The number of parameters.
    pub(crate) fn size(&self) -> usize {
        self.num_params()
    }
}

#[cfg(test)]
pub(crate) mod torch {
    //! Loading the reference's `state_dict` (for the fixtures).

    use super::*;

    /// A tensor of the `state_dict` by name: its shape and values.
    pub(crate) type StateDict<'a> = &'a dyn Fn(&str) -> (Vec<usize>, Vec<f32>);

    fn linear(get: StateDict, name: &str, device: &Device) -> Linear {
        let (dims, w) = get(&format!("{name}.weight"));
        let (out, inp) = (dims[0], dims[1]);
        let transposed = splitlm_nn::weights::transpose(&w, out, inp);
        let (_, bias) = get(&format!("{name}.bias"));
        Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(transposed, [inp, out]),
                device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(bias, [out]),
                device,
            ))),
        }
    }

    fn norm(get: StateDict, name: &str, device: &Device) -> LayerNorm {
        let (dims, gamma) = get(&format!("{name}.weight"));
        let (_, beta) = get(&format!("{name}.bias"));
        let mut ln = LayerNormConfig::new(dims[0]).init(device);
        ln.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [dims[0]]), device));
        ln.beta = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(beta, [dims[0]]),
            device,
        )));
        ln
    }

    impl Denoiser {
        /// The reference's `denoiseModelv3_3slice` from its `state_dict` (`get` gives a
        /// tensor's shape and values by name).
        pub(crate) fn from_torch(
            get: StateDict,
            layers: usize,
            heads: usize,
            device: &Device,
        ) -> Self {
            let layers = (0..layers)
                .map(|i| {
                    let p = format!("transformer.encoder_layers.{i}");
                    let w_q = linear(get, &format!("{p}.self_attn.W_q"), device);
                    let inner = w_q.weight.dims()[1];
                    EncoderLayer {
                        w_q,
                        w_k: linear(get, &format!("{p}.self_attn.W_k"), device),
                        w_v: linear(get, &format!("{p}.self_attn.W_v"), device),
                        w_o: linear(get, &format!("{p}.self_attn.W_o"), device),
                        fc1: linear(get, &format!("{p}.feed_forward.fc1"), device),
                        fc2: linear(get, &format!("{p}.feed_forward.fc2"), device),
                        norm1: norm(get, &format!("{p}.norm1"), device),
                        norm2: norm(get, &format!("{p}.norm2"), device),
                        heads,
                        dim_head: inner / heads,
                    }
                })
                .collect();
            Self {
                layers,
                fc: linear(get, "transformer.fc", device),
                residual: false,
            }
        }
    }
}
