//! Differential privacy by noise: Laplace (`b = Δf / ε`, the reference's mechanism) and
//! Gaussian (`σ = C·√(2 ln(1.25/δ)) / ε`, declared but never implemented in the reference),
//! on activations, gradients or both.
//!
//! The Laplace mechanism follows VFLAIR-LLM (`evaluates/defenses/defense_functions.py`):
//! on activations (`LaplaceDP_for_llm_pred`) noise of scale `Δf / ε` with the model's `Δf`
//! (`DELTAF`: BERT 81.82, RoBERTa 4.15, GPT-2 110.2, any other model 10) and no clipping; on
//! gradients (`LaplaceDP_for_llm_grad`) noise of scale `delta_f / ε` (`delta_f` 1e-2 by
//! default) after dividing the whole batch's gradient by one divisor,
//! `max(max ‖G[b, :, k]‖₂ / (0.2 + 10⁻⁶), 1)`: the reference takes `torch.norm(G, dim=1)` of the
//! `[batch, seq, hidden]` gradient, so the norms run over the sequence axis, one per row and
//! channel. splitlm's earlier per-position L2 clipping is the option `clip`.

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
    pub(crate) fn activations(self) -> bool {
        matches!(self, Crossing::Activations | Crossing::Both)
    }
    pub(crate) fn gradients(self) -> bool {
        matches!(self, Crossing::Gradients | Crossing::Both)
    }
}

/// Scales each position's vector (last axis) to L2 norm at most `bound`.
fn clip_rows(x: Tensor<3>, bound: f32) -> Tensor<3> {
    let norms = x.clone().powi_scalar(2).sum_dim(2).sqrt();
    let scale = (norms.recip() * bound).clamp_max(1.0);
    x * scale
}

/// The reference's bound on a gradient: the whole `[b, s, d]` tensor divided by
/// `max(max over (b, k) of ‖x[b, :, k]‖₂ / (bound + 10⁻⁶), 1)`.
fn divide_batch(x: Tensor<3>, bound: f64) -> Tensor<3> {
    let norms = x.clone().powi_scalar(2).sum_dim(1).sqrt();
    let divisor = (norms.max() / ((bound + 1e-6) as f32)).clamp_min(1.0);
    x / divisor.reshape([1, 1, 1])
}

/// A uniform draw as `torch.distributions.Laplace` makes it: in `[ε₃₂ − 1, 1)`.
fn laplace_uniform(rng: &mut SplitMix64) -> f64 {
    let low = f32::EPSILON as f64 - 1.0;
    // `uniform()` is in (0, 1], so `1 − uniform()` is in [0, 1).
    low + (1.0 - low) * (1.0 - rng.uniform())
}

/// Laplace noise of scale `b` from its uniform draw `u` (torch's `Laplace.rsample`:
/// `−b·sign(u)·log1p(−|u|)`).
fn laplace_from_uniform(u: f64, b: f64) -> f64 {
    if u == 0.0 {
        return 0.0;
    }
    -b * u.signum() * (-u.abs()).ln_1p()
}

/// The Laplace mechanism's settings; [`Laplace::new`] gives the reference's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Laplace {
    /// Privacy budget ε.
    pub epsilon: f64,
    /// Δf of the activations (the reference's `DELTAF`: BERT 81.82, GPT-2 110.2, RoBERTa
    /// 4.15, any other model 10).
    pub sensitivity: f64,
    /// Δf of the gradients (the reference's `delta_f`, 1e-2 by default).
    pub gradient_sensitivity: f64,
    /// Per-position L2 clipping bound applied before the noise (splitlm's option; none in the
    /// reference). On gradients it replaces the batch-wide divisor.
    pub clip: Option<f32>,
    /// The bound of the reference's batch-wide gradient divisor (0.2).
    pub gradient_bound: f64,
    /// Activations, gradients or both.
    pub target: Crossing,
}

impl Laplace {
    /// The reference's Δf for activations of a model outside its table.
    pub const SENSITIVITY: f64 = 10.0;
    /// The reference's default `delta_f` for gradients.
    pub const GRADIENT_SENSITIVITY: f64 = 1e-2;
    /// The reference's bound for the batch-wide gradient divisor.
    pub const GRADIENT_BOUND: f64 = 0.2;

    /// Budget `epsilon` on `target`, every other setting the reference's.
    pub fn new(epsilon: f64, target: Crossing) -> Self {
        Self {
            epsilon,
            sensitivity: Self::SENSITIVITY,
            gradient_sensitivity: Self::GRADIENT_SENSITIVITY,
            clip: None,
            gradient_bound: Self::GRADIENT_BOUND,
            target,
        }
    }
}

/// The noise distribution and the parameters it comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mechanism {
    Laplace(Laplace),
    /// Gaussian of σ from (ε, δ) and the clipping bound.
    Gaussian {
        epsilon: f64,
        delta: f64,
        clip: f32,
        target: Crossing,
    },
}

/// Which crossing a tensor is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Activations,
    Gradients,
}

/// Differential-privacy noise on the crossing tensors: Laplace ([`DpNoise::laplace`],
/// [`DpNoise::laplace_with`]) or Gaussian ([`DpNoise::gaussian`]).
#[derive(Debug, Clone)]
pub struct DpNoise {
    mechanism: Mechanism,
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
    /// Laplace noise with privacy budget `epsilon`: on activations of scale
    /// `sensitivity / epsilon`, on gradients the reference's (`delta_f` 1e-2, batch-wide
    /// divisor); positions first clipped to L2 norm `clip` if given.
    pub fn laplace(
        epsilon: f64,
        sensitivity: f64,
        clip: Option<f32>,
        target: Crossing,
        seed: u64,
    ) -> Result<Self, DefenseError> {
        Self::laplace_with(
            Laplace {
                sensitivity,
                clip,
                ..Laplace::new(epsilon, target)
            },
            seed,
        )
    }

    /// Laplace noise with every setting given.
    pub fn laplace_with(settings: Laplace, seed: u64) -> Result<Self, DefenseError> {
        let name = "laplace_dp";
        let Laplace {
            epsilon,
            sensitivity,
            gradient_sensitivity,
            clip,
            gradient_bound,
            ..
        } = settings;
        check(name, epsilon.is_finite() && epsilon > 0.0, || {
            format!("epsilon must be positive, got {epsilon}")
        })?;
        check(name, sensitivity.is_finite() && sensitivity > 0.0, || {
            format!("sensitivity must be positive, got {sensitivity}")
        })?;
        check(
            name,
            gradient_sensitivity.is_finite() && gradient_sensitivity > 0.0,
            || format!("gradient_sensitivity must be positive, got {gradient_sensitivity}"),
        )?;
        check(name, clip.is_none_or(|c| c.is_finite() && c > 0.0), || {
            format!("clip must be positive, got {clip:?}")
        })?;
        check(
            name,
            gradient_bound.is_finite() && gradient_bound > 0.0,
            || format!("gradient_bound must be positive, got {gradient_bound}"),
        )?;
        Ok(Self {
            mechanism: Mechanism::Laplace(settings),
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
            mechanism: Mechanism::Gaussian {
                epsilon,
                delta,
                clip,
                target,
            },
            rng: SplitMix64::new(seed),
        })
    }

    /// The noise's scale on activations: Laplace's `b`, or the Gaussian's σ.
    pub fn scale(&self) -> f64 {
        self.scale_on(Side::Activations)
    }

    /// The noise's scale on gradients: Laplace's `b`, or the Gaussian's σ.
    pub fn gradient_scale(&self) -> f64 {
        self.scale_on(Side::Gradients)
    }

    fn scale_on(&self, side: Side) -> f64 {
        match self.mechanism {
            Mechanism::Laplace(l) => match side {
                Side::Activations => l.sensitivity / l.epsilon,
                Side::Gradients => l.gradient_sensitivity / l.epsilon,
            },
            Mechanism::Gaussian {
                epsilon,
                delta,
                clip,
                ..
            } => gaussian_sigma(epsilon, delta, clip as f64),
        }
    }

    fn target(&self) -> Crossing {
        match self.mechanism {
            Mechanism::Laplace(l) => l.target,
            Mechanism::Gaussian { target, .. } => target,
        }
    }

    /// `x` clipped or divided as the mechanism does before adding noise on `side`.
    fn bounded(&self, x: Tensor<3>, side: Side) -> Tensor<3> {
        match self.mechanism {
            Mechanism::Laplace(Laplace { clip: Some(c), .. }) => clip_rows(x, c),
            Mechanism::Laplace(l) => match side {
                Side::Activations => x,
                Side::Gradients => divide_batch(x, l.gradient_bound),
            },
            Mechanism::Gaussian { clip, .. } => clip_rows(x, clip),
        }
    }

    /// The mechanism on `x` crossing on `side`, its random draws taken from `draw` (for
    /// Laplace uniform in `[ε₃₂ − 1, 1)` as torch draws them, for Gaussian standard normal).
    /// The fixtures call it with the reference's own draws.
    pub(crate) fn apply(
        &self,
        x: Tensor<3>,
        side: Side,
        mut draw: impl FnMut() -> f64,
    ) -> Tensor<3> {
        let x = self.bounded(x, side);
        let scale = self.scale_on(side);
        let gaussian = matches!(self.mechanism, Mechanism::Gaussian { .. });
        let noise = noise_like(&x, || {
            let d = draw();
            if gaussian {
                scale * d
            } else {
                laplace_from_uniform(d, scale)
            }
        });
        x + noise
    }

    fn noisy(&mut self, x: Tensor<3>, side: Side) -> Tensor<3> {
        let gaussian = matches!(self.mechanism, Mechanism::Gaussian { .. });
        let mut rng = std::mem::replace(&mut self.rng, SplitMix64::new(0));
        let out = self.apply(x, side, || {
            if gaussian {
                rng.normal()
            } else {
                laplace_uniform(&mut rng)
            }
        });
        self.rng = rng;
        out
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
            Mechanism::Laplace(_) => "laplace_dp",
            Mechanism::Gaussian { .. } => "gaussian_dp",
        }
    }

    fn params(&self) -> serde_json::Value {
        match self.mechanism {
            Mechanism::Laplace(l) => serde_json::json!({
                "epsilon": l.epsilon,
                "target": l.target,
                "sensitivity": l.sensitivity,
                "gradient_sensitivity": l.gradient_sensitivity,
                "clip": l.clip,
                "gradient_bound": l.gradient_bound,
                "gradient_clipping": if l.clip.is_some() { "position" } else { "batch" },
                "scale": self.scale(),
                "gradient_scale": self.gradient_scale(),
            }),
            Mechanism::Gaussian {
                epsilon,
                delta,
                clip,
                target,
            } => serde_json::json!({
                "epsilon": epsilon, "delta": delta, "clip": clip, "target": target,
                "scale": self.scale(),
            }),
        }
    }

    fn on_activation(&mut self, hidden: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        if self.target().activations() {
            self.noisy(hidden, Side::Activations)
        } else {
            hidden
        }
    }

    fn on_gradient(&mut self, grad: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        if self.target().gradients() {
            self.noisy(grad, Side::Gradients)
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
    fn per_position_clipping_is_an_option_on_each_crossing() {
        // Rows of norm 5 and 0.1; norms over the sequence 3 and √16.01.
        let x = || {
            Tensor::<3>::from_data(
                TensorData::new(vec![3.0f32, 4.0, 0.0, 0.1], [1, 2, 2]),
                &device(),
            )
        };
        let no_noise = || 0.0;
        let clipped = DpNoise::laplace_with(
            Laplace {
                clip: Some(1.0),
                ..Laplace::new(1.0, Crossing::Both)
            },
            0,
        )
        .unwrap();
        for side in [Side::Activations, Side::Gradients] {
            let out = values(clipped.apply(x(), side, no_noise));
            let want = [0.6, 0.8, 0.0, 0.1];
            assert!(
                out.iter().zip(want).all(|(o, w)| (o - w).abs() < 1e-6),
                "{out:?}"
            );
        }
        // Without it, activations pass unbounded and a gradient is divided as a whole, by
        // its largest norm over the sequence, over 0.2 (+ 10⁻⁶).
        let plain = DpNoise::laplace_with(Laplace::new(1.0, Crossing::Both), 0).unwrap();
        let out = values(plain.apply(x(), Side::Activations, no_noise));
        let want = [3.0, 4.0, 0.0, 0.1];
        assert!(
            out.iter().zip(want).all(|(o, w)| (o - w).abs() < 1e-6),
            "{out:?}"
        );
        let out = values(plain.apply(x(), Side::Gradients, no_noise));
        let divisor = 16.01f64.sqrt() / 0.200_001;
        let want = [3.0 / divisor, 4.0 / divisor, 0.0, 0.1 / divisor];
        assert!(
            out.iter().zip(want).all(|(o, w)| (o - w).abs() < 1e-6),
            "{out:?}"
        );
        assert_eq!(plain.params()["gradient_clipping"], "batch");
        assert_eq!(clipped.params()["gradient_clipping"], "position");
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
