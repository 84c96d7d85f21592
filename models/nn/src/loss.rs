//! Training losses over a task head's output. They run where the labels are: the data party.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

use crate::{HeadOutput, ModelError};

/// The supervision of one batch.
#[derive(Debug, Clone)]
pub enum Labels {
    /// Class ids `[batch]` for sequence classification (cross-entropy).
    Classes(Tensor<1, Int>),
    /// Targets `[batch]` for a one-output regression head (mean squared error).
    Scores(Tensor<1>),
    /// Next-token targets `[batch, seq]` aligned with the logits (`targets[:, t]` is the token
    /// after position `t`) and per-position weights (1 = trained, 0 = ignored: prompt, pads).
    Tokens {
        /// Token ids.
        targets: Tensor<2, Int>,
        /// Loss weight of each position.
        weights: Tensor<2>,
    },
    /// Answer start and end token indices `[batch]` for span QA.
    Spans {
        /// Start index.
        start: Tensor<1, Int>,
        /// End index.
        end: Tensor<1, Int>,
    },
}

impl Labels {
    /// Next-token targets for causal LM training: position `t` predicts token `t + 1`, and only
    /// positions whose next token has `trained[b, t + 1] = 1` count (set it to 0 for prompt and
    /// padding tokens).
    pub fn next_tokens(input_ids: &Tensor<2, Int>, trained: &Tensor<2, Int>) -> Self {
        let [b, s] = input_ids.dims();
        let device = input_ids.device();
        let shift = |t: &Tensor<2, Int>| {
            Tensor::cat(
                vec![
                    t.clone().narrow(1, 1, s - 1),
                    Tensor::zeros([b, 1], &device),
                ],
                1,
            )
        };
        Labels::Tokens {
            targets: shift(input_ids),
            weights: shift(trained).float(),
        }
    }
}

/// The mean loss of `output` against `labels`, a one-element tensor.
pub fn loss(output: &HeadOutput, labels: &Labels) -> Result<Tensor<1>, ModelError> {
    match (output, labels) {
        (HeadOutput::ClassLogits(logits), Labels::Classes(classes)) => {
            check_batch(logits.dims()[0], classes.dims()[0])?;
            Ok(cross_entropy(logits.clone(), classes.clone()))
        }
        (HeadOutput::ClassLogits(logits), Labels::Scores(targets)) => {
            let [b, outputs] = logits.dims();
            check_batch(b, targets.dims()[0])?;
            if outputs != 1 {
                return Err(ModelError::Input(format!(
                    "regression needs a head with one output, this one has {outputs}"
                )));
            }
            let diff = logits.clone().reshape([b]) - targets.clone();
            Ok(diff.powi_scalar(2).mean())
        }
        (HeadOutput::LmLogits(logits), Labels::Tokens { targets, weights }) => {
            let [b, s, vocab] = logits.dims();
            if targets.dims() != [b, s] || weights.dims() != [b, s] {
                return Err(ModelError::Input(format!(
                    "token targets {:?} / weights {:?} do not match logits [{b}, {s}, _]",
                    targets.dims(),
                    weights.dims()
                )));
            }
            let logp = log_softmax(logits.clone().reshape([b * s, vocab]), 1);
            let picked = logp
                .gather(1, targets.clone().reshape([b * s, 1]))
                .reshape([b * s]);
            let weights = weights.clone().reshape([b * s]);
            let total = weights.clone().sum();
            // An all-ignored batch has zero loss, not 0/0.
            Ok(-(picked * weights).sum() / total.clamp_min(1.0))
        }
        (HeadOutput::SpanLogits { start, end }, Labels::Spans { start: s, end: e }) => {
            check_batch(start.dims()[0], s.dims()[0])?;
            let loss =
                cross_entropy(start.clone(), s.clone()) + cross_entropy(end.clone(), e.clone());
            Ok(loss / 2.0)
        }
        (output, labels) => Err(ModelError::Input(format!(
            "labels of kind {} do not fit a head producing {}",
            labels_kind(labels),
            output_kind(output)
        ))),
    }
}

/// Mean cross-entropy of `[batch, classes]` logits against class ids.
fn cross_entropy(logits: Tensor<2>, classes: Tensor<1, Int>) -> Tensor<1> {
    let b = logits.dims()[0];
    let logp = log_softmax(logits, 1);
    -logp.gather(1, classes.reshape([b, 1])).mean()
}

fn check_batch(outputs: usize, labels: usize) -> Result<(), ModelError> {
    if outputs != labels {
        return Err(ModelError::Input(format!(
            "{labels} labels for a batch of {outputs}"
        )));
    }
    Ok(())
}

fn labels_kind(labels: &Labels) -> &'static str {
    match labels {
        Labels::Classes(_) => "classes",
        Labels::Scores(_) => "scores",
        Labels::Tokens { .. } => "tokens",
        Labels::Spans { .. } => "spans",
    }
}

fn output_kind(output: &HeadOutput) -> &'static str {
    match output {
        HeadOutput::Hidden(_) => "hidden states",
        HeadOutput::LmLogits(_) => "LM logits",
        HeadOutput::ClassLogits(_) => "class logits",
        HeadOutput::SpanLogits { .. } => "span logits",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use splitlm_device::DeviceSpec;

    fn device() -> Device {
        DeviceSpec::Cpu
            .device()
            .expect("the CPU backend is compiled in")
    }

    #[test]
    fn cross_entropy_matches_a_hand_computed_value() {
        let d = device();
        // logits [0, ln 3] → p = [1/4, 3/4]; label 1 → −ln(3/4) = 0.28768.
        let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 3f32.ln()], [1, 2]), &d);
        let classes = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64], [1]), &d);
        let l = loss(&HeadOutput::ClassLogits(logits), &Labels::Classes(classes)).unwrap();
        let v: f32 = l.into_scalar();
        assert!((v - 0.287_682).abs() < 1e-5, "{v}");
    }

    #[test]
    fn token_loss_ignores_zero_weight_positions() {
        let d = device();
        // Two positions over a vocabulary of 2; the second is ignored whatever its logits.
        let logits = Tensor::<3>::from_data(
            TensorData::new(vec![0.0f32, 0.0, 100.0, -100.0], [1, 2, 2]),
            &d,
        );
        let targets = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1], [1, 2]), &d);
        let weights = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &d);
        let l = loss(
            &HeadOutput::LmLogits(logits),
            &Labels::Tokens { targets, weights },
        );
        let v: f32 = l.unwrap().into_scalar();
        assert!((v - 2f32.ln()).abs() < 1e-5, "{v}");
    }

    #[test]
    fn next_tokens_shift_targets_and_weights() {
        let d = device();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![5i64, 6, 7], [1, 3]), &d);
        let trained = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1, 1], [1, 3]), &d);
        let Labels::Tokens { targets, weights } = Labels::next_tokens(&ids, &trained) else {
            unreachable!()
        };
        assert_eq!(
            targets.into_data().try_into_vec_as::<i64>().unwrap(),
            vec![6, 7, 0]
        );
        assert_eq!(
            weights.into_data().try_into_vec_as::<f32>().unwrap(),
            vec![1.0, 1.0, 0.0]
        );
    }

    #[test]
    fn mismatched_labels_are_refused() {
        let d = device();
        let logits = Tensor::<2>::zeros([2, 3], &d);
        let classes = Tensor::<1, Int>::zeros([3], &d);
        let err = loss(
            &HeadOutput::ClassLogits(logits.clone()),
            &Labels::Classes(classes),
        );
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("3 labels for a batch of 2")
        );
        let scores = Tensor::<1>::zeros([2], &d);
        let err = loss(&HeadOutput::ClassLogits(logits), &Labels::Scores(scores));
        assert!(err.unwrap_err().to_string().contains("one output"));
    }
}
