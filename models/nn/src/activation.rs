//! Feed-forward activations named as in Hugging Face configs.

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu_approximate, relu, silu};

use crate::ModelError;

/// A feed-forward nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    /// Exact GELU, `x·Φ(x)` (HF `gelu`).
    Gelu,
    /// Tanh-approximated GELU (HF `gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// ReLU.
    Relu,
    /// SiLU / swish (the gate of SwiGLU).
    Silu,
}

/// `x·Φ(x) = x·(1 + erf(x/√2))/2`, written out: Burn's fused `gelu` differentiates as the tanh
/// approximation does, so its gradient drifts from PyTorch's (1.5e-4 of its norm on the BERT
/// fixture); through `erf` the autodiff derivative is the exact `Φ(x) + x·φ(x)`.
fn exact_gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    (x.clone() * std::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        * x
        * 0.5
}

impl Activation {
    /// Parses a Hugging Face `hidden_act` / `activation_function` value.
    pub fn from_hf(name: &str, origin: &str) -> Result<Self, ModelError> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            "silu" | "swish" => Ok(Self::Silu),
            other => Err(ModelError::config(
                origin,
                format!("unsupported activation `{other}`"),
            )),
        }
    }

    /// Applies the activation.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Gelu => exact_gelu(x),
            Self::GeluTanh => gelu_approximate(x),
            Self::Relu => relu(x),
            Self::Silu => silu(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use super::*;

    /// The derivative of exact GELU is `Φ(x) + x·φ(x)`; computed here in f64 from that formula.
    #[test]
    fn exact_gelu_has_the_exact_derivative() {
        let device = splitlm_device::DeviceSpec::Cpu.device().unwrap().autodiff();
        let points = [-3.0f32, -1.5, -0.5, 0.0, 0.3, 1.0, 2.5];
        let x = Tensor::<1>::from_data(TensorData::new(points.to_vec(), [points.len()]), &device)
            .require_grad();
        let grads = Activation::Gelu.forward(x.clone()).sum().backward();
        let got: Vec<f32> = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for (&p, g) in points.iter().zip(got) {
            let p = p as f64;
            let cdf = 0.5 * (1.0 + libm_erf(p / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * p * p).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want = cdf + p * pdf;
            assert!((g as f64 - want).abs() < 1e-5, "x = {p}: {g} vs {want}");
        }
    }

    /// erf by its Taylor series (|x| ≤ 3 needs about 40 terms for f64 precision).
    fn libm_erf(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        for n in 1..80 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
}
