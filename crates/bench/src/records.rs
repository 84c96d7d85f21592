//! What every job leaves behind: one JSON line per run or attack, typed. A training run's
//! [`TrainRecord`] and the [`AttackRecord`]s of the attacks mounted on it share a `run_id`;
//! every record carries the full [`Setting`] it ran under, so a line can be read alone.
//!
//! Lines are appended whole (one write each), so records of concurrent runs do not
//! interleave. Reading ignores fields it does not know, so newer files stay readable.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use splitlm_attacks::score::AttackScores;
use splitlm_attacks::{AttackConfig, AttackKind, HeadVersion};
use splitlm_defenses::DefenseConfig;
use splitlm_nn::generate::Sampling;
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{OptimizerConfig, PartyOptions};
use splitlm_tasks::{TaskConfig, TaskScores};
use splitlm_train::FitConfig;

/// One line of a records file, told apart by its `job` field.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Record {
    /// A training run (`splitlm train`, one setting of `splitlm grid`).
    Train(TrainRecord),
    /// One attack mounted on a training run.
    Attack(AttackRecord),
    /// An evaluation (`splitlm eval`).
    Eval(EvalRecord),
    /// Answers generated through the split model (`splitlm generate`).
    Generate(GenerateRecord),
}

impl Record {
    /// The training record, if this is one.
    pub fn as_train(&self) -> Option<&TrainRecord> {
        match self {
            Record::Train(r) => Some(r),
            _ => None,
        }
    }

    /// The attack record, if this is one.
    pub fn as_attack(&self) -> Option<&AttackRecord> {
        match self {
            Record::Attack(r) => Some(r),
            _ => None,
        }
    }
}

/// The setting a record ran under: model, cut, devices, task, training and defenses.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Setting {
    /// The experiment (the run's name).
    pub name: String,
    /// The defense setting's label (a grid setting's name, or the defenses as JSON; "none").
    pub defense_setting: String,
    /// The model's name (asset name or path).
    pub model: String,
    /// The cut in words ("unsplit", "head-tail (n_head = 2)", …).
    pub setting: String,
    /// The cut.
    pub partition: Option<Partition>,
    /// Where the model party ran: the address the data party connected to (`--connect`);
    /// absent when both parties ran in one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_party: Option<String>,
    /// The data party's device.
    pub data_device: String,
    /// The model party's device.
    pub model_device: String,
    /// The data party's session settings (older records call this `wire_dtype`).
    #[serde(alias = "wire_dtype")]
    pub data_party: Option<PartyOptions>,
    /// The task.
    pub task: Option<TaskConfig>,
    /// What trained.
    pub finetune: Option<Trainability>,
    /// Each party's optimizer.
    pub optimizer: Option<OptimizerConfig>,
    /// The training loop.
    pub train: Option<FitConfig>,
    /// The seed.
    pub seed: u64,
    /// The defenses, in order (empty: undefended).
    pub defenses: Vec<DefenseConfig>,
}

/// A task's scores as recorded.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ScoresRecord {
    /// The main metric's name.
    pub metric: String,
    /// Its value.
    pub value: f64,
    /// Every score by name.
    pub scores: BTreeMap<String, f64>,
    /// Examples scored.
    pub examples: usize,
}

impl From<&TaskScores> for ScoresRecord {
    fn from(s: &TaskScores) -> Self {
        Self {
            metric: s.metric.to_string(),
            value: s.value,
            scores: s.all.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            examples: s.examples,
        }
    }
}

/// A training run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainRecord {
    /// The setting.
    #[serde(flatten)]
    pub setting: Setting,
    /// Ties the run to the attacks mounted on it.
    pub run_id: String,
    /// Training examples.
    pub train_examples: usize,
    /// Held-out examples.
    pub eval_examples: usize,
    /// Held-out scores before training.
    pub before: ScoresRecord,
    /// Held-out scores after training.
    pub after: ScoresRecord,
    /// Main-task performance: the main score after training.
    pub mp: f64,
    /// Optimizer steps taken.
    pub steps: usize,
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
    /// Training time, seconds (evaluations and checkpoints excluded).
    pub train_seconds: f64,
    /// Evaluation time, seconds.
    pub eval_seconds: f64,
    /// Tokens trained on in this process.
    pub train_tokens: usize,
    /// Their rate.
    pub train_tokens_per_second: f64,
    /// Bytes the data party sent while training (evaluations excluded).
    pub bytes_sent: u64,
    /// Bytes it received while training.
    pub bytes_received: u64,
    /// Bytes it sent while evaluating.
    pub eval_bytes_sent: u64,
    /// Bytes it received while evaluating.
    pub eval_bytes_received: u64,
    /// Wall time of the whole job, seconds.
    pub wall_seconds: f64,
    /// Peak resident memory of the process that ran the data party (in one process, both
    /// parties), MiB; absent where the platform does not tell
    /// ([`crate::resources::peak_rss_mib`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

/// Which attack ran, with its settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackIdentity {
    /// Its name (`vmi`, `bli`, …).
    pub name: String,
    /// What it goes after.
    pub kind: AttackKind,
    /// Its settings, as configured.
    #[serde(default)]
    pub params: Option<AttackConfig>,
}

/// What the attacker was assumed to know.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PriorRecord {
    /// The white-box head inversion attacks got, if any.
    pub white_box_head: Option<HeadVersion>,
    /// NS's prior: the positive class is the rarer one.
    pub positive_is_minority: bool,
    /// DS's known positive sample.
    pub known_positive: Option<usize>,
    /// BLI (Head–Body–Tail) got a copy of the data party's tail as it was at the observed
    /// step (the reference's assumption).
    #[serde(default)]
    pub tail_at_observed_step: bool,
    /// The auxiliary data the attacker held (BiSR, model completion), if any.
    #[serde(default)]
    pub auxiliary: Option<String>,
}

/// What an attack ran on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttackTarget {
    /// Samples sent through the trained head after training (the reference's inversion
    /// target).
    AfterTraining {
        /// How many.
        samples: usize,
        /// From which split.
        split: crate::config::SampleSplit,
        /// In batches of.
        batch_size: usize,
    },
    /// The recorded training steps.
    ObservedSteps {
        /// Training steps served before recording started.
        from: u64,
        /// Steps recorded.
        steps: u64,
        /// Samples kept per step.
        max_samples: usize,
    },
}

/// One attack mounted on a training run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackRecord {
    /// The attacked run's setting.
    #[serde(flatten)]
    pub setting: Setting,
    /// The attacked training run.
    pub run_id: String,
    /// The attack.
    pub attack: AttackIdentity,
    /// What it was assumed to know.
    #[serde(default)]
    pub prior: PriorRecord,
    /// Attack performance: inversion recall or label recovery rate.
    pub ap: f64,
    /// Every score of the attack.
    #[serde(default)]
    pub attack_scores: Option<AttackScores>,
    /// The attacked run's MP.
    #[serde(default)]
    pub mp: f64,
    /// Samples attacked.
    #[serde(default)]
    pub samples: usize,
    /// Wall time of the attack, seconds.
    #[serde(default)]
    pub attack_seconds: f64,
    /// Per attacked sample.
    #[serde(default)]
    pub seconds_per_sample: f64,
    /// What the attack ran on (absent in records written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<AttackTarget>,
    /// How the attack got there, where it says (BiSR: `{"inverter": {"key", "cached",
    /// "seconds"}}`, whether its inverter was loaded from the attack cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// An evaluation.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EvalRecord {
    /// The setting.
    #[serde(flatten)]
    pub setting: Setting,
    /// The checkpoint evaluated (none: the pretrained model).
    pub checkpoint: Option<PathBuf>,
    /// The held-out scores.
    pub scores: ScoresRecord,
    /// Their main score.
    pub mp: f64,
    /// Bytes the data party sent.
    pub bytes_sent: u64,
    /// Bytes it received.
    pub bytes_received: u64,
    /// Wall time, seconds.
    pub wall_seconds: f64,
}

/// One prompt's answer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AnswerRecord {
    /// The prompt as given.
    pub prompt: String,
    /// The answer.
    pub answer: String,
    /// Tokens generated.
    pub tokens: usize,
    /// Time to the first token, seconds.
    pub prefill_seconds: f64,
    /// Time of the tokens after it, seconds.
    pub decode_seconds: f64,
    /// Whether the whole model gave the same tokens (when compared).
    pub same_as_unsplit: Option<bool>,
}

/// Answers generated through the split model.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GenerateRecord {
    /// The setting.
    #[serde(flatten)]
    pub setting: Setting,
    /// Decoding settings, stop tokens included.
    pub sampling: Sampling,
    /// One per prompt.
    pub answers: Vec<AnswerRecord>,
    /// Tokens per second after the prompts.
    pub decode_tokens_per_second: f64,
    /// Bytes the data party sent.
    pub bytes_sent: u64,
    /// Bytes it received.
    pub bytes_received: u64,
    /// Mean bytes sent and received per generated token after the prompt.
    pub bytes_per_generated_token: Option<(u64, u64)>,
}

/// Appends `record` as one line to `path` (created with its directory when missing). The line
/// is written with one call, so records of concurrent runs do not interleave.
pub fn append(path: &Path, record: &impl serde::Serialize) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(&line)
        .with_context(|| format!("appending to {}", path.display()))?;
    Ok(())
}

/// Reads every record of a JSON-lines file, naming the line of a malformed one.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}, line {}", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/runs.jsonl");
        let first = Record::Train(TrainRecord {
            run_id: "1".into(),
            ..TrainRecord::default()
        });
        let second = Record::Train(TrainRecord {
            run_id: "2".into(),
            mp: 0.8,
            ..TrainRecord::default()
        });
        append(&path, &first).unwrap();
        append(&path, &second).unwrap();
        let records = read(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].as_train().unwrap().mp, 0.8);
        assert_eq!(records, vec![first, second]);
        std::fs::write(&path, "{\"job\": \"train\"}\n{oops\n").unwrap();
        let err = format!("{:#}", read(&path).unwrap_err());
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn the_committed_grid_records_read_as_typed_records() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../results");
        let mut seen = 0;
        let files = [dir.clone(), dir.join("before-reference-defaults")]
            .into_iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().path());
        for path in files {
            if path.extension().is_some_and(|e| e == "jsonl") {
                let records = read(&path).unwrap_or_else(|e| panic!("{e:#}"));
                assert!(records.iter().any(|r| r.as_train().is_some()));
                assert!(records.iter().any(|r| r.as_attack().is_some()));
                seen += 1;
            }
        }
        assert!(seen >= 3, "results/ holds the README's grids");
    }
}
