//! The attack interface: an attack reads the [`AttackerView`] and a declared [`Prior`] and
//! returns what it inferred; scoring against the truth is the benchmark's business
//! ([`crate::score`]), never the attack's.

use burn::tensor::Device;
use splitlm_nn::{Labels, TokenBatch};
use splitlm_zoo::AnyModel;

use crate::bisr::{BisrSettings, bisr};
use crate::cache::ArtifactCache;
use crate::completion::{CompletionSettings, model_completion};
use crate::inversion::{Recovered, RwiSettings, VmiSettings, rwi, vmi};
use crate::label::{
    DlsSettings, LabelGuess, direct_label_scoring, direction_scoring, norm_scoring,
};
use crate::{AttackError, AttackerView, BliSettings, bli};

/// What an attack goes after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttackKind {
    /// Recovering the data party's input tokens.
    Inversion,
    /// Recovering the data party's labels.
    LabelInference,
    /// Recovering the task itself: predicting held-out labels with surrogates of the data
    /// party's slices (scored on the prior's evaluation examples).
    ModelCompletion,
}

impl AttackKind {
    /// Its name in records and reports.
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Inversion => "inversion",
            AttackKind::LabelInference => "label_inference",
            AttackKind::ModelCompletion => "model_completion",
        }
    }
}

/// Which version of the data party's head the attacker holds a copy of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadVersion {
    /// The public pretrained weights (the usual assumption: the data party fine-tunes adapters
    /// the model party never sees).
    #[default]
    Pretrained,
    /// The data party's head as fine-tuned (a stronger, leaked-weights assumption).
    FineTuned,
}

/// A white-box copy of the data party's head: its embeddings and its blocks.
#[derive(Clone)]
pub struct WhiteBoxHead {
    /// The copy.
    pub model: AnyModel,
    /// Which weights it carries.
    pub version: HeadVersion,
}

/// What the attacker knows beyond its observations, declared up front so a result always says
/// under which assumptions it was obtained.
#[derive(Clone, Default)]
pub struct Prior {
    /// A white-box copy of the data party's head (inversion attacks need one).
    pub head: Option<WhiteBoxHead>,
    /// The positive class is the rarer one (NS orients its scores by it; Li et al. 2022 study
    /// imbalanced binary tasks).
    pub positive_is_minority: bool,
    /// The index, among the observed samples, of one sample known to be positive (DS).
    pub known_positive: Option<usize>,
    /// A copy of the data party's tail as it was at the observed step (Head–Body–Tail BLI
    /// differentiates through it, as the reference assumes the model party holds one).
    pub tail: Option<AnyModel>,
    /// Auxiliary examples the attacker holds (BiSR trains its inverter on them, model
    /// completion its surrogate head and tail), with where they come from.
    pub auxiliary: Option<Auxiliary>,
    /// Examples the attacker predicts on, whose labels score it (model completion's AP is
    /// its accuracy on the task's held-out set).
    pub evaluation: Option<Vec<(TokenBatch, Labels)>>,
    /// The model party's own slice, trained (the body in Head–Body–Tail).
    pub body: Option<AnyModel>,
    /// Public pretrained copies of the data party's slices, from which surrogates start: the
    /// head, and in Head–Body–Tail the tail with a fresh task head.
    pub surrogate: Option<Surrogate>,
}

/// Auxiliary examples the attacker holds.
#[derive(Clone)]
pub struct Auxiliary {
    /// Where they come from, for records (e.g. "sentiment training set, 64 examples disjoint
    /// from the observed ones").
    pub source: String,
    /// The examples as batches, with their labels.
    pub batches: Vec<(TokenBatch, Labels)>,
}

/// Public pretrained slices shaped like the data party's, from which surrogates start.
#[derive(Clone)]
pub struct Surrogate {
    /// Like the data party's head.
    pub head: AnyModel,
    /// Like the data party's tail (Head–Body–Tail), its task head freshly initialised.
    pub tail: Option<AnyModel>,
}

impl Prior {
    /// A prior with a white-box head.
    pub fn white_box(model: AnyModel, version: HeadVersion) -> Self {
        Self {
            head: Some(WhiteBoxHead { model, version }),
            ..Self::default()
        }
    }

    fn head(&self, attack: &'static str) -> Result<&AnyModel, AttackError> {
        self.head.as_ref().map(|h| &h.model).ok_or(AttackError {
            attack,
            reason: "needs a white-box copy of the data party's head in its prior".into(),
        })
    }
}

/// What an attack inferred, per observed sample in observation order.
#[derive(Debug, Clone, PartialEq)]
pub enum Inferred {
    /// Input tokens, per sample: every padded position with the reference's `mask = "none"`
    /// (the default), the real positions with `mask = "real"` ([`crate::InversionMask`]).
    Tokens(Vec<Recovered>),
    /// Labels with the attack's confidence.
    Labels(Vec<LabelGuess>),
}

/// What an attack run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Attacked {
    /// What it inferred.
    pub inferred: Inferred,
    /// How it got there, for records, where an attack has something to say (BiSR: whether
    /// its inverter came from the cache).
    pub details: Option<serde_json::Value>,
}

impl From<Inferred> for Attacked {
    fn from(inferred: Inferred) -> Self {
        Self {
            inferred,
            details: None,
        }
    }
}

/// An attack of the model party.
pub trait Attack {
    /// Its name in records.
    fn name(&self) -> &'static str;
    /// What it goes after.
    fn kind(&self) -> AttackKind;
    /// Its settings, for records.
    fn params(&self) -> serde_json::Value;
    /// Runs on `view` with `prior`; optimising attacks compute on the autodiff `device`.
    fn run(
        &self,
        view: &AttackerView,
        prior: &Prior,
        device: &Device,
    ) -> Result<Attacked, AttackError>;
}

/// One attack's settings: one `[[attacks]]` table per attack in a run's TOML. Defaults are the
/// reference's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttackConfig {
    /// Vanilla model inversion (white-box; the reference's `VanillaModelInversion_WhiteBox`).
    Vmi(#[serde(default)] VmiSettings),
    /// Relaxation-based white-box inversion (the reference's `WhiteBoxInversion`).
    Rwi(#[serde(default)] RwiSettings),
    /// Batch label inference by gradient matching (Head–Tail, classifier at the model party).
    Bli(#[serde(default)] BliSettings),
    /// Norm scoring (binary tasks).
    Ns(#[serde(default)] NoSettings),
    /// Direction scoring (binary tasks; needs one known positive).
    Ds(#[serde(default)] NoSettings),
    /// Direct label scoring (Head–Tail, classifier at the model party).
    Dls(#[serde(default)] DlsSettings),
    /// BiSR: a learned inverter, then forward and backward optimisation (white-box).
    Bisr(#[serde(default)] BisrSettings),
    /// Model completion (Head–Body–Tail): surrogate head and tail on auxiliary labelled data.
    ModelCompletion(#[serde(default)] CompletionSettings),
}

/// The settings of an attack that has none.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl AttackConfig {
    /// The attack, training whatever it learns afresh in every run.
    pub fn build(&self) -> Box<dyn Attack> {
        Box::new(Configured {
            config: self.clone(),
            cache: None,
        })
    }

    /// The attack, keeping what it learns in `cache` and reusing it when every input it was
    /// learned from is the same (BiSR's inverter).
    pub fn build_cached(&self, cache: ArtifactCache) -> Box<dyn Attack> {
        Box::new(Configured {
            config: self.clone(),
            cache: Some(cache),
        })
    }

    /// Its name in records.
    pub fn name(&self) -> &'static str {
        match self {
            AttackConfig::Vmi(_) => "vmi",
            AttackConfig::Rwi(_) => "rwi",
            AttackConfig::Bli(_) => "bli",
            AttackConfig::Ns(_) => "ns",
            AttackConfig::Ds(_) => "ds",
            AttackConfig::Dls(_) => "dls",
            AttackConfig::Bisr(_) => "bisr",
            AttackConfig::ModelCompletion(_) => "model_completion",
        }
    }

    /// What it goes after.
    pub fn kind(&self) -> AttackKind {
        match self {
            AttackConfig::Vmi(_) | AttackConfig::Rwi(_) | AttackConfig::Bisr(_) => {
                AttackKind::Inversion
            }
            AttackConfig::ModelCompletion(_) => AttackKind::ModelCompletion,
            _ => AttackKind::LabelInference,
        }
    }

    /// Refuses settings that cannot run, naming the field.
    pub fn validate(&self) -> Result<(), AttackError> {
        let fail = |reason: String| {
            Err(AttackError {
                attack: self.name(),
                reason,
            })
        };
        let (steps, lr) = match self {
            AttackConfig::Vmi(s) => (s.steps, s.lr),
            AttackConfig::Rwi(s) => {
                if !(s.temperature > 0.0 && s.temperature.is_finite()) {
                    return fail(format!("temperature = {} must be > 0", s.temperature));
                }
                (s.steps, s.lr)
            }
            AttackConfig::Bli(s) => (s.steps, s.lr),
            _ => return Ok(()),
        };
        if steps == 0 {
            return fail("steps = 0: the attack would not optimise at all".into());
        }
        if !(lr > 0.0 && lr.is_finite()) {
            return fail(format!("lr = {lr} must be > 0"));
        }
        Ok(())
    }
}

struct Configured {
    config: AttackConfig,
    cache: Option<ArtifactCache>,
}

impl Attack for Configured {
    fn name(&self) -> &'static str {
        self.config.name()
    }

    fn kind(&self) -> AttackKind {
        self.config.kind()
    }

    fn params(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn run(
        &self,
        view: &AttackerView,
        prior: &Prior,
        device: &Device,
    ) -> Result<Attacked, AttackError> {
        self.config.validate()?;
        let inferred = match &self.config {
            AttackConfig::Vmi(s) => Inferred::Tokens(vmi(view, prior.head("vmi")?, s, device)?),
            AttackConfig::Rwi(s) => Inferred::Tokens(rwi(view, prior.head("rwi")?, s, device)?),
            AttackConfig::Bli(s) => Inferred::Labels(bli(view, prior, s, device)?),
            AttackConfig::Ns(_) => {
                Inferred::Labels(norm_scoring(view, prior.positive_is_minority)?)
            }
            AttackConfig::Ds(_) => {
                let known = prior.known_positive.ok_or(AttackError {
                    attack: "ds",
                    reason: "needs the index of one known positive sample in its prior".into(),
                })?;
                Inferred::Labels(direction_scoring(view, known)?)
            }
            AttackConfig::Dls(s) => Inferred::Labels(direct_label_scoring(view, s)?),
            AttackConfig::Bisr(s) => {
                let run = bisr(view, prior, s, self.cache.as_ref(), device)?;
                return Ok(Attacked {
                    inferred: Inferred::Tokens(run.recovered),
                    details: Some(serde_json::json!({ "inverter": run.inverter })),
                });
            }
            AttackConfig::ModelCompletion(s) => {
                Inferred::Labels(model_completion(view, prior, s, device)?)
            }
        };
        Ok(inferred.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InversionMask, InversionObjective};

    #[test]
    fn configs_parse_with_reference_defaults_and_refuse_unknown_fields() {
        let list: Vec<AttackConfig> = serde_json::from_str(
            r#"[{"kind": "vmi"}, {"kind": "rwi", "steps": 10}, {"kind": "bli"}, {"kind": "ns"},
                {"kind": "vmi", "objective": "mse", "mask": "real", "lr": 0.001, "steps": 400},
                {"kind": "rwi", "objective": "mse", "mask": "real"}]"#,
        )
        .unwrap();
        assert_eq!(list[0], AttackConfig::Vmi(VmiSettings::default()));
        assert_eq!(
            list[1],
            AttackConfig::Rwi(RwiSettings {
                steps: 10,
                ..RwiSettings::default()
            })
        );
        assert_eq!(list[2], AttackConfig::Bli(BliSettings::default()));
        assert_eq!(list[3].kind(), AttackKind::LabelInference);
        // The reference's defaults: its `loss_type` defaults to cross-entropy in both attacks
        // (VanillaModelInversion_WhiteBox.py l.90-96, WhiteBoxInversion.py l.51-57), and its
        // dummy head runs without the attention mask, every padded position decoded.
        let vmi = VmiSettings::default();
        assert_eq!((vmi.steps, vmi.lr), (100, 1e-2));
        assert_eq!(vmi.objective, InversionObjective::CrossEntropy);
        assert_eq!(vmi.mask, InversionMask::None);
        // BatchLabelReconstruction_LLM: dummy labels from zero, Adam lr 0.05, 500 epochs (the
        // reference's configs), matched on the model party's weight gradients.
        let bli = BliSettings::default();
        assert_eq!(
            (bli.steps, bli.lr, bli.objective),
            (500, 0.05, crate::BliObjective::WeightGradients)
        );
        let rwi = RwiSettings::default();
        assert_eq!((rwi.steps, rwi.lr, rwi.temperature), (300, 5e-3, 0.05));
        assert_eq!(rwi.objective, InversionObjective::CrossEntropy);
        assert_eq!(rwi.mask, InversionMask::None);
        // splitlm's former behaviour, by name.
        let AttackConfig::Vmi(ours) = &list[4] else {
            panic!("{:?}", list[4])
        };
        assert_eq!(ours.objective, InversionObjective::Mse);
        assert_eq!(ours.mask, InversionMask::Real);
        let AttackConfig::Rwi(ours) = &list[5] else {
            panic!("{:?}", list[5])
        };
        assert_eq!(
            (ours.objective, ours.mask),
            (InversionObjective::Mse, InversionMask::Real)
        );
        // Recorded with the run: `params()` carries the new fields.
        let params = list[0].build().params();
        assert_eq!(params["objective"], "cross_entropy", "{params}");
        assert_eq!(params["mask"], "none", "{params}");
        for (bad, word) in [
            (r#"{"kind": "vmi", "stepz": 3}"#, "stepz"),
            (r#"{"kind": "vmi", "mask": "padded"}"#, "padded"),
            (r#"{"kind": "rwi", "objective": "kl"}"#, "kl"),
        ] {
            let err = serde_json::from_str::<AttackConfig>(bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains(word), "{err}");
        }
        let err = serde_json::from_str::<AttackConfig>(r#"{"kind": "ns", "x": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains('x'), "{err}");
        let zero = AttackConfig::Vmi(VmiSettings {
            steps: 0,
            ..VmiSettings::default()
        });
        assert!(zero.validate().unwrap_err().to_string().contains("steps"));
        let cold = AttackConfig::Rwi(RwiSettings {
            temperature: 0.0,
            ..RwiSettings::default()
        });
        assert!(
            cold.validate()
                .unwrap_err()
                .to_string()
                .contains("temperature")
        );
    }
}
