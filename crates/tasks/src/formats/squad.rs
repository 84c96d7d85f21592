//! SQuAD v1.1 in its public JSON format (`train-v1.1.json`, `dev-v1.1.json`):
//! `{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", "answers":
//! [{"text", "answer_start"}]}]}]}], "version"}`, one record per question.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use super::{json_error, read_utf8, record_error};
use crate::error::TaskError;

/// One answer span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquadAnswer {
    /// The answer as it appears in the context.
    pub text: String,
    /// Where it starts in the context, in characters (Unicode scalar values, as Python counts),
    /// not bytes.
    pub start: usize,
}

/// One question on a paragraph, with its reference answers (several in the dev set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SquadQuestion {
    /// The question's id, which predictions are keyed by.
    pub id: String,
    /// The title of the article the paragraph is from.
    pub title: String,
    /// The paragraph.
    pub context: String,
    /// The question.
    pub question: String,
    /// The reference answers, in file order.
    pub answers: Vec<SquadAnswer>,
}

#[derive(Deserialize)]
struct RawFile {
    data: Vec<RawArticle>,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Deserialize)]
struct RawArticle {
    #[serde(default)]
    title: String,
    paragraphs: Vec<RawParagraph>,
}

#[derive(Deserialize)]
struct RawParagraph {
    context: String,
    qas: Vec<RawQuestion>,
}

#[derive(Deserialize)]
struct RawQuestion {
    id: String,
    question: String,
    answers: Vec<RawAnswer>,
}

#[derive(Deserialize)]
struct RawAnswer {
    text: String,
    answer_start: usize,
}

/// How far (in characters) an `answer_start` may be from its text and still be realigned.
const MAX_SHIFT: usize = 3;

/// Reads a SQuAD v1.1 file, question by question in file order. Each `answer_start` must point
/// at its answer's text in the context (counted in characters). One that is off by at most
/// three characters is moved to where the text is, with a warning (the copy of the dev set
/// that BIG-bench ships has 15 answers off by one); an answer not found there, or a repeated
/// question id, is refused with the question's id. A `version` other than `1.1` is logged, as
/// the official script warns, and read all the same.
pub fn read_squad_json(path: &Path) -> Result<Vec<SquadQuestion>, TaskError> {
    let text = read_utf8(path)?;
    let file: RawFile = serde_json::from_str(&text).map_err(|e| json_error(path, 0, &e))?;
    if let Some(version) = file.version.as_deref().filter(|v| *v != "1.1") {
        log::warn!("{}: SQuAD version {version}, read as v1.1", path.display());
    }
    let mut seen = HashSet::new();
    let (mut realigned, mut first_realigned) = (0usize, None::<String>);
    let mut questions = Vec::new();
    for article in file.data {
        for paragraph in article.paragraphs {
            let context = &paragraph.context;
            // Byte offset of every character of the context, and of its end.
            let offsets: Vec<usize> = context
                .char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(context.len()))
                .collect();
            for qa in paragraph.qas {
                let name = format!("question \"{}\"", qa.id);
                if !seen.insert(qa.id.clone()) {
                    return Err(record_error(path, name, "the id is repeated".into()));
                }
                let mut answers = Vec::with_capacity(qa.answers.len());
                for answer in qa.answers {
                    let given = answer.answer_start;
                    let is_at = |start: usize| {
                        offsets
                            .get(start)
                            .is_some_and(|&byte| context[byte..].starts_with(&answer.text))
                    };
                    let found = (0..=MAX_SHIFT)
                        .flat_map(|shift| [given.checked_add(shift), given.checked_sub(shift)])
                        .flatten()
                        .find(|&start| is_at(start));
                    let Some(start) = found else {
                        let there: String = context
                            .chars()
                            .skip(given)
                            .take(answer.text.chars().count())
                            .collect();
                        return Err(record_error(
                            path,
                            name,
                            format!(
                                "answer \"{}\" is not at character {given} of the context \
                                 ({} characters long) nor within {MAX_SHIFT} of it; the \
                                 context reads \"{there}\" there",
                                answer.text,
                                offsets.len() - 1
                            ),
                        ));
                    };
                    if start != given {
                        realigned += 1;
                        first_realigned.get_or_insert_with(|| qa.id.clone());
                    }
                    answers.push(SquadAnswer {
                        text: answer.text,
                        start,
                    });
                }
                questions.push(SquadQuestion {
                    id: qa.id,
                    title: article.title.clone(),
                    context: context.clone(),
                    question: qa.question,
                    answers,
                });
            }
        }
    }
    if let Some(first) = first_realigned {
        log::warn!(
            "{}: {realigned} answer_start values were off by up to {MAX_SHIFT} characters and \
             were moved to their text (the first in question \"{first}\")",
            path.display()
        );
    }
    if questions.is_empty() {
        return Err(TaskError::Format {
            path: path.to_path_buf(),
            line: 1,
            reason: "no questions in the file".into(),
        });
    }
    Ok(questions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testing::{fixture, write};

    #[test]
    fn reads_questions_with_character_offsets() {
        let questions = read_squad_json(&fixture("squad_v1.1.json")).unwrap();
        assert_eq!(questions.len(), 5);
        let first = &questions[0];
        assert_eq!(first.id, "56be4db0acb8001400a502ec");
        assert_eq!(first.title, "Super_Bowl_50");
        assert_eq!(
            first.question,
            "Which NFL team represented the AFC at Super Bowl 50?"
        );
        assert_eq!(first.answers.len(), 3);
        assert_eq!(first.answers[0].text, "Denver Broncos");
        assert_eq!(first.answers[0].start, 177);
        // After "Никола Тесла" and "–": character offsets differ from byte offsets here.
        let last = &questions[4];
        assert_eq!(last.title, "Nikola_Tesla");
        assert_eq!(last.answers[0].start, 237);
        assert_ne!(last.context.find(&last.answers[0].text), Some(237));
        let span: String = last
            .context
            .chars()
            .skip(last.answers[0].start)
            .take(last.answers[0].text.chars().count())
            .collect();
        assert_eq!(span, last.answers[0].text);
    }

    #[test]
    fn misplaced_answers_and_bad_files_are_explained() {
        let misplaced = r#"{"data": [{"title": "T", "paragraphs": [{"context": "Ab cd ef gh ij",
            "qas": [{"id": "q7", "question": "?", "answers": [{"text": "ij", "answer_start": 3}]}]}]}],
            "version": "1.1"}"#;
        let file = write(misplaced);
        let err = read_squad_json(file.path()).unwrap_err().to_string();
        assert!(
            err.contains("question \"q7\"") && err.contains("not at character 3"),
            "{err}"
        );
        assert!(err.contains("reads \"cd\" there"), "{err}");
        let beyond = misplaced.replace("\"answer_start\": 3", "\"answer_start\": 30");
        let file = write(&beyond);
        let err = read_squad_json(file.path()).unwrap_err().to_string();
        assert!(
            err.contains("q7") && err.contains("14 characters long"),
            "{err}"
        );
        // Off by up to three characters: moved to the text ("ij" is at 12).
        for given in [9, 11, 13, 15] {
            let near =
                misplaced.replace("\"answer_start\": 3", &format!("\"answer_start\": {given}"));
            let file = write(&near);
            let questions = read_squad_json(file.path()).unwrap();
            assert_eq!(questions[0].answers[0].start, 12, "{given}");
        }
        let repeated = r#"{"data": [{"title": "T", "paragraphs": [{"context": "Ab cd",
            "qas": [{"id": "q1", "question": "?", "answers": []},
                    {"id": "q1", "question": "?", "answers": []}]}]}]}"#;
        let file = write(repeated);
        let err = read_squad_json(file.path()).unwrap_err().to_string();
        assert!(err.contains("\"q1\"") && err.contains("repeated"), "{err}");
        let file = write("{\"data\": [{\"title\": \"T\",\n \"paragraphs\": [{\"qas\": []}]}]}");
        let err = read_squad_json(file.path()).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("context"), "{err}");
        let file = write("{\"data\": []}");
        assert!(read_squad_json(file.path()).is_err());
    }
}
