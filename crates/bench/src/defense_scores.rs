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

    /// Literal values where both ΔAP and ΔMP are non-zero, computed by hand from the
    /// definition (Python's `math`, not this module): 1/(1+√(0.5·0.4² + 0.5·0.1²)) and so on.
    #[test]
    fn scores_with_attack_success_and_mp_loss_match_literals() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let a = dcs(0.4, 0.7, 0.8, 0.5);
        let b = dcs(0.9, 0.5, 0.8, 0.5);
        let c = dcs(0.25, 0.6, 0.8, 0.3);
        assert!(close(a, 0.774_264_923_778_945_4), "{a}");
        assert!(close(b, 0.598_508_375_909_205_6), "{b}");
        assert!(close(c, 0.808_986_625_298_012_2), "β weighs MP loss: {c}");
        let t = t_dcs(&[a, b]).unwrap();
        assert!(close(t, 0.686_386_649_844_075_5), "{t}");
        let comprehensive = c_dcs(&[(1.0, t), (3.0, c)]).unwrap();
        assert!(
            close(comprehensive, 0.778_336_631_434_528),
            "{comprehensive}"
        );
    }

    /// `fixtures/vflair/scores.json`: the reference's own `cal_dcs` and `average`
    /// (`metrics/data_process.py`) run by `fixtures/vflair/scores.py`.
    #[test]
    fn scores_match_the_reference_functions() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/vflair/scores.json"
        );
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let f = |v: &serde_json::Value| v.as_f64().unwrap();
        let list = |v: &serde_json::Value| v.as_array().unwrap().iter().map(f).collect::<Vec<_>>();
        for case in fixture["dcs"].as_array().unwrap() {
            let ours = dcs(
                f(&case["ap"]),
                f(&case["mp"]),
                f(&case["mp0"]),
                f(&case["beta"]),
            );
            assert!((ours - f(&case["dcs"])).abs() < 1e-12, "{case}: {ours}");
        }
        for case in fixture["t_dcs"].as_array().unwrap() {
            let ours = t_dcs(&list(&case["dcs"])).unwrap();
            assert!((ours - f(&case["t_dcs"])).abs() < 1e-12, "{case}: {ours}");
        }
        // The reference averages the types it tested (-1 marks the others), as the report's
        // equal weights over the types present do.
        let c = &fixture["c_dcs"];
        let tested: Vec<(f64, f64)> = list(&c["t_dcs"])
            .into_iter()
            .filter(|&t| t != -1.0)
            .map(|t| (1.0, t))
            .collect();
        let ours = c_dcs(&tested).unwrap();
        assert!((ours - f(&c["c_dcs"])).abs() < 1e-12, "{ours}");
    }

    #[test]
    fn type_and_comprehensive_scores_average() {
        assert_eq!(t_dcs(&[0.5, 1.0]), Some(0.75));
        assert_eq!(t_dcs(&[]), None);
        assert_eq!(c_dcs(&[(1.0, 0.5), (3.0, 1.0)]), Some(0.875));
        assert_eq!(c_dcs(&[]), None);
    }
}
