//! Adam on one free tensor, as the optimising attacks (VMI, RWI, BLI) need it: the tensor
//! lives on the inner (non-autodiff) device between steps, each step differentiates the loss
//! at it.

use burn::tensor::Tensor;

use crate::AttackError;

/// Adam's moment decay rates and stabiliser (PyTorch's defaults, as the reference uses).
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Minimises `loss` over `x` (an inner-device tensor) with `steps` Adam steps of rate `lr`.
pub(crate) fn adam<const D: usize>(
    mut x: Tensor<D>,
    steps: usize,
    lr: f64,
    attack: &'static str,
    mut loss: impl FnMut(Tensor<D>) -> Result<Tensor<1>, AttackError>,
) -> Result<Tensor<D>, AttackError> {
    let mut m = x.zeros_like();
    let mut v = x.zeros_like();
    for step in 1..=steps {
        let leaf = Tensor::from_inner(x.clone()).require_grad();
        let grads = loss(leaf.clone())?.backward();
        let g = leaf.grad(&grads).ok_or(AttackError {
            attack,
            reason: "no gradient reached the optimised tensor".into(),
        })?;
        m = m * BETA1 + g.clone() * (1.0 - BETA1);
        v = v * BETA2 + g.powi_scalar(2) * (1.0 - BETA2);
        let m_hat = m.clone() / (1.0 - BETA1.powi(step as i32));
        let v_hat = v.clone() / (1.0 - BETA2.powi(step as i32));
        x = x - m_hat * lr / (v_hat.sqrt() + EPS);
    }
    Ok(x)
}
