//! Attack performance (AP) against the truth, which only the benchmark holds: inversion by the
//! reference's bag-of-tokens precision and recall plus order-aware ROUGE-L F1 and exact match;
//! label inference by recovery rate, and ROC-AUC where the attack scores positives.

use splitlm_metrics::rouge::rouge_l;

use crate::inversion::token_precision_recall;
use crate::label::{LabelGuess, roc_auc};
use crate::{AttackError, Inferred};

/// How well an inversion recovered the inputs: means over samples.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InversionScores {
    /// Bag-of-tokens precision (the reference's).
    pub precision: f64,
    /// Bag-of-tokens recall (the reference's; this is the AP).
    pub recall: f64,
    /// ROUGE-L F1 of the decoded texts.
    pub rouge_l_f1: f64,
    /// Share of samples whose decoded text is recovered exactly (whitespace-normalised).
    pub exact_match: f64,
    /// Samples scored.
    pub samples: usize,
}

/// How well a label inference recovered the labels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelScores {
    /// Share of samples whose label was recovered.
    pub accuracy: f64,
    /// The attack performance: the accuracy, or for NS `max(accuracy, 1 − accuracy)` as the
    /// reference reports it (`metrics/data_process.py`). Absent from records written before
    /// it was kept here (their record's own `ap` holds it).
    #[serde(default)]
    pub ap: f64,
    /// ROC-AUC of the scores for class 1 (binary tasks, attacks that score positives).
    pub auc: Option<f64>,
    /// Samples scored.
    pub samples: usize,
}

/// An attack's scores.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum AttackScores {
    /// Of an inversion.
    Inversion(InversionScores),
    /// Of a label inference.
    Labels(LabelScores),
}

impl AttackScores {
    /// Samples scored.
    pub fn samples(&self) -> usize {
        match self {
            AttackScores::Inversion(s) => s.samples,
            AttackScores::Labels(s) => s.samples,
        }
    }

    /// The attack performance that enters the DCS: inversion recall or label recovery rate.
    pub fn ap(&self) -> f64 {
        match self {
            AttackScores::Inversion(s) => s.recall,
            AttackScores::Labels(s) => s.ap,
        }
    }
}

/// What the observed samples really were, in observation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Truth {
    /// Each sample's tokens at its real positions.
    pub tokens: Vec<Vec<u32>>,
    /// Each sample's label (classification tasks).
    pub labels: Vec<usize>,
}

fn mismatch(what: &str, truth: usize, inferred: usize) -> AttackError {
    AttackError {
        attack: "score",
        reason: format!("{inferred} inferred {what} for {truth} observed samples"),
    }
}

/// Scores recovered token sequences; `decode` turns ids into text (for ROUGE-L and exact
/// match).
pub fn inversion(
    truth: &[Vec<u32>],
    recovered: &[Vec<u32>],
    decode: impl Fn(&[u32]) -> String,
) -> Result<InversionScores, AttackError> {
    if truth.len() != recovered.len() || truth.is_empty() {
        return Err(mismatch("inputs", truth.len(), recovered.len()));
    }
    let normalise = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut sums = [0.0f64; 4];
    for (t, r) in truth.iter().zip(recovered) {
        let (precision, recall) = token_precision_recall(t, r);
        let (t_text, r_text) = (normalise(decode(t)), normalise(decode(r)));
        sums[0] += precision;
        sums[1] += recall;
        sums[2] += rouge_l(&t_text, &r_text).fmeasure;
        sums[3] += f64::from(u8::from(t_text == r_text));
    }
    let n = truth.len() as f64;
    Ok(InversionScores {
        precision: sums[0] / n,
        recall: sums[1] / n,
        rouge_l_f1: sums[2] / n,
        exact_match: sums[3] / n,
        samples: truth.len(),
    })
}

/// How a label attack's AP is read from its accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelAp {
    /// The accuracy itself.
    Accuracy,
    /// `max(acc, 1 − acc)`: a binary guess counts however it is oriented (the reference's NS).
    EitherOrientation,
}

/// Scores inferred labels; with `scores_positive` (NS, DS) the guesses' scores rank samples
/// by how positive they look, and a binary task also gets the ROC-AUC.
pub fn labels(
    truth: &[usize],
    guesses: &[LabelGuess],
    scores_positive: bool,
    ap: LabelAp,
) -> Result<LabelScores, AttackError> {
    if truth.len() != guesses.len() || truth.is_empty() {
        return Err(mismatch("labels", truth.len(), guesses.len()));
    }
    let hits = truth
        .iter()
        .zip(guesses)
        .filter(|(t, g)| **t == g.label)
        .count();
    let binary = truth.iter().all(|&t| t < 2);
    let auc = (scores_positive && binary)
        .then(|| {
            let scores: Vec<f64> = guesses.iter().map(|g| g.score).collect();
            let positives: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
            roc_auc(&scores, &positives)
        })
        .flatten();
    let accuracy = hits as f64 / truth.len() as f64;
    Ok(LabelScores {
        accuracy,
        ap: match ap {
            LabelAp::Accuracy => accuracy,
            LabelAp::EitherOrientation => accuracy.max(1.0 - accuracy),
        },
        auc,
        samples: truth.len(),
    })
}

/// Scores what `attack` inferred.
pub fn score(
    attack: &str,
    inferred: &Inferred,
    truth: &Truth,
    decode: impl Fn(&[u32]) -> String,
) -> Result<AttackScores, AttackError> {
    Ok(match inferred {
        Inferred::Tokens(recovered) => {
            AttackScores::Inversion(inversion(&truth.tokens, recovered, decode)?)
        }
        Inferred::Labels(guesses) => AttackScores::Labels(labels(
            &truth.labels,
            guesses,
            matches!(attack, "ns" | "ds"),
            if attack == "ns" {
                LabelAp::EitherOrientation
            } else {
                LabelAp::Accuracy
            },
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(ids: &[u32]) -> String {
        ids.iter()
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn inversion_scores_order_and_exactness_apart_from_the_bag() {
        let truth = vec![vec![1, 2, 3, 4], vec![5, 6]];
        let shuffled = vec![vec![4, 3, 2, 1], vec![5, 6]];
        let s = inversion(&truth, &shuffled, decode).unwrap();
        assert_eq!((s.precision, s.recall), (1.0, 1.0));
        assert_eq!(s.exact_match, 0.5, "only the second sample is in order");
        // ROUGE-L of a reversed 4-token text: LCS 1 of 4 → F1 0.25; the second is 1.
        assert!((s.rouge_l_f1 - (0.25 + 1.0) / 2.0).abs() < 1e-12, "{s:?}");
        assert!(inversion(&truth, &shuffled[..1], decode).is_err());
    }

    /// `fixtures/vflair/scores.json`: NS's AP as `metrics/data_process.py` reports it.
    #[test]
    fn ns_ap_is_the_reference_s() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/vflair/scores.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for case in fixture["ns_ap"].as_array().unwrap() {
            let acc = case["acc"].as_f64().unwrap();
            // Eight binary samples, `acc` of them guessed right.
            let right = (acc * 8.0).round() as usize;
            let truth = [1usize; 8];
            let guesses: Vec<LabelGuess> = (0..8)
                .map(|i| LabelGuess {
                    label: usize::from(i < right),
                    score: 0.0,
                })
                .collect();
            let s = labels(&truth, &guesses, false, LabelAp::EitherOrientation).unwrap();
            assert_eq!(s.accuracy, acc);
            assert_eq!(s.ap, case["ap"].as_f64().unwrap(), "{case}");
        }
    }

    #[test]
    fn label_scores_give_auc_only_to_positive_scores_of_binary_tasks() {
        let guess = |label, score| LabelGuess { label, score };
        let guesses = [guess(1, 0.9), guess(0, 0.2), guess(0, 0.4)];
        let s = labels(&[1, 0, 1], &guesses, true, LabelAp::Accuracy).unwrap();
        assert!((s.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.auc, Some(1.0));
        let no_auc = |truth: &[usize], positive| {
            labels(truth, &guesses, positive, LabelAp::Accuracy)
                .unwrap()
                .auc
        };
        assert_eq!(no_auc(&[1, 0, 1], false), None);
        assert_eq!(no_auc(&[2, 0, 1], true), None);
        let ap = AttackScores::Labels(s).ap();
        assert!((ap - 2.0 / 3.0).abs() < 1e-12);
        // One of three right: as NS reports it, the flipped guess's 2/3.
        let ns = labels(&[0, 1, 0], &guesses, true, LabelAp::EitherOrientation).unwrap();
        assert!((ns.accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!((ns.ap - 2.0 / 3.0).abs() < 1e-12);
    }
}
