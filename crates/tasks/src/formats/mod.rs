//! Loaders for the public files of the reference's datasets, each returning typed records:
//! Yelp reviews (CSV), SQuAD v1.1 (JSON), Lambada (plain text), Alpaca / CodeAlpaca (JSON) and
//! Dolly (JSONL) instructions, GSM8K (JSONL) and MATH (one JSON file per problem).
//!
//! Every loader reads a whole file, and reports a bad one by its path and the line (or, where
//! the format has no lines to speak of, the record) where it went wrong.

pub mod gsm8k;
pub mod instruction;
pub mod lambada;
pub mod math;
pub mod squad;
pub mod yelp;

pub use gsm8k::{gsm8k_final_answer, read_gsm8k_jsonl};
pub use instruction::{Instruction, read_alpaca_json, read_code_alpaca_json, read_dolly_jsonl};
pub use lambada::{NextWord, read_lambada_text};
pub use math::{MathProblem, last_boxed, read_math_dir, read_math_problem};
pub use squad::{SquadAnswer, SquadQuestion, read_squad_json};
pub use yelp::{YelpVariant, read_yelp_csv};

use std::path::Path;

use crate::error::TaskError;

/// The file as UTF-8 text; invalid bytes are reported with their line.
pub(crate) fn read_utf8(path: &Path) -> Result<String, TaskError> {
    let bytes = std::fs::read(path).map_err(|e| TaskError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        TaskError::Format {
            path: path.to_path_buf(),
            line,
            reason: format!("invalid UTF-8 at byte {valid}"),
        }
    })
}

/// A JSON error of `path` as a [`TaskError::Format`], at the line serde_json found it on
/// (`line_offset` is added: the line of a JSONL record in its file, less one).
pub(crate) fn json_error(path: &Path, line_offset: usize, error: &serde_json::Error) -> TaskError {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let reason = match message.strip_suffix(&position) {
        Some(stripped) => format!("{stripped} (column {})", error.column()),
        None => message,
    };
    TaskError::Format {
        path: path.to_path_buf(),
        line: line_offset + error.line().max(1),
        reason: format!("not the expected JSON: {reason}"),
    }
}

/// Parses each non-blank line of a JSONL file as a `T`, with its 1-based line number.
pub(crate) fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Vec<(usize, T)>, TaskError> {
    let text = read_utf8(path)?;
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(line).map_err(|e| json_error(path, index, &e))?;
        records.push((index + 1, record));
    }
    if records.is_empty() {
        return Err(TaskError::Format {
            path: path.to_path_buf(),
            line: 1,
            reason: "no records in the file".into(),
        });
    }
    Ok(records)
}

/// A record error: `record` names it (`record 3`, `question "…"`).
pub(crate) fn record_error(path: &Path, record: impl Into<String>, reason: String) -> TaskError {
    TaskError::Record {
        path: path.to_path_buf(),
        record: record.into(),
        reason,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;

    /// A committed fixture under `fixtures/formats/`.
    pub fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/formats")
            .join(name)
    }

    /// A temporary file with `content`.
    pub fn write(content: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), content).unwrap();
        file
    }
}

#[cfg(test)]
mod tests {
    use super::testing::write;
    use super::*;

    #[test]
    fn invalid_utf8_is_reported_with_its_line() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"fine\nalso fine\nbad \xff byte\n").unwrap();
        let err = read_utf8(file.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("invalid UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn jsonl_errors_name_the_line_of_the_file() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Row {
            a: u32,
        }
        let file = write("{\"a\": 1}\n\n{\"a\": \"x\"}\n");
        let err = read_jsonl::<Row>(file.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("invalid type"),
            "{err}"
        );
        assert!(!err.contains("at line 1"), "{err}");
        let file = write("\n\n");
        let err = read_jsonl::<Row>(file.path()).unwrap_err().to_string();
        assert!(err.contains("no records"), "{err}");
    }
}
