//! What a task needs of a model to score it, and how its training data is cut into batches:
//! [`Predictor`] (implemented by the learners of `splitlm-train`, split or whole) and
//! [`TrainingSet`].

use burn::tensor::Device;
use splitlm_metrics::labels;
use splitlm_nn::generate::{Generation, Sampling};
use splitlm_nn::{HeadOutput, Labels, TokenBatch};

use crate::batching::Encoder;
use crate::dataset::{Example, Target};
use crate::error::TaskError;

/// A model a task can be scored with: a split model driven from its data party, or the whole
/// model.
pub trait Predictor {
    /// The device batches must be on.
    fn device(&self) -> Device;
    /// The task head's output, without training.
    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError>;
    /// Extends `prompt` (a causal LM).
    fn generate(&mut self, prompt: &[u32], sampling: &Sampling) -> Result<Generation, TaskError>;
}

/// Training examples that can be cut into batches with their labels.
pub trait TrainingSet {
    /// Number of examples.
    fn len(&self) -> usize;
    /// Whether there is none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The batch of the examples at `indices`, with its labels, on `device`.
    fn batch(&self, indices: &[usize], device: &Device) -> Result<(TokenBatch, Labels), TaskError>;
}

/// Labelled texts for classification or regression.
pub struct LabelledTexts<'a> {
    /// Turns text into tokens.
    pub encoder: &'a Encoder,
    /// The examples.
    pub examples: &'a [Example],
}

impl TrainingSet for LabelledTexts<'_> {
    fn len(&self) -> usize {
        self.examples.len()
    }

    fn batch(&self, indices: &[usize], device: &Device) -> Result<(TokenBatch, Labels), TaskError> {
        let examples: Vec<Example> = indices.iter().map(|&i| self.examples[i].clone()).collect();
        self.encoder.encode(&examples, device)
    }
}

/// Scores of a classifier on held-out examples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClassificationScores {
    /// Fraction classified right.
    pub accuracy: f64,
    /// F1 of class 1.
    pub f1: f64,
    /// Matthews correlation.
    pub mcc: f64,
    /// Examples scored.
    pub examples: usize,
}

/// Classifies `examples` in batches of `batch_size` and scores the predictions.
pub fn evaluate_classification(
    predictor: &mut dyn Predictor,
    encoder: &Encoder,
    examples: &[Example],
    batch_size: usize,
) -> Result<ClassificationScores, TaskError> {
    let device = predictor.device();
    let mut predictions = Vec::with_capacity(examples.len());
    let mut labels = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let batch = encoder.tokens(chunk, &device)?;
        let logits = predictor
            .predict(&batch)?
            .class_logits()
            .ok_or_else(|| TaskError::Mismatch("the model's head does not classify".into()))?;
        let argmax = logits
            .argmax(1)
            .into_data()
            .try_into_vec_as::<i64>()
            .map_err(|e| TaskError::Config(format!("reading predictions: {e:?}")))?;
        predictions.extend(argmax.into_iter().map(|p| p as usize));
        for e in chunk {
            match e.target {
                Target::Class(c) => labels.push(c),
                Target::Score(_) => {
                    return Err(TaskError::Mismatch(
                        "regression examples given to a classifier".into(),
                    ));
                }
            }
        }
    }
    Ok(ClassificationScores {
        accuracy: labels::accuracy(&predictions, &labels),
        f1: labels::f1_binary(&predictions, &labels),
        mcc: labels::matthews_corrcoef(&predictions, &labels),
        examples: labels.len(),
    })
}
