//! Attacks of an honest-but-curious model party (DESIGN.md §1.4). Each works from an
//! [`AttackerView`]: what the model party recorded of its own traffic
//! ([`splitlm_party::ModelParty::observe`]), never the data party's objects.
//!
//! Label inference: DLS (direct label scoring) and NS (norm scoring). Input inversion: VMI and RWI.

mod inversion;
mod label;

pub use inversion::{Recovered, RwiSettings, VmiSettings, rwi, token_precision_recall, vmi};
pub use label::{LabelGuess, direct_label_scoring, norm_scoring, roc_auc};

use splitlm_party::Observation;

/// What the attacker has: the recorded training steps.
#[derive(Debug, Clone, Default)]
pub struct AttackerView {
    /// The observations, in the order they were made.
    pub observations: Vec<Observation>,
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
