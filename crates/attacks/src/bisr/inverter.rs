//! The NaMoE inverter (`models/namoe_models.py`, `MOEDRInverter`, l.213–275): one GRU expert
//! (`d → hidden`) per noise scale, a gate (Linear `d → hidden`, multi-head self-attention,
//! Linear `hidden → experts`, mean over the positions, softmax) that weighs the experts'
//! outputs, and one Linear `hidden → vocab` shared by all.
//!
//! Its parameters are plain tensors (PyTorch's layouts transposed to `[in, out]`) so that their
//! initial values and the dropout masks come from one seeded generator and each training stage
//! can pick which of them it updates.

use std::ops::Range;

use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;

use super::GateAttention;

/// Tensors per GRU expert: input weights and bias, hidden weights and bias.
const PER_EXPERT: usize = 4;
/// Tensors of the gate: its input Linear (2), the attention's four projections (8) and its
/// output Linear (2).
const GATE: usize = 12;

/// The NaMoE's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shape {
    /// Width of the activations it reads.
    pub width: usize,
    /// Width of the experts and the gate.
    pub hidden: usize,
    /// Number of experts.
    pub experts: usize,
    /// Heads of the gate's attention.
    pub heads: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

/// Dropout while training: the masks' draws and the rate.
pub(super) struct Dropout<'a> {
    pub rng: &'a mut SplitMix64,
    pub p: f64,
}

impl Dropout<'_> {
    fn apply<const D: usize>(&mut self, x: Tensor<D>) -> Tensor<D> {
        if self.p == 0.0 {
            return x;
        }
        let shape = x.shape();
        let keep = 1.0 - self.p;
        let mask: Vec<f32> = (0..shape.num_elements())
            .map(|_| {
                if self.rng.uniform() <= keep {
                    (1.0 / keep) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let device = x.device();
        x * Tensor::<D>::from_data(TensorData::new(mask, shape), &device)
    }
}

/// How a parameter starts.
enum Init {
    /// U(±bound).
    Uniform(f64),
    Zeros,
}

/// Every parameter's shape and initialisation, in the order of [`NaMoE::params`]: per expert
/// its GRU's input weights and bias and hidden weights and bias; the gate's input Linear, its
/// attention's query, key, value and output projections and its output Linear; the shared
/// output Linear.
fn layout(shape: Shape) -> Vec<([usize; 2], Init)> {
    let Shape {
        width: d,
        hidden: h,
        experts,
        vocab,
        ..
    } = shape;
    let gru = 1.0 / (h as f64).sqrt();
    let linear_in = 1.0 / (d as f64).sqrt();
    let xavier = (6.0 / (4 * h) as f64).sqrt();
    let mut layout = Vec::new();
    for _ in 0..experts {
        layout.push(([d, 3 * h], Init::Uniform(gru)));
        layout.push(([1, 3 * h], Init::Uniform(gru)));
        layout.push(([h, 3 * h], Init::Uniform(gru)));
        layout.push(([1, 3 * h], Init::Uniform(gru)));
    }
    layout.push(([d, h], Init::Uniform(linear_in)));
    layout.push(([1, h], Init::Uniform(linear_in)));
    for _ in 0..3 {
        layout.push(([h, h], Init::Uniform(xavier)));
        layout.push(([1, h], Init::Zeros));
    }
    layout.push(([h, h], Init::Uniform(gru)));
    layout.push(([1, h], Init::Zeros));
    layout.push(([h, experts], Init::Uniform(gru)));
    layout.push(([1, experts], Init::Uniform(gru)));
    layout.push(([h, vocab], Init::Uniform(gru)));
    layout.push(([1, vocab], Init::Uniform(gru)));
    layout
}

/// The NaMoE: its shape and parameters (all `[rows, cols]`, biases `[1, n]`).
#[derive(Clone)]
pub(super) struct NaMoE {
    pub shape: Shape,
    pub attention: GateAttention,
    /// On the inner device between training steps.
    pub params: Vec<Tensor<2>>,
}

impl NaMoE {
    /// PyTorch's initialisations, drawn from `rng` in [`layout`]'s order: GRU weights and
    /// biases U(±1/√hidden); Linear weights and biases U(±1/√in); the attention's input
    /// projections Xavier-uniform over the packed `[3·hidden, hidden]` matrix with zero biases,
    /// its output projection U(±1/√hidden) with a zero bias.
    pub fn new(
        shape: Shape,
        attention: GateAttention,
        rng: &mut SplitMix64,
        device: &Device,
    ) -> Self {
        let params = layout(shape)
            .into_iter()
            .map(|(dims, init)| match init {
                Init::Uniform(bound) => {
                    let values: Vec<f32> = (0..dims[0] * dims[1])
                        .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                        .collect();
                    Tensor::<2>::from_data(TensorData::new(values, dims), device)
                }
                Init::Zeros => Tensor::<2>::zeros(dims, device),
            })
            .collect();
        Self {
            shape,
            attention,
            params,
        }
    }

    /// A NaMoE of `shape` with these parameters (a cached one), refused unless their number
    /// and shapes are [`layout`]'s.
    pub fn with_params(
        shape: Shape,
        attention: GateAttention,
        params: Vec<Tensor<2>>,
    ) -> Result<Self, String> {
        let expected = layout(shape);
        if params.len() != expected.len() {
            return Err(format!(
                "{} parameter tensors where the NaMoE has {}",
                params.len(),
                expected.len()
            ));
        }
        for (i, (p, (dims, _))) in params.iter().zip(&expected).enumerate() {
            if p.dims() != *dims {
                return Err(format!(
                    "parameter {i} is {:?} where the NaMoE's is {dims:?}",
                    p.dims()
                ));
            }
        }
        Ok(Self {
            shape,
            attention,
            params,
        })
    }

    /// The parameters of the experts.
    pub fn expert_params(&self) -> Range<usize> {
        0..PER_EXPERT * self.shape.experts
    }

    /// The parameters of the gate.
    pub fn gate_params(&self) -> Range<usize> {
        let start = PER_EXPERT * self.shape.experts;
        start..start + GATE
    }

    /// The parameters of the shared output Linear.
    pub fn output_params(&self) -> Range<usize> {
        let start = PER_EXPERT * self.shape.experts + GATE;
        start..start + 2
    }

    /// Expert `e`'s hidden states on `x` (`[b, s, width]` → `[b, s, hidden]`), a GRU from a
    /// zero state with PyTorch's gates (reset applied after the hidden product).
    fn expert(&self, p: &[Tensor<2>], e: usize, x: Tensor<3>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let h = self.shape.hidden;
        let base = PER_EXPERT * e;
        let (w_ih, b_ih, w_hh, b_hh) = (&p[base], &p[base + 1], &p[base + 2], &p[base + 3]);
        let inputs =
            (x.reshape([b * s, d]).matmul(w_ih.clone()) + b_ih.clone()).reshape([b, s, 3 * h]);
        let mut state = Tensor::<2>::zeros([b, h], &inputs.device());
        let mut outputs = Vec::with_capacity(s);
        for t in 0..s {
            let gi = inputs.clone().narrow(1, t, 1).reshape([b, 3 * h]);
            let gh = state.clone().matmul(w_hh.clone()) + b_hh.clone();
            let reset = sigmoid(gi.clone().narrow(1, 0, h) + gh.clone().narrow(1, 0, h));
            let update = sigmoid(gi.clone().narrow(1, h, h) + gh.clone().narrow(1, h, h));
            let candidate = (gi.narrow(1, 2 * h, h) + reset * gh.narrow(1, 2 * h, h)).tanh();
            state = candidate.clone() + update * (state - candidate);
            outputs.push(state.clone().unsqueeze_dim::<3>(1));
        }
        Tensor::cat(outputs, 1)
    }

    /// `x · w + b` over the last axis of `[b, s, in]`.
    fn linear(x: Tensor<3>, w: &Tensor<2>, bias: &Tensor<2>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let out = w.dims()[1];
        (x.reshape([b * s, d]).matmul(w.clone()) + bias.clone()).reshape([b, s, out])
    }

    /// Multi-head self-attention over the middle axis of `[n, m, hidden]`.
    fn self_attention(
        &self,
        p: &[Tensor<2>],
        x: Tensor<3>,
        dropout: &mut Option<Dropout<'_>>,
    ) -> Tensor<3> {
        let [n, m, h] = x.dims();
        let heads = self.shape.heads;
        let k_dim = h / heads;
        let split = |t: Tensor<3>| t.reshape([n, m, heads, k_dim]).swap_dims(1, 2);
        let q = split(Self::linear(x.clone(), &p[2], &p[3]));
        let k = split(Self::linear(x.clone(), &p[4], &p[5]));
        let v = split(Self::linear(x, &p[6], &p[7]));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((k_dim as f64).sqrt());
        let mut weights = softmax(scores, 3);
        if let Some(d) = dropout {
            weights = d.apply(weights);
        }
        let context = weights.matmul(v).swap_dims(1, 2).reshape([n, m, h]);
        Self::linear(context, &p[8], &p[9])
    }

    /// The gate's expert weights for each sample, `[b, experts]` (rows sum to 1).
    pub fn gate(
        &self,
        p: &[Tensor<2>],
        x: Tensor<3>,
        dropout: &mut Option<Dropout<'_>>,
    ) -> Tensor<2> {
        let g = &p[self.gate_params()];
        let [b, _, _] = x.dims();
        let qkv = Self::linear(x, &g[0], &g[1]);
        let attended = match self.attention {
            GateAttention::AcrossBatch => self
                .self_attention(g, qkv.swap_dims(0, 1), dropout)
                .swap_dims(0, 1),
            GateAttention::AcrossPositions => self.self_attention(g, qkv, dropout),
        };
        let scores = Self::linear(attended, &g[10], &g[11]).mean_dim(1);
        softmax(scores.reshape([b, self.shape.experts]), 1)
    }

    /// Expert `e` alone through the output Linear, `[b, s, vocab]` (the experts stage,
    /// `train_exp_forward`, namoe_models.py l.236–250).
    pub fn expert_logits(
        &self,
        p: &[Tensor<2>],
        e: usize,
        x: Tensor<3>,
        dropout: &mut Option<Dropout<'_>>,
    ) -> Tensor<3> {
        let mut hidden = self.expert(p, e, x);
        if let Some(d) = dropout {
            hidden = d.apply(hidden);
        }
        let out = self.output_params().start;
        Self::linear(hidden, &p[out], &p[out + 1])
    }

    /// The mixture's logits `[b, s, vocab]` (namoe_models.py l.262–275).
    pub fn logits(
        &self,
        p: &[Tensor<2>],
        x: Tensor<3>,
        dropout: &mut Option<Dropout<'_>>,
    ) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let weights = self.gate(p, x.clone(), dropout);
        let mut mixed: Option<Tensor<3>> = None;
        for e in 0..self.shape.experts {
            let mut hidden = self.expert(p, e, x.clone());
            if let Some(d) = dropout {
                hidden = d.apply(hidden);
            }
            let w = weights.clone().narrow(1, e, 1).reshape([b, 1, 1]);
            let term = hidden * w;
            mixed = Some(match mixed {
                None => term,
                Some(m) => m + term,
            });
        }
        let mixed = mixed.unwrap_or_else(|| Tensor::zeros([b, s, self.shape.hidden], &x.device()));
        let out = self.output_params().start;
        Self::linear(mixed, &p[out], &p[out + 1])
    }

    /// The trained inverter's logits on observed activations (no dropout: evaluation mode).
    pub fn read(&self, x: &Tensor<3>) -> Result<Tensor<3>, crate::AttackError> {
        let [_, _, d] = x.dims();
        if d != self.shape.width {
            return Err(super::fail(format!(
                "the observed activations are {d} wide, the head's {}",
                self.shape.width
            )));
        }
        Ok(self.logits(&self.params, x.clone(), &mut None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            width: 8,
            hidden: 16,
            experts: 4,
            heads: 4,
            vocab: 11,
        }
    }

    fn input(device: &Device) -> Tensor<3> {
        let mut rng = SplitMix64::new(5);
        let v: Vec<f32> = (0..3 * 5 * 8).map(|_| rng.normal() as f32).collect();
        Tensor::from_data(TensorData::new(v, [3, 5, 8]), device)
    }

    #[test]
    fn shapes_and_the_gate_is_a_distribution_over_the_experts() {
        let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
        for attention in [GateAttention::AcrossBatch, GateAttention::AcrossPositions] {
            let moe = NaMoE::new(shape(), attention, &mut SplitMix64::new(1), &device);
            assert_eq!(moe.params.len(), 4 * 4 + 12 + 2);
            let x = input(&device);
            assert_eq!(moe.read(&x).unwrap().dims(), [3, 5, 11]);
            assert_eq!(
                moe.expert_logits(&moe.params, 2, x.clone(), &mut None)
                    .dims(),
                [3, 5, 11]
            );
            let gate = moe.gate(&moe.params, x.clone(), &mut None);
            assert_eq!(gate.dims(), [3, 4]);
            let rows = crate::bisr::host(gate);
            for row in rows.chunks(4) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
                assert!(row.iter().all(|&w| w > 0.0), "{row:?}");
            }
            let narrow = Tensor::<3>::zeros([1, 2, 7], &device);
            assert!(
                moe.read(&narrow)
                    .unwrap_err()
                    .to_string()
                    .contains("7 wide")
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_inverter_and_dropout() {
        let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
        let build = |seed| {
            NaMoE::new(
                shape(),
                GateAttention::AcrossBatch,
                &mut SplitMix64::new(seed),
                &device,
            )
        };
        let x = input(&device);
        let run = |moe: &NaMoE, seed| {
            let mut rng = SplitMix64::new(seed);
            let mut drop = Some(Dropout {
                rng: &mut rng,
                p: 0.1,
            });
            crate::bisr::host(moe.logits(&moe.params, x.clone(), &mut drop))
        };
        let (a, b, c) = (build(1), build(1), build(2));
        assert_eq!(run(&a, 7), run(&b, 7));
        assert_ne!(run(&a, 7), run(&a, 8));
        assert_ne!(run(&a, 7), run(&c, 7));
    }

    #[test]
    fn the_gru_matches_a_hand_computed_step() {
        // One expert, width 1, hidden 1: h1 = (1 − z)·n with z, n from PyTorch's equations.
        let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
        let shape = Shape {
            width: 1,
            hidden: 1,
            experts: 1,
            heads: 1,
            vocab: 1,
        };
        let mut moe = NaMoE::new(
            shape,
            GateAttention::AcrossPositions,
            &mut SplitMix64::new(0),
            &device,
        );
        let t = |v: Vec<f32>, dims: [usize; 2]| {
            Tensor::<2>::from_data(TensorData::new(v, dims), &device)
        };
        // Gates ordered reset, update, new (PyTorch's packing).
        moe.params[0] = t(vec![0.5, -0.3, 0.8], [1, 3]);
        moe.params[1] = t(vec![0.1, 0.2, -0.1], [1, 3]);
        moe.params[2] = t(vec![0.4, 0.6, -0.7], [1, 3]);
        moe.params[3] = t(vec![0.0, 0.1, 0.3], [1, 3]);
        let x = Tensor::<3>::from_data(TensorData::new(vec![2.0f32, -1.0], [1, 2, 1]), &device);
        let got = crate::bisr::host(moe.expert(&moe.params, 0, x));
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let mut h = 0.0f64;
        let mut want = Vec::new();
        for x in [2.0f64, -1.0] {
            let r = sig(0.5 * x + 0.1 + 0.4 * h);
            let z = sig(-0.3 * x + 0.2 + 0.6 * h + 0.1);
            let n = (0.8 * x - 0.1 + r * (-0.7 * h + 0.3)).tanh();
            h = (1.0 - z) * n + z * h;
            want.push(h as f32);
        }
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }
}
