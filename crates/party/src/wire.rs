//! Tensors to protocol frames and back, with the checks a party owes its peer's input.

use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_nn::HeadOutput;
use splitlm_protocol::{OutputKind, TensorFrame, WireDType};

use crate::PartyError;

/// A float tensor as a frame of `dtype` (f32, f16 or bf16).
pub fn float_frame<const D: usize>(
    tensor: Tensor<D>,
    dtype: WireDType,
) -> Result<TensorFrame, PartyError> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| PartyError::BadTensor(format!("reading a float tensor: {e:?}")))?;
    Ok(TensorFrame::from_f32(shape, &values, dtype)?)
}

/// An integer tensor (mask, positions) as an i64 frame.
pub fn int_frame<const D: usize>(tensor: Tensor<D, Int>) -> Result<TensorFrame, PartyError> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .try_into_vec_as::<i64>()
        .map_err(|e| PartyError::BadTensor(format!("reading an int tensor: {e:?}")))?;
    Ok(TensorFrame::from_i64(shape, &values)?)
}

/// A received float frame as a rank-`D` tensor on `device`; refuses other ranks and
/// non-finite values, naming `what` was received.
pub fn float_tensor<const D: usize>(
    frame: &TensorFrame,
    device: &Device,
    what: &str,
) -> Result<Tensor<D>, PartyError> {
    check_rank(frame, D, what)?;
    let values = frame.to_f32()?;
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        return Err(PartyError::BadTensor(format!(
            "{what} holds a non-finite value ({}) at element {bad}",
            values[bad]
        )));
    }
    Ok(Tensor::from_data(
        TensorData::new(values, frame.shape.clone()),
        device,
    ))
}

/// A received integer frame as a rank-`D` tensor on `device`.
pub fn int_tensor<const D: usize>(
    frame: &TensorFrame,
    device: &Device,
    what: &str,
) -> Result<Tensor<D, Int>, PartyError> {
    check_rank(frame, D, what)?;
    let values = frame.to_i64()?;
    Ok(Tensor::from_data(
        TensorData::new(values, frame.shape.clone()),
        device,
    ))
}

/// Checks that a received tensor has the shape expected of it.
pub fn expect_shape(found: &[usize], expected: &[usize], what: &str) -> Result<(), PartyError> {
    if found != expected {
        return Err(PartyError::BadTensor(format!(
            "{what} has shape {found:?}, expected {expected:?}"
        )));
    }
    Ok(())
}

fn check_rank(frame: &TensorFrame, rank: usize, what: &str) -> Result<(), PartyError> {
    if frame.shape.len() != rank {
        return Err(PartyError::BadTensor(format!(
            "{what} has shape {:?}, expected rank {rank}",
            frame.shape
        )));
    }
    Ok(())
}

/// A task-head output as one rank-3 tensor (span logits stacked as `[b, s, 2]`, class logits
/// as `[b, 1, classes]`); [`wire_view`] gives the shape it travels in.
pub fn pack_output(output: HeadOutput) -> (OutputKind, Tensor<3>) {
    match output {
        HeadOutput::Hidden(t) => (OutputKind::Hidden, t),
        HeadOutput::LmLogits(t) => (OutputKind::LmLogits, t),
        HeadOutput::ClassLogits(t) => (OutputKind::ClassLogits, t.unsqueeze_dim(1)),
        HeadOutput::SpanLogits { start, end } => (
            OutputKind::SpanLogits,
            Tensor::stack::<3>(vec![start, end], 2),
        ),
    }
}

/// Activations as they crossed (states, attention mask, positions) on `device`.
pub fn hidden(
    states: &TensorFrame,
    attention_mask: &TensorFrame,
    positions: &TensorFrame,
    device: &Device,
) -> Result<splitlm_nn::Hidden, PartyError> {
    Ok(splitlm_nn::Hidden {
        states: float_tensor::<3>(states, device, "hidden states")?,
        attention_mask: int_tensor::<2>(attention_mask, device, "the attention mask")?,
        positions: int_tensor::<2>(positions, device, "positions")?,
    })
}

/// Reads a received output frame back into a rank-3 tensor (see [`pack_output`]).
pub fn output_tensor(
    kind: OutputKind,
    frame: &TensorFrame,
    device: &Device,
) -> Result<Tensor<3>, PartyError> {
    Ok(match kind {
        OutputKind::ClassLogits => {
            float_tensor::<2>(frame, device, "class logits")?.unsqueeze_dim(1)
        }
        OutputKind::SpanLogits => {
            let t = float_tensor::<3>(frame, device, "span logits")?;
            if t.dims()[2] != 2 {
                return Err(PartyError::BadTensor(format!(
                    "span logits have shape {:?}, expected [batch, seq, 2]",
                    t.dims()
                )));
            }
            t
        }
        OutputKind::Hidden => float_tensor::<3>(frame, device, "hidden states")?,
        OutputKind::LmLogits => float_tensor::<3>(frame, device, "LM logits")?,
    })
}

/// The head output a packed tensor stands for.
pub fn unpack_output(kind: OutputKind, packed: Tensor<3>) -> HeadOutput {
    match kind {
        OutputKind::Hidden => HeadOutput::Hidden(packed),
        OutputKind::LmLogits => HeadOutput::LmLogits(packed),
        OutputKind::ClassLogits => HeadOutput::ClassLogits(packed.squeeze_dim(1)),
        OutputKind::SpanLogits => {
            let [b, s, _] = packed.dims();
            HeadOutput::SpanLogits {
                start: packed.clone().narrow(2, 0, 1).reshape([b, s]),
                end: packed.narrow(2, 1, 1).reshape([b, s]),
            }
        }
    }
}

/// The packed tensor in the shape it travels with.
pub fn wire_view(packed: Tensor<3>, kind: OutputKind) -> WireTensor {
    match kind {
        OutputKind::ClassLogits => WireTensor::Rank2(packed.squeeze_dim(1)),
        _ => WireTensor::Rank3(packed),
    }
}

/// A float tensor of rank 2 or 3, as outputs and their gradients travel.
pub enum WireTensor {
    /// Class logits and their gradient.
    Rank2(Tensor<2>),
    /// Everything else.
    Rank3(Tensor<3>),
}

impl WireTensor {
    /// As a frame of `dtype`.
    pub fn into_frame(self, dtype: WireDType) -> Result<TensorFrame, PartyError> {
        match self {
            WireTensor::Rank2(t) => float_frame(t, dtype),
            WireTensor::Rank3(t) => float_frame(t, dtype),
        }
    }
}
