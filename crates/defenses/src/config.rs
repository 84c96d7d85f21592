//! Defenses as configuration: one `[[defenses]]` table per defense in a run's TOML.

use crate::{Crossing, Defense, DefenseError, Defenses, DpNoise, Mid, Sparsification};

/// One defense's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DefenseConfig {
    /// Laplace noise of scale `sensitivity / epsilon`.
    LaplaceDp {
        /// Privacy budget.
        epsilon: f64,
        /// L1 sensitivity Δf (the reference: BERT 81.82, GPT-2 110.2, RoBERTa 4.15).
        sensitivity: f64,
        /// Per-position L2 clipping bound applied first.
        #[serde(default)]
        clip: Option<f32>,
        /// Activations, gradients or both.
        target: Crossing,
    },
    /// Gaussian noise for (ε, δ)-DP after per-position clipping.
    GaussianDp {
        /// Privacy budget.
        epsilon: f64,
        /// Failure probability.
        delta: f64,
        /// Per-position L2 clipping bound (the L2 sensitivity).
        clip: f32,
        /// Activations, gradients or both.
        target: Crossing,
    },
    /// Zeroes the smallest magnitudes.
    Sparsification {
        /// Fraction zeroed (the reference: 0.96).
        rate: f64,
        /// Activations, gradients or both.
        target: Crossing,
        /// Carry dropped gradient mass into the next step.
        #[serde(default = "yes")]
        error_feedback: bool,
    },
    /// A variational information bottleneck on the activations, trained with the run.
    Mid {
        /// KL weight λ (the reference: 0.01–0.1).
        lambda: f64,
        /// Bottleneck width in multiples of the hidden size (the reference's default: 1).
        #[serde(default = "one")]
        expansion: usize,
        /// The bottleneck's Adam learning rate.
        #[serde(default = "mid_lr")]
        lr: f64,
    },
}

fn one() -> usize {
    1
}

fn mid_lr() -> f64 {
    1e-3
}

fn yes() -> bool {
    true
}

impl DefenseConfig {
    /// The defense, its random draws seeded by `seed`.
    pub fn build(&self, seed: u64) -> Result<Box<dyn Defense>, DefenseError> {
        Ok(match *self {
            DefenseConfig::LaplaceDp {
                epsilon,
                sensitivity,
                clip,
                target,
            } => Box::new(DpNoise::laplace(epsilon, sensitivity, clip, target, seed)?),
            DefenseConfig::GaussianDp {
                epsilon,
                delta,
                clip,
                target,
            } => Box::new(DpNoise::gaussian(epsilon, delta, clip, target, seed)?),
            DefenseConfig::Sparsification {
                rate,
                target,
                error_feedback,
            } => Box::new(Sparsification::new(rate, target, error_feedback)?),
            DefenseConfig::Mid {
                lambda,
                expansion,
                lr,
            } => Box::new(Mid::new(lambda, expansion, lr, seed)?),
        })
    }

    /// All of `configs`, in order (each seeded apart).
    pub fn build_all(configs: &[DefenseConfig], seed: u64) -> Result<Defenses, DefenseError> {
        configs
            .iter()
            .enumerate()
            .map(|(i, c)| c.build(seed.wrapping_add(i as u64)))
            .collect::<Result<Vec<_>, _>>()
            .map(Defenses::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build_and_refuse_bad_values() {
        let list: Vec<DefenseConfig> = serde_json::from_str(
            r#"[{"kind": "laplace_dp", "epsilon": 10, "sensitivity": 81.82, "target": "activations"},
                {"kind": "sparsification", "rate": 0.96, "target": "gradients"}]"#,
        )
        .unwrap();
        let defenses = DefenseConfig::build_all(&list, 0).unwrap();
        let described = defenses.describe();
        assert_eq!(described[0]["name"], "laplace_dp");
        assert!((described[0]["params"]["scale"].as_f64().unwrap() - 8.182).abs() < 1e-9);
        assert_eq!(described[1]["params"]["error_feedback"], true);
        let err = serde_json::from_str::<DefenseConfig>(
            r#"{"kind": "laplace_dp", "epsilon": 1, "sensitivity": 1, "target": "both", "sigma": 2}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sigma"), "{err}");
        let bad = DefenseConfig::GaussianDp {
            epsilon: 1.0,
            delta: 0.0,
            clip: 1.0,
            target: Crossing::Both,
        };
        assert!(bad.build(0).err().unwrap().to_string().contains("delta"));
    }
}
