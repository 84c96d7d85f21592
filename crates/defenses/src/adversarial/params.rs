//! Host-side parameters with their own Adam, uploaded to the tensor's device on each forward:
//! what every module of AT is made of (they are small next to a transformer block, as MID's
//! are).

use burn::tensor::{Device, Gradients, Tensor, TensorData};
use splitlm_nn::seeded::SplitMix64;

/// Adam's constants (PyTorch's defaults: the reference builds `torch.optim.Adam(params, lr)`,
/// party/passive_party.py:161–162, 180–181, 220–221).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

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

/// A module's parameters, uploaded for one step: the leaves whose gradients
/// [`HostParams::step`] reads. The same leaves may serve several forwards of one step; their
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

    /// The `i`-th parameter, flat.
    pub(crate) fn get(&self, i: usize) -> &Tensor<1> {
        &self.0[i]
    }
}

/// A module's parameter tensors (flat, in a fixed order) and its Adam's step count.
#[derive(Clone)]
pub(crate) struct HostParams {
    params: Vec<HostParam>,
    steps: i32,
}

impl HostParams {
    /// From flat parameter values, in the module's order.
    pub(crate) fn new(values: Vec<Vec<f32>>) -> Self {
        Self {
            params: values.into_iter().map(HostParam::new).collect(),
            steps: 0,
        }
    }

    /// The values of each parameter, in order.
    #[cfg(test)]
    pub(crate) fn values(&self) -> impl Iterator<Item = &[f32]> {
        self.params.iter().map(|p| p.values.as_slice())
    }

    /// The parameters uploaded to `device`, tracking their gradients when `track` is set.
    pub(crate) fn leaves(&self, device: &Device, track: bool) -> Leaves {
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

    /// One Adam step at `lr` on `sign` times the gradients of `leaves` in `grads` (`sign` −1
    /// ascends). Leaves without a gradient (unused in the step's graph) leave their parameter
    /// as it is.
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

/// `n` draws uniform in ±`bound` from `rng`.
pub(crate) fn uniform(rng: &mut SplitMix64, n: usize, bound: f64) -> Vec<f32> {
    (0..n)
        .map(|_| (bound * (2.0 * rng.uniform() - 1.0)) as f32)
        .collect()
}

/// `x · W + b` for rows `x` `[n, fan_in]`, with `W` kept flat as `[fan_in, fan_out]`.
pub(crate) fn linear(
    x: Tensor<2>,
    weight: &Tensor<1>,
    bias: &Tensor<1>,
    fan_in: usize,
    fan_out: usize,
) -> Tensor<2> {
    x.matmul(weight.clone().reshape([fan_in, fan_out])) + bias.clone().unsqueeze::<2>()
}
