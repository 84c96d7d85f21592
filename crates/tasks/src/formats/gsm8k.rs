//! GSM8K (Cobbe et al., 2021) in its public JSONL (`train.jsonl`, `test.jsonl`):
//! `{"question", "answer"}`, the answer a worked solution whose last line is `#### <number>`.

use std::path::Path;

use serde::Deserialize;

use super::math::MathProblem;
use super::{read_jsonl, record_error};
use crate::error::TaskError;

#[derive(Deserialize)]
struct RawGsm8k {
    question: String,
    answer: String,
}

/// The final answer of a GSM8K solution: what follows the last `####`, trimmed, commas
/// removed (`"#### 18,000"` gives `"18000"`). `None` when there is no `####` or nothing after.
pub fn gsm8k_final_answer(solution: &str) -> Option<String> {
    let (_, after) = solution.rsplit_once("####")?;
    let answer: String = after.trim().chars().filter(|&c| c != ',').collect();
    (!answer.is_empty()).then_some(answer)
}

/// Reads a GSM8K JSONL file: the question becomes the problem, the answer text the solution
/// (kept whole), and its `####` number the final answer. A solution without one is refused
/// with its line.
pub fn read_gsm8k_jsonl(path: &Path) -> Result<Vec<MathProblem>, TaskError> {
    let mut problems = Vec::new();
    for (line, raw) in read_jsonl::<RawGsm8k>(path)? {
        let answer = gsm8k_final_answer(&raw.answer).ok_or_else(|| {
            record_error(
                path,
                format!("line {line}"),
                "the answer does not end in \"#### <number>\"".into(),
            )
        })?;
        problems.push(MathProblem {
            problem: raw.question,
            solution: raw.answer,
            answer,
        });
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::{fixture, write};

    #[test]
    fn reads_problems_and_final_answers() {
        let problems = read_gsm8k_jsonl(&fixture("gsm8k_test.jsonl")).unwrap();
        let answers: Vec<&str> = problems.iter().map(|p| p.answer.as_str()).collect();
        assert_eq!(answers, vec!["72", "18000", "-3"]);
        assert!(problems[0].problem.starts_with("Natalia sold clips"));
        assert!(problems[0].solution.contains("<<48/2=24>>"));
        assert!(problems[0].solution.ends_with("#### 72"));
        assert_eq!(
            gsm8k_final_answer("a\n#### 1,234,567 "),
            Some("1234567".into())
        );
        assert_eq!(gsm8k_final_answer("no marker"), None);
        assert_eq!(gsm8k_final_answer("#### "), None);
    }

    #[test]
    fn answers_without_a_final_number_are_refused() {
        let file = write(
            "{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"question\": \"q\", \"answer\": \"just text\"}\n",
        );
        let err = read_gsm8k_jsonl(file.path()).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("####"), "{err}");
        let file = write("{\"question\": \"q\"}\n");
        let err = read_gsm8k_jsonl(file.path()).unwrap_err().to_string();
        assert!(err.contains("missing field `answer`"), "{err}");
    }
}
