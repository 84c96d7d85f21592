//! Differential privacy by noise: Laplace (`b = Δf / ε`, the reference's mechanism) and
//! Gaussian (`σ = C·√(2 ln(1.25/δ)) / ε`, declared but never implemented in the reference),
//! on activations, gradients or both, with optional per-position L2 clipping.

use burn::tensor::Tensor;
use splitlm_nn::seeded::SplitMix64;

use crate::{Defense, DefenseError, HookContext, noise_like};

/// Which crossings a defense acts on (DP noise, sparsification): what the data party sends
/// forward, what it sends back, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crossing {
    /// The head's output sent forward.
    Activations,
    /// The gradient sent back.
    Gradients,
    /// Both.
    Both,
}

impl Crossing {
    fn activations(self) -> bool {
        matches!(self, Crossing::Activations | Crossing::Both)
    }
    fn gradients(self) -> bool {
        matches!(self, Crossing::Gradients | Crossing::Both)
    }
}

/// Scales each position's vector (last axis) to L2 norm at most `bound`.
fn clip_rows(x: Tensor<3>, bound: f32) -> Tensor<3> {
    let norms = x.clone().powi_scalar(2).sum_dim(2).sqrt();
    let scale = (norms.recip() * bound).clamp_max(1.0);
    x * scale
}

/// The noise distribution and the parameters it comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mechanism {
    /// Laplace of scale `b = sensitivity / epsilon`.
    Laplace { epsilon: f64, sensitivity: f64 },
    /// Gaussian of σ from (ε, δ) and the clipping bound.
    Gaussian { epsilon: f64, delta: f64 },
}

/// Differential-privacy noise on the crossing tensors: Laplace ([`DpNoise::laplace`]) or
/// Gaussian ([`DpNoise::gaussian`]), after optional per-position clipping.
#[derive(Debug, Clone)]
pub struct DpNoise {
    mechanism: Mechanism,
    clip: Option<f32>,
    target: Crossing,
    rng: SplitMix64,
}

fn check(
    defense: &'static str,
    ok: bool,
    reason: impl FnOnce() -> String,
) -> Result<(), DefenseError> {
    if ok {
        Ok(())
    } else {
        Err(DefenseError {
            defense,
            reason: reason(),
        })
    }
}

impl DpNoise {
    /// Laplace noise with privacy budget `epsilon` for a query of L1 `sensitivity` (the
    /// reference's Δf: BERT 81.82, GPT-2 110.2, RoBERTa 4.15; 0.2 on clipped gradients),
    /// positions first clipped to L2 norm `clip` if given.
    pub fn laplace(
        epsilon: f64,
        sensitivity: f64,
        clip: Option<f32>,
        target: Crossing,
        seed: u64,
    ) -> Result<Self, DefenseError> {
        let name = "laplace_dp";
        check(name, epsilon.is_finite() && epsilon > 0.0, || {
            format!("epsilon must be positive, got {epsilon}")
        })?;
        check(name, sensitivity.is_finite() && sensitivity > 0.0, || {
            format!("sensitivity must be positive, got {sensitivity}")
        })?;
        check(name, clip.is_none_or(|c| c.is_finite() && c > 0.0), || {
            format!("clip must be positive, got {clip:?}")
        })?;
        Ok(Self {
            mechanism: Mechanism::Laplace {
                epsilon,
                sensitivity,
            },
            clip,
            target,
            rng: SplitMix64::new(seed),
        })
    }

    /// Gaussian noise for (`epsilon`, `delta`)-DP with positions clipped to L2 norm `clip`.
    pub fn gaussian(
        epsilon: f64,
        delta: f64,
        clip: f32,
        target: Crossing,
        seed: u64,
    ) -> Result<Self, DefenseError> {
        let name = "gaussian_dp";
        check(name, epsilon.is_finite() && epsilon > 0.0, || {
            format!("epsilon must be positive, got {epsilon}")
        })?;
        check(name, delta > 0.0 && delta < 1.0, || {
            format!("delta must be in (0, 1), got {delta}")
        })?;
        check(name, clip.is_finite() && clip > 0.0, || {
            format!("clip must be positive, got {clip}")
        })?;
        Ok(Self {
            mechanism: Mechanism::Gaussian { epsilon, delta },
            clip: Some(clip),
            target,
            rng: SplitMix64::new(seed),
        })
    }

    /// The noise's scale: Laplace's `b`, or the Gaussian's σ.
    pub fn scale(&self) -> f64 {
        match self.mechanism {
            Mechanism::Laplace {
                epsilon,
                sensitivity,
            } => sensitivity / epsilon,
            Mechanism::Gaussian { epsilon, delta } => gaussian_sigma(
                epsilon,
                delta,
                self.clip.expect("Gaussian noise clips") as f64,
            ),
        }
    }

    fn noisy(&mut self, x: Tensor<3>) -> Tensor<3> {
        let x = match self.clip {
            Some(c) => clip_rows(x, c),
            None => x,
        };
        let scale = self.scale();
        let gaussian = matches!(self.mechanism, Mechanism::Gaussian { .. });
        let rng = &mut self.rng;
        let noise = noise_like(&x, || {
            if gaussian {
                scale * rng.normal()
            } else {
                // Inverse CDF: u uniform in (−½, ½], x = −b·sign(u)·ln(1 − 2|u|).
                let u = rng.uniform() - 0.5;
                -scale * u.signum() * (1.0 - 2.0 * u.abs()).max(f64::MIN_POSITIVE).ln()
            }
        });
        x + noise
    }
}

/// The Gaussian mechanism's σ for (ε, δ)-DP of a query with L2 sensitivity `clip` (valid for
/// ε < 1; larger ε give a looser, still valid, bound in practice).
pub fn gaussian_sigma(epsilon: f64, delta: f64, clip: f64) -> f64 {
    clip * (2.0 * (1.25 / delta).ln()).sqrt() / epsilon
}

impl Defense for DpNoise {
    fn name(&self) -> &'static str {
        match self.mechanism {
            Mechanism::Laplace { .. } => "laplace_dp",
            Mechanism::Gaussian { .. } => "gaussian_dp",
        }
    }

    fn params(&self) -> serde_json::Value {
        let common = serde_json::json!({
            "clip": self.clip, "target": self.target, "scale": self.scale(),
        });
        let specific = match self.mechanism {
            Mechanism::Laplace {
                epsilon,
                sensitivity,
            } => serde_json::json!({ "epsilon": epsilon, "sensitivity": sensitivity }),
            Mechanism::Gaussian { epsilon, delta } => {
                serde_json::json!({ "epsilon": epsilon, "delta": delta })
            }
        };
        let mut params = common;
        if let (Some(p), serde_json::Value::Object(extra)) = (params.as_object_mut(), specific) {
            p.extend(extra);
        }
        params
    }

    fn on_activation(&mut self, hidden: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        if self.target.activations() {
            self.noisy(hidden)
        } else {
            hidden
        }
    }

    fn on_gradient(&mut self, grad: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        if self.target.gradients() {
            self.noisy(grad)
        } else {
            grad
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};

    use super::*;

    fn device() -> Device {
        splitlm_device::DeviceSpec::Cpu.device().unwrap()
    }

    fn constant(value: f32, dims: [usize; 3]) -> Tensor<3> {
        let n = dims.iter().product();
        Tensor::from_data(TensorData::new(vec![value; n], dims), &device())
    }

    fn values(t: Tensor<3>) -> Vec<f64> {
        t.into_data()
            .try_into_vec_as::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    fn moments(xs: &[f64]) -> (f64, f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let mad = xs.iter().map(|x| (x - mean).abs()).sum::<f64>() / n;
        (mean, var, mad)
    }

    const CTX: HookContext = HookContext {
        step: 0,
        training: true,
    };

    #[test]
    fn laplace_noise_has_the_scale_sensitivity_over_epsilon() {
        let mut dp = DpNoise::laplace(2.0, 1.0, None, Crossing::Activations, 1).unwrap();
        assert_eq!(dp.scale(), 0.5);
        let x = constant(3.0, [4, 64, 128]);
        let noise: Vec<f64> = values(dp.on_activation(x, &CTX))
            .into_iter()
            .map(|v| v - 3.0)
            .collect();
        let (mean, var, mad) = moments(&noise);
        // Laplace(b): mean 0, E|x| = b, variance 2b².
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((mad - 0.5).abs() < 0.01, "{mad}");
        assert!((var - 0.5).abs() < 0.02, "{var}");
        // Gradients are left alone when only activations are targeted.
        let g = constant(1.0, [1, 2, 3]);
        assert!(values(dp.on_gradient(g, &CTX)).iter().all(|&v| v == 1.0));
    }

    #[test]
    fn gaussian_noise_has_the_sigma_of_epsilon_delta_and_clip() {
        let mut dp = DpNoise::gaussian(1.0, 1e-5, 1.0, Crossing::Gradients, 2).unwrap();
        let sigma = (2.0 * (1.25e5f64).ln()).sqrt();
        assert!((dp.scale() - sigma).abs() < 1e-9);
        // Rows of norm 0.1 are below the bound and stay; the noise is N(0, σ²).
        let x = constant(0.1 / 128f32.sqrt(), [4, 64, 128]);
        let base = 0.1 / 128f64.sqrt();
        let noise: Vec<f64> = values(dp.on_gradient(x, &CTX))
            .into_iter()
            .map(|v| v - base)
            .collect();
        let (mean, var, _) = moments(&noise);
        assert!(mean.abs() < 0.05, "{mean}");
        assert!(
            (var.sqrt() / sigma - 1.0).abs() < 0.01,
            "{} vs {sigma}",
            var.sqrt()
        );
    }

    #[test]
    fn clipping_bounds_every_position() {
        let x = constant(1.0, [2, 3, 16]); // row norms 4
        let clipped = values(clip_rows(x, 2.0));
        assert!(
            clipped.iter().all(|&v| (v - 0.5).abs() < 1e-6),
            "{clipped:?}"
        );
        let small = values(clip_rows(constant(0.1, [1, 1, 4]), 2.0));
        assert!(small.iter().all(|&v| (v - 0.1).abs() < 1e-6));
    }

    #[test]
    fn draws_are_reproducible_and_settings_checked() {
        let run = |seed| {
            let mut dp = DpNoise::laplace(1.0, 1.0, None, Crossing::Both, seed).unwrap();
            values(dp.on_activation(constant(0.0, [1, 2, 8]), &CTX))
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        let err = DpNoise::laplace(0.0, 1.0, None, Crossing::Both, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("laplace_dp") && err.contains("epsilon"),
            "{err}"
        );
        let err = DpNoise::gaussian(1.0, 1.5, 1.0, Crossing::Both, 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("delta"), "{err}");
    }
}
