//! Predicting the held-out examples' labels with the completed model.

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use splitlm_nn::{HeadOutput, Labels, TokenBatch, TransformerSlice};
use splitlm_party::Observation;
use splitlm_party::wire::output_tensor;
use splitlm_protocol::OutputKind;

use super::fail;
use super::train::Completed;
use crate::label::LabelGuess;
use crate::{AttackError, AttackerView};

/// [`super::PredictFrom::CompletedModel`]: surrogate head, body and surrogate tail on each
/// held-out batch.
pub(super) fn from_tokens(
    completed: &Completed,
    evaluation: &[(TokenBatch, Labels)],
) -> Result<Vec<LabelGuess>, AttackError> {
    let mut guesses = Vec::new();
    for (batch, _) in evaluation {
        let output = completed.forward(&batch.to_device(&completed.device))?;
        guesses.extend(guesses_of(output)?);
    }
    Ok(guesses)
}

/// [`super::PredictFrom::Observed`]: the surrogate tail on the body's outputs the model party
/// recorded in the last evaluation steps, one per held-out batch.
pub(super) fn from_observed(
    completed: &Completed,
    view: &AttackerView,
    evaluation: &[(TokenBatch, Labels)],
) -> Result<Vec<LabelGuess>, AttackError> {
    // Evaluation steps cross no gradient: their recorded gradient frame is empty.
    let inference: Vec<&Observation> = view
        .observations
        .iter()
        .filter(|o| o.output_grad.shape.iter().product::<usize>() == 0)
        .collect();
    if inference.len() < evaluation.len() {
        return Err(fail(format!(
            "predict_from = \"observed\" reads the body's outputs on the {} held-out batches, \
             but the model party recorded {} evaluation steps (record them with \
             `ObservationLimits::inference` while the data party evaluates, or set \
             predict_from = \"completed_model\")",
            evaluation.len(),
            inference.len()
        )));
    }
    let observed = &inference[inference.len() - evaluation.len()..];
    let mut guesses = Vec::new();
    for (index, (o, (batch, _))) in observed.iter().zip(evaluation).enumerate() {
        let expected = batch.dims();
        let recorded = o.hidden.shape.get(..2).unwrap_or(&[]);
        if recorded != expected || o.batch_rows != expected[0] {
            return Err(fail(format!(
                "held-out batch {index} is {expected:?} (examples, tokens), but its recorded \
                 evaluation step (step {}) kept {recorded:?} of {} rows: record every row \
                 (raise `max_samples`) and evaluate the held-out batches last, in order",
                o.step, o.batch_rows
            )));
        }
        if o.output_kind != OutputKind::Hidden {
            return Err(fail(format!(
                "evaluation step {} returned {:?}; the surrogate tail reads the body's hidden \
                 states (Head–Body–Tail)",
                o.step, o.output_kind
            )));
        }
        let step_error = |e: splitlm_party::PartyError| fail(format!("step {}: {e}", o.step));
        let received = o.received(&completed.device).map_err(step_error)?;
        let states =
            output_tensor(OutputKind::Hidden, &o.output, &completed.device).map_err(step_error)?;
        let tail = &completed.tail;
        let hidden = tail
            .forward_blocks(received.with_states(states), None)
            .map_err(|e| fail(format!("the surrogate tail, step {}: {e}", o.step)))?;
        let output = tail
            .forward_top(hidden)
            .map_err(|e| fail(format!("the surrogate tail, step {}: {e}", o.step)))?;
        guesses.extend(guesses_of(output)?);
    }
    Ok(guesses)
}

/// The most probable class of each row, scored by its probability.
fn guesses_of(output: HeadOutput) -> Result<Vec<LabelGuess>, AttackError> {
    let HeadOutput::ClassLogits(logits) = output else {
        return Err(fail(
            "the surrogate tail does not produce class logits: model completion predicts the \
             labels of a classification task",
        ));
    };
    let [rows, classes] = logits.dims();
    let probabilities: Tensor<2> = softmax(logits, 1);
    let values = probabilities
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| fail(format!("reading the surrogate's probabilities: {e:?}")))?;
    if values.iter().any(|p| !p.is_finite()) {
        return Err(fail("the surrogate's probabilities are not finite"));
    }
    Ok(values
        .chunks(classes.max(1))
        .take(rows)
        .map(|row| {
            let (label, p) =
                row.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |best, (i, &p)| {
                        if p > best.1 { (i, p) } else { best }
                    });
            LabelGuess {
                label,
                score: f64::from(p),
            }
        })
        .collect())
}
