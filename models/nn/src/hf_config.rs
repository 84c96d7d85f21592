//! Reading a Hugging Face `config.json` into a family's typed configuration.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::ModelError;

/// Parses `<dir>/config.json` (or the file itself) as `T`, with errors naming the file.
pub fn read_config<T: DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    let origin = file.display().to_string();
    let text = std::fs::read_to_string(&file)
        .map_err(|e| ModelError::config(&origin, format!("cannot read: {e}")))?;
    parse_config(&text, &origin)
}

/// Parses config JSON text as `T`; `origin` names it in errors.
pub fn parse_config<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ModelError> {
    serde_json::from_str(text).map_err(|e| ModelError::config(origin, e.to_string()))
}

/// Checks `model_type` against the types a family accepts.
pub fn expect_model_type(found: &str, accepted: &[&str], origin: &str) -> Result<(), ModelError> {
    if accepted.contains(&found) {
        Ok(())
    } else {
        Err(ModelError::config(
            origin,
            format!(
                "unsupported architecture `{found}` for this model family (accepted: {})",
                accepted.join(", ")
            ),
        ))
    }
}
