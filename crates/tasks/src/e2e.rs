//! The E2E NLG data-to-text task (restaurant descriptions; the `e2e-nlg` asset) in BIG-bench's
//! JSON task format, `benchmark_tasks/gem/e2e_nlg/task.json`:
//!
//! ```json
//! {"name": "e2e_nlg", "description": "...",
//!  "example_input_prefix": "\nThere is a restaurant with the following attributes: ",
//!  "example_output_prefix": "\nDescribe the restaurant: ",
//!  "examples": [{"input": "name: Blue Spice, eatType: coffee shop, area: city centre",
//!                "target": "A coffee shop in the city centre area called Blue Spice.",
//!                "comment": "e2e_nlg-test-0"}, ...]}
//! ```
//!
//! Each example's `input` is a meaning representation, `attribute: value` pairs joined by
//! `, `. Its references are `target` (a string or a list of strings) or, in tasks scored by
//! choice, the best-scored options of `target_scores`. Examples with the same input are
//! separate records in the file (1,000 examples over 213 inputs in the asset);
//! [`group_by_input`] gathers their references.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::dataset::train_test_split;
use crate::error::TaskError;

/// One data-to-text example: a meaning representation and its reference texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataToText {
    /// The meaning representation, e.g. `name: Blue Spice, eatType: coffee shop`.
    pub input: String,
    /// The reference texts; never empty.
    pub targets: Vec<String>,
}

impl DataToText {
    /// The input's `attribute: value` pairs in order, or `None` when some comma-separated
    /// part has no `: `.
    pub fn attributes(&self) -> Option<Vec<(&str, &str)>> {
        self.input
            .split(", ")
            .map(|part| part.split_once(": "))
            .collect()
    }
}

/// A BIG-bench JSON task of data-to-text examples, with the prompt pieces it specifies.
#[derive(Debug, Clone, PartialEq)]
pub struct DataToTextTask {
    /// `name` (empty when absent).
    pub name: String,
    /// `description` (empty when absent).
    pub description: String,
    /// `example_input_prefix`: put before each input in a prompt (empty when absent).
    pub input_prefix: String,
    /// `example_output_prefix`: put between the input and the text (empty when absent).
    pub output_prefix: String,
    /// The examples, in file order.
    pub examples: Vec<DataToText>,
}

/// Reads a BIG-bench JSON task file.
pub fn read_task(path: &Path) -> Result<DataToTextTask, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|e| TaskError::io(path, e))?;
    parse_task(&text, path)
}

/// The examples of a BIG-bench JSON task file.
pub fn read_examples(path: &Path) -> Result<Vec<DataToText>, TaskError> {
    Ok(read_task(path)?.examples)
}

/// Parses the text of a BIG-bench JSON task; `path` names it in errors.
pub fn parse_task(text: &str, path: &Path) -> Result<DataToTextTask, TaskError> {
    let root: Value = serde_json::from_str(text).map_err(|e| TaskError::Format {
        path: path.to_path_buf(),
        line: e.line(),
        reason: without_position(&e.to_string()),
    })?;
    let record_error = |record: String, reason: String| TaskError::Record {
        path: path.to_path_buf(),
        record,
        reason,
    };
    let Value::Object(task) = &root else {
        return Err(record_error(
            "the document".into(),
            "expected a JSON object".into(),
        ));
    };
    let text_field = |key: &str| match task.get(key) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(record_error(format!("`{key}`"), "is not a string".into())),
    };
    let Some(Value::Array(examples)) = task.get("examples") else {
        return Err(record_error(
            "`examples`".into(),
            "missing, or not a list".into(),
        ));
    };
    let examples = examples
        .iter()
        .enumerate()
        .map(|(i, example)| {
            parse_example(example).map_err(|reason| record_error(format!("examples[{i}]"), reason))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(DataToTextTask {
        name: text_field("name")?,
        description: text_field("description")?,
        input_prefix: text_field("example_input_prefix")?,
        output_prefix: text_field("example_output_prefix")?,
        examples,
    })
}

/// Merges the examples that share an input into one with all their references, in order
/// of first appearance (of inputs, and of references within each).
pub fn group_by_input(examples: &[DataToText]) -> Vec<DataToText> {
    let mut grouped: Vec<DataToText> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for example in examples {
        match index.get(example.input.as_str()) {
            Some(&i) => grouped[i].targets.extend(example.targets.iter().cloned()),
            None => {
                index.insert(&example.input, grouped.len());
                grouped.push(example.clone());
            }
        }
    }
    grouped
}

/// Splits into (train, test) by input: the examples are grouped with [`group_by_input`],
/// shuffled by `seed`, and `test_fraction` of the inputs are held out, so no meaning
/// representation is in both. The same seed always gives the same split.
pub fn split(
    examples: &[DataToText],
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<DataToText>, Vec<DataToText>), TaskError> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(TaskError::Config(format!(
            "test_fraction = {test_fraction} must be in [0, 1)"
        )));
    }
    Ok(train_test_split(
        &group_by_input(examples),
        test_fraction,
        seed,
    ))
}

/// One element of `examples`; the error says what is wrong with it.
fn parse_example(example: &Value) -> Result<DataToText, String> {
    let Value::Object(fields) = example else {
        return Err("is not a JSON object".into());
    };
    let input = match fields.get("input") {
        Some(Value::String(input)) => input.clone(),
        Some(_) => return Err("`input` is not a string".into()),
        None => return Err("has no `input`".into()),
    };
    let targets = match (fields.get("target"), fields.get("target_scores")) {
        (Some(target), _) => targets_of(target)?,
        (None, Some(scores)) => best_scored(scores)?,
        (None, None) => return Err("has neither `target` nor `target_scores`".into()),
    };
    Ok(DataToText { input, targets })
}

/// `target`: a string, or a non-empty list of strings.
fn targets_of(target: &Value) -> Result<Vec<String>, String> {
    let not_text = || "`target` is not a string or a list of strings".to_owned();
    match target {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if items.is_empty() => Err("`target` is an empty list".into()),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(not_text))
            .collect(),
        _ => Err(not_text()),
    }
}

/// The options of `target_scores` with the highest score, in lexicographic order.
fn best_scored(scores: &Value) -> Result<Vec<String>, String> {
    let Value::Object(scores) = scores else {
        return Err("`target_scores` is not an object".into());
    };
    let mut options: Vec<(&String, f64)> = Vec::with_capacity(scores.len());
    for (option, score) in scores {
        let score = score
            .as_f64()
            .ok_or_else(|| format!("the score of `{option}` in `target_scores` is not a number"))?;
        options.push((option, score));
    }
    let best = options
        .iter()
        .map(|(_, score)| *score)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut targets: Vec<String> = options
        .into_iter()
        .filter(|(_, score)| *score == best)
        .map(|(option, _)| option.clone())
        .collect();
    if targets.is_empty() {
        return Err("`target_scores` is empty".into());
    }
    targets.sort();
    Ok(targets)
}

/// serde_json's message without its ` at line L column C` suffix (the line is reported
/// separately).
fn without_position(message: &str) -> String {
    match message.rsplit_once(" at line ") {
        Some((head, _)) => head.to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/e2e/task.json")
    }

    fn parse_str(text: &str) -> Result<DataToTextTask, TaskError> {
        parse_task(text, Path::new("dir/task.json"))
    }

    #[test]
    fn the_fixture_reads_with_its_prompt_pieces() {
        let task = read_task(&fixture()).unwrap();
        assert_eq!(task.name, "e2e_nlg");
        assert_eq!(
            task.description,
            "Describe a restaurant with a set of given attributes"
        );
        assert_eq!(
            task.input_prefix,
            "\nThere is a restaurant with the following attributes: "
        );
        assert_eq!(task.output_prefix, "\nDescribe the restaurant: ");
        assert_eq!(task.examples.len(), 6);
        assert_eq!(
            task.examples[0],
            DataToText {
                input: "name: Blue Spice, eatType: coffee shop, area: city centre".into(),
                targets: vec!["A coffee shop in the city centre area called Blue Spice.".into()],
            }
        );
        assert_eq!(read_examples(&fixture()).unwrap(), task.examples);
    }

    #[test]
    fn attributes_split_the_meaning_representation() {
        let examples = read_examples(&fixture()).unwrap();
        assert_eq!(
            examples[5].attributes().unwrap(),
            [
                ("name", "The Cricketers"),
                ("eatType", "restaurant"),
                ("customer rating", "1 out of 5"),
                ("familyFriendly", "yes"),
                ("near", "Avalon"),
            ]
        );
        let odd = DataToText {
            input: "name: X, just words".into(),
            targets: vec!["t".into()],
        };
        assert_eq!(odd.attributes(), None);
    }

    #[test]
    fn references_of_one_input_are_grouped_in_order() {
        let examples = read_examples(&fixture()).unwrap();
        let grouped = group_by_input(&examples);
        assert_eq!(grouped.len(), 4);
        assert_eq!(grouped[0].input, examples[0].input);
        assert_eq!(
            grouped[0].targets,
            [
                "A coffee shop in the city centre area called Blue Spice.",
                "Blue Spice is a coffee shop in city centre.",
            ]
        );
        // The input of examples[2] comes back at examples[4]: still one group.
        assert_eq!(grouped[1].targets.len(), 2);
        let total: usize = grouped.iter().map(|g| g.targets.len()).sum();
        assert_eq!(total, examples.len());
    }

    #[test]
    fn splits_hold_out_whole_inputs() {
        let examples = read_examples(&fixture()).unwrap();
        let (train, test) = split(&examples, 0.5, 3).unwrap();
        assert_eq!((train.len(), test.len()), (2, 2));
        assert!(
            train
                .iter()
                .all(|t| !test.iter().any(|u| u.input == t.input))
        );
        assert_eq!(split(&examples, 0.5, 3).unwrap(), (train, test));
        assert!(split(&examples, 1.0, 3).is_err());
    }

    #[test]
    fn list_targets_and_target_scores_are_read() {
        let task = parse_str(
            r#"{"examples": [
                {"input": "a", "target": ["x", "y"]},
                {"input": "b", "target_scores": {"q": 0, "p": 1, "o": 1.0}},
                {"input": "c", "target": "z", "target_scores": {"w": 1}}
            ]}"#,
        )
        .unwrap();
        let targets: Vec<_> = task.examples.iter().map(|e| e.targets.clone()).collect();
        assert_eq!(targets, [vec!["x", "y"], vec!["o", "p"], vec!["z"]]);
        assert_eq!(task.name, "");
    }

    #[test]
    fn malformed_tasks_name_the_file_record_and_problem() {
        let cases = [
            (
                "{\"examples\": [\n{\"input\": }]}",
                "line 2",
                "expected value",
            ),
            ("[]", "the document", "JSON object"),
            ("{}", "`examples`", "missing"),
            (r#"{"examples": {}}"#, "`examples`", "not a list"),
            (r#"{"examples": [3]}"#, "examples[0]", "not a JSON object"),
            (
                r#"{"examples": [{"target": "t"}]}"#,
                "examples[0]",
                "no `input`",
            ),
            (
                r#"{"examples": [{"input": 1, "target": "t"}]}"#,
                "examples[0]",
                "`input`",
            ),
            (
                r#"{"examples": [{"input": "a", "target": "t"}, {"input": "b"}]}"#,
                "examples[1]",
                "neither `target` nor `target_scores`",
            ),
            (
                r#"{"examples": [{"input": "a", "target": 5}]}"#,
                "examples[0]",
                "not a string",
            ),
            (
                r#"{"examples": [{"input": "a", "target": []}]}"#,
                "examples[0]",
                "empty list",
            ),
            (
                r#"{"examples": [{"input": "a", "target": ["x", 1]}]}"#,
                "examples[0]",
                "list of strings",
            ),
            (
                r#"{"examples": [{"input": "a", "target_scores": {}}]}"#,
                "examples[0]",
                "empty",
            ),
            (
                r#"{"examples": [{"input": "a", "target_scores": {"x": "1"}}]}"#,
                "examples[0]",
                "`x`",
            ),
            (r#"{"name": 3, "examples": []}"#, "`name`", "not a string"),
        ];
        for (text, record, problem) in cases {
            let err = parse_str(text).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with("dir/task.json, ") && msg.contains(record) && msg.contains(problem),
                "{text}: {msg}"
            );
        }
        let err = read_task(Path::new("/nonexistent/task.json")).unwrap_err();
        assert!(matches!(err, TaskError::Io { .. }), "{err:?}");
    }
}
