//! Scores of predicted labels and values, with the definitions of their references (scikit-learn, SciPy).

/// Fraction of predictions equal to the labels.
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> f64 {
    assert_eq!(predictions.len(), labels.len(), "one prediction per label");
    if labels.is_empty() {
        return 0.0;
    }
    let right = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    right as f64 / labels.len() as f64
}

/// Binary F1 of the positive class 1 (scikit-learn's `f1_score`, 0 when undefined).
pub fn f1_binary(predictions: &[usize], labels: &[usize]) -> f64 {
    let count = |p: usize, l: usize| {
        predictions
            .iter()
            .zip(labels)
            .filter(|&(&a, &b)| (a == 1) == (p == 1) && (b == 1) == (l == 1))
            .count() as f64
    };
    let (tp, fp, fneg) = (count(1, 1), count(1, 0), count(0, 1));
    if tp == 0.0 {
        return 0.0;
    }
    2.0 * tp / (2.0 * tp + fp + fneg)
}

/// Matthews correlation coefficient, multi-class (scikit-learn's `matthews_corrcoef`; 0 when
/// undefined).
pub fn matthews_corrcoef(predictions: &[usize], labels: &[usize]) -> f64 {
    assert_eq!(predictions.len(), labels.len(), "one prediction per label");
    let k = predictions.iter().chain(labels).max().map_or(0, |m| m + 1);
    let mut confusion = vec![vec![0f64; k]; k];
    for (&p, &l) in predictions.iter().zip(labels) {
        confusion[l][p] += 1.0;
    }
    let s: f64 = labels.len() as f64;
    let c: f64 = (0..k).map(|i| confusion[i][i]).sum();
    let t: Vec<f64> = (0..k).map(|i| confusion[i].iter().sum()).collect();
    let p: Vec<f64> = (0..k)
        .map(|j| (0..k).map(|i| confusion[i][j]).sum())
        .collect();
    let tp: f64 = t.iter().zip(&p).map(|(a, b)| a * b).sum();
    let denom = ((s * s - p.iter().map(|x| x * x).sum::<f64>())
        * (s * s - t.iter().map(|x| x * x).sum::<f64>()))
    .sqrt();
    if denom == 0.0 {
        0.0
    } else {
        (c * s - tp) / denom
    }
}

/// Pearson correlation (NaN when a side is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len());
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

/// Spearman rank correlation: Pearson of average ranks (ties share their mean rank).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = mean_rank;
        }
        i = j + 1;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn classification_metrics_match_hand_computed_values() {
        let labels = [1, 1, 1, 0, 0, 0, 1, 0];
        let preds = [1, 1, 0, 0, 1, 0, 1, 0];
        // tp 3, fn 1, fp 1, tn 3.
        assert!(close(accuracy(&preds, &labels), 0.75));
        assert!(close(f1_binary(&preds, &labels), 0.75));
        // (3·3 − 1·1) / sqrt(4·4·4·4) = 8/16.
        assert!(close(matthews_corrcoef(&preds, &labels), 0.5));
        assert!(close(matthews_corrcoef(&[0, 0, 0], &[0, 1, 0]), 0.0));
        // Multi-class: sklearn gives 0.2222… for this case (hand: c=2, s=5, t=[2,2,1], p=[1,2,2]).
        let mcc = matthews_corrcoef(&[0, 1, 2, 1, 2], &[0, 1, 1, 2, 0]);
        let expected = (2.0 * 5.0 - (2.0 * 1.0 + 2.0 * 2.0 + 1.0 * 2.0))
            / ((25.0f64 - 9.0) * (25.0 - 9.0)).sqrt();
        assert!(close(mcc, expected), "{mcc}");
    }

    #[test]
    fn correlations_match_hand_computed_values() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [2.0, 4.0, 5.0, 4.0, 5.0];
        // cov 6, var_x 10, var_y 6 → 6/sqrt(60).
        assert!(close(pearson(&x, &y), 6.0 / 60f64.sqrt()));
        // ranks of y: [1, 2.5, 4.5, 2.5, 4.5]
        assert_eq!(ranks(&y), vec![1.0, 2.5, 4.5, 2.5, 4.5]);
        let r = spearman(&x, &y);
        assert!(
            close(r, pearson(&x, &[1.0, 2.5, 4.5, 2.5, 4.5])) && r > 0.7,
            "{r}"
        );
        assert!(close(spearman(&x, &[5.0, 4.0, 3.0, 2.0, 1.0]), -1.0));
    }
}
