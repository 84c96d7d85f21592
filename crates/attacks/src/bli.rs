//! BLI, batch label inference by gradient matching (after the reference's
//! `BatchLabelReconstruction`): from a training step the model party served, optimise dummy
//! labels so that the gradient they would induce matches the gradient it received.
//!
//! The model party knows its own output (the logits it sent, Head–Tail with the classifier at
//! the model party) and the batch size, so for the data party's mean softmax cross-entropy a
//! dummy soft label `softmax(D)` induces the output gradient `(softmax(logits) − softmax(D))/b`.
//! The reference matches the gradients of the model party's trainable weights, which are
//! `Jᵀ·G` for the slice's Jacobian `J` and the output gradient `G`; matching those needs a
//! second-order autodiff pass that Burn does not offer, so BLI matches `G` itself — for a
//! trained classifier over a batch no larger than its input width, `Jᵀ` is injective and both
//! objectives have the same minimisers.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use splitlm_protocol::OutputKind;

use crate::label::LabelGuess;
use crate::optimise::adam;
use crate::{AttackError, AttackerView};

/// BLI settings (the reference's defaults: lr 0.05, 500 Adam steps).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BliSettings {
    /// Adam steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
}

impl Default for BliSettings {
    fn default() -> Self {
        Self {
            steps: 500,
            lr: 0.05,
        }
    }
}

fn fail(reason: impl Into<String>) -> AttackError {
    AttackError {
        attack: "bli",
        reason: reason.into(),
    }
}

/// Runs BLI on every observed step (each its own problem); one guess per observed sample, the
/// score being the dummy label's probability of the guessed class.
pub fn bli(
    view: &AttackerView,
    settings: &BliSettings,
    device: &Device,
) -> Result<Vec<LabelGuess>, AttackError> {
    if view.observations.is_empty() {
        return Err(fail("no training step was observed"));
    }
    let inner = device.clone().inner();
    let mut guesses = Vec::new();
    for o in &view.observations {
        if o.output_kind != OutputKind::ClassLogits {
            return Err(fail(format!(
                "step {} returned {:?}; BLI needs the classifier on the model party (Head–Tail)",
                o.step, o.output_kind
            )));
        }
        let &[n, classes] = o.output.shape.as_slice() else {
            return Err(fail(format!(
                "step {}: logits of shape {:?}, expected [b, classes]",
                o.step, o.output.shape
            )));
        };
        if o.output_grad.shape != o.output.shape {
            return Err(fail(format!(
                "step {}: gradient of shape {:?} for logits of shape {:?}",
                o.step, o.output_grad.shape, o.output.shape
            )));
        }
        let frame = |f: &splitlm_protocol::TensorFrame| -> Result<Tensor<2>, AttackError> {
            let values = f.to_f32().map_err(|e| fail(e.to_string()))?;
            Ok(Tensor::from_data(
                TensorData::new(values, [n, classes]),
                &inner,
            ))
        };
        let predicted = Tensor::from_inner(softmax(frame(&o.output)?, 1));
        let observed = Tensor::from_inner(frame(&o.output_grad)?);
        let batch = o.batch_rows.max(n) as f64;
        let dummy = adam(
            Tensor::<2>::zeros([n, classes], &inner),
            settings.steps,
            settings.lr,
            "bli",
            |d| {
                let induced = (predicted.clone() - softmax(d, 1)) / batch;
                Ok((induced - observed.clone()).powi_scalar(2).sum())
            },
        )?;
        let probabilities = softmax(dummy, 1)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| fail(format!("{e:?}")))?;
        guesses.extend(probabilities.chunks(classes).map(|row| {
            let (label, p) =
                row.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, &p)| {
                        if p > best.1 { (i, p) } else { best }
                    });
            LabelGuess {
                label,
                score: p as f64,
            }
        }));
    }
    Ok(guesses)
}
