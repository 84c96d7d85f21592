//! Sparsification: only the largest magnitudes cross; the rest are zeroed. On gradients, what
//! was dropped is carried into the next step's gradient (error feedback).
//!
//! The default follows VFLAIR-LLM (`GradientSparsification_for_llm_pred` / `_grad` in
//! `evaluates/defenses/defense_functions.py`): values with `|x| < torch.quantile(|x|, rate)`
//! (linear interpolation, over the whole batch) are zeroed, so ties at the threshold all cross;
//! the gradient's dropped part is fed into the next gradient of the same batch size, the
//! activations' is not; and the head learns from the dense gradient, backpropagated through
//! the unsparsified activations (the reference sends a detached, sparsified copy). Where
//! `torch.quantile` refuses its input (more than 2^24 elements in the torch builds the
//! reference ran on), the reference averages the quantiles of chunks, which is kept too.
//! splitlm's earlier behaviour, an exact count of largest magnitudes whose mask also zeroes
//! the head's gradient, is `selection = "exact_count"` with `straight_through = false`.

use burn::tensor::{Tensor, TensorData};

use crate::{Crossing, Defense, DefenseError, HookContext};

/// How the kept elements are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The reference's: every `|x| ≥ torch.quantile(|x|, rate)`.
    #[default]
    Quantile,
    /// splitlm's earlier: exactly the `n − round(rate·n)` (at least 1) largest magnitudes,
    /// ties broken by position.
    ExactCount,
}

/// The size above which `torch.quantile` refused its input in the torch builds the reference
/// ran on ("quantile() input tensor is too large").
pub(crate) const TORCH_QUANTILE_LIMIT: usize = 1 << 24;

/// `torch.quantile(values, q)` with linear interpolation, bit for bit as torch 2.15 computes
/// it on a float32 CPU tensor: `q` rounded to float32, the rank `q·(n − 1)` in float64, its
/// fractional part rounded to float32 as the weight, and a fused multiply-add `lerp` (checked
/// against torch on 3,000 random cases; older torch builds compute the rank in float32, which
/// can move the threshold by an ulp).
pub(crate) fn torch_quantile(values: &[f32], q: f32) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f32::total_cmp);
    let rank = q as f64 * (sorted.len() - 1) as f64;
    let below = rank as usize;
    let above = (rank.ceil() as usize).min(sorted.len() - 1);
    let weight = (rank - below as f64) as f32;
    let (a, b) = (sorted[below], sorted[above]);
    // torch's lerp.
    if weight.abs() < 0.5 {
        weight.mul_add(b - a, a)
    } else {
        (-(b - a)).mul_add(1.0 - weight, b)
    }
}

fn mean(values: &[f32]) -> f32 {
    (values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64) as f32
}

/// The reference's threshold on magnitudes `abs` (row-major, `rows` batch rows):
/// `torch.quantile` of the whole, or, when that is over `limit` elements, the mean of the
/// quantiles of chunks of 10 batch rows, or, when those are too, of 100,000 elements.
pub(crate) fn reference_threshold(abs: &[f32], rows: usize, q: f32, limit: usize) -> f32 {
    if abs.len() <= limit {
        return torch_quantile(abs, q);
    }
    let row = abs.len() / rows.max(1);
    let quantiles: Vec<f32> = if rows.min(10) * row <= limit {
        abs.chunks(10 * row).map(|c| torch_quantile(c, q)).collect()
    } else {
        abs.chunks(100_000).map(|c| torch_quantile(c, q)).collect()
    };
    mean(&quantiles)
}

/// Keeps the largest magnitudes of each sent tensor.
pub struct Sparsification {
    rate: f64,
    target: Crossing,
    error_feedback: bool,
    selection: Selection,
    straight_through: bool,
    quantile_limit: usize,
    residual: Option<Tensor<3>>,
}

impl Sparsification {
    /// Zeroes the fraction `rate` (the reference uses 0.96–1) of smallest magnitudes of the
    /// targeted tensors, as the reference does (quantile threshold, straight-through
    /// gradient); with `error_feedback`, the dropped part of a gradient is added to the next
    /// one of the same shape.
    pub fn new(rate: f64, target: Crossing, error_feedback: bool) -> Result<Self, DefenseError> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(DefenseError {
                defense: "sparsification",
                reason: format!("rate must be in [0, 1], got {rate}"),
            });
        }
        Ok(Self {
            rate,
            target,
            error_feedback,
            selection: Selection::default(),
            straight_through: true,
            quantile_limit: TORCH_QUANTILE_LIMIT,
            residual: None,
        })
    }

    /// Chooses the kept elements by `selection`.
    pub fn with_selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Whether the head learns from the dense gradient through the unsparsified activations
    /// (the reference) or only through the kept elements.
    pub fn with_straight_through(mut self, straight_through: bool) -> Self {
        self.straight_through = straight_through;
        self
    }

    /// The size above which the quantile is taken by chunks (the fixtures make it small).
    #[cfg(test)]
    pub(crate) fn with_quantile_limit(mut self, limit: usize) -> Self {
        self.quantile_limit = limit;
        self
    }

    /// The 0/1 mask of the kept elements of `x`.
    fn mask(&self, x: &Tensor<3>) -> Tensor<3> {
        let dims = x.dims();
        let magnitudes: Vec<f32> = x
            .clone()
            .abs()
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("float tensor");
        let mask = match self.selection {
            Selection::Quantile => {
                let threshold = reference_threshold(
                    &magnitudes,
                    dims[0],
                    self.rate as f32,
                    self.quantile_limit,
                );
                magnitudes
                    .iter()
                    .map(|&m| if m < threshold { 0.0 } else { 1.0 })
                    .collect()
            }
            Selection::ExactCount => exact_count_mask(&magnitudes, self.rate),
        };
        Tensor::<3>::from_data(TensorData::new(mask, dims), &x.device())
    }
}

/// The `n − round(rate·n)` (at least 1) largest of `magnitudes`, ties broken by position.
fn exact_count_mask(magnitudes: &[f32], rate: f64) -> Vec<f32> {
    let n = magnitudes.len();
    let dropped = (rate * n as f64).round() as usize;
    let keep = n.saturating_sub(dropped).max(1);
    let mut order: Vec<usize> = (0..n).collect();
    order.select_nth_unstable_by(keep - 1, |&a, &b| {
        magnitudes[b].total_cmp(&magnitudes[a]).then(a.cmp(&b))
    });
    let mut mask = vec![0f32; n];
    for &i in &order[..keep] {
        mask[i] = 1.0;
    }
    mask
}

impl Defense for Sparsification {
    fn name(&self) -> &'static str {
        "sparsification"
    }

    fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "rate": self.rate, "target": self.target, "error_feedback": self.error_feedback,
            "selection": self.selection, "straight_through": self.straight_through,
        })
    }

    fn on_activation(&mut self, hidden: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        if !self.target.activations() {
            return hidden;
        }
        let sparse = hidden.clone() * self.mask(&hidden);
        if self.straight_through {
            // The value of `sparse`, the gradient of `hidden`.
            hidden.clone() + (sparse - hidden).detach()
        } else {
            sparse
        }
    }

    fn on_gradient(&mut self, grad: Tensor<3>, _ctx: &HookContext) -> Tensor<3> {
        if !self.target.gradients() {
            return grad;
        }
        let grad = match self.residual.take() {
            Some(r) if self.error_feedback && r.dims() == grad.dims() => grad + r,
            _ => grad,
        };
        let sent = grad.clone() * self.mask(&grad);
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
    fn the_exact_count_option_keeps_exactly_the_largest_magnitudes() {
        let mut s = Sparsification::new(0.96, Crossing::Activations, false)
            .unwrap()
            .with_selection(Selection::ExactCount)
            .with_straight_through(false);
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
        let mut s = Sparsification::new(0.9, Crossing::Gradients, true)
            .unwrap()
            .with_selection(Selection::ExactCount);
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
        let mut plain = Sparsification::new(0.9, Crossing::Gradients, false)
            .unwrap()
            .with_selection(Selection::ExactCount);
        let once = values(plain.on_gradient(ramp(100, 0.3), &CTX));
        assert_eq!(once.iter().filter(|&&v| v == 0.0).count(), 90);
    }

    #[test]
    fn without_straight_through_the_head_learns_through_the_kept_elements_only() {
        let device = device().autodiff();
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![0.1f32, -2.0, 0.3, 4.0], [1, 1, 4]),
            &device,
        )
        .require_grad();
        let mut s = Sparsification::new(0.5, Crossing::Activations, false)
            .unwrap()
            .with_straight_through(false);
        let sent = s.on_activation(x.clone(), &CTX);
        assert_eq!(values(sent.clone()), vec![0.0, -2.0, 0.0, 4.0]);
        let grads = sent.sum().backward();
        assert_eq!(values(x.grad(&grads).unwrap()), vec![0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn torch_quantile_interpolates_in_float32() {
        // Literal values of torch.quantile (torch 2.15, float32).
        let v = [3.0f32, 1.0, 2.0, 10.0];
        assert_eq!(torch_quantile(&v, 0.5), 2.5);
        assert_eq!(torch_quantile(&v, 0.9), 7.899_999_6);
        assert_eq!(torch_quantile(&v, 1.0), 10.0);
        assert_eq!(torch_quantile(&v, 0.0), 1.0);
        // Under the limit the reference takes one quantile of the whole.
        assert_eq!(reference_threshold(&v, 2, 0.5, 4), 2.5);
    }

    #[test]
    fn bad_rates_are_refused() {
        assert!(Sparsification::new(1.0, Crossing::Both, true).is_ok());
        let err = Sparsification::new(1.5, Crossing::Both, true)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("rate"), "{err}");
    }
}
