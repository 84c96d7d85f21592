//! The benchmark's attack stage. While a split run trains, the model party records the first
//! training steps it serves and [`TruthRecorder`] keeps what the data party really sent on
//! those steps (the benchmark's ground truth, never shown to an attack). After training, every
//! configured attack runs on the recording under the declared prior and is scored.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::Device;
use splitlm_attacks::score::{self, AttackScores, Truth};
use splitlm_attacks::{AttackKind, AttackerView, HeadVersion, Prior};
use splitlm_nn::generate::Sampling;
use splitlm_nn::{HeadOutput, Labels, TaskHead, TokenBatch};
use splitlm_party::{ObservationLimits, SplitGeneration};
use splitlm_tasks::TaskError;
use splitlm_tasks::train::{Learner, Split};

use crate::config::RunConfig;
use crate::session::Model;

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

/// A learner that passes everything through and keeps the inputs and labels of the first
/// training steps, truncated like the model party's observations.
pub struct TruthRecorder<'a> {
    inner: &'a mut dyn Learner,
    skip: u64,
    steps_left: u64,
    max_samples: usize,
    truth: Truth,
}

impl<'a> TruthRecorder<'a> {
    /// Records the steps `limits` lets the model party observe.
    pub fn new(inner: &'a mut dyn Learner, limits: ObservationLimits) -> Self {
        Self {
            inner,
            skip: limits.from_step,
            steps_left: limits.steps,
            max_samples: limits.max_samples,
            truth: Truth::default(),
        }
    }

    /// What was recorded.
    pub fn into_truth(self) -> Truth {
        self.truth
    }

    fn record(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<(), TaskError> {
        let [b, s] = batch.dims();
        let rows = b.min(self.max_samples);
        let ints = |t: burn::tensor::Tensor<2, burn::tensor::Int>| {
            t.into_data()
                .try_into_vec_as::<i64>()
                .map_err(|e| TaskError::Config(format!("token ids: {e:?}")))
        };
        let ids = ints(batch.input_ids.clone())?;
        let mask = ints(batch.attention_mask.clone())?;
        for row in 0..rows {
            self.truth.tokens.push(
                (0..s)
                    .filter(|&t| mask[row * s + t] != 0)
                    .map(|t| ids[row * s + t] as u32)
                    .collect(),
            );
        }
        if let Labels::Classes(classes) = labels {
            let classes = classes
                .clone()
                .into_data()
                .try_into_vec_as::<i64>()
                .map_err(|e| TaskError::Config(format!("labels: {e:?}")))?;
            self.truth
                .labels
                .extend(classes.iter().take(rows).map(|&c| c as usize));
        }
        Ok(())
    }
}

impl Learner for TruthRecorder<'_> {
    fn device(&self) -> Device {
        self.inner.device()
    }

    fn train_step(&mut self, batch: &TokenBatch, labels: &Labels) -> Result<f32, TaskError> {
        if self.skip > 0 {
            self.skip -= 1;
        } else if self.steps_left > 0 {
            self.steps_left -= 1;
            self.record(batch, labels)?;
        }
        self.inner.train_step(batch, labels)
    }

    fn predict(&mut self, batch: &TokenBatch) -> Result<HeadOutput, TaskError> {
        self.inner.predict(batch)
    }

    fn generate(
        &mut self,
        prompt: &[u32],
        sampling: &Sampling,
    ) -> Result<SplitGeneration, TaskError> {
        self.inner.generate(prompt, sampling)
    }

    fn save_state(&self, dir: &Path) -> Result<(), TaskError> {
        self.inner.save_state(dir)
    }

    fn restore_state(&mut self, dir: &Path) -> Result<(), TaskError> {
        self.inner.restore_state(dir)
    }

    fn traffic(&self) -> Option<splitlm_protocol::Traffic> {
        self.inner.traffic()
    }
}

/// One attack's result.
pub struct AttackOutcome {
    /// The attack's name.
    pub name: &'static str,
    /// What it went after.
    pub kind: AttackKind,
    /// Its settings.
    pub params: serde_json::Value,
    /// Its scores against the truth.
    pub scores: AttackScores,
    /// Wall time of the attack itself.
    pub seconds: f64,
}

impl AttackOutcome {
    /// The fields of its JSON record (the run's setting fields are merged in by the job).
    pub fn record(&self, run_id: &str, prior: &serde_json::Value, mp: f64) -> serde_json::Value {
        let samples = self.scores.samples();
        serde_json::json!({
            "job": "attack",
            "run_id": run_id,
            "attack": { "name": self.name, "kind": self.kind, "params": self.params },
            "prior": prior,
            "ap": self.scores.ap(),
            "attack_scores": self.scores,
            "mp": mp,
            "samples": samples,
            "attack_seconds": self.seconds,
            "seconds_per_sample": self.seconds / samples.max(1) as f64,
        })
    }

    /// Its row in the run's summary table.
    pub fn table_row(&self) -> (String, String) {
        (
            format!("attack {} ({})", self.name, self.kind.name()),
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
    model: &Model,
    split: &mut Split,
    task: TaskHead,
    truth: &Truth,
) -> Result<(serde_json::Value, Vec<AttackOutcome>)> {
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
            name: attack.name(),
            kind: attack.kind(),
            params: serde_json::to_value(attack)?,
            scores,
            seconds,
        });
    }
    Ok((prior.describe(), outcomes))
}

/// The prior `config` declares: a white-box head when an inversion attack needs one, the
/// minority assumption, and (for DS) the first observed positive.
fn prior(
    config: &RunConfig,
    model: &Model,
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

#[cfg(test)]
mod tests {
    use burn::tensor::{Int, Tensor, TensorData};
    use splitlm_device::DeviceSpec;
    use splitlm_nn::batch::PaddingSide;

    use super::*;

    /// A learner that only counts its training steps.
    struct Counting(usize);

    impl Learner for Counting {
        fn device(&self) -> Device {
            DeviceSpec::Cpu.device().unwrap()
        }
        fn train_step(&mut self, _: &TokenBatch, _: &Labels) -> Result<f32, TaskError> {
            self.0 += 1;
            Ok(0.0)
        }
        fn predict(&mut self, _: &TokenBatch) -> Result<HeadOutput, TaskError> {
            unreachable!()
        }
        fn generate(&mut self, _: &[u32], _: &Sampling) -> Result<SplitGeneration, TaskError> {
            unreachable!()
        }
        fn save_state(&self, _: &Path) -> Result<(), TaskError> {
            Ok(())
        }
        fn restore_state(&mut self, _: &Path) -> Result<(), TaskError> {
            Ok(())
        }
    }

    #[test]
    fn the_truth_is_that_of_the_observed_window_truncated_like_the_observations() {
        let device = DeviceSpec::Cpu.device().unwrap();
        let mut inner = Counting(0);
        let limits = ObservationLimits {
            from_step: 1,
            steps: 1,
            max_samples: 2,
            weight_gradients: false,
            slices: false,
        };
        let mut recorder = TruthRecorder::new(&mut inner, limits);
        for step in 0..3u32 {
            // Three rows; the second is one token shorter (right padding).
            let rows = vec![
                vec![10 * step + 1, 2, 3],
                vec![10 * step + 4, 5],
                vec![9, 9, 9],
            ];
            let batch = TokenBatch::from_sequences(&rows, 0, PaddingSide::Right, &device).unwrap();
            let labels = Labels::Classes(Tensor::<1, Int>::from_data(
                TensorData::new(vec![1i64, 0, 1], [3]),
                &device,
            ));
            recorder.train_step(&batch, &labels).unwrap();
        }
        let truth = recorder.into_truth();
        assert_eq!(inner.0, 3, "every step reached the learner");
        assert_eq!(
            truth.tokens,
            vec![vec![11, 2, 3], vec![14, 5]],
            "step 1, two rows, no pads"
        );
        assert_eq!(truth.labels, vec![1, 0]);
    }
}
