//! Metrics on generated or extracted text, with the definitions of their references: the
//! official SQuAD v1.1 evaluation (`evaluate-v1.1.py`) and final-answer accuracy for GSM8K and
//! MATH; ROUGE (Google's `rouge-score`) lives in `splitlm-metrics` and is re-exported here.
//!
//! The reference framework itself computes some of these differently; where we follow the
//! public definition instead, the item says so.

use std::collections::HashMap;

use crate::error::TaskError;
use crate::formats::{SquadQuestion, last_boxed};
pub use splitlm_metrics::rouge::{
    RougeScore, RougeScores, rouge, rouge_l, rouge_mean, rouge_n, rouge_tokenize,
};

// ---------------------------------------------------------------------------------------------
// SQuAD v1.1

/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// What Python's `str.split()` splits on: Unicode `White_Space` and the four ASCII separators
/// U+001C–U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A character of `\w` in a Python 3 `str` regex, as far as Rust's character properties tell:
/// letters, numbers and `_`. (Rust's `is_alphanumeric` also counts the few combining marks
/// with the `Other_Alphabetic` property, such as Indic vowel signs, which Python does not; the
/// difference only matters for an article written right against such a mark.)
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The official SQuAD v1.1 answer normalisation: lower case, remove `string.punctuation`,
/// remove the articles `a`, `an`, `the` as whole words, collapse whitespace.
pub fn squad_normalize(text: &str) -> String {
    let lower = text.to_lowercase();
    let no_punctuation: String = lower
        .chars()
        .filter(|c| !PUNCTUATION.contains(*c))
        .collect();
    // `re.sub(r'\b(a|an|the)\b', ' ', text)`: a maximal run of word characters that is an
    // article becomes one space.
    let mut without_articles = String::with_capacity(no_punctuation.len());
    let mut word = String::new();
    fn flush(word: &mut String, out: &mut String) {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    }
    for c in no_punctuation.chars() {
        if is_word_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut without_articles);
            without_articles.push(c);
        }
    }
    flush(&mut word, &mut without_articles);
    squad_tokens_of_normalized(&without_articles).join(" ")
}

fn squad_tokens_of_normalized(text: &str) -> Vec<&str> {
    text.split(is_python_space)
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether the prediction equals the ground truth once both are normalised.
pub fn squad_exact_match(prediction: &str, ground_truth: &str) -> bool {
    squad_normalize(prediction) == squad_normalize(ground_truth)
}

/// Token F1 of the normalised texts: tokens counted with their multiplicity; 0 when they share
/// no token (so also when either is empty, as in v1.1; v2.0 scores two empty answers 1).
pub fn squad_f1(prediction: &str, ground_truth: &str) -> f64 {
    let prediction = squad_normalize(prediction);
    let ground_truth = squad_normalize(ground_truth);
    let predicted = squad_tokens_of_normalized(&prediction);
    let truth = squad_tokens_of_normalized(&ground_truth);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for token in &truth {
        *counts.entry(token).or_default() += 1;
    }
    let mut same = 0usize;
    for token in &predicted {
        if let Some(left) = counts.get_mut(token).filter(|n| **n > 0) {
            *left -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / predicted.len() as f64;
    let recall = same as f64 / truth.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// Exact match (0 or 1) and F1 of one answer, each the best over the ground truths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SquadScore {
    /// 1 when the prediction matches some ground truth, else 0.
    pub exact_match: f64,
    /// The best token F1 over the ground truths.
    pub f1: f64,
}

/// The scores of a prediction: each metric's maximum over the ground truths (the official
/// `metric_max_over_ground_truths`). With no ground truths both are 0, where the official
/// script would fail.
pub fn squad_score<S: AsRef<str>>(prediction: &str, ground_truths: &[S]) -> SquadScore {
    let mut score = SquadScore {
        exact_match: 0.0,
        f1: 0.0,
    };
    for truth in ground_truths {
        let truth = truth.as_ref();
        if squad_exact_match(prediction, truth) {
            score.exact_match = 1.0;
        }
        score.f1 = score.f1.max(squad_f1(prediction, truth));
    }
    score
}

/// A dataset's SQuAD scores, in percent.
#[derive(Debug, Clone, PartialEq)]
pub struct SquadEvaluation {
    /// Mean exact match × 100.
    pub exact_match: f64,
    /// Mean F1 × 100.
    pub f1: f64,
    /// Number of questions.
    pub total: usize,
    /// Ids of the questions without a prediction, which scored 0.
    pub unanswered: Vec<String>,
}

/// The official `evaluate()`: every question counts; one without a prediction scores 0 (and is
/// logged, as the script prints "Unanswered question … will receive score 0."); the sums are
/// divided by the number of questions and multiplied by 100. No questions score 0.
///
/// The reference framework computes F1 on the sets of characters of unnormalised answers; this
/// is the official token-level definition.
pub fn squad_evaluate(
    questions: &[SquadQuestion],
    predictions: &HashMap<String, String>,
) -> SquadEvaluation {
    let (mut exact_match, mut f1) = (0.0, 0.0);
    let mut unanswered = Vec::new();
    for question in questions {
        let Some(prediction) = predictions.get(&question.id) else {
            log::warn!("Unanswered question {} will receive score 0.", question.id);
            unanswered.push(question.id.clone());
            continue;
        };
        let truths: Vec<&str> = question.answers.iter().map(|a| a.text.as_str()).collect();
        let score = squad_score(prediction, &truths);
        exact_match += score.exact_match;
        f1 += score.f1;
    }
    let total = questions.len();
    let percent = |sum: f64| {
        if total == 0 {
            0.0
        } else {
            100.0 * sum / total as f64
        }
    };
    SquadEvaluation {
        exact_match: percent(exact_match),
        f1: percent(f1),
        total,
        unanswered,
    }
}

// ---------------------------------------------------------------------------------------------
// Final answers (GSM8K, MATH)

/// The final answer a generated solution states:
///
/// 1. after the last "The answer is" (any case, an optional `:`), up to the end of that
///    sentence (a `.` before a space) or line:
///    trimmed, one trailing `.` and enclosing `$…$` removed, a `\boxed{…}` unwrapped; when it
///    starts with a number followed only by words ("18 dollars"), that number;
/// 2. otherwise the content of the last `\boxed{…}` / `\fbox{…}` (MATH's convention);
/// 3. otherwise the last number in the text.
///
/// Numbers lose their commas, a leading `$` and a trailing `.` (`"$1,234."` gives `"1234"`);
/// a fraction `a/b` is kept as written. `None` when nothing is found.
///
/// The reference (VFLAIR-LLM's `gms8k_evaluator` and `math_evaluator`) only looks after the
/// exact text "The answer is: " and otherwise counts the answer wrong; for GSM8K it then takes
/// the first number there and rounds it to an integer, for MATH it compares the rest of the
/// line as a string. Steps 2 and 3 and the unrounded comparison of [`answers_match`] are ours.
pub fn extract_final_answer(text: &str) -> Option<String> {
    stated_answer(text)
        .or_else(|| {
            last_boxed(text)
                .map(|b| b.trim().to_string())
                .filter(|b| !b.is_empty())
        })
        .or_else(|| last_number(text))
}

fn stated_answer(text: &str) -> Option<String> {
    const PHRASE: &str = "the answer is";
    // ASCII lower-casing keeps byte offsets.
    let at = text.to_ascii_lowercase().rfind(PHRASE)?;
    let rest = &text[at + PHRASE.len()..];
    let rest = rest.trim_start_matches(|c: char| c == ':' || c.is_whitespace());
    let line = rest.lines().next().unwrap_or("");
    // The sentence ends at a full stop followed by a space (not the point of "3.5").
    let sentence_end = line
        .char_indices()
        .find(|&(i, c)| c == '.' && line[i + 1..].starts_with(char::is_whitespace))
        .map_or(line.len(), |(i, _)| i);
    let line = line[..sentence_end].trim();
    let line = line.strip_suffix('.').unwrap_or(line).trim();
    let line = match line.strip_prefix('$').and_then(|l| l.strip_suffix('$')) {
        Some(inner) if !inner.is_empty() => inner.trim(),
        _ => line,
    };
    let answer = if line.starts_with("\\boxed") || line.starts_with("\\fbox") {
        last_boxed(line).unwrap_or_else(|| line.to_string())
    } else {
        line.to_string()
    };
    let answer = answer.trim();
    if answer.is_empty() {
        return None;
    }
    if parse_number(answer).is_some() {
        return Some(clean_number(answer));
    }
    // "18 dollars", "$5 per hour": a number followed by words only.
    if let Some((first, words)) = answer.split_once(char::is_whitespace) {
        let only_words = words
            .chars()
            .all(|c| c.is_alphabetic() || c.is_whitespace() || ".,;!".contains(c));
        if only_words && parse_number(first).is_some() {
            return Some(clean_number(first));
        }
    }
    Some(answer.to_string())
}

/// Removes commas, a leading `$` and a trailing `.`.
fn clean_number(text: &str) -> String {
    let text = text.trim();
    let text = text.strip_prefix('$').unwrap_or(text);
    let text = text.strip_suffix('.').unwrap_or(text);
    text.chars().filter(|&c| c != ',').collect()
}

/// The last number written in `text` (`-3`, `1,234.5`, `3/4`), cleaned by [`clean_number`].
fn last_number(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut last = None;
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let mut start = i;
        if i > 0 && chars[i - 1] == '-' && (i < 2 || !chars[i - 2].is_alphanumeric()) {
            start = i - 1;
        }
        let mut end = i;
        let digits_after = |k: usize| k < chars.len() && chars[k].is_ascii_digit();
        let mut seen_point = false;
        let mut seen_slash = false;
        while end < chars.len() {
            let c = chars[end];
            let separator = c == ',' && !seen_point && !seen_slash && digits_after(end + 1);
            if c.is_ascii_digit() || separator {
                end += 1;
            } else if c == '.' && !seen_point && digits_after(end + 1) {
                seen_point = true;
                end += 1;
            } else if c == '/' && !seen_point && !seen_slash && digits_after(end + 1) {
                seen_slash = true;
                end += 1;
            } else {
                break;
            }
        }
        last = Some(chars[start..end].iter().collect::<String>());
        i = end;
    }
    last.map(|n| clean_number(&n))
}

/// `text` as a number: optional sign, digits with optional `,` separators and one decimal
/// point, or a fraction `a/b` of two such numbers (`b ≠ 0`); a leading `$` and a trailing `.`
/// are allowed. No exponents, infinities or NaN.
fn parse_number(text: &str) -> Option<f64> {
    let cleaned = clean_number(text);
    if let Some((numerator, denominator)) = cleaned.split_once('/') {
        let (n, d) = (parse_decimal(numerator)?, parse_decimal(denominator)?);
        return (d != 0.0).then(|| n / d);
    }
    parse_decimal(&cleaned)
}

fn parse_decimal(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    if unsigned.ends_with('.') {
        return None;
    }
    text.parse().ok()
}

/// Whether an extracted answer is the reference answer: numerically (within a relative 1e-9)
/// when both read as numbers (see [`extract_final_answer`] for what does), otherwise as strings
/// with all whitespace removed.
pub fn answers_match(predicted: &str, reference: &str) -> bool {
    match (parse_number(predicted), parse_number(reference)) {
        (Some(p), Some(r)) => (p - r).abs() <= 1e-9 * p.abs().max(r.abs()).max(1.0),
        _ => {
            let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
            squeeze(predicted) == squeeze(reference)
        }
    }
}

/// Final-answer accuracy: the fraction of generated solutions whose
/// [`extract_final_answer`] matches the reference answer ([`answers_match`]); a generation
/// with no answer counts wrong, and no pairs score 0.
pub fn final_answer_accuracy<G: AsRef<str>, R: AsRef<str>>(
    generations: &[G],
    references: &[R],
) -> Result<f64, TaskError> {
    if generations.len() != references.len() {
        return Err(TaskError::Config(format!(
            "{} generations for {} reference answers",
            generations.len(),
            references.len()
        )));
    }
    if generations.is_empty() {
        return Ok(0.0);
    }
    let right = generations
        .iter()
        .zip(references)
        .filter(|(g, r)| {
            extract_final_answer(g.as_ref()).is_some_and(|a| answers_match(&a, r.as_ref()))
        })
        .count();
    Ok(right as f64 / generations.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::SquadAnswer;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn squad_normalisation_follows_the_official_script() {
        assert_eq!(squad_normalize("The  Denver Broncos!"), "denver broncos");
        assert_eq!(squad_normalize("An apple a day"), "apple day");
        // "theater", "and", "anthem" contain articles but are not articles.
        assert_eq!(squad_normalize("theater and anthem"), "theater and anthem");
        // Punctuation goes first, so "a." is an article and "_the_" is one too.
        assert_eq!(squad_normalize("a. _the_ x"), "x");
        // An em dash is not in string.punctuation, but it is a word boundary.
        assert_eq!(squad_normalize("the\u{2014}end"), "\u{2014}end");
        assert_eq!(squad_normalize("ça a été"), "ça été");
        assert_eq!(squad_normalize("x\u{a0}y\u{3000}z\u{1c}w"), "x y z w");
        assert_eq!(squad_normalize(""), "");
    }

    #[test]
    fn squad_scores_match_hand_computed_values() {
        assert!(squad_exact_match("THE END.", "end"));
        // "broncos" vs "denver broncos": p = 1, r = 1/2, F1 = 2/3.
        assert!(close(squad_f1("the Broncos!", "Denver Broncos"), 2.0 / 3.0));
        // Multiplicity: {cat: 2, dog: 1} ∩ {cat: 1, dog: 2} = 2 tokens; p = r = 2/3.
        assert!(close(squad_f1("cat cat dog", "cat dog dog"), 2.0 / 3.0));
        // {cat: 3} ∩ {cat: 1} = 1; p = 1/3, r = 1, F1 = 1/2.
        assert!(close(squad_f1("cat cat cat", "cat"), 0.5));
        // v1.1: two empty answers match exactly but share no token.
        assert!(squad_exact_match("", "the"));
        assert_eq!(squad_f1("", ""), 0.0);
        let score = squad_score(
            "New York City",
            &["New York", "York City", "the city of New York"],
        );
        // Best: "new york" (p = 2/3, r = 1 → 0.8) and "city of new york" (p = 1, r = 3/4 → 6/7).
        assert_eq!(score.exact_match, 0.0);
        assert!(close(score.f1, 6.0 / 7.0));
        let none: [&str; 0] = [];
        assert_eq!(squad_score("x", &none).f1, 0.0);
    }

    #[test]
    fn squad_dataset_scores_count_missing_predictions_as_zero() {
        let question = |id: &str, answers: &[&str]| SquadQuestion {
            id: id.into(),
            title: String::new(),
            context: String::new(),
            question: String::new(),
            answers: answers
                .iter()
                .map(|a| SquadAnswer {
                    text: a.to_string(),
                    start: 0,
                })
                .collect(),
        };
        let questions = [
            question("a", &["Paris"]),
            question("b", &["the red car", "red"]),
            question("c", &["1999"]),
        ];
        let predictions: HashMap<String, String> = [
            ("a".to_string(), "paris.".to_string()),
            ("b".to_string(), "a red bike".to_string()),
        ]
        .into();
        let evaluation = squad_evaluate(&questions, &predictions);
        // EM: 1 + 0 + 0; F1: 1 + 2/3 ("red bike" vs "red car": p = r = 1/2 → 1/2; vs "red":
        // p = 1/2, r = 1 → 2/3) + 0.
        assert!(close(evaluation.exact_match, 100.0 / 3.0));
        assert!(close(evaluation.f1, 100.0 * (1.0 + 2.0 / 3.0) / 3.0));
        assert_eq!(evaluation.total, 3);
        assert_eq!(evaluation.unanswered, vec!["c".to_string()]);
        let empty = squad_evaluate(&[], &predictions);
        assert_eq!((empty.exact_match, empty.f1), (0.0, 0.0));
    }

    #[test]
    fn final_answers_are_extracted() {
        let cases = [
            ("So 48 + 24 = 72.\nThe answer is: 72", Some("72")),
            ("The answer is 18 dollars.", Some("18")),
            ("the answer is $1,234.", Some("1234")),
            ("The answer is: $\\frac{1}{2}$.", Some("\\frac{1}{2}")),
            ("The answer is $\\boxed{3 + 2i}$.", Some("3 + 2i")),
            (
                "The answer is 3 + \\sqrt{2}.\nCheck: fine",
                Some("3 + \\sqrt{2}"),
            ),
            ("The answer is: -3\n", Some("-3")),
            ("First 5, then the answer is 7. Later 9.", Some("7")),
            (
                "Therefore $x = \\boxed{\\frac{3}{4}}$ and 9 more.",
                Some("\\frac{3}{4}"),
            ),
            (
                "She has 5 - 3 = 2 apples, so 1,000.5 in total.",
                Some("1000.5"),
            ),
            ("It is -4 degrees.", Some("-4")),
            ("from 10-4 we get 6-4", Some("4")),
            ("half is 3/4", Some("3/4")),
            ("no numbers at all", None),
            ("The answer is:   \n", None),
        ];
        for (text, expected) in cases {
            assert_eq!(extract_final_answer(text).as_deref(), expected, "{text:?}");
        }
    }

    #[test]
    fn final_answers_compare_numerically() {
        assert!(answers_match("72", "72"));
        assert!(answers_match("72.0", "72"));
        assert!(answers_match("1,000", "1000"));
        assert!(answers_match("$18", "18"));
        assert!(answers_match("3/4", "0.75"));
        assert!(!answers_match("3.6", "4"));
        assert!(!answers_match("1/0", "1"));
        assert!(answers_match("\\frac{1}{2}", "\\frac{1}{ 2}"));
        assert!(!answers_match("\\frac{1}{2}", "0.5"));
        assert!(!answers_match("inf", "infinity"));
        assert!(answers_match("x", "x"));
        let generations = [
            "... #### The answer is: 72",
            "I think it is 17.",
            "The answer is $\\boxed{\\frac{1}{2}}$.",
            "no idea",
        ];
        let references = ["72", "18", "\\frac{1}{2}", "3"];
        assert!(close(
            final_answer_accuracy(&generations, &references).unwrap(),
            0.5
        ));
        assert!(final_answer_accuracy(&generations, &references[..2]).is_err());
        let none: [&str; 0] = [];
        assert_eq!(final_answer_accuracy(&none, &none).unwrap(), 0.0);
    }
}
