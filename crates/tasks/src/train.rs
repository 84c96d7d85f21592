//! The training loop, the same for a split model (driven from its data party) and for the
//! whole model in one place, so that the two can be compared run for run.

use std::time::Instant;

use burn::tensor::Device;
use splitlm_nn::{HeadOutput, Labels, TokenBatch, TransformerSlice, loss};
use splitlm_party::{DataParty, PartySlice};

use crate::batching::Encoder;
use crate::dataset::{Example, Target, permutation};
use crate::error::TaskError;
use crate::metrics;

/// Something that trains on batches and predicts: a split model seen from its data party, or
/// a whole model.
pub trait Learner {
    /// The device batches must be on.
    fn device(&self) -> Device;
    /// One optimizer step; returns the batch's mean loss.
    fn train_step(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<f32, TaskError>;
    /// The task head's output, without training.
    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError>;
}

impl Learner for DataParty {
    fn device(&self) -> Device {
        DataParty::device(self)
    }

    fn train_step(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<f32, TaskError> {
        Ok(DataParty::train_step(self, batch, labels)?.loss)
    }

    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError> {
        Ok(self.eval_step(batch)?)
    }
}

/// The whole model trained in one place (the unsplit baseline).
pub struct Whole {
    slice: PartySlice,
    device: Device,
}

impl Whole {
    /// Wraps a slice holding the whole model, on the autodiff `device`.
    pub fn new(slice: PartySlice, device: Device) -> Self {
        Self { slice, device }
    }
}

impl Learner for Whole {
    fn device(&self) -> Device {
        self.device.clone()
    }

    fn train_step(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<f32, TaskError> {
        let loss = loss(&self.slice.model().forward(batch, None)?, labels)?;
        let value: f32 = loss.clone().into_scalar();
        self.slice.apply_gradients(loss.backward());
        Ok(value)
    }

    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError> {
        use burn::module::Module;
        let inner = self.device.clone().inner();
        let model = self.slice.model().valid();
        Ok(model.forward(&batch.to_device(&inner), None)?)
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
    learner: &mut dyn Learner,
    encoder: &Encoder,
    examples: &[Example],
    batch_size: usize,
) -> Result<ClassificationScores, TaskError> {
    let device = learner.device();
    let mut predictions = Vec::with_capacity(examples.len());
    let mut labels = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_size.max(1)) {
        let batch = encoder.tokens(chunk, &device)?;
        let logits = learner
            .predict(&batch)?
            .class_logits()
            .ok_or_else(|| TaskError::Config("the model's head does not classify".into()))?;
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
                    return Err(TaskError::Config(
                        "regression examples given to a classifier".into(),
                    ));
                }
            }
        }
    }
    Ok(ClassificationScores {
        accuracy: metrics::accuracy(&predictions, &labels),
        f1: metrics::f1_binary(&predictions, &labels),
        mcc: metrics::matthews_corrcoef(&predictions, &labels),
        examples: labels.len(),
    })
}

/// How to train.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitConfig {
    /// Passes over the training examples (each pass is whole).
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Shuffling seed (epoch `e` uses `seed + e`).
    pub seed: u64,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 16,
            seed: 0,
        }
    }
}

impl FitConfig {
    /// Optimizer steps `n` training examples take.
    pub fn steps_for(&self, n: usize) -> usize {
        self.epochs * n.div_ceil(self.batch_size.max(1))
    }
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FitReport {
    /// Optimizer steps taken.
    pub steps: usize,
    /// Examples trained on (with repeats across epochs).
    pub examples: usize,
    /// Tokens trained on, padding excluded.
    pub tokens: usize,
    /// Mean loss of each epoch.
    pub epoch_losses: Vec<f32>,
    /// Wall time of training, seconds.
    pub seconds: f64,
}

/// Trains `learner` on `train` for `config.epochs` full epochs, calling `progress(step, loss)`
/// after each step.
pub fn fit(
    learner: &mut dyn Learner,
    encoder: &Encoder,
    train: &[Example],
    config: &FitConfig,
    mut progress: impl FnMut(usize, f32),
) -> Result<FitReport, TaskError> {
    if config.batch_size == 0 || config.epochs == 0 {
        return Err(TaskError::Config(
            "epochs and batch_size must be at least 1".into(),
        ));
    }
    if train.is_empty() {
        return Err(TaskError::Config("no training examples".into()));
    }
    let started = Instant::now();
    let device = learner.device();
    let mut report = FitReport {
        steps: 0,
        examples: 0,
        tokens: 0,
        epoch_losses: Vec::new(),
        seconds: 0.0,
    };
    for epoch in 0..config.epochs {
        let order = permutation(train.len(), config.seed.wrapping_add(epoch as u64));
        let mut loss_sum = 0.0f64;
        let mut batches = 0usize;
        for chunk in order.chunks(config.batch_size) {
            let examples: Vec<Example> = chunk.iter().map(|&i| train[i].clone()).collect();
            let (batch, labels) = encoder.encode(&examples, &device)?;
            let tokens: i64 = batch.attention_mask.clone().sum().into_scalar();
            let loss = learner.train_step(&batch, &labels)?;
            report.steps += 1;
            report.examples += examples.len();
            report.tokens += tokens as usize;
            loss_sum += loss as f64;
            batches += 1;
            progress(report.steps, loss);
        }
        report.epoch_losses.push((loss_sum / batches as f64) as f32);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
