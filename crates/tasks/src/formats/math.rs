//! The MATH dataset (Hendrycks et al., NeurIPS 2021): one JSON file per problem,
//! `{problem, level, type, solution}`, in a tree `train|test/<subject>/<n>.json`; the final
//! answer is the content of the solution's last `\boxed{…}`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{json_error, read_utf8, record_error};
use crate::error::TaskError;

/// A math word problem with its worked solution and final answer (GSM8K and MATH).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MathProblem {
    /// The problem statement.
    pub problem: String,
    /// The full worked solution as published (GSM8K's `answer` text, with its calculator
    /// annotations and `#### n` line; MATH's `solution`, with its `\boxed{}`).
    pub solution: String,
    /// The final answer: GSM8K's number after `####` without commas, MATH's boxed expression.
    pub answer: String,
}

#[derive(Deserialize)]
struct RawMath {
    problem: String,
    solution: String,
}

/// The content of the last `\boxed{…}` or `\fbox{…}` in `text`, braces balanced (the
/// reference's `last_boxed_only_string` + `remove_boxed`). `\boxed 5` (a space, no braces)
/// gives what follows up to the next `$`, as Hendrycks' code reads it. `None` when there is no
/// box or its braces do not close.
///
/// Unlike the reference, which looks for `\fbox` only when there is no `\boxed` at all, the
/// box that comes last wins.
pub fn last_boxed(text: &str) -> Option<String> {
    let (at, macro_len) = [("\\boxed", 6), ("\\fbox", 5)]
        .into_iter()
        .filter_map(|(name, len)| text.rfind(name).map(|at| (at, len)))
        .max_by_key(|&(at, _)| at)?;
    let rest = &text[at + macro_len..];
    if let Some(inner) = rest.strip_prefix(' ') {
        let content = inner.split('$').next().unwrap_or("").trim();
        return (!content.is_empty()).then(|| content.to_string());
    }
    let inner = rest.strip_prefix('{')?;
    let mut depth = 1usize;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(inner[..i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// Reads one MATH problem file; its answer is the last box of the solution ([`last_boxed`]).
pub fn read_math_problem(path: &Path) -> Result<MathProblem, TaskError> {
    let text = read_utf8(path)?;
    let raw: RawMath = serde_json::from_str(&text).map_err(|e| json_error(path, 0, &e))?;
    let answer = last_boxed(&raw.solution).ok_or_else(|| {
        record_error(
            path,
            "solution",
            "no \\boxed{...} (or \\fbox{...}) answer with closed braces".into(),
        )
    })?;
    Ok(MathProblem {
        problem: raw.problem,
        solution: raw.solution,
        answer,
    })
}

/// Reads every `*.json` file under `dir` (recursively, e.g. `MATH/train`), in the order of
/// their sorted paths so that every platform sees the same sequence.
pub fn read_math_dir(dir: &Path) -> Result<Vec<MathProblem>, TaskError> {
    let mut files = Vec::new();
    collect_json(dir, &mut files)?;
    if files.is_empty() {
        return Err(TaskError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no .json problem files in this directory",
            ),
        });
    }
    files.sort();
    files.iter().map(|f| read_math_problem(f)).collect()
}

fn collect_json(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), TaskError> {
    let entries = std::fs::read_dir(dir).map_err(|e| TaskError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| TaskError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| TaskError::io(&path, e))?;
        if kind.is_dir() {
            collect_json(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::{fixture, write};

    #[test]
    fn boxes_are_found_with_balanced_braces() {
        assert_eq!(last_boxed("so $x = \\boxed{3}$."), Some("3".into()));
        assert_eq!(
            last_boxed("\\boxed{1} then \\boxed{\\frac{1}{2}}"),
            Some("\\frac{1}{2}".into())
        );
        assert_eq!(
            last_boxed("$\\boxed{\\{-1, 1\\}}$"),
            Some("\\{-1, 1\\}".into())
        );
        assert_eq!(last_boxed("$7 \\cdot 6 = \\fbox{42}$"), Some("42".into()));
        assert_eq!(
            last_boxed("\\fbox{1} and later \\boxed{2}"),
            Some("2".into())
        );
        assert_eq!(
            last_boxed("\\boxed{2} and later \\fbox{1}"),
            Some("1".into())
        );
        assert_eq!(last_boxed("the answer is $\\boxed 5$."), Some("5".into()));
        assert_eq!(last_boxed("\\boxed{\\frac{1}{2}"), None);
        assert_eq!(last_boxed("no box here"), None);
        assert_eq!(last_boxed("\\boxed"), None);
        assert_eq!(last_boxed("\\boxed{}"), Some(String::new()));
        assert_eq!(last_boxed("\\boxed{é{ü}}"), Some("é{ü}".into()));
    }

    #[test]
    fn reads_a_file_and_a_tree_in_sorted_order() {
        let one = read_math_problem(&fixture("MATH/train/algebra/3.json")).unwrap();
        assert_eq!(one.problem, "Simplify $\\frac{2}{4}$.");
        assert_eq!(one.answer, "\\frac{1}{2}");
        assert!(one.solution.contains("the answer is"));
        let all = read_math_dir(&fixture("MATH/train")).unwrap();
        let answers: Vec<&str> = all.iter().map(|p| p.answer.as_str()).collect();
        // algebra/12, algebra/3, geometry/7, prealgebra/1
        assert_eq!(answers, vec!["3", "\\frac{1}{2}", "\\{-1, 1\\}", "42"]);
    }

    #[test]
    fn problems_without_an_answer_are_refused() {
        let file = write(
            "{\"problem\": \"p\", \"level\": \"Level 1\", \"type\": \"Algebra\", \"solution\": \"no box\"}",
        );
        let err = read_math_problem(file.path()).unwrap_err().to_string();
        assert!(err.contains("solution") && err.contains("\\boxed"), "{err}");
        let file = write("{\"problem\": \"p\"}");
        let err = read_math_problem(file.path()).unwrap_err().to_string();
        assert!(err.contains("missing field `solution`"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = read_math_dir(empty.path()).unwrap_err().to_string();
        assert!(err.contains("no .json problem files"), "{err}");
        assert!(read_math_dir(Path::new("/nonexistent/MATH")).is_err());
    }
}
