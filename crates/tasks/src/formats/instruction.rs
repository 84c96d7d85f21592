//! Instruction-following sets: Stanford Alpaca (`alpaca_data.json`) and CodeAlpaca
//! (`code_alpaca_20k.json`), JSON arrays of `{instruction, input, output}`; Databricks Dolly
//! (`databricks-dolly-15k.jsonl`), JSON lines of `{instruction, context, response, category}`.

use std::path::Path;

use serde::Deserialize;

use super::{json_error, read_jsonl, read_utf8, record_error};
use crate::error::TaskError;

/// One instruction with its optional input and the reference output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// What to do.
    pub instruction: String,
    /// What to do it on (Alpaca's `input`, Dolly's `context`); empty when there is none.
    pub input: String,
    /// The reference response (Alpaca's `output`, Dolly's `response`).
    pub output: String,
}

#[derive(Deserialize)]
struct RawAlpaca {
    instruction: String,
    #[serde(default)]
    input: Option<String>,
    output: String,
}

#[derive(Deserialize)]
struct RawDolly {
    instruction: String,
    #[serde(default)]
    context: Option<String>,
    response: String,
}

/// Reads an Alpaca-format JSON array (Stanford Alpaca, CodeAlpaca). A missing or `null`
/// `input` is read as empty; an empty instruction is refused with its record number.
pub fn read_alpaca_json(path: &Path) -> Result<Vec<Instruction>, TaskError> {
    let text = read_utf8(path)?;
    let raw: Vec<RawAlpaca> = serde_json::from_str(&text).map_err(|e| json_error(path, 0, &e))?;
    let mut records = Vec::with_capacity(raw.len());
    for (index, r) in raw.into_iter().enumerate() {
        records.push(checked(
            path,
            || format!("record {}", index + 1),
            r.instruction,
            r.input,
            r.output,
        )?);
    }
    non_empty(path, records)
}

/// Reads CodeAlpaca's `code_alpaca_20k.json`, which has Alpaca's format
/// (see [`read_alpaca_json`]).
pub fn read_code_alpaca_json(path: &Path) -> Result<Vec<Instruction>, TaskError> {
    read_alpaca_json(path)
}

/// Reads Dolly's JSON lines; `context` becomes the input and `response` the output (the
/// `category` is not kept). An empty instruction is refused with its line, as the reference
/// refuses it.
pub fn read_dolly_jsonl(path: &Path) -> Result<Vec<Instruction>, TaskError> {
    let mut records = Vec::new();
    for (line, r) in read_jsonl::<RawDolly>(path)? {
        records.push(checked(
            path,
            || format!("line {line}"),
            r.instruction,
            r.context,
            r.response,
        )?);
    }
    non_empty(path, records)
}

fn checked(
    path: &Path,
    name: impl Fn() -> String,
    instruction: String,
    input: Option<String>,
    output: String,
) -> Result<Instruction, TaskError> {
    if instruction.trim().is_empty() {
        return Err(record_error(
            path,
            name(),
            "the instruction is empty".into(),
        ));
    }
    Ok(Instruction {
        instruction,
        input: input.unwrap_or_default(),
        output,
    })
}

fn non_empty(path: &Path, records: Vec<Instruction>) -> Result<Vec<Instruction>, TaskError> {
    if records.is_empty() {
        return Err(TaskError::Format {
            path: path.to_path_buf(),
            line: 1,
            reason: "no instructions in the file".into(),
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::{fixture, write};

    #[test]
    fn reads_the_three_sets() {
        let alpaca = read_alpaca_json(&fixture("alpaca_data.json")).unwrap();
        assert_eq!(alpaca.len(), 3);
        assert_eq!(
            alpaca[0].instruction,
            "Give three tips for staying healthy."
        );
        assert_eq!(alpaca[0].input, "");
        assert!(alpaca[0].output.starts_with("1. Eat a balanced diet"));
        assert_eq!(alpaca[1].input, "The weather is nice today.");
        assert!(alpaca[2].input.contains("café"));
        let code = read_code_alpaca_json(&fixture("code_alpaca_20k.json")).unwrap();
        assert_eq!(code.len(), 2);
        assert_eq!(
            code[1].output,
            "def total(nums):\n    return sum(nums)\n\nprint(total(nums))"
        );
        let dolly = read_dolly_jsonl(&fixture("databricks-dolly-15k.jsonl")).unwrap();
        assert_eq!(dolly.len(), 3);
        assert!(
            dolly[0]
                .input
                .starts_with("Virgin Australia, the trading name")
        );
        assert_eq!(dolly[1].input, "");
        assert_eq!(dolly[1].output, "Tope");
    }

    #[test]
    fn bad_records_are_explained() {
        let file =
            write("[{\"instruction\": \"a\", \"output\": \"b\"},\n {\"instruction\": \"c\"}]");
        let err = read_alpaca_json(file.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("missing field `output`"),
            "{err}"
        );
        let file = write(
            "[{\"instruction\": \"a\", \"input\": null, \"output\": \"b\"},\n {\"instruction\": \" \", \"output\": \"d\"}]",
        );
        let err = read_alpaca_json(file.path()).unwrap_err().to_string();
        assert!(
            err.contains("record 2") && err.contains("instruction is empty"),
            "{err}"
        );
        let file = write("[]");
        assert!(read_alpaca_json(file.path()).is_err());
        let file = write(
            "{\"instruction\": \"a\", \"context\": \"\", \"response\": \"b\", \"category\": \"x\"}\n{\"instruction\": \"\", \"context\": \"\", \"response\": \"b\"}\n",
        );
        let err = read_dolly_jsonl(file.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("instruction is empty"),
            "{err}"
        );
        let file = write("{\"instruction\": \"a\", \"response\": 3}\n");
        let err = read_dolly_jsonl(file.path()).unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("invalid type"),
            "{err}"
        );
    }
}
