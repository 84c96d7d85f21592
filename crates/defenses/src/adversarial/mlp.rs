//! The three-layer per-token MLP that both of AT's modules are: the privacy-preserving
//! mapping (`Mapping_MLP3_noflatten`, models/adversarial_model.py:44–98) and the imagined
//! adversary (`ImaginedAdversary_MLP3_noflatten`, models/imagined_adversary_models.py:8–51):
//! `Sigmoid(Linear(ReLU(LN(Linear(ReLU(LN(Linear(x))))))))`, widths `in → h → h → out`. The
//! tail's label adversary for classes (`ImaginedAdversary_Tail_MLP3`) has the same layers,
//! pooled over positions before the last (see `label`).
//!
//! The weights live on the host with their Adam moments (`params`).

use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Gradients, Tensor};
use splitlm_nn::seeded::SplitMix64;

use super::params::{HostParams, Leaves, linear, uniform};

/// PyTorch's `nn.LayerNorm` epsilon.
const LAYER_NORM_EPS: f64 = 1e-5;

/// The number of parameter tensors: three linear layers (weight, bias) and two layer norms
/// (scale, shift).
const PARAMS: usize = 10;

/// `in → hidden → hidden → out`, each hidden layer `Linear, LayerNorm, ReLU`, the last
/// `Linear, Sigmoid`. Linear weights are kept as `[in, out]` (applied as `x·W`).
#[derive(Clone)]
pub(crate) struct Mlp3 {
    input: usize,
    hidden: usize,
    output: usize,
    /// `w1, b1, ln1 scale, ln1 shift, w2, b2, ln2 scale, ln2 shift, w3, b3`.
    params: HostParams,
}

impl Mlp3 {
    /// As PyTorch initialises it: linear weights and biases uniform in ±1/√fan_in, layer
    /// norms at scale 1, shift 0; drawn from `rng`.
    pub(crate) fn new(input: usize, hidden: usize, output: usize, rng: &mut SplitMix64) -> Self {
        let mut torch_uniform =
            |n: usize, fan_in: usize| uniform(rng, n, 1.0 / (fan_in as f64).sqrt());
        let values = vec![
            torch_uniform(input * hidden, input),
            torch_uniform(hidden, input),
            vec![1.0; hidden],
            vec![0.0; hidden],
            torch_uniform(hidden * hidden, hidden),
            torch_uniform(hidden, hidden),
            vec![1.0; hidden],
            vec![0.0; hidden],
            torch_uniform(hidden * output, hidden),
            torch_uniform(output, hidden),
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
            params: HostParams::new(values.into_iter().take(PARAMS).collect()),
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
            .values()
            .enumerate()
            .map(|(i, p)| match shapes[i] {
                Some((rows_in, cols_out)) => transpose(p, rows_in, cols_out),
                None => p.to_vec(),
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

    /// The output width.
    pub(crate) fn output(&self) -> usize {
        self.output
    }

    /// The parameters uploaded to `device`, tracking their gradients when `track` is set.
    pub(crate) fn leaves(&self, device: &Device, track: bool) -> Leaves {
        self.params.leaves(device, track)
    }

    /// The MLP on rows `x` `[n, in]` with the parameters `leaves`: `[n, out]`, in (0, 1).
    pub(crate) fn forward(&self, leaves: &Leaves, x: Tensor<2>) -> Tensor<2> {
        sigmoid(self.last_linear(leaves, self.trunk(leaves, x)))
    }

    /// The two hidden layers on rows `x` `[n, in]`: `[n, hidden]`.
    pub(crate) fn trunk(&self, leaves: &Leaves, x: Tensor<2>) -> Tensor<2> {
        let (i, h) = (self.input, self.hidden);
        let p = |k| leaves.get(k);
        let x = relu(layer_norm(linear(x, p(0), p(1), i, h), p(2), p(3)));
        relu(layer_norm(linear(x, p(4), p(5), h, h), p(6), p(7)))
    }

    /// The last linear layer on rows `x` `[n, hidden]`, before its activation: `[n, out]`.
    pub(crate) fn last_linear(&self, leaves: &Leaves, x: Tensor<2>) -> Tensor<2> {
        linear(x, leaves.get(8), leaves.get(9), self.hidden, self.output)
    }

    /// One Adam step at `lr` on `sign` times the gradients of `leaves` in `grads` (`sign` −1
    /// ascends: the imagined adversary minimises the loss the mapping maximises). Leaves
    /// without a gradient (unused in the step's graph) leave their parameter as it is.
    pub(crate) fn step(&mut self, leaves: &Leaves, grads: &Gradients, sign: f64, lr: f64) {
        self.params.step(leaves, grads, sign, lr);
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
