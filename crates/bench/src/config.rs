//! The typed run configuration, read from TOML with the `config` crate: unknown keys are
//! refused with their name, and every value is checked before anything runs.

use std::path::{Path, PathBuf};

use splitlm_attacks::{AttackConfig, BliObjective, BliSettings, HeadVersion};
use splitlm_defenses::DefenseConfig;
use splitlm_device::DeviceSpec;
use splitlm_net::NetworkConfig;
use splitlm_nn::generate::Sampling;
use splitlm_partition::{Partition, TaskHeadPlacement, Trainability};
use splitlm_party::OptimizerConfig;
use splitlm_tasks::TaskConfig;
use splitlm_train::session::parse_device;
use splitlm_train::{FitConfig, Setup, SplitConfig, TrainError};

/// A whole run: which model, how it is cut and trained, on what, and where results go.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A name for the records (defaults to the file's stem).
    #[serde(default)]
    pub name: Option<String>,
    /// The model.
    pub model: ModelConfig,
    /// The cut and where each party runs.
    #[serde(default)]
    pub split: SplitConfig,
    /// What trains, on every slice.
    #[serde(default)]
    pub finetune: Trainability,
    /// Each party's optimizer.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The task and its data.
    pub task: TaskConfig,
    /// The training loop.
    #[serde(default)]
    pub train: FitConfig,
    /// Defenses the data party applies, in order (`[[defenses]]` tables).
    #[serde(default)]
    pub defenses: Vec<DefenseConfig>,
    /// Attacks the model party mounts on what it observed (`[[attacks]]` tables), scored after
    /// training.
    #[serde(default)]
    pub attacks: Vec<AttackConfig>,
    /// What the attacker observes and what it is assumed to know.
    #[serde(default)]
    pub attacker: AttackerConfig,
    /// Defense settings `splitlm grid` trains and attacks this configuration under.
    #[serde(default)]
    pub grid: Option<GridConfig>,
    /// Decoding, for generation tasks and `splitlm generate`.
    #[serde(default)]
    pub generate: Sampling,
    /// Where results go.
    #[serde(default)]
    pub output: OutputConfig,
    /// How the parties reach each other across machines (`splitlm serve`, `--connect`).
    #[serde(default)]
    pub network: NetworkConfig,
}

/// What the attacking model party records and knows (`[attacker]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttackerConfig {
    /// What inversion attacks invert: samples re-sent after training (the reference's) or the
    /// recorded training steps. Label attacks always work on the recorded training steps.
    pub target: InversionTarget,
    /// `target = "after_training"`: how many random samples are re-sent and inverted (the
    /// reference's `attack_sample_num`).
    pub samples: usize,
    /// `target = "after_training"`: which split they are drawn from (the reference's
    /// `target_data`).
    pub split: SampleSplit,
    /// `target = "after_training"`: the batch size they are sent in (the reference's attack
    /// `batch_size`; padding follows the batch).
    pub batch_size: usize,
    /// Training steps served before recording starts (0: the first step is recorded; the
    /// number of steps minus one: the last).
    pub observe_from: u64,
    /// This many training steps are recorded.
    pub observe_steps: u64,
    /// At most this many samples of each recorded step are kept (and attacked; the default
    /// keeps the whole batch, as the reference's label attacks take it).
    pub max_samples: usize,
    /// The white-box head inversion attacks get: the data party's fine-tuned head (the
    /// reference's) or the public pretrained weights.
    pub head: HeadVersion,
    /// NS's prior: the positive class is the rarer one.
    pub positive_is_minority: bool,
    /// Where the attacks compute (default: the data party's device).
    pub device: Option<String>,
    /// How many training examples the attacker holds as auxiliary data (BiSR's inverter
    /// training set, model completion's labelled set); absent: 5 % of the training set, the
    /// reference's BiSR fallback (BiSR.py l.150-153). Drawn at random with the run's seed, as
    /// model completion draws them (ModelCompletion_LLM.py l.184-191).
    pub auxiliary_samples: Option<usize>,
    /// Keep what attacks learn (BiSR's inverter) and reuse it when every input it was learned
    /// from is the same: the white-box head's weights, the auxiliary data, the settings (the
    /// reference caches its inverter too, by dataset and model type only).
    pub cache: bool,
    /// Where (absent: `attacks/` in splitlm's cache, `~/.cache/splitlm/attacks`).
    pub cache_dir: Option<PathBuf>,
}

impl AttackerConfig {
    /// The attacks' cache, unless `cache = false`.
    pub fn artifact_cache(&self) -> Option<splitlm_attacks::ArtifactCache> {
        self.cache.then(|| {
            splitlm_attacks::ArtifactCache::new(
                self.cache_dir
                    .clone()
                    .unwrap_or_else(|| splitlm_assets::cache_root().join("attacks")),
            )
        })
    }
}

impl Default for AttackerConfig {
    fn default() -> Self {
        Self {
            target: InversionTarget::AfterTraining,
            samples: 100,
            split: SampleSplit::Test,
            batch_size: 32,
            observe_from: 0,
            observe_steps: 1,
            max_samples: 4096,
            head: HeadVersion::FineTuned,
            positive_is_minority: false,
            device: None,
            auxiliary_samples: None,
            cache: true,
            cache_dir: None,
        }
    }
}

/// What inversion attacks invert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InversionTarget {
    /// After training, `samples` random examples are sent through the data party's trained
    /// head (evaluation steps the model party records), as the reference does.
    AfterTraining,
    /// The activations of the recorded training steps.
    ObservedSteps,
}

/// A split of the task's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleSplit {
    /// The training examples.
    Train,
    /// The held-out examples.
    Test,
}

impl AttackerConfig {
    /// Where the attacks compute.
    pub fn device(&self, split: &SplitConfig) -> Result<DeviceSpec, ConfigError> {
        Ok(match &self.device {
            Some(d) => parse_device("attacker.device", d)?,
            None => split.data_device()?,
        })
    }
}

/// The defense settings of an experiment grid (`[[grid.settings]]` tables).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridConfig {
    /// One training run (then the attacks) per setting, in order.
    pub settings: Vec<GridSetting>,
    /// Where the MP–AP plot goes (default: the records file with `.svg`).
    #[serde(default)]
    pub plot: Option<PathBuf>,
    /// Overrides (`key=value`, as `--set` takes them) that `splitlm grid --full` applies: the
    /// reference's sizes where the default grid runs smaller ones to finish in its time.
    #[serde(default)]
    pub full: Vec<String>,
}

/// One defense setting of a grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSetting {
    /// Its label in records, table and plot.
    pub name: String,
    /// The defenses (none: the undefended baseline every DCS compares with).
    #[serde(default)]
    pub defenses: Vec<DefenseConfig>,
}

/// The model to load.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A demo asset (`minilm`, `smollm2`), a Hugging Face model directory or a `.gguf` file.
    pub source: String,
}

/// Where results go.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// JSON-lines file every run appends one record to.
    pub records: PathBuf,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            records: PathBuf::from("splitlm-runs.jsonl"),
        }
    }
}

/// A configuration that cannot be read or does not make sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is unreadable, not TOML, or has unknown or mistyped keys.
    #[error("{origin}: {detail}")]
    Read {
        /// The file (or override) concerned.
        origin: String,
        /// What the reader said, with the key.
        detail: String,
    },
    /// A value is out of range.
    #[error("{key}: {detail}")]
    Invalid {
        /// The key, dotted (`train.batch_size`).
        key: String,
        /// What is wrong.
        detail: String,
    },
}

impl From<TrainError> for ConfigError {
    fn from(e: TrainError) -> Self {
        match e {
            TrainError::Invalid { key, detail } => ConfigError::Invalid { key, detail },
            other => ConfigError::invalid("split", other.to_string()),
        }
    }
}

impl ConfigError {
    fn invalid(key: &str, detail: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            detail: detail.into(),
        }
    }
}

impl RunConfig {
    fn validate_attacks(&self) -> Result<(), ConfigError> {
        for (i, attack) in self.attacks.iter().enumerate() {
            attack
                .validate()
                .map_err(|e| ConfigError::invalid(&format!("attacks[{i}]"), e.to_string()))?;
        }
        let classifier_at_model_party = matches!(
            self.split.partition,
            Some(Partition::HeadTail {
                task_head_with: TaskHeadPlacement::Model,
                ..
            })
        );
        for (i, attack) in self.attacks.iter().enumerate() {
            let needs_logits = matches!(
                attack,
                AttackConfig::Dls(_)
                    | AttackConfig::Bli(BliSettings {
                        objective: BliObjective::OutputGradient,
                        ..
                    })
            );
            if needs_logits && !classifier_at_model_party {
                return Err(ConfigError::invalid(
                    &format!("attacks[{i}]"),
                    format!(
                        "{} reads the gradient of the task head's logits, which the model \
                         party only receives in Head–Tail with the task head at the model party",
                        attack.name()
                    ),
                ));
            }
        }
        if self.attacker.target == InversionTarget::AfterTraining
            && (self.attacker.samples == 0 || self.attacker.batch_size == 0)
        {
            return Err(ConfigError::invalid(
                "attacker",
                "samples and batch_size must be at least 1 with target = \"after_training\"",
            ));
        }
        if !self.attacks.is_empty() && self.split.partition.is_none() {
            return Err(ConfigError::invalid(
                "attacks",
                "attacks are mounted by the model party: set split.partition",
            ));
        }
        if self.attacker.observe_steps == 0 || self.attacker.max_samples == 0 {
            return Err(ConfigError::invalid(
                "attacker",
                "observe_steps and max_samples must be at least 1",
            ));
        }
        self.attacker.device(&self.split)?;
        if let Some(grid) = &self.grid {
            if grid.settings.is_empty() {
                return Err(ConfigError::invalid("grid.settings", "no setting"));
            }
            let mut names = std::collections::BTreeSet::new();
            for (i, setting) in grid.settings.iter().enumerate() {
                if !names.insert(setting.name.as_str()) {
                    return Err(ConfigError::invalid(
                        &format!("grid.settings[{i}].name"),
                        format!("\"{}\" is used twice", setting.name),
                    ));
                }
                DefenseConfig::validate_all(&setting.defenses).map_err(|e| {
                    ConfigError::invalid(&format!("grid.settings[{i}].defenses"), e.to_string())
                })?;
            }
            if self.split.partition.is_none() {
                return Err(ConfigError::invalid(
                    "grid",
                    "a defense grid needs a split: set split.partition",
                ));
            }
        }
        Ok(())
    }

    /// Reads a TOML file, applies `overrides` (`key=value`, e.g. `train.epochs=2`) and
    /// validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        if !path.is_file() {
            return Err(ConfigError::Read {
                origin,
                detail: "no such file".into(),
            });
        }
        let source = config::File::from(path).format(config::FileFormat::Toml);
        let mut config = Self::build(
            config::Config::builder().add_source(source),
            overrides,
            &origin,
        )?;
        if config.name.is_none() {
            config.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        Ok(config)
    }

    /// Reads TOML text (an example's built-in configuration), with `overrides`.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let source = config::File::from_str(text, config::FileFormat::Toml);
        Self::build(
            config::Config::builder().add_source(source),
            overrides,
            "built-in configuration",
        )
    }

    fn build(
        mut builder: config::ConfigBuilder<config::builder::DefaultState>,
        overrides: &[String],
        origin: &str,
    ) -> Result<Self, ConfigError> {
        for item in overrides {
            let (key, value) = item.split_once('=').ok_or_else(|| ConfigError::Read {
                origin: format!("override \"{item}\""),
                detail: "expected key=value".into(),
            })?;
            builder = builder
                .set_override(key.trim(), parse_override(value.trim()))
                .map_err(|e| ConfigError::Read {
                    origin: format!("override \"{item}\""),
                    detail: e.to_string(),
                })?;
        }
        let config: RunConfig = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Read {
                origin: origin.into(),
                detail: e.to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value that serde's types do not already constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.network
            .validate()
            .map_err(|e| ConfigError::invalid("network", e.to_string()))?;
        self.split.data_device()?;
        self.split.model_device()?;
        self.optimizer
            .validate()
            .map_err(|e| ConfigError::invalid("optimizer", e.to_string()))?;
        self.train
            .validate()
            .map_err(|e| ConfigError::invalid("train", e.to_string()))?;
        self.generate
            .validate()
            .map_err(|e| ConfigError::invalid("generate", e.to_string()))?;
        if let Err(e) = DefenseConfig::validate_all(&self.defenses) {
            return Err(ConfigError::invalid("defenses", e.to_string()));
        }
        self.validate_attacks()?;
        if !self.defenses.is_empty() && self.split.partition.is_none() {
            return Err(ConfigError::invalid(
                "defenses",
                "defenses act between parties: set split.partition",
            ));
        }
        self.task.validate().map_err(|e| match e {
            splitlm_tasks::TaskError::Setting { key, detail } => ConfigError::invalid(key, detail),
            other => ConfigError::invalid("task", other.to_string()),
        })?;
        if self.model.source.trim().is_empty() {
            return Err(ConfigError::invalid("model.source", "is empty"));
        }
        Ok(())
    }

    /// The run's name for records.
    pub fn run_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.task.name())
    }

    /// What `splitlm-train` needs to build this run's learner.
    pub fn setup(&self) -> Setup<'_> {
        Setup {
            split: &self.split,
            finetune: &self.finetune,
            optimizer: &self.optimizer,
            defenses: &self.defenses,
            seed: self.train.seed,
            defense_data: None,
        }
    }
}

/// Command-line override values: numbers and booleans as such, everything else as text.
fn parse_override(value: &str) -> config::Value {
    if let Ok(i) = value.parse::<i64>() {
        return i.into();
    }
    if let Ok(f) = value.parse::<f64>() {
        return f.into();
    }
    match value {
        "true" => true.into(),
        "false" => false.into(),
        _ => value.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [model]
        source = "minilm"
        [task]
        kind = "sentiment"
    "#;

    #[test]
    fn a_minimal_config_gets_defaults() {
        let c = RunConfig::from_toml(MINIMAL, &[]).unwrap();
        assert_eq!(c.split.partition, None);
        assert_eq!(c.train.batch_size, 16);
        assert!(matches!(c.task, TaskConfig::Sentiment { max_len: 64, .. }));
        // The reference's attacker: inversion on 100 random test samples re-sent in batches of
        // 32 (its configs' attack_sample_num, target_data, batch_size) with the fine-tuned head
        // (VanillaModelInversion_WhiteBox uses the data party's local model); label attacks on
        // the whole first batch (first_epoch_state).
        let a = &c.attacker;
        assert_eq!(a.target, InversionTarget::AfterTraining);
        assert_eq!(
            (a.samples, a.split, a.batch_size),
            (100, SampleSplit::Test, 32)
        );
        assert_eq!(a.head, HeadVersion::FineTuned);
        assert_eq!((a.observe_from, a.observe_steps), (0, 1));
        assert!(a.max_samples >= 1024, "the whole batch");
        assert!(!a.positive_is_minority, "no flip unless asked");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let text = format!("{MINIMAL}\n[train]\nepochz = 2\n");
        let err = RunConfig::from_toml(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("epochz"), "{err}");
        let text = MINIMAL.replace("kind = \"sentiment\"", "kind = \"sentiment\"\nmax_lne = 3");
        let err = RunConfig::from_toml(&text, &[]).unwrap_err().to_string();
        assert!(err.contains("max_lne"), "{err}");
        let err = RunConfig::from_toml(&format!("{MINIMAL}\n[modle]\nx = 1\n"), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("modle"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let check = |overrides: &[&str], needle: &str| {
            let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
            let err = RunConfig::from_toml(MINIMAL, &overrides)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{overrides:?}: {err}");
        };
        check(&["train.batch_size=0"], "batch_size");
        check(&["optimizer.lr=-1"], "optimizer");
        check(&["split.data_device=tpu"], "split.data_device");
        check(&["generate.top_p=2"], "top_p");
        check(&["task.max_len=2"], "task.max_len");
        check(&["train.resume=true"], "checkpoint_dir");
        check(&["nonsense"], "key=value");
        check(&["task.kind=poetry"], "poetry");
    }

    #[test]
    fn defenses_are_read_and_checked() {
        let split = "[split]\npartition = { kind = \"head_tail\", n_head = 2 }\n";
        let text = format!(
            "{MINIMAL}\n{split}[[defenses]]\nkind = \"laplace_dp\"\nepsilon = 5.0\nsensitivity = 81.82\ntarget = \"activations\"\n"
        );
        let c = RunConfig::from_toml(&text, &[]).unwrap();
        assert_eq!(c.defenses.len(), 1);
        let bad = text.replace("epsilon = 5.0", "epsilon = -1.0");
        let err = RunConfig::from_toml(&bad, &[]).unwrap_err().to_string();
        assert!(err.contains("defenses") && err.contains("epsilon"), "{err}");
        let unsplit = text.replace(split, "");
        let err = RunConfig::from_toml(&unsplit, &[]).unwrap_err().to_string();
        assert!(err.contains("split.partition"), "{err}");
    }

    #[test]
    fn overrides_and_partitions_parse() {
        let text = format!(
            "{MINIMAL}\n[split]\npartition = {{ kind = \"head_body_tail\", n_head = 2, n_tail = 2 }}\n"
        );
        let c = RunConfig::from_toml(
            &text,
            &["train.epochs=3".into(), "split.model_device=cpu".into()],
        )
        .unwrap();
        assert_eq!(c.train.epochs, 3);
        assert_eq!(c.split.partition, Some(Partition::head_body_tail(2, 2)));
        assert_eq!(c.split.model_device.as_deref(), Some("cpu"));
    }

    #[test]
    fn the_shipped_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen >= 2, "configs/ holds the example configurations");
    }
}
