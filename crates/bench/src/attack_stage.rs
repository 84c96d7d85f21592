//! The benchmark's attack stage. While a split run trains, the model party records the
//! training steps its attacker observes and [`crate::truth::TruthRecorder`] keeps what the data
//! party really sent on those steps. After training, label attacks run on that recording; the
//! inversion attacks, by default, on samples the data party sends through its trained head
//! afterwards (as the reference does: `[attacker] target`). Every attack runs under the
//! declared prior and is scored against the truth.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::Device;
use splitlm_attacks::score::{self, AttackScores, Truth};
use splitlm_attacks::{
    AttackConfig, AttackKind, AttackerView, Auxiliary, BisrMode, BliObjective, HeadVersion, Prior,
    Surrogate, fresh_task_head,
};
use splitlm_nn::{Labels, TokenBatch};
use splitlm_party::ObservationLimits;
use splitlm_tasks::{Predictor, TaskData};
use splitlm_train::Split;
use splitlm_zoo::AnyModel;

use crate::config::{InversionTarget, RunConfig, SampleSplit};
use crate::model::OpenedModel;
use crate::records::{AttackIdentity, AttackRecord, AttackTarget, PriorRecord, Setting};
use crate::truth::real_tokens;

/// The observation limits of `config`'s attacker during training.
pub fn limits(config: &RunConfig) -> ObservationLimits {
    let matches_weights = config
        .attacks
        .iter()
        .any(|a| matches!(a, AttackConfig::Bli(s) if s.objective == BliObjective::WeightGradients));
    ObservationLimits {
        from_step: config.attacker.observe_from,
        steps: config.attacker.observe_steps,
        max_samples: config.attacker.max_samples,
        weight_gradients: matches_weights,
        slices: matches_weights,
        inference: false,
    }
}

/// One attack's result.
pub struct AttackOutcome {
    /// The attack as configured.
    pub config: AttackConfig,
    /// Its scores against the truth.
    pub scores: AttackScores,
    /// Wall time of the attack itself.
    pub seconds: f64,
    /// What it ran on.
    pub target: AttackTarget,
    /// What the attack says of how it got there (BiSR: where its inverter came from).
    pub details: Option<serde_json::Value>,
}

impl AttackOutcome {
    /// Its record: the attacked run's `setting` and `run_id`, the attacker's `prior` and the
    /// run's `mp`.
    pub fn record(
        &self,
        setting: Setting,
        run_id: &str,
        prior: &PriorRecord,
        mp: f64,
    ) -> AttackRecord {
        let samples = self.scores.samples();
        AttackRecord {
            setting,
            run_id: run_id.to_string(),
            attack: AttackIdentity {
                name: self.config.name().to_string(),
                kind: self.config.kind(),
                params: Some(self.config.clone()),
            },
            prior: prior.clone(),
            ap: self.scores.ap(),
            attack_scores: Some(self.scores),
            mp,
            samples,
            attack_seconds: self.seconds,
            seconds_per_sample: self.seconds / samples.max(1) as f64,
            target: Some(self.target.clone()),
            details: self.details.clone(),
        }
    }

    /// Its row in the run's summary table.
    pub fn table_row(&self) -> (String, String) {
        (
            format!(
                "attack {} ({})",
                self.config.name(),
                self.config.kind().name()
            ),
            format!(
                "AP {:.4} · {} · {} samples, {:.1} s",
                self.scores.ap(),
                serde_json::to_string(&self.scores).unwrap_or_default(),
                self.scores.samples(),
                self.seconds
            ),
        )
    }
}

/// What the training run left for the attack stage: the truth of the recorded steps and the
/// data party's tail at the first of them.
pub struct Recorded {
    /// What the data party really sent on the recorded training steps.
    pub truth: Truth,
    /// Its tail as it was at the first recorded step (Head–Body–Tail).
    pub tail: Option<AnyModel>,
}

/// The model party of `split`, which mounts the attacks: it must run in this process.
pub fn model_party(split: &Split) -> Result<&splitlm_party::ModelParty> {
    split.model().context(
        "attacks are mounted by the model party on what it observed; with --connect it runs \
         elsewhere, so run attacks in one process (without --connect)",
    )
}

/// Runs every attack of `config` on what the model party of `split` observed.
pub fn mount(
    config: &RunConfig,
    model: &OpenedModel,
    split: &mut Split,
    data: &TaskData,
    recorded: Recorded,
) -> Result<(PriorRecord, Vec<AttackOutcome>)> {
    let training = AttackerView::of(model_party(split)?);
    anyhow::ensure!(
        !training.observations.is_empty(),
        "the model party observed no training step to attack"
    );
    let inverts = config
        .attacks
        .iter()
        .any(|a| a.kind() == AttackKind::Inversion);
    let resent = match config.attacker.target {
        InversionTarget::AfterTraining if inverts => Some(resend(config, split, data)?),
        _ => None,
    };
    let completion_view = match config
        .attacks
        .iter()
        .any(|a| a.kind() == AttackKind::ModelCompletion)
    {
        true => Some(held_out_traffic(config, split, data)?),
        false => None,
    };
    let device = config.attacker.device(&config.split)?.probe()?.autodiff();
    let prior = prior(config, model, split, data, &recorded, &device)?;
    let tokenizer = model.checkpoint.tokenizer()?;
    let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
    let mut outcomes = Vec::new();
    for attack in &config.attacks {
        let attacker = &config.attacker;
        let evaluation_truth;
        // Backward matching needs the gradients of training steps, which re-sent samples lack.
        let on_training_steps =
            matches!(attack, AttackConfig::Bisr(s) if s.mode != BisrMode::Forward);
        let resent = resent.as_ref().filter(|_| !on_training_steps);
        let (view, truth, target) = match (resent, attack.kind()) {
            (_, AttackKind::ModelCompletion) => {
                evaluation_truth = evaluation_labels(&prior)?;
                (
                    completion_view.as_ref().unwrap_or(&training),
                    &evaluation_truth,
                    AttackTarget::AfterTraining {
                        samples: evaluation_truth.labels.len(),
                        split: SampleSplit::Test,
                        batch_size: config.train.batch_size,
                    },
                )
            }
            (Some((view, truth)), AttackKind::Inversion) => (
                view,
                truth,
                AttackTarget::AfterTraining {
                    samples: truth.tokens.len(),
                    split: attacker.split,
                    batch_size: attacker.batch_size,
                },
            ),
            _ => (
                &training,
                &recorded.truth,
                AttackTarget::ObservedSteps {
                    from: attacker.observe_from,
                    steps: attacker.observe_steps,
                    max_samples: attacker.max_samples,
                },
            ),
        };
        let started = Instant::now();
        let built = match attacker.artifact_cache() {
            Some(cache) => attack.build_cached(cache),
            None => attack.build(),
        };
        let attacked = built
            .run(view, &prior, &device)
            .with_context(|| format!("attack {}", attack.name()))?;
        let seconds = started.elapsed().as_secs_f64();
        let scores = score::score(attack.name(), &attacked.inferred, truth, decode)?;
        outcomes.push(AttackOutcome {
            config: attack.clone(),
            scores,
            seconds,
            target,
            details: attacked.details,
        });
    }
    let described = PriorRecord {
        white_box_head: prior.head.as_ref().map(|h| h.version),
        positive_is_minority: prior.positive_is_minority,
        known_positive: prior.known_positive,
        tail_at_observed_step: prior.tail.is_some(),
        auxiliary: prior.auxiliary.as_ref().map(|a| a.source.clone()),
    };
    Ok((described, outcomes))
}

/// The reference's inversion target: `samples` random examples of the configured split, sent
/// through the data party's trained head in evaluation steps the model party records; returns
/// what it recorded and the examples' real tokens.
fn resend(config: &RunConfig, split: &mut Split, data: &TaskData) -> Result<(AttackerView, Truth)> {
    let attacker = &config.attacker;
    let set = match attacker.split {
        SampleSplit::Train => data.training_set(),
        SampleSplit::Test => data.held_out_set().context(
            "attacker.split = \"test\": this task scores its held-out set by generating, so \
             it has no held-out batches to re-send; use split = \"train\"",
        )?,
    };
    let mut indices =
        splitlm_tasks::dataset::permutation(set.len(), config.train.seed ^ 0x5eed_a77a);
    indices.truncate(attacker.samples);
    model_party(split)?.observe(ObservationLimits {
        steps: 0,
        max_samples: usize::MAX,
        inference: true,
        ..ObservationLimits::default()
    });
    let device = Predictor::device(split);
    let mut truth = Truth::default();
    for chunk in indices.chunks(attacker.batch_size) {
        let (batch, _) = set.batch(chunk, &device)?;
        split.predict(&batch)?;
        truth.tokens.extend(real_tokens(&batch, usize::MAX)?);
    }
    let view = AttackerView::of(model_party(split)?);
    model_party(split)?.observe(ObservationLimits {
        steps: 0,
        ..ObservationLimits::default()
    });
    Ok((view, truth))
}

/// The prior `config` declares: a white-box head when an inversion attack needs one, the
/// data party's tail at the observed step for BLI in Head–Body–Tail, the minority assumption,
/// and (for DS) the first observed positive.
fn prior(
    config: &RunConfig,
    model: &OpenedModel,
    split: &mut Split,
    data: &TaskData,
    recorded: &Recorded,
    device: &Device,
) -> Result<Prior> {
    let task = data.head();
    let mut prior = Prior {
        positive_is_minority: config.attacker.positive_is_minority,
        known_positive: recorded.truth.labels.iter().position(|&l| l == 1),
        tail: config
            .attacks
            .iter()
            .any(|a| match a {
                AttackConfig::Bli(_) => true,
                AttackConfig::Bisr(s) => s.mode != BisrMode::Forward,
                _ => false,
            })
            .then(|| recorded.tail.clone())
            .flatten(),
        ..Prior::default()
    };
    if config
        .attacks
        .iter()
        .any(|a| a.kind() == AttackKind::Inversion)
    {
        let version = config.attacker.head;
        let head = match version {
            HeadVersion::Pretrained => {
                let partition = config.split.partition.context("attacks need a split")?;
                let slices = partition.slices(model.checkpoint.num_layers())?;
                model.checkpoint.load(&slices.data_head, task, device)?
            }
            HeadVersion::FineTuned => split.data().head().model().clone(),
        };
        prior.head = Some(splitlm_attacks::WhiteBoxHead {
            model: head,
            version,
        });
    }
    let wants = |f: fn(&AttackConfig) -> bool| config.attacks.iter().any(f);
    if wants(|a| matches!(a, AttackConfig::Bisr(_) | AttackConfig::ModelCompletion(_))) {
        prior.auxiliary = Some(auxiliary(config, data, device)?);
    }
    if wants(|a| matches!(a, AttackConfig::ModelCompletion(_))) {
        let partition = config.split.partition.context("attacks need a split")?;
        let slices = partition.slices(model.checkpoint.num_layers())?;
        prior.body = Some(model_party(split)?.with_slice(|s| s.model().clone()));
        prior.surrogate = Some(Surrogate {
            head: model.checkpoint.load(&slices.data_head, task, device)?,
            // The attacker's own classifier, not the one the data party's tail started from.
            tail: slices
                .data_tail
                .as_ref()
                .map(|spec| model.checkpoint.load(spec, task, device))
                .transpose()?
                .map(|tail| fresh_task_head(tail, config.train.seed ^ 0xa77a_c4e6)),
        });
        prior.evaluation = Some(held_out_batches(config, data, device)?);
    }
    Ok(prior)
}

/// The task's held-out examples in batches of the training batch size, on `device`.
fn held_out_batches(
    config: &RunConfig,
    data: &TaskData,
    device: &Device,
) -> Result<Vec<(TokenBatch, Labels)>> {
    let held_out = data
        .held_out_set()
        .context("model completion is scored on the task's held-out labels; this task has none")?;
    let indices: Vec<usize> = (0..held_out.len()).collect();
    Ok(indices
        .chunks(config.train.batch_size.max(1))
        .map(|chunk| held_out.batch(chunk, device))
        .collect::<Result<_, _>>()?)
}

/// What the model party records while the data party runs the held-out examples through the
/// split model (evaluation steps, in batch order): what model completion's surrogate tail
/// reads, as the reference's does (`PredictFrom::Observed`).
fn held_out_traffic(
    config: &RunConfig,
    split: &mut Split,
    data: &TaskData,
) -> Result<AttackerView> {
    model_party(split)?.observe(ObservationLimits {
        steps: 0,
        max_samples: usize::MAX,
        inference: true,
        ..ObservationLimits::default()
    });
    let device = Predictor::device(split);
    for (batch, _) in held_out_batches(config, data, &device)? {
        split.predict(&batch)?;
    }
    let view = AttackerView::of(model_party(split)?);
    model_party(split)?.observe(ObservationLimits {
        steps: 0,
        ..ObservationLimits::default()
    });
    Ok(view)
}

/// The attacker's auxiliary examples: `attacker.auxiliary_samples` (default 5 %) of the
/// training set, drawn with the run's seed.
fn auxiliary(config: &RunConfig, data: &TaskData, device: &Device) -> Result<Auxiliary> {
    let set = data.training_set();
    let count = config
        .attacker
        .auxiliary_samples
        .unwrap_or(set.len() / 20)
        .clamp(1, set.len().max(1));
    let mut indices =
        splitlm_tasks::dataset::permutation(set.len(), config.train.seed ^ 0xa0c5_1a7a);
    indices.truncate(count);
    let batches = indices
        .chunks(config.train.batch_size.max(1))
        .map(|chunk| set.batch(chunk, device))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Auxiliary {
        source: format!(
            "{count} of the {} training examples, drawn with seed {}",
            set.len(),
            config.train.seed
        ),
        batches,
    })
}

/// The labels of the prior's evaluation examples, in order (model completion's truth).
fn evaluation_labels(prior: &Prior) -> Result<Truth> {
    let mut truth = Truth::default();
    for (_, labels) in prior.evaluation.as_deref().unwrap_or_default() {
        let Labels::Classes(classes) = labels else {
            anyhow::bail!("model completion scores classification labels; this task has others");
        };
        let values = classes
            .clone()
            .into_data()
            .try_into_vec_as::<i64>()
            .map_err(|e| anyhow::anyhow!("reading labels: {e:?}"))?;
        truth.labels.extend(values.into_iter().map(|v| v as usize));
    }
    Ok(truth)
}
