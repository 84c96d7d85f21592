//! Reading a slice's parameters from a checkpoint by their Hugging Face names.

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear, RmsNorm, RmsNormConfig};
use burn::tensor::{Device, Tensor, TensorData};
use splitlm_weights::{HostTensor, TensorSource};

use crate::ModelError;

/// A view of a checkpoint under a name prefix, creating parameters on one device.
///
/// Only the tensors a slice asks for are read, so a party never needs the whole checkpoint in
/// memory.
#[derive(Clone)]
pub struct Weights<'a> {
    source: &'a dyn TensorSource,
    device: Device,
    prefix: String,
}

impl<'a> Weights<'a> {
    /// The root of `source`, creating parameters on `device`.
    pub fn new(source: &'a dyn TensorSource, device: &Device) -> Self {
        Self {
            source,
            device: device.clone(),
            prefix: String::new(),
        }
    }

    /// The view under `segment` (e.g. `encoder.layer.3`).
    pub fn at(&self, segment: impl AsRef<str>) -> Self {
        Self {
            prefix: self.name(segment.as_ref()),
            ..self.clone()
        }
    }

    /// The full name of `leaf` under this view.
    pub fn name(&self, leaf: &str) -> String {
        match (self.prefix.is_empty(), leaf.is_empty()) {
            (true, _) => leaf.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{leaf}", self.prefix),
        }
    }

    /// The device parameters are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the checkpoint has `leaf` under this view.
    pub fn contains(&self, leaf: &str) -> bool {
        self.source.contains(&self.name(leaf))
    }

    /// Reads `leaf` on the host, checking its shape.
    pub fn host(&self, leaf: &str, shape: &[usize]) -> Result<HostTensor, ModelError> {
        Ok(self.source.load_shaped(&self.name(leaf), shape)?)
    }

    /// Reads `leaf` as a tensor of `shape`.
    pub fn tensor<const D: usize>(
        &self,
        leaf: &str,
        shape: [usize; D],
    ) -> Result<Tensor<D>, ModelError> {
        let host = self.host(leaf, &shape)?;
        Ok(Tensor::from_data(
            TensorData::new(host.data, shape),
            &self.device,
        ))
    }

    /// Reads `leaf` as a trainable parameter of `shape`.
    pub fn param<const D: usize>(
        &self,
        leaf: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<D>>, ModelError> {
        Ok(Param::from_tensor(self.tensor(leaf, shape)?))
    }

    /// A PyTorch `nn.Linear` stored as `{leaf}.weight` `[d_out, d_in]` and `{leaf}.bias`.
    pub fn linear(
        &self,
        leaf: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear, ModelError> {
        let layer = self.at(leaf);
        let weight = layer.host("weight", &[d_out, d_in])?;
        let weight = transpose(&weight.data, d_out, d_in);
        Ok(Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(weight, [d_in, d_out]),
                &self.device,
            )),
            bias: layer.optional_bias(bias, d_out)?,
        })
    }

    /// Like [`Weights::linear`], but a layer absent from the checkpoint (a task head on a base
    /// model) is created with N(0, 0.02) weights and zero bias, as Hugging Face initialises heads.
    pub fn linear_or_new(
        &self,
        leaf: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear, ModelError> {
        if self.at(leaf).contains("weight") {
            return self.linear(leaf, d_in, d_out, bias);
        }
        let name = self.name(&format!("{leaf}.weight"));
        log::info!(
            "`{name}` is not in the checkpoint: initialised from N(0, 0.02²) seeded by its name"
        );
        // Drawn from the name, not the device's generator: every party and backend that builds
        // this head gets the same values, so split and unsplit runs start alike.
        let values = crate::seeded::normal(0, &name, d_in * d_out, 0.02);
        Ok(Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(values, [d_in, d_out]),
                &self.device,
            )),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], &self.device))),
        })
    }

    /// A GPT-2 `Conv1D`, stored input-major as `{leaf}.weight` `[d_in, d_out]` and `{leaf}.bias`.
    pub fn conv1d(&self, leaf: &str, d_in: usize, d_out: usize) -> Result<Linear, ModelError> {
        let layer = self.at(leaf);
        Ok(Linear {
            weight: layer.param("weight", [d_in, d_out])?,
            bias: layer.optional_bias(true, d_out)?,
        })
    }

    fn optional_bias(
        &self,
        bias: bool,
        d_out: usize,
    ) -> Result<Option<Param<Tensor<1>>>, ModelError> {
        bias.then(|| self.param("bias", [d_out])).transpose()
    }

    /// An embedding table `{leaf}.weight` `[count, width]`.
    pub fn embedding(
        &self,
        leaf: &str,
        count: usize,
        width: usize,
    ) -> Result<Embedding, ModelError> {
        Ok(Embedding {
            weight: self.at(leaf).param("weight", [count, width])?,
        })
    }

    /// A LayerNorm with `{leaf}.weight` and `{leaf}.bias`.
    pub fn layer_norm(&self, leaf: &str, width: usize, eps: f64) -> Result<LayerNorm, ModelError> {
        let layer = self.at(leaf);
        let mut norm = LayerNormConfig::new(width)
            .with_epsilon(eps)
            .init(&self.device);
        norm.gamma = layer.param("weight", [width])?;
        norm.beta = Some(layer.param("bias", [width])?);
        Ok(norm)
    }

    /// An RMSNorm with `{leaf}.weight`.
    pub fn rms_norm(&self, leaf: &str, width: usize, eps: f64) -> Result<RmsNorm, ModelError> {
        let mut norm = RmsNormConfig::new(width)
            .with_epsilon(eps)
            .init(&self.device);
        norm.gamma = self.at(leaf).param("weight", [width])?;
        Ok(norm)
    }
}

/// Row-major `[rows, cols]` → `[cols, rows]`.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn transposes_row_major_matrices() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // [[1,2,3],[4,5,6]]
        assert_eq!(transpose(&m, 2, 3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }
}
