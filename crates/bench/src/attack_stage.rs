//! The benchmark's attack stage. While a split run trains, the model party records the
//! training steps its attacker observes and [`crate::truth::TruthRecorder`] keeps what the data
//! party really sent on those steps. After training, every configured attack runs on the
//! recording under the declared prior and is scored against that truth.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::Device;
use splitlm_attacks::score::{self, AttackScores, Truth};
use splitlm_attacks::{AttackConfig, AttackKind, AttackerView, HeadVersion, Prior};
use splitlm_nn::TaskHead;
use splitlm_party::ObservationLimits;
use splitlm_train::Split;

use crate::config::RunConfig;
use crate::model::OpenedModel;
use crate::records::{AttackIdentity, AttackRecord, PriorRecord, Setting};

/// The observation limits of `config`'s attacker.
pub fn limits(config: &RunConfig) -> ObservationLimits {
    ObservationLimits {
        from_step: config.attacker.observe_from,
        steps: config.attacker.observe_steps,
        max_samples: config.attacker.max_samples,
        weight_gradients: false,
        slices: false,
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

/// Runs every attack of `config` on what the model party of `split` observed.
pub fn mount(
    config: &RunConfig,
    model: &OpenedModel,
    split: &mut Split,
    task: TaskHead,
    truth: &Truth,
) -> Result<(PriorRecord, Vec<AttackOutcome>)> {
    let view = AttackerView::of(split.model());
    anyhow::ensure!(
        !view.observations.is_empty(),
        "the model party observed no training step to attack"
    );
    let device = config.attacker.device(&config.split)?.probe()?.autodiff();
    let prior = prior(config, model, split, task, truth, &device)?;
    let tokenizer = model.checkpoint.tokenizer()?;
    let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
    let mut outcomes = Vec::new();
    for attack in &config.attacks {
        let started = Instant::now();
        let inferred = attack
            .build()
            .run(&view, &prior, &device)
            .with_context(|| format!("attack {}", attack.name()))?;
        let seconds = started.elapsed().as_secs_f64();
        let scores = score::score(attack.name(), &inferred, truth, decode)?;
        outcomes.push(AttackOutcome {
            config: attack.clone(),
            scores,
            seconds,
        });
    }
    let described = PriorRecord {
        white_box_head: prior.head.as_ref().map(|h| h.version),
        positive_is_minority: prior.positive_is_minority,
        known_positive: prior.known_positive,
    };
    Ok((described, outcomes))
}

/// The prior `config` declares: a white-box head when an inversion attack needs one, the
/// minority assumption, and (for DS) the first observed positive.
fn prior(
    config: &RunConfig,
    model: &OpenedModel,
    split: &mut Split,
    task: TaskHead,
    truth: &Truth,
    device: &Device,
) -> Result<Prior> {
    let mut prior = Prior {
        positive_is_minority: config.attacker.positive_is_minority,
        known_positive: truth.labels.iter().position(|&l| l == 1),
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
    Ok(prior)
}
