//! Defense scores (after VFLAIR-LLM; docs/ARCHITECTURE.md, "Scores"): how far a defended run
//! is from the ideal of no attack success and no loss of main-task performance.

/// The defense capability score of one (defense, attack) pair:
/// `1 / (1 + √((1−β)·ΔAP² + β·ΔMP²))` with `ΔAP = max(AP, 0)` and
/// `ΔMP = max(MP without defense − MP, 0)`. A perfect defense scores 1; an attack that fully
/// succeeds against an undefended run (AP = 1, no MP loss) scores `1/(1+√0.5)` ≈ 0.586 at β = ½.
pub fn dcs(ap: f64, mp: f64, mp_without_defense: f64, beta: f64) -> f64 {
    let d_ap = ap.max(0.0);
    let d_mp = (mp_without_defense - mp).max(0.0);
    1.0 / (1.0 + ((1.0 - beta) * d_ap * d_ap + beta * d_mp * d_mp).sqrt())
}

/// T-DCS: the mean DCS over the attacks of one type (inversion, label inference).
pub fn t_dcs(dcs_of_attacks: &[f64]) -> Option<f64> {
    (!dcs_of_attacks.is_empty())
        .then(|| dcs_of_attacks.iter().sum::<f64>() / dcs_of_attacks.len() as f64)
}

/// C-DCS: the weighted mean of T-DCS values, `(weight, t_dcs)` pairs.
pub fn c_dcs(weighted: &[(f64, f64)]) -> Option<f64> {
    let total: f64 = weighted.iter().map(|(w, _)| w).sum();
    (total > 0.0).then(|| weighted.iter().map(|(w, t)| w * t).sum::<f64>() / total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_anchors_of_the_definition_hold() {
        let full_attack = dcs(1.0, 0.8, 0.8, 0.5);
        assert!((full_attack - 1.0 / (1.0 + 0.5f64.sqrt())).abs() < 1e-12);
        assert!((full_attack - 0.586).abs() < 5e-4, "{full_attack}");
        assert_eq!(dcs(0.0, 0.8, 0.8, 0.5), 1.0, "a perfect defense");
        assert_eq!(dcs(0.0, 0.9, 0.8, 0.5), 1.0, "an MP gain is no loss");
        // Losing all MP with no attack success: 1 / (1 + √(β·MP²)).
        assert!((dcs(0.0, 0.0, 1.0, 0.5) - 0.586).abs() < 5e-4);
        assert!(dcs(0.5, 0.7, 0.8, 0.5) < dcs(0.3, 0.7, 0.8, 0.5));
    }

    #[test]
    fn type_and_comprehensive_scores_average() {
        assert_eq!(t_dcs(&[0.5, 1.0]), Some(0.75));
        assert_eq!(t_dcs(&[]), None);
        assert_eq!(c_dcs(&[(1.0, 0.5), (3.0, 1.0)]), Some(0.875));
        assert_eq!(c_dcs(&[]), None);
    }
}
