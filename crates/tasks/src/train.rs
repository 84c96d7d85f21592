//! The training loop, the same for a split model (both parties in this process) and for the
//! whole model in one place, so that the two can be compared run for run: full epochs of
//! shuffled batches, evaluation every N steps and at the end, early stopping on the evaluation
//! metric, checkpoints of every party's trainable state, resumption from the latest one.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use splitlm_nn::generate::{Sampling, generate};
use splitlm_nn::{HeadOutput, Labels, TokenBatch, TransformerSlice, loss};
use splitlm_party::{
    DataParty, ModelParty, PartyError, PartySlice, SessionReport, SplitGeneration,
};
use splitlm_protocol::Traffic;

use crate::batching::Encoder;
use crate::checkpoint::{self, FitProgress};
use crate::dataset::{Example, Target, permutation};
use crate::error::TaskError;
use crate::metrics;

/// Something that trains on batches, predicts and generates: a split model driven from its
/// data party, or the whole model.
pub trait Learner {
    /// The autodiff device batches must be on.
    fn device(&self) -> Device;
    /// One optimizer step; returns the batch's mean loss.
    fn train_step(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<f32, TaskError>;
    /// The task head's output, without training.
    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError>;
    /// Extends `prompt` (a causal LM); split learners also report the bytes of each step.
    fn generate(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
    ) -> Result<SplitGeneration, TaskError>;
    /// Saves every party's trainable state into `dir`.
    fn save_state(&self, dir: &Path) -> Result<(), TaskError>;
    /// Restores what [`Learner::save_state`] saved.
    fn restore_state(&mut self, dir: &Path) -> Result<(), TaskError>;
    /// Bytes the data party moved so far (split learners).
    fn traffic(&self) -> Option<Traffic> {
        None
    }
}

/// A split model in this process: the data party, and the model party serving it on another
/// thread (kept at hand to checkpoint it).
pub struct Split {
    data: DataParty,
    model: ModelParty,
    server: JoinHandle<Result<SessionReport, PartyError>>,
}

impl Split {
    /// Wraps a connected data party and the model party serving it on `server`.
    pub fn new(
        data: DataParty,
        model: ModelParty,
        server: JoinHandle<Result<SessionReport, PartyError>>,
    ) -> Self {
        Self {
            data,
            model,
            server,
        }
    }

    /// The data party.
    pub fn data(&mut self) -> &mut DataParty {
        &mut self.data
    }

    /// The model party.
    pub fn model(&self) -> &ModelParty {
        &self.model
    }

    /// Ends the session; returns what the model party served.
    pub fn finish(self) -> Result<SessionReport, TaskError> {
        self.data.finish()?;
        self.server
            .join()
            .map_err(|_| TaskError::Config("the model party's thread panicked".into()))?
            .map_err(TaskError::from)
    }
}

const MODEL_PARTY_STATE: &str = "model-party";

impl Learner for Split {
    fn device(&self) -> Device {
        self.data.device()
    }

    fn train_step(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<f32, TaskError> {
        Ok(self.data.train_step(batch, labels)?.loss)
    }

    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError> {
        Ok(self.data.eval_step(batch)?)
    }

    fn generate(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
    ) -> Result<SplitGeneration, TaskError> {
        Ok(self.data.generate(prompt, sampling)?)
    }

    fn save_state(&self, dir: &Path) -> Result<(), TaskError> {
        self.data.save_state(dir)?;
        Ok(self.model.save_state(dir, MODEL_PARTY_STATE)?)
    }

    fn restore_state(&mut self, dir: &Path) -> Result<(), TaskError> {
        self.data.restore_state(dir)?;
        Ok(self.model.restore_state(dir, MODEL_PARTY_STATE)?)
    }

    fn traffic(&self) -> Option<Traffic> {
        Some(self.data.traffic())
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
        if !value.is_finite() {
            return Err(TaskError::Config(format!("the loss is {value}")));
        }
        self.slice.apply_gradients(loss.backward());
        Ok(value)
    }

    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError> {
        let inner = self.device.clone().inner();
        let model = self.slice.model().valid();
        Ok(model.forward(&batch.to_device(&inner), None)?)
    }

    fn generate(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
    ) -> Result<SplitGeneration, TaskError> {
        let model = self.slice.model().valid();
        let generation = generate(&model, prompt, sampling, &self.device.clone().inner())?;
        Ok(SplitGeneration {
            generation,
            prompt_bytes: Default::default(),
            step_bytes: Vec::new(),
        })
    }

    fn save_state(&self, dir: &Path) -> Result<(), TaskError> {
        Ok(self.slice.save_state(dir, "whole")?)
    }

    fn restore_state(&mut self, dir: &Path) -> Result<(), TaskError> {
        Ok(self.slice.restore_state(dir, "whole")?)
    }
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
    /// Evaluate every this many steps; 0 evaluates only at the end.
    pub eval_every: usize,
    /// Stop after this many evaluations in a row without a better metric; 0 never stops early.
    pub patience: usize,
    /// Where checkpoints go (none: no checkpoints).
    pub checkpoint_dir: Option<PathBuf>,
    /// Save a checkpoint every this many steps (and at the end); 0 only at the end.
    pub checkpoint_every: usize,
    /// Continue from the latest checkpoint in `checkpoint_dir` when there is one.
    pub resume: bool,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 16,
            seed: 0,
            eval_every: 0,
            patience: 0,
            checkpoint_dir: None,
            checkpoint_every: 0,
            resume: false,
        }
    }
}

impl FitConfig {
    /// Optimizer steps `n` training examples take.
    pub fn steps_for(&self, n: usize) -> usize {
        self.epochs * n.div_ceil(self.batch_size.max(1))
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), TaskError> {
        if self.batch_size == 0 || self.epochs == 0 {
            return Err(TaskError::Config(
                "train.epochs and train.batch_size must be at least 1".into(),
            ));
        }
        if self.resume && self.checkpoint_dir.is_none() {
            return Err(TaskError::Config(
                "train.resume needs train.checkpoint_dir".into(),
            ));
        }
        Ok(())
    }
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FitReport {
    /// Optimizer steps taken in all (a resumed run counts the steps before it too).
    pub steps: usize,
    /// Examples trained on (with repeats across epochs).
    pub examples: usize,
    /// Tokens trained on, padding excluded.
    pub tokens: usize,
    /// Mean loss of each epoch.
    pub epoch_losses: Vec<f32>,
    /// `(step, metric)` of every evaluation.
    pub evaluations: Vec<(usize, f64)>,
    /// The best evaluation.
    pub best: Option<(usize, f64)>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// The step of the checkpoint the run resumed from.
    pub resumed_from: Option<usize>,
    /// Wall time of training in this process, seconds (evaluations and checkpoints excluded).
    pub seconds: f64,
    /// Wall time of the evaluations, seconds.
    pub eval_seconds: f64,
    /// Tokens trained in this process (excluding those before a resume).
    pub tokens_this_run: usize,
}

/// What [`fit`] reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum FitEvent {
    /// A step finished.
    Step {
        /// Steps taken so far.
        step: usize,
        /// The batch's loss.
        loss: f32,
    },
    /// An evaluation finished.
    Evaluated {
        /// At this step.
        step: usize,
        /// The metric.
        metric: f64,
    },
    /// A checkpoint was written.
    Checkpointed {
        /// At this step.
        step: usize,
        /// Its directory.
        dir: PathBuf,
    },
    /// The run resumed from a checkpoint.
    Resumed {
        /// Steps already taken.
        step: usize,
    },
}

/// Evaluates a learner, returning a metric where higher is better.
pub type Evaluate<'a> = dyn FnMut(&mut dyn Learner) -> Result<f64, TaskError> + 'a;

/// Trains `learner` on `data` for `config.epochs` full epochs of shuffled batches, evaluating
/// with `evaluate` every `config.eval_every` steps and at the end, stopping early after
/// `config.patience` evaluations without improvement, checkpointing as configured.
pub fn fit(
    learner: &mut dyn Learner,
    data: &dyn TrainingSet,
    config: &FitConfig,
    mut evaluate: Option<&mut Evaluate<'_>>,
    mut events: impl FnMut(FitEvent),
) -> Result<FitReport, TaskError> {
    config.validate()?;
    if data.is_empty() {
        return Err(TaskError::Config("no training examples".into()));
    }
    let started = Instant::now();
    let device = learner.device();
    let mut progress = FitProgress::default();
    let mut resumed_from = None;
    if let (true, Some(root)) = (config.resume, &config.checkpoint_dir)
        && let Some((dir, saved)) = checkpoint::latest(root)?
    {
        learner.restore_state(&dir)?;
        resumed_from = Some(saved.step);
        events(FitEvent::Resumed { step: saved.step });
        progress = saved;
    }
    let total_steps = config.steps_for(data.len());
    let mut tokens_this_run = 0;
    let mut eval_seconds = 0.0;
    let mut pause = std::time::Duration::ZERO;
    let mut stopped_early = false;
    let mut step = 0;
    'epochs: for epoch in 0..config.epochs {
        let order = permutation(data.len(), config.seed.wrapping_add(epoch as u64));
        for chunk in order.chunks(config.batch_size) {
            step += 1;
            if step <= progress.step {
                continue;
            }
            let (batch, labels) = data.batch(chunk, &device)?;
            let tokens: i64 = batch.attention_mask.clone().sum().into_scalar();
            let loss = learner.train_step(&batch, &labels)?;
            progress.record_step(epoch, chunk.len(), tokens as usize, loss);
            tokens_this_run += tokens as usize;
            events(FitEvent::Step { step, loss });

            let last = step == total_steps;
            if let Some(evaluate) = evaluate.as_deref_mut()
                && (last || (config.eval_every > 0 && step % config.eval_every == 0))
            {
                let evaluating = Instant::now();
                let metric = evaluate(learner)?;
                pause += evaluating.elapsed();
                eval_seconds += evaluating.elapsed().as_secs_f64();
                events(FitEvent::Evaluated { step, metric });
                progress.record_evaluation(step, metric);
                if config.patience > 0 && progress.bad_evaluations >= config.patience {
                    stopped_early = !last;
                }
            }
            if let Some(root) = &config.checkpoint_dir
                && (last
                    || stopped_early
                    || (config.checkpoint_every > 0 && step % config.checkpoint_every == 0))
            {
                let saving = Instant::now();
                let dir = checkpoint::save(root, learner, &progress)?;
                pause += saving.elapsed();
                events(FitEvent::Checkpointed { step, dir });
            }
            if stopped_early {
                break 'epochs;
            }
        }
    }
    Ok(FitReport {
        steps: progress.step,
        examples: progress.examples,
        tokens: progress.tokens,
        epoch_losses: progress.epoch_losses(),
        evaluations: progress.evaluations.clone(),
        best: progress.best,
        stopped_early,
        resumed_from,
        seconds: (started.elapsed() - pause).as_secs_f64(),
        eval_seconds,
        tokens_this_run,
    })
}
