//! The training loop, the same for a split model and for the whole model: full epochs of
//! shuffled batches, evaluation every N steps and at the end, early stopping on the evaluation
//! metric, checkpoints of every party's trainable state, resumption from the latest one.

use std::path::PathBuf;
use std::time::Instant;

use splitlm_tasks::TaskError;
use splitlm_tasks::dataset::permutation;
use splitlm_tasks::predictor::TrainingSet;

use crate::checkpoint::{self, FitProgress};
use crate::error::TrainError;
use crate::learner::Learner;

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
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.batch_size == 0 || self.epochs == 0 {
            return Err(TrainError::Setting(
                "train.epochs and train.batch_size must be at least 1".into(),
            ));
        }
        if self.resume && self.checkpoint_dir.is_none() {
            return Err(TrainError::Setting(
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
    /// The link to a remote model party broke; it was re-opened and both parties went back
    /// to the newest checkpoint.
    Reconnected {
        /// The checkpoint's step, from which training goes on.
        step: usize,
    },
}

/// Whether `error` is a broken link to the model party (not a refusal or a bad message).
fn is_link_failure(error: &TrainError) -> bool {
    use splitlm_party::PartyError;
    use splitlm_protocol::ProtocolError;
    let party = match error {
        TrainError::Party(party) => Some(party),
        TrainError::Task(splitlm_tasks::TaskError::Predictor(inner)) => inner.downcast_ref(),
        _ => None,
    };
    matches!(
        party,
        Some(PartyError::Protocol(
            ProtocolError::Disconnected | ProtocolError::Io(_)
        ))
    )
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
) -> Result<FitReport, TrainError> {
    config.validate()?;
    if data.is_empty() {
        return Err(TrainError::Setting("no training examples".into()));
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
    loop {
        let mut attempt = || -> Result<(), TrainError> {
            let mut step = 0;
            for epoch in 0..config.epochs {
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
                        return Ok(());
                    }
                }
            }
            Ok(())
        };
        match attempt() {
            Err(e) if is_link_failure(&e) => {
                // A remote model party went away: reconnect, return both parties to the newest
                // checkpoint and go on from there, as a resumed run would.
                let Some(root) = &config.checkpoint_dir else {
                    return Err(e);
                };
                log::warn!("the link to the model party broke ({e}); reconnecting");
                if !learner.reconnect()? {
                    return Err(e);
                }
                let Some((dir, saved)) = checkpoint::latest(root)? else {
                    return Err(TrainError::Setting(format!(
                        "the link to the model party broke before the first checkpoint, so \
                         there is nothing to resume from: {e}"
                    )));
                };
                learner.restore_state(&dir)?;
                events(FitEvent::Reconnected { step: saved.step });
                progress = saved;
            }
            other => {
                other?;
                break;
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
