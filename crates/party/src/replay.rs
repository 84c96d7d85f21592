//! The model party replaying its own computation on what it recorded: its slice's output on
//! received activations, and the gradients of its trainable weights (or of its input) for a
//! chosen output gradient. Attacks that reason about weight gradients (BLI) build on these;
//! the slice computes exactly as in [`crate::ModelParty`]'s training step.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use splitlm_nn::Hidden;
use splitlm_protocol::OutputKind;
use splitlm_zoo::AnyModel;

use crate::PartyError;
use crate::observe::Observation;
use crate::slice::{NamedGradient, host_gradients};
use crate::wire::{self, expect_shape};

/// The output of `model` on `hidden` (its blocks, then its top if it holds one), packed as it
/// crosses the cut ([`wire::pack_output`]).
pub fn slice_output(
    model: &AnyModel,
    hidden: Hidden,
) -> Result<(OutputKind, Tensor<3>), PartyError> {
    Ok(wire::pack_output(crate::model::run_slice(model, hidden)?))
}

/// The gradients of `model`'s trainable weights when its output on `hidden` receives
/// `output_grad` (packed like the output): the model party's backward pass, replayed. `model`
/// and `hidden` live on one autodiff device.
pub fn weight_gradients(
    model: &AnyModel,
    hidden: Hidden,
    output_grad: Tensor<3>,
) -> Result<Vec<NamedGradient>, PartyError> {
    let (_, output) = slice_output(model, hidden)?;
    expect_shape(
        &output_grad.dims(),
        &output.dims(),
        "the replayed output gradient",
    )?;
    let grads = (output * output_grad).sum().backward();
    let params = GradientsParams::from_grads(grads, model);
    Ok(host_gradients(model, &params))
}

/// The gradient of `model`'s input states when its output on `hidden` receives `output_grad`
/// (packed like the output): what the model party would send back.
pub fn input_gradient(
    model: &AnyModel,
    hidden: Hidden,
    output_grad: Tensor<3>,
) -> Result<Tensor<3>, PartyError> {
    let leaf = hidden.states.clone().require_grad();
    let (_, output) = slice_output(model, hidden.with_states(leaf.clone()))?;
    expect_shape(
        &output_grad.dims(),
        &output.dims(),
        "the replayed output gradient",
    )?;
    let grads = (output * output_grad).sum().backward();
    Ok(leaf
        .grad(&grads)
        .map(Tensor::from_inner)
        .unwrap_or_else(|| leaf.zeros_like()))
}

impl Observation {
    /// The activations of this step as the model party received them, on `device`.
    pub fn received(&self, device: &Device) -> Result<Hidden, PartyError> {
        wire::hidden(&self.hidden, &self.attention_mask, &self.positions, device)
    }
}
