//! The three-layer per-token MLP that both of AT's modules are: the privacy-preserving
//! mapping (`Mapping_MLP3_noflatten`, models/adversarial_model.py:44–98) and the imagined
//! adversary (`ImaginedAdversary_MLP3_noflatten`, models/imagined_adversary_models.py:8–51):
//! `Sigmoid(Linear(ReLU(LN(Linear(ReLU(LN(Linear(x))))))))`, widths `in → h → h → out`.
//!
//! The weights live on the host with their Adam moments and are uploaded to the tensor's
//! device on each forward (they are small next to a transformer block), as MID's are.

use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Gradients, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;

/// Adam's constants (PyTorch's defaults: the reference builds `torch.optim.Adam(params, lr)`,
/// party/passive_party.py:161–162, 180–181).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// PyTorch's `nn.LayerNorm` epsilon.
const LAYER_NORM_EPS: f64 = 1e-5;

/// The number of parameter tensors: three linear layers (weight, bias) and two layer norms
/// (scale, shift).
const PARAMS: usize = 10;

/// One host parameter with its Adam moments.
#[derive(Clone)]
struct HostParam {
    values: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl HostParam {
    fn new(values: Vec<f32>) -> Self {
        let n = values.len();
        Self {
            values,
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    /// One Adam step at `lr` on `sign · grad` (step `t`, from 1).
    fn adam(&mut self, grad: &[f32], sign: f64, lr: f64, t: i32) {
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for (i, &g) in grad.iter().enumerate() {
            let g = sign * g as f64;
            let m = BETA1 * self.m[i] as f64 + (1.0 - BETA1) * g;
            let v = BETA2 * self.v[i] as f64 + (1.0 - BETA2) * g * g;
            self.m[i] = m as f32;
            self.v[i] = v as f32;
            self.values[i] -= (lr * (m / c1) / ((v / c2).sqrt() + EPS)) as f32;
        }
    }
}

/// The MLP's parameters, uploaded for one step: the leaves whose gradients
/// [`Mlp3::step`] reads. The same leaves may serve several forwards of one step; their
/// gradients then add up.
#[derive(Clone)]
pub(crate) struct Leaves(Vec<Tensor<1>>);

impl Leaves {
    /// No parameters (a module that did not run in the step).
    pub(crate) fn empty() -> Self {
        Self(Vec::new())
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `in → hidden → hidden → out`, each hidden layer `Linear, LayerNorm, ReLU`, the last
/// `Linear, Sigmoid`. Linear weights are kept as `[in, out]` (applied as `x·W`).
#[derive(Clone)]
pub(crate) struct Mlp3 {
    input: usize,
    hidden: usize,
    output: usize,
    /// `w1, b1, ln1 scale, ln1 shift, w2, b2, ln2 scale, ln2 shift, w3, b3`.
    params: Vec<HostParam>,
    steps: i32,
}

impl Mlp3 {
    /// As PyTorch initialises it: linear weights and biases uniform in ±1/√fan_in, layer
    /// norms at scale 1, shift 0; drawn from `rng`.
    pub(crate) fn new(input: usize, hidden: usize, output: usize, rng: &mut SplitMix64) -> Self {
        let mut uniform = |n: usize, fan_in: usize| -> Vec<f32> {
            let bound = 1.0 / (fan_in as f64).sqrt();
            (0..n)
                .map(|_| (bound * (2.0 * rng.uniform() - 1.0)) as f32)
                .collect()
        };
        let values = vec![
            uniform(input * hidden, input),
            uniform(hidden, input),
            vec![1.0; hidden],
            vec![0.0; hidden],
            uniform(hidden * hidden, hidden),
            uniform(hidden, hidden),
            vec![1.0; hidden],
            vec![0.0; hidden],
            uniform(hidden * output, hidden),
            uniform(output, hidden),
        ];
        Self::from_values(input, hidden, output, values)
    }

    /// From parameter values in this module's layout (`[in, out]` linear weights), in the
    /// order of [`Mlp3::params`].
    pub(crate) fn from_values(
        input: usize,
        hidden: usize,
        output: usize,
        values: Vec<Vec<f32>>,
    ) -> Self {
        Self {
            input,
            hidden,
            output,
            params: values
                .into_iter()
                .take(PARAMS)
                .map(HostParam::new)
                .collect(),
            steps: 0,
        }
    }

    /// From PyTorch's `state_dict` values (`[out, in]` linear weights), in module order.
    #[cfg(test)]
    pub(crate) fn from_torch(
        input: usize,
        hidden: usize,
        output: usize,
        torch: &[Vec<f32>],
    ) -> Self {
        let shapes = Self::linear_shapes(input, hidden, output);
        let values = torch
            .iter()
            .enumerate()
            .map(|(i, v)| match shapes[i] {
                Some((rows_in, cols_out)) => transpose(v, cols_out, rows_in),
                None => v.clone(),
            })
            .collect();
        Self::from_values(input, hidden, output, values)
    }

    /// The parameters in PyTorch's layout (`[out, in]` linear weights), in module order.
    #[cfg(test)]
    pub(crate) fn torch_params(&self) -> Vec<Vec<f32>> {
        let shapes = Self::linear_shapes(self.input, self.hidden, self.output);
        self.params
            .iter()
            .enumerate()
            .map(|(i, p)| match shapes[i] {
                Some((rows_in, cols_out)) => transpose(&p.values, rows_in, cols_out),
                None => p.values.clone(),
            })
            .collect()
    }

    /// `(in, out)` of each parameter that is a linear weight.
    #[cfg(test)]
    fn linear_shapes(
        input: usize,
        hidden: usize,
        output: usize,
    ) -> [Option<(usize, usize)>; PARAMS] {
        let mut shapes = [None; PARAMS];
        shapes[0] = Some((input, hidden));
        shapes[4] = Some((hidden, hidden));
        shapes[8] = Some((hidden, output));
        shapes
    }

    /// The input width.
    pub(crate) fn input(&self) -> usize {
        self.input
    }

    /// The parameters uploaded to `device`, tracking their gradients when `track` is set.
    pub(crate) fn leaves(&self, device: &burn::tensor::Device, track: bool) -> Leaves {
        Leaves(
            self.params
                .iter()
                .map(|p| {
                    let t = Tensor::<1>::from_data(
                        TensorData::new(p.values.clone(), [p.values.len()]),
                        device,
                    );
                    if track { t.require_grad() } else { t }
                })
                .collect(),
        )
    }

    /// The MLP on rows `x` `[n, in]` with the parameters `leaves`: `[n, out]`, in (0, 1).
    pub(crate) fn forward(&self, leaves: &Leaves, x: Tensor<2>) -> Tensor<2> {
        let (i, h, o) = (self.input, self.hidden, self.output);
        let p = &leaves.0;
        let linear = |x: Tensor<2>, w: &Tensor<1>, b: &Tensor<1>, fan_in, fan_out| {
            x.matmul(w.clone().reshape([fan_in, fan_out])) + b.clone().unsqueeze::<2>()
        };
        let x = relu(layer_norm(linear(x, &p[0], &p[1], i, h), &p[2], &p[3]));
        let x = relu(layer_norm(linear(x, &p[4], &p[5], h, h), &p[6], &p[7]));
        sigmoid(linear(x, &p[8], &p[9], h, o))
    }

    /// One Adam step at `lr` on `sign` times the gradients of `leaves` in `grads` (`sign` −1
    /// ascends: the imagined adversary minimises the loss the mapping maximises). Leaves
    /// without a gradient (unused in the step's graph) leave their parameter as it is.
    pub(crate) fn step(&mut self, leaves: &Leaves, grads: &Gradients, sign: f64, lr: f64) {
        self.steps += 1;
        for (param, leaf) in self.params.iter_mut().zip(&leaves.0) {
            let Some(grad) = leaf.grad(grads) else {
                continue;
            };
            let Ok(grad) = grad.into_data().try_into_vec_as::<f32>() else {
                continue;
            };
            if grad.len() == param.values.len() {
                param.adam(&grad, sign, lr, self.steps);
            }
        }
    }
}

/// PyTorch's `LayerNorm` over the last axis of `x` `[n, h]`, biased variance.
fn layer_norm(x: Tensor<2>, scale: &Tensor<1>, shift: &Tensor<1>) -> Tensor<2> {
    let centred = x.clone() - x.mean_dim(1);
    let var = centred.clone().powi_scalar(2).mean_dim(1);
    centred / (var + LAYER_NORM_EPS).sqrt() * scale.clone().unsqueeze::<2>()
        + shift.clone().unsqueeze::<2>()
}

/// `w` `[rows, cols]` (row-major) transposed.
#[cfg(test)]
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| w[r * cols + c]))
        .collect()
}
