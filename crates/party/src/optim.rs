//! Optimizers and learning-rate schedules, per party, from configuration.

use std::f64::consts::PI;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};

/// Which optimizer a party runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam with decoupled weight decay.
    #[serde(rename = "adamw")]
    AdamW,
    /// Adam (weight decay, if any, added to the gradient as L2).
    Adam,
    /// Stochastic gradient descent, with optional momentum.
    Sgd,
}

/// An optimizer and its schedule.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    /// The algorithm.
    pub kind: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay (decoupled for AdamW, L2 for Adam and SGD).
    pub weight_decay: f64,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε.
    pub epsilon: f64,
    /// SGD momentum (0 = none).
    pub momentum: f64,
    /// How the learning rate moves over training.
    pub schedule: LrSchedule,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::AdamW,
            lr: 1e-4,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            momentum: 0.0,
            schedule: LrSchedule::Constant,
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid optimizer setting: {0}")]
pub struct OptimizerConfigError(pub String);

impl OptimizerConfig {
    /// Plain SGD at `lr`.
    pub fn sgd(lr: f64) -> Self {
        Self {
            kind: OptimizerKind::Sgd,
            lr,
            weight_decay: 0.0,
            ..Self::default()
        }
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), OptimizerConfigError> {
        let fail = |m: String| Err(OptimizerConfigError(m));
        let finite_non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return fail(format!("lr = {} must be positive", self.lr));
        }
        if !finite_non_negative(self.weight_decay) {
            return fail(format!("weight_decay = {} must be ≥ 0", self.weight_decay));
        }
        for (name, v) in [
            ("beta1", self.beta1),
            ("beta2", self.beta2),
            ("momentum", self.momentum),
        ] {
            if !(0.0..1.0).contains(&v) {
                return fail(format!("{name} = {v} must be in [0, 1)"));
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return fail(format!("epsilon = {} must be positive", self.epsilon));
        }
        self.schedule.validate()
    }

    /// Builds the optimizer.
    pub fn build(&self) -> ModuleOptimizer {
        let decay =
            (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        match self.kind {
            OptimizerKind::AdamW => AdamWConfig::new()
                .with_beta_1(self.beta1 as f32)
                .with_beta_2(self.beta2 as f32)
                .with_epsilon(self.epsilon as f32)
                .with_weight_decay(self.weight_decay as f32)
                .init(),
            OptimizerKind::Adam => AdamConfig::new()
                .with_beta_1(self.beta1 as f32)
                .with_beta_2(self.beta2 as f32)
                .with_epsilon(self.epsilon as f32)
                .with_weight_decay(decay)
                .init(),
            OptimizerKind::Sgd => SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum((self.momentum > 0.0).then(|| {
                    MomentumConfig::new()
                        .with_momentum(self.momentum)
                        .with_dampening(0.0)
                }))
                .init(),
        }
    }

    /// The learning rate of step `step` (0-based) out of `total_steps`.
    pub fn lr_at(&self, step: usize, total_steps: usize) -> f64 {
        self.lr * self.schedule.factor(step, total_steps)
    }
}

/// How the learning rate moves over `total_steps` (the training run's length).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The peak rate throughout.
    #[default]
    Constant,
    /// Linear from the peak down to `end_factor` × peak at the last step (the reference decays
    /// to 0.01×).
    Linear {
        /// Final rate as a fraction of the peak.
        end_factor: f64,
    },
    /// Linear warm-up from 0 over `warmup_steps`, then cosine down to `min_factor` × peak.
    Cosine {
        /// Steps of warm-up.
        warmup_steps: usize,
        /// Final rate as a fraction of the peak.
        min_factor: f64,
    },
}

impl LrSchedule {
    fn validate(&self) -> Result<(), OptimizerConfigError> {
        let factor = match self {
            LrSchedule::Constant => return Ok(()),
            LrSchedule::Linear { end_factor } => *end_factor,
            LrSchedule::Cosine { min_factor, .. } => *min_factor,
        };
        if !(0.0..=1.0).contains(&factor) {
            return Err(OptimizerConfigError(format!(
                "schedule's final factor {factor} must be in [0, 1]"
            )));
        }
        Ok(())
    }

    /// The multiplier of the peak rate at `step` (0-based) of `total_steps`.
    pub fn factor(&self, step: usize, total_steps: usize) -> f64 {
        let last = total_steps.saturating_sub(1).max(1) as f64;
        let step = step as f64;
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Linear { end_factor } => 1.0 - (1.0 - end_factor) * (step / last).min(1.0),
            LrSchedule::Cosine {
                warmup_steps,
                min_factor,
            } => {
                let warmup = warmup_steps as f64;
                if step < warmup {
                    return (step + 1.0) / (warmup + 1.0);
                }
                let progress = ((step - warmup) / (last - warmup).max(1.0)).min(1.0);
                min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_reach_their_end_points() {
        let linear = LrSchedule::Linear { end_factor: 0.01 };
        assert_eq!(linear.factor(0, 11), 1.0);
        assert!((linear.factor(5, 11) - 0.505).abs() < 1e-12);
        assert!((linear.factor(10, 11) - 0.01).abs() < 1e-12);
        let cosine = LrSchedule::Cosine {
            warmup_steps: 4,
            min_factor: 0.1,
        };
        assert!((cosine.factor(0, 20) - 0.2).abs() < 1e-12);
        assert!((cosine.factor(3, 20) - 0.8).abs() < 1e-12);
        assert!((cosine.factor(4, 20) - 1.0).abs() < 1e-12);
        assert!((cosine.factor(19, 20) - 0.1).abs() < 1e-12);
        let mid = cosine.factor(4 + 15 / 2, 20);
        assert!(mid > 0.5 && mid < 0.6, "{mid}");
        assert_eq!(LrSchedule::Constant.factor(7, 10), 1.0);
    }

    #[test]
    fn configs_reject_unknown_keys_and_bad_values() {
        let err = serde_json::from_str::<OptimizerConfig>(r#"{"kind":"adamw","learning_rate":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("learning_rate"), "{err}");
        let config: OptimizerConfig = serde_json::from_str(
            r#"{"kind":"sgd","lr":0.1,"schedule":{"kind":"linear","end_factor":0.01}}"#,
        )
        .unwrap();
        assert!(config.validate().is_ok());
        let bad = OptimizerConfig {
            lr: -1.0,
            ..config.clone()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("lr = -1"));
        let bad = OptimizerConfig {
            schedule: LrSchedule::Linear { end_factor: 2.0 },
            ..config
        };
        assert!(bad.validate().is_err());
    }
}
