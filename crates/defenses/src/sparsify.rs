//! Sparsification: only the largest `1 − rate` of magnitudes cross; the rest are zeroed. On
//! gradients, what was dropped is carried into the next step's gradient (error feedback).

use burn::tensor::{Tensor, TensorData};

use crate::{Crossing, Defense, DefenseError, HookContext};

/// Keeps the largest magnitudes of each sent tensor.
pub struct Sparsification {
    rate: f64,
    target: Crossing,
    error_feedback: bool,
    residual: Option<Tensor<3>>,
}

impl Sparsification {
    /// Zeroes the fraction `rate` (the reference uses 0.96) of smallest magnitudes of the
    /// targeted tensors; with `error_feedback`, the dropped part of a gradient is added to the
    /// next one of the same shape.
    pub fn new(rate: f64, target: Crossing, error_feedback: bool) -> Result<Self, DefenseError> {
        if !(0.0..1.0).contains(&rate) {
            return Err(DefenseError {
                defense: "sparsification",
                reason: format!("rate must be in [0, 1), got {rate}"),
            });
        }
        Ok(Self {
            rate,
            target,
            error_feedback,
            residual: None,
        })
    }

    /// `x` with all but its largest `1 − rate` magnitudes zeroed, as `x · mask` (so gradients
    /// flow through the kept elements only).
    fn sparsify(&self, x: Tensor<3>) -> Tensor<3> {
        let dims = x.dims();
        let magnitudes: Vec<f32> = x
            .clone()
            .abs()
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("float tensor");
        let n = magnitudes.len();
        let dropped = (self.rate * n as f64).round() as usize;
        let keep = n.saturating_sub(dropped).max(1);
        let mut order: Vec<usize> = (0..n).collect();
        // The `keep` largest, ties broken by position so the mask is deterministic.
        order.select_nth_unstable_by(keep - 1, |&a, &b| {
            magnitudes[b].total_cmp(&magnitudes[a]).then(a.cmp(&b))
        });
        let mut mask = vec![0f32; n];
        for &i in &order[..keep] {
            mask[i] = 1.0;
        }
        let mask = Tensor::<3>::from_data(TensorData::new(mask, dims), &x.device());
        x * mask
    }
}

impl Defense for Sparsification {
    fn name(&self) -> &'static str {
        "sparsification"
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "rate": self.rate, "target": self.target, "error_feedback": self.error_feedback,
        })
    }

    fn on_activation(&mut self, hidden: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        if matches!(self.target, Crossing::Activations | Crossing::Both) {
            self.sparsify(hidden)
        } else {
            hidden
        }
    }

    fn on_gradient(&mut self, grad: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        if !matches!(self.target, Crossing::Gradients | Crossing::Both) {
            return grad;
        }
        let grad = match self.residual.take() {
            Some(r) if self.error_feedback && r.dims() == grad.dims() => grad + r,
            _ => grad,
        };
        let sent = self.sparsify(grad.clone());
        if self.error_feedback {
            self.residual = Some(grad - sent.clone());
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn device() -> Device {
        splitlm_device::DeviceSpec::Cpu.device().unwrap()
    }

    fn ramp(n: usize, offset: f32) -> Tensor<3> {
        let v: Vec<f32> = (0..n)
            .map(|i| (i as f32 - n as f32 / 2.0) * 0.01 + offset)
            .collect();
        Tensor::from_data(TensorData::new(v, [1, 1, n]), &device())
    }

    fn values(t: Tensor<3>) -> Vec<f32> {
        t.into_data().try_into_vec_as::<f32>().unwrap()
    }

    const CTX: HookContext = HookContext {
        step: 0,
        training: true,
    };

    #[test]
    fn keeps_exactly_the_largest_magnitudes() {
        let mut s = Sparsification::new(0.96, Crossing::Activations, false).unwrap();
        let x = ramp(1000, 0.0);
        let sent = values(s.on_activation(x.clone(), &CTX));
        let kept: Vec<usize> = (0..1000).filter(|&i| sent[i] != 0.0).collect();
        assert_eq!(kept.len(), 40, "4 % of 1,000 cross");
        let original = values(x);
        let smallest_kept = kept
            .iter()
            .map(|&i| original[i].abs())
            .fold(f32::MAX, f32::min);
        let largest_dropped = (0..1000)
            .filter(|i| !kept.contains(i))
            .map(|i| original[i].abs())
            .fold(0.0, f32::max);
        assert!(smallest_kept >= largest_dropped);
        assert!(kept.iter().all(|&i| sent[i] == original[i]));
    }

    #[test]
    fn error_feedback_delivers_what_was_dropped_later() {
        let mut s = Sparsification::new(0.9, Crossing::Gradients, true).unwrap();
        let g = ramp(100, 0.3);
        let mut delivered = vec![0f32; 100];
        let steps = 40;
        for _ in 0..steps {
            let sent = values(s.on_gradient(g.clone(), &CTX));
            assert_eq!(sent.iter().filter(|&&v| v != 0.0).count(), 10);
            for (d, v) in delivered.iter_mut().zip(sent) {
                *d += v;
            }
        }
        // Nothing is lost: what was sent plus what is still held back is every gradient.
        let residual = values(s.residual.clone().unwrap());
        let truth = values(g);
        for ((d, r), t) in delivered.iter().zip(&residual).zip(&truth) {
            assert!((d + r - steps as f32 * t).abs() < 1e-3, "{d} + {r} vs {t}");
        }
        // Small gradients are not starved: without feedback only the same 10 ever cross.
        let crossed = delivered.iter().filter(|&&d| d != 0.0).count();
        assert!(crossed >= 80, "{crossed} of 100 crossed");
        let mut plain = Sparsification::new(0.9, Crossing::Gradients, false).unwrap();
        let once = values(plain.on_gradient(ramp(100, 0.3), &CTX));
        assert_eq!(once.iter().filter(|&&v| v == 0.0).count(), 90);
    }

    #[test]
    fn bad_rates_are_refused() {
        let err = Sparsification::new(1.0, Crossing::Both, true)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("rate"), "{err}");
    }
}
