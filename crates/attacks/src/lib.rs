//! Attacks of an honest-but-curious model party (docs/ARCHITECTURE.md, "Observer hooks"). Each
//! works from an [`AttackerView`]: what the model party recorded of its own traffic
//! ([`splitlm_party::ModelParty::observe`]), never the data party's objects.
//!
//! Every attack implements [`Attack`] over an explicitly declared [`Prior`]; [`AttackConfig`]
//! is the `[[attacks]]` table of a run. Label inference: DLS (direct label scoring), NS (norm
//! scoring), DS (direction scoring), BLI (batch label inference by gradient matching). Input
//! inversion: VMI (vanilla model inversion) and RWI (relaxation-based white-box inversion).
//! [`score`] turns what an attack inferred into its AP against the truth.

mod attack;
mod bisr;
mod bli;
mod cache;
mod completion;
mod inversion;
mod label;
mod optimise;
pub mod score;

pub use attack::{
    Attack, AttackConfig, AttackKind, Attacked, Auxiliary, HeadVersion, Inferred, NoSettings,
    Prior, Surrogate, WhiteBoxHead,
};
pub use bisr::{
    BisrMode, BisrRun, BisrSettings, GateAttention, GateStage, InverterSource, NoiseSite, bisr,
};
pub use bli::{BliObjective, BliSettings, bli, bli_dummy_labels};
pub use cache::{ArtifactCache, CacheKey};
pub use completion::{CompletionSettings, PredictFrom, fresh_task_head, model_completion};
pub use inversion::{
    InversionMask, InversionObjective, Recovered, RwiSettings, VmiObjective, VmiSettings, rwi,
    token_precision_recall, vmi,
};
#[doc(hidden)]
pub use inversion::{ObjectiveProbe, ProbeBatch, probe_objective};
pub use label::{
    DlsRule, DlsSettings, LabelGuess, direct_label_scoring, direction_scoring, norm_scoring,
    roc_auc,
};

use splitlm_party::{ModelParty, Observation, SliceSnapshot};

/// What the attacker has: the recorded training steps.
#[derive(Debug, Clone, Default)]
pub struct AttackerView {
    /// The observations, in the order they were made.
    pub observations: Vec<Observation>,
    /// Its own slice around each recorded step (when recorded).
    pub slices: Vec<SliceSnapshot>,
}

impl AttackerView {
    /// Everything `party` recorded ([`ModelParty::observe`]).
    pub fn of(party: &ModelParty) -> Self {
        Self {
            observations: party.observations(),
            slices: party.observed_slices(),
        }
    }

    /// Only the recorded steps (no slices).
    pub fn steps(observations: Vec<Observation>) -> Self {
        Self {
            observations,
            slices: Vec::new(),
        }
    }
}

/// An attack that cannot run on what was observed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("attack {attack}: {reason}")]
pub struct AttackError {
    /// The attack.
    pub attack: &'static str,
    /// Why.
    pub reason: String,
}
