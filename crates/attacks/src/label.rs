//! Label inference from the gradients the model party receives.

use splitlm_protocol::OutputKind;

use crate::{AttackError, AttackerView};

/// One inferred label per observed sample, in observation order, with the attack's score.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelGuess {
    /// The inferred class.
    pub label: usize,
    /// How strongly the attack believes it (NS: the normalised gradient norm).
    pub score: f64,
}

fn rows(view: &AttackerView, attack: &'static str) -> Result<Vec<Vec<f32>>, AttackError> {
    let mut out = Vec::new();
    for o in &view.observations {
        let values = o.output_grad.to_f32().map_err(|e| AttackError {
            attack,
            reason: format!("step {}: {e}", o.step),
        })?;
        let b = o.output_grad.shape.first().copied().unwrap_or(0).max(1);
        let width = values.len() / b;
        out.extend(values.chunks(width.max(1)).map(<[f32]>::to_vec));
    }
    if out.is_empty() {
        return Err(AttackError {
            attack,
            reason: "no training step was observed".into(),
        });
    }
    Ok(out)
}

/// DLS settings.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DlsSettings {
    /// How a row's label is read from its logit gradient.
    pub rule: DlsRule,
}

/// DLS's reading of a logit gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DlsRule {
    /// The reference's (`DirectLabelScoring_LLM`): the first negative entry; a row without one
    /// gets a class drawn at random (seeded by the step and row here).
    #[default]
    FirstNegative,
    /// The most negative entry (the true class whenever any entry is negative, noise aside).
    ArgMin,
}

/// DLS (Head–Tail, classifier on the model party): for softmax cross-entropy the gradient of
/// the logits is `(p − onehot(y)) / b`, negative at the true class only — so the label is where
/// the gradient is negative. Recovery is exact without a defense.
pub fn direct_label_scoring(
    view: &AttackerView,
    settings: &DlsSettings,
) -> Result<Vec<LabelGuess>, AttackError> {
    if let Some(o) = view
        .observations
        .iter()
        .find(|o| o.output_kind != OutputKind::ClassLogits)
    {
        return Err(AttackError {
            attack: "dls",
            reason: format!(
                "step {} returned {:?}; DLS needs the classifier on the model party (Head–Tail)",
                o.step, o.output_kind
            ),
        });
    }
    Ok(rows(view, "dls")?
        .into_iter()
        .enumerate()
        .map(|(row, g)| {
            let (min_at, min) = g
                .iter()
                .enumerate()
                .fold(
                    (0, f32::INFINITY),
                    |best, (i, &v)| if v < best.1 { (i, v) } else { best },
                );
            let label = match settings.rule {
                DlsRule::ArgMin => min_at,
                DlsRule::FirstNegative => g
                    .iter()
                    .position(|&v| v < 0.0)
                    .unwrap_or_else(|| random_class(row, g.len())),
            };
            LabelGuess {
                label,
                score: -(min as f64),
            }
        })
        .collect())
}

/// A class for `row` drawn by a fixed hash (splitmix64), so runs repeat.
fn random_class(row: usize, classes: usize) -> usize {
    let mut z = (row as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) % classes.max(1) as u64) as usize
}

/// NS (Li et al. 2022) as the reference computes it (`NormbasedScoring_LLM`): the per-sample
/// L2 norm of the received gradient, normalised as `(n − min + 1e-16) / (max − min + 1e-16)`;
/// samples above 0.5 are guessed positive (label 1). It exploits that a model unsure of one
/// class sends larger gradients for its samples. The reference reports `max(acc, 1 − acc)`
/// ([`crate::score`] does too), which orients the guess with the truth; with
/// `positive_is_minority` (a declared prior: the positive class is the rarer) the attacker
/// orients it itself, calling positive whichever side of 0.5 holds fewer samples.
pub fn norm_scoring(
    view: &AttackerView,
    positive_is_minority: bool,
) -> Result<Vec<LabelGuess>, AttackError> {
    const EPS: f64 = 1e-16;
    let norms: Vec<f64> = rows(view, "ns")?.iter().map(|g| norm(g)).collect();
    let (lo, hi) = norms
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &n| {
            (lo.min(n), hi.max(n))
        });
    let mut scores: Vec<f64> = norms
        .iter()
        .map(|n| (n - lo + EPS) / (hi - lo + EPS))
        .collect();
    let above = scores.iter().filter(|&&s| s > 0.5).count();
    if positive_is_minority && 2 * above > scores.len() {
        scores.iter_mut().for_each(|s| *s = 1.0 - *s);
    }
    Ok(scores
        .into_iter()
        .map(|score| LabelGuess {
            label: usize::from(score > 0.5),
            score,
        })
        .collect())
}

/// DS (direction scoring, Li et al. 2022): the cosine similarity of each sample's received
/// gradient with that of one sample known to be positive (index `known_positive` among the
/// observed samples); a positive cosine is guessed positive.
pub fn direction_scoring(
    view: &AttackerView,
    known_positive: usize,
) -> Result<Vec<LabelGuess>, AttackError> {
    let grads = rows(view, "ds")?;
    let reference = grads.get(known_positive).ok_or_else(|| AttackError {
        attack: "ds",
        reason: format!(
            "the known positive is sample {known_positive}, but only {} were observed",
            grads.len()
        ),
    })?;
    let reference_norm = norm(reference).max(f64::MIN_POSITIVE);
    Ok(grads
        .iter()
        .map(|g| {
            let dot: f64 = g
                .iter()
                .zip(reference)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let cosine = dot / (norm(g).max(f64::MIN_POSITIVE) * reference_norm);
            LabelGuess {
                label: usize::from(cosine > 0.0),
                score: cosine,
            }
        })
        .collect())
}

fn norm(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|&v| (v as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Area under the ROC curve of `scores` for `positives` (Mann–Whitney, ties counted half);
/// `None` without both classes.
pub fn roc_auc(scores: &[f64], positives: &[bool]) -> Option<f64> {
    let pos: Vec<f64> = scores
        .iter()
        .zip(positives)
        .filter(|(_, p)| **p)
        .map(|(s, _)| *s)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(positives)
        .filter(|(_, p)| !**p)
        .map(|(s, _)| *s)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let wins: f64 = pos
        .iter()
        .flat_map(|p| neg.iter().map(move |n| (p, n)))
        .map(|(p, n)| {
            if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            }
        })
        .sum();
    Some(wins / (pos.len() * neg.len()) as f64)
}

#[cfg(test)]
mod tests {
    use splitlm_party::Observation;
    use splitlm_protocol::{TensorFrame, WireDType};

    use super::*;

    fn empty_output() -> TensorFrame {
        TensorFrame::from_f32(vec![0], &[], WireDType::F32).unwrap()
    }

    fn view(kind: OutputKind, grads: &[Vec<f32>]) -> AttackerView {
        let width = grads[0].len();
        let flat: Vec<f32> = grads.concat();
        let empty = TensorFrame::from_f32(vec![0], &[], WireDType::F32).unwrap();
        AttackerView::steps(vec![Observation {
            session: 1,
            step: 0,
            batch_rows: grads.len(),
            hidden: empty.clone(),
            attention_mask: empty.clone(),
            positions: empty,
            output_kind: kind,
            output: empty_output(),
            weight_gradients: Vec::new(),
            output_grad: TensorFrame::from_f32(vec![grads.len(), width], &flat, WireDType::F32)
                .unwrap(),
        }])
    }

    #[test]
    fn dls_reads_the_negative_entry() {
        let v = view(
            OutputKind::ClassLogits,
            &[vec![0.2, -0.5, 0.3], vec![-0.1, 0.05, 0.05]],
        );
        let labels: Vec<usize> = direct_label_scoring(&v, &DlsSettings::default())
            .unwrap()
            .iter()
            .map(|g| g.label)
            .collect();
        assert_eq!(labels, vec![1, 0]);
        let err = direct_label_scoring(
            &view(OutputKind::Hidden, &[vec![0.0]]),
            &DlsSettings::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Head–Tail"), "{err}");
    }

    #[test]
    fn ns_scores_by_gradient_norm() {
        // p = (0.8, 0.2) for everyone: a positive's gradient p − onehot(1) = (0.8, −0.8) is 4×
        // a negative's (−0.2, 0.2).
        let grads = [
            vec![0.8, -0.8],
            vec![-0.2, 0.2],
            vec![0.8, -0.8],
            vec![-0.2, 0.2],
        ];
        let guesses = norm_scoring(&view(OutputKind::ClassLogits, &grads), false).unwrap();
        assert_eq!(
            guesses.iter().map(|g| g.label).collect::<Vec<_>>(),
            vec![1, 0, 1, 0]
        );
        let scores: Vec<f64> = guesses.iter().map(|g| g.score).collect();
        assert_eq!(roc_auc(&scores, &[true, false, true, false]), Some(1.0));
    }

    #[test]
    fn ns_orients_by_the_minority_and_ds_by_a_known_positive() {
        // The model leans positive (p = (0.3, 0.7)): negatives now carry the larger gradient,
        // so the reference's orientation calls them positive. Three negatives, one positive.
        let grads = [
            vec![0.7, -0.7],
            vec![-0.3, 0.3],
            vec![0.7, -0.7],
            vec![0.7, -0.7],
        ];
        let v = view(OutputKind::ClassLogits, &grads);
        let labels = |g: Vec<LabelGuess>| g.iter().map(|g| g.label).collect::<Vec<_>>();
        assert_eq!(labels(norm_scoring(&v, false).unwrap()), vec![1, 0, 1, 1]);
        assert_eq!(labels(norm_scoring(&v, true).unwrap()), vec![0, 1, 0, 0]);
        assert_eq!(labels(direction_scoring(&v, 1).unwrap()), vec![0, 1, 0, 0]);
        let err = direction_scoring(&v, 9).unwrap_err().to_string();
        assert!(err.contains("sample 9"), "{err}");
    }

    #[test]
    fn auc_counts_ties_half() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.9, 0.4], &[false, true, true]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.1], &[false, true]), Some(0.0));
        assert_eq!(roc_auc(&[0.3], &[true]), None);
    }
}
