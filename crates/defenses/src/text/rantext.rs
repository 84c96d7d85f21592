//! RanText / InferDPT (Tong et al. 2023). Not built yet: building it is refused with a clear error.

use crate::{Defense, DefenseEnv, DefenseError, Needs};

/// Its settings; each left out takes the reference's value.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RanTextSettings {}

impl RanTextSettings {
    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), DefenseError> {
        Ok(())
    }

    /// What it needs from the data party.
    pub fn needs(&self) -> Needs {
        Needs::default()
    }

    /// The defense, its random draws seeded by `seed`.
    pub fn build(&self, _seed: u64, _env: &DefenseEnv) -> Result<Box<dyn Defense>, DefenseError> {
        Err(DefenseError {
            defense: "rantext",
            reason: "not implemented yet".into(),
        })
    }
}
