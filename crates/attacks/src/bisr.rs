//! BiSR (Chen et al., arXiv 2409.00960): a learned inverter whose output starts a
//! gradient-based inversion, forward (activations) and backward (gradients). Not built yet.

use burn::tensor::Device;

use crate::inversion::Recovered;
use crate::{AttackError, AttackerView, Prior};

/// BiSR's settings; each left out takes the reference's value.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BisrSettings {}

/// Runs BiSR on `view`.
pub fn bisr(
    _view: &AttackerView,
    _prior: &Prior,
    _settings: &BisrSettings,
    _device: &Device,
) -> Result<Vec<Recovered>, AttackError> {
    Err(AttackError {
        attack: "bisr",
        reason: "not implemented yet".into(),
    })
}
