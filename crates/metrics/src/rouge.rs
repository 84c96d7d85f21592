//! ROUGE as Google's `rouge-score` package computes it (default tokenizer, no stemming).

use std::collections::HashMap;

/// Precision, recall and F-measure of one ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeScore {
    /// Overlap over the prediction's size.
    pub precision: f64,
    /// Overlap over the target's size.
    pub recall: f64,
    /// Harmonic mean of the two (0 when both are 0).
    pub fmeasure: f64,
}

impl RougeScore {
    fn new(precision: f64, recall: f64) -> Self {
        let fmeasure = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        RougeScore {
            precision,
            recall,
            fmeasure,
        }
    }
}

/// ROUGE-1, ROUGE-2 and ROUGE-L of one prediction.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeScores {
    /// Unigram overlap.
    pub rouge1: RougeScore,
    /// Bigram overlap (the reference reports its recall for Alpaca and Dolly).
    pub rouge2: RougeScore,
    /// Longest common subsequence.
    pub rouge_l: RougeScore,
}

/// `rouge-score`'s default tokenizer: lower case (Unicode, as Python's `str.lower`), every run
/// of characters other than `a`–`z` and `0`–`9` becomes a space, split on spaces.
///
/// No stemming: `rouge-score`'s `use_stemmer=True` applies NLTK's Porter stemmer in its
/// `NLTK_EXTENSIONS` mode to tokens longer than 3 characters, and no maintained Rust crate
/// reproduces that variant (`rust-stemmers` is Snowball English, a different algorithm), so
/// these scores are those of the default, unstemmed scorer.
pub fn rouge_tokenize(text: &str) -> Vec<String> {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned.split_whitespace().map(str::to_string).collect()
}

fn ngram_score(target: &[String], prediction: &[String], n: usize) -> RougeScore {
    fn counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
        let mut counts = HashMap::new();
        if tokens.len() >= n {
            for gram in tokens.windows(n) {
                *counts.entry(gram).or_default() += 1;
            }
        }
        counts
    }
    if n == 0 {
        return RougeScore::default();
    }
    let target_counts = counts(target, n);
    let prediction_counts = counts(prediction, n);
    let overlap: usize = target_counts
        .iter()
        .map(|(gram, &t)| t.min(prediction_counts.get(gram).copied().unwrap_or(0)))
        .sum();
    let target_total: usize = target_counts.values().sum();
    let prediction_total: usize = prediction_counts.values().sum();
    RougeScore::new(
        overlap as f64 / prediction_total.max(1) as f64,
        overlap as f64 / target_total.max(1) as f64,
    )
}

fn lcs_length(a: &[String], b: &[String]) -> usize {
    let mut previous = vec![0usize; b.len() + 1];
    let mut current = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            current[j + 1] = if x == y {
                previous[j] + 1
            } else {
                previous[j + 1].max(current[j])
            };
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

fn lcs_score(target: &[String], prediction: &[String]) -> RougeScore {
    if target.is_empty() || prediction.is_empty() {
        return RougeScore::default();
    }
    let lcs = lcs_length(target, prediction) as f64;
    RougeScore::new(lcs / prediction.len() as f64, lcs / target.len() as f64)
}

/// ROUGE-N of `prediction` against `target` (`rouge-score`'s argument order): n-grams counted
/// with multiplicity, overlap over the prediction's n-grams (precision) and the target's
/// (recall), each denominator at least 1. `n = 0` scores 0.
pub fn rouge_n(target: &str, prediction: &str, n: usize) -> RougeScore {
    ngram_score(&rouge_tokenize(target), &rouge_tokenize(prediction), n)
}

/// ROUGE-L (sentence level, `rougeL`): the longest common subsequence of the tokens over the
/// prediction's length (precision) and the target's (recall); 0 when either is empty.
pub fn rouge_l(target: &str, prediction: &str) -> RougeScore {
    lcs_score(&rouge_tokenize(target), &rouge_tokenize(prediction))
}

/// ROUGE-1, ROUGE-2 and ROUGE-L at once (tokenising each text once), as
/// `RougeScorer(["rouge1", "rouge2", "rougeL"]).score(target, prediction)`.
pub fn rouge(target: &str, prediction: &str) -> RougeScores {
    let target = rouge_tokenize(target);
    let prediction = rouge_tokenize(prediction);
    RougeScores {
        rouge1: ngram_score(&target, &prediction, 1),
        rouge2: ngram_score(&target, &prediction, 2),
        rouge_l: lcs_score(&target, &prediction),
    }
}

/// The mean of each score over (target, prediction) pairs; zeros for none. (The reference
/// averages ROUGE-2 recall over its test set this way; `rouge-score`'s `BootstrapAggregator`
/// reports a resampled estimate instead.)
pub fn rouge_mean<T: AsRef<str>, P: AsRef<str>>(pairs: &[(T, P)]) -> RougeScores {
    let mut sum = [[0.0f64; 3]; 3];
    for (target, prediction) in pairs {
        let scores = rouge(target.as_ref(), prediction.as_ref());
        for (row, score) in sum
            .iter_mut()
            .zip([scores.rouge1, scores.rouge2, scores.rouge_l])
        {
            row[0] += score.precision;
            row[1] += score.recall;
            row[2] += score.fmeasure;
        }
    }
    let n = pairs.len().max(1) as f64;
    let mean = |row: [f64; 3]| RougeScore {
        precision: row[0] / n,
        recall: row[1] / n,
        fmeasure: row[2] / n,
    };
    RougeScores {
        rouge1: mean(sum[0]),
        rouge2: mean(sum[1]),
        rouge_l: mean(sum[2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn rouge_matches_hand_computed_values() {
        assert_eq!(
            rouge_tokenize("Hello, World! It's 2024 \u{212a}elvin café"),
            vec!["hello", "world", "it", "s", "2024", "kelvin", "caf"]
        );
        // target: the cat sat on the mat; prediction: the mat sat on the cat.
        let s = rouge("the cat sat on the mat", "the mat sat on the cat");
        assert!(close(s.rouge1.fmeasure, 1.0));
        // Bigrams: target {the cat, cat sat, sat on, on the, the mat}, prediction {the mat,
        // mat sat, sat on, on the, the cat}: 4 shared of 5 each.
        assert!(close(s.rouge2.precision, 0.8) && close(s.rouge2.recall, 0.8));
        // LCS "the sat on the" = 4 of 6.
        assert!(close(s.rouge_l.fmeasure, 4.0 / 6.0));
        // Multiplicity: target a a a b, prediction a a b b b: unigrams min(3,2)+min(1,3) = 3,
        // p = 3/5, r = 3/4; bigrams target {aa:2, ab:1}, prediction {aa:1, ab:1, bb:2}: 2,
        // p = 2/4, r = 2/3.
        let s = rouge("a a a b", "a a b b b");
        assert!(close(s.rouge1.precision, 0.6) && close(s.rouge1.recall, 0.75));
        assert!(close(s.rouge1.fmeasure, 2.0 * 0.6 * 0.75 / 1.35));
        assert!(close(s.rouge2.precision, 0.5) && close(s.rouge2.recall, 2.0 / 3.0));
        assert!(close(s.rouge_l.precision, 0.6) && close(s.rouge_l.recall, 0.75));
        // One token: no bigrams on either side, so ROUGE-2 is 0; empty texts score 0.
        assert_eq!(rouge_n("one", "one", 2), RougeScore::default());
        assert!(close(rouge_n("one", "one", 1).fmeasure, 1.0));
        assert_eq!(rouge_l("", "x"), RougeScore::default());
        assert_eq!(rouge_n("x", "x", 0), RougeScore::default());
        let mean = rouge_mean(&[("a b", "a b"), ("a b", "c d")]);
        assert!(close(mean.rouge2.recall, 0.5) && close(mean.rouge1.fmeasure, 0.5));
        let none: [(&str, &str); 0] = [];
        assert_eq!(rouge_mean(&none), RougeScores::default());
    }
}
