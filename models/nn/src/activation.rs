//! Feed-forward activations named as in Hugging Face configs.

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, gelu_approximate, relu, silu};

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
            Self::Gelu => gelu(x),
            Self::GeluTanh => gelu_approximate(x),
            Self::Relu => relu(x),
            Self::Silu => silu(x),
        }
    }
}
