//! BLI, batch label inference by gradient matching (the reference's
//! `BatchLabelReconstruction_LLM`): from a training step the model party served, optimise dummy
//! labels from zero with Adam so that the gradients they would induce match what it saw.
//!
//! **The reference's objective** ([`BliObjective::WeightGradients`], the default) matches the
//! gradients of the model party's trainable weights. Its dummy loss is
//! `mean_i Σ_c −t_ic · z_ic` over the logits `z` — those of the model party's classifier in
//! Head–Tail with `t = D` as is, those of a copy of the data party's tail on the body's output
//! in Head–Body–Tail with `t = softmax(D)` — so the dummy weight gradient is `A·u` with
//! `u = −t/b` and `A` the (fixed) Jacobian transpose from logits to weights. PyTorch gets the
//! matching loss's gradient by second-order autodiff, which Burn lacks; but the loss
//! `‖A·u − g‖²` is a quadratic in `u`: `uᵀ(AᵀA)u − 2(Aᵀg)ᵀu + ‖g‖²`. Each column of `A` is
//! one backward pass of the slice (one per sample and class: the slice mixes no samples), so
//! the Gram matrix `AᵀA` and `Aᵀg` are computed once, exactly, and every Adam step after that
//! is cheap. Checked against the reference's own code in `tests/bli_reference.rs`.
//!
//! **Ours** ([`BliObjective::OutputGradient`], Head–Tail only) matches the received logit
//! gradient `(softmax(z) − softmax(D))/b` directly.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use splitlm_nn::Hidden;
use splitlm_party::replay::{input_gradient, slice_output, weight_gradients};
use splitlm_party::{NamedGradient, Observation, SliceSnapshot};
use splitlm_protocol::OutputKind;

use crate::label::LabelGuess;
use crate::optimise::adam;
use crate::{AttackError, AttackerView, Prior};

/// BLI settings (the reference's defaults: lr 0.05, 500 Adam steps, weight gradients).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BliSettings {
    /// Adam steps.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// What the dummy labels' gradients are matched against.
    pub objective: BliObjective,
}

impl Default for BliSettings {
    fn default() -> Self {
        Self {
            steps: 500,
            lr: 0.05,
            objective: BliObjective::WeightGradients,
        }
    }
}

/// BLI's matching objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BliObjective {
    /// The reference's: the gradients of the model party's trainable weights (Head–Tail, and
    /// Head–Body–Tail through a copy of the data party's tail declared in the prior).
    #[default]
    WeightGradients,
    /// The received gradient of the classifier's logits (Head–Tail only; needs no slice).
    OutputGradient,
}

/// The most memory the columns of `A` may take (one weight gradient per sample and class).
const MAX_COLUMN_BYTES: usize = 2 << 30;

fn fail(reason: impl Into<String>) -> AttackError {
    AttackError {
        attack: "bli",
        reason: reason.into(),
    }
}

/// Runs BLI on every observed step (each its own problem); one guess per observed sample: the
/// arg-max of its dummy label, scored by that class's softmax probability.
pub fn bli(
    view: &AttackerView,
    prior: &Prior,
    settings: &BliSettings,
    device: &Device,
) -> Result<Vec<LabelGuess>, AttackError> {
    Ok(bli_dummy_labels(view, prior, settings, device)?
        .iter()
        .map(|row| {
            let label = (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best });
            let total: f64 = row.iter().map(|&v| f64::from(v - row[label]).exp()).sum();
            LabelGuess {
                label,
                score: 1.0 / total,
            }
        })
        .collect())
}

/// BLI's dummy labels after optimisation, one row per observed sample (logits of the label
/// distribution; in Head–Tail the reference's unnormalised soft labels).
pub fn bli_dummy_labels(
    view: &AttackerView,
    prior: &Prior,
    settings: &BliSettings,
    device: &Device,
) -> Result<Vec<Vec<f32>>, AttackError> {
    if view.observations.is_empty() {
        return Err(fail("no training step was observed"));
    }
    let mut rows = Vec::new();
    for o in &view.observations {
        let dummy = match settings.objective {
            BliObjective::WeightGradients => {
                WeightProblem::build(o, view, prior, device)?.solve(settings, device)?
            }
            BliObjective::OutputGradient => match_output_gradient(o, settings, device)?,
        };
        let [_, classes] = dummy.dims();
        let values = dummy
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| fail(format!("{e:?}")))?;
        rows.extend(values.chunks(classes).map(<[f32]>::to_vec));
    }
    Ok(rows)
}

/// The reference's problem for one observed step: `‖A·u(D) − g‖²` through the Gram matrix.
struct WeightProblem {
    rows: usize,
    classes: usize,
    /// Batch size the loss averages over.
    batch: f64,
    /// Head–Body–Tail: the dummy labels pass a softmax.
    softmax: bool,
    /// `AᵀA`, `[k, k]` with `k = rows × classes`, row-major.
    gram: Vec<f64>,
    /// `Aᵀg`.
    projected: Vec<f64>,
    /// `‖g‖²`.
    observed_sq: f64,
}

impl WeightProblem {
    fn build(
        o: &Observation,
        view: &AttackerView,
        prior: &Prior,
        device: &Device,
    ) -> Result<Self, AttackError> {
        let step = o.step;
        let snapshot: &SliceSnapshot = view
            .slices
            .iter()
            .find(|s| s.session == o.session && s.step == step)
            .ok_or_else(|| {
                fail(format!(
                    "step {step}: BLI matches weight gradients, so it needs the model party's \
                     slice as it was at that step (record slices)"
                ))
            })?;
        if o.weight_gradients.is_empty() {
            return Err(fail(format!(
                "step {step}: no weight gradient was recorded (the model party's slice trains \
                 nothing, or weight gradients were not recorded): nothing to match"
            )));
        }
        let received = o.received(device).map_err(|e| fail(e.to_string()))?;
        let rows = received.states.dims()[0];
        if rows != o.batch_rows {
            return Err(fail(format!(
                "step {step}: {rows} of the batch's {} samples were recorded; BLI matches the \
                 whole batch's weight gradients (raise attacker.max_samples)",
                o.batch_rows
            )));
        }
        let tail = match o.output_kind {
            OutputKind::ClassLogits => None,
            OutputKind::Hidden => Some(prior.tail.as_ref().ok_or_else(|| {
                fail(
                    "in Head–Body–Tail BLI differentiates through the data party's tail: its \
                     prior needs a copy of that tail",
                )
            })?),
            other => {
                return Err(fail(format!(
                    "step {step}: the model party returned {other:?}; BLI infers class labels"
                )));
            }
        };
        let body = snapshot.before.clone().fork(device);
        let tail = tail.map(|t| t.clone().fork(device));
        let order: Vec<&NamedGradient> = o.weight_gradients.iter().collect();
        let width: usize = order.iter().map(|g| g.values.len()).sum();

        let mut columns: Vec<Vec<f32>> = Vec::new();
        let mut classes = 0;
        for i in 0..rows {
            let sample = row_of(&received, i);
            let (seeds, tail_input) = match &tail {
                None => {
                    let (_, out) =
                        slice_output(&body, sample.clone()).map_err(|e| fail(e.to_string()))?;
                    (out.dims(), None)
                }
                Some(tail) => {
                    let (_, states) =
                        slice_output(&body, sample.clone()).map_err(|e| fail(e.to_string()))?;
                    let h = sample.clone().with_states(states.detach());
                    let (_, logits) =
                        slice_output(tail, h.clone()).map_err(|e| fail(e.to_string()))?;
                    (logits.dims(), Some(h))
                }
            };
            let [one, positions, c] = seeds;
            if one != 1 || positions != 1 {
                return Err(fail(format!(
                    "step {step}: logits of shape {seeds:?} per sample, expected [1, 1, classes]"
                )));
            }
            classes = c;
            if i == 0 && rows * c * width * 4 > MAX_COLUMN_BYTES {
                return Err(fail(format!(
                    "{rows} samples × {c} classes × {width} trainable weights would take {} MiB \
                     of weight gradients; BLI is meant for adapters or small slices",
                    (rows * c * width * 4) >> 20
                )));
            }
            for class in 0..c {
                let mut seed = vec![0.0f32; c];
                seed[class] = 1.0;
                let seed = Tensor::<3>::from_data(TensorData::new(seed, [1, 1, c]), device);
                let output_grad = match (&tail, &tail_input) {
                    (Some(tail), Some(h)) => {
                        input_gradient(tail, h.clone(), seed).map_err(|e| fail(e.to_string()))?
                    }
                    _ => seed,
                };
                let grads = weight_gradients(&body, sample.clone(), output_grad)
                    .map_err(|e| fail(e.to_string()))?;
                columns.push(flatten_like(&order, &grads, step)?);
            }
        }
        let observed: Vec<f32> = order
            .iter()
            .flat_map(|g| g.values.iter().copied())
            .collect();
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
        };
        let k = columns.len();
        let mut gram = vec![0.0; k * k];
        for a in 0..k {
            for b in a..k {
                let v = dot(&columns[a], &columns[b]);
                gram[a * k + b] = v;
                gram[b * k + a] = v;
            }
        }
        Ok(Self {
            rows,
            classes,
            batch: o.batch_rows as f64,
            softmax: tail.is_some(),
            projected: columns.iter().map(|a| dot(a, &observed)).collect(),
            observed_sq: dot(&observed, &observed),
            gram,
        })
    }

    /// The matching loss at the dummy labels `d`, `[rows, classes]`.
    fn loss(&self, d: Tensor<2>, gram: &Tensor<2>, projected: &Tensor<2>) -> Tensor<1> {
        let k = self.rows * self.classes;
        let t = if self.softmax { softmax(d, 1) } else { d };
        let u = t.reshape([1, k]) / -self.batch;
        let quadratic = u.clone().matmul(gram.clone()).matmul(u.clone().transpose());
        let linear = u.matmul(projected.clone()) * 2.0;
        (quadratic - linear).reshape([1]) + self.observed_sq
    }

    fn solve(&self, settings: &BliSettings, device: &Device) -> Result<Tensor<2>, AttackError> {
        let k = self.rows * self.classes;
        let inner = device.clone().inner();
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        let gram = Tensor::<2>::from_data(TensorData::new(f32s(&self.gram), [k, k]), device);
        let projected =
            Tensor::<2>::from_data(TensorData::new(f32s(&self.projected), [k, 1]), device);
        adam(
            Tensor::<2>::zeros([self.rows, self.classes], &inner),
            settings.steps,
            settings.lr,
            "bli",
            |d| Ok(self.loss(d, &gram, &projected)),
        )
    }
}

/// Sample `i` of `hidden`, alone.
fn row_of(hidden: &Hidden, i: usize) -> Hidden {
    Hidden {
        states: hidden.states.clone().narrow(0, i, 1),
        attention_mask: hidden.attention_mask.clone().narrow(0, i, 1),
        positions: hidden.positions.clone().narrow(0, i, 1),
    }
}

/// `grads` flattened in the order of `order` (the recorded gradients).
fn flatten_like(
    order: &[&NamedGradient],
    grads: &[NamedGradient],
    step: u64,
) -> Result<Vec<f32>, AttackError> {
    let mut out = Vec::new();
    for want in order {
        let got = grads.iter().find(|g| g.path == want.path).ok_or_else(|| {
            fail(format!(
                "step {step}: the replayed slice has no trainable parameter {}",
                want.path
            ))
        })?;
        if got.values.len() != want.values.len() {
            return Err(fail(format!(
                "step {step}: parameter {} has {} values replayed, {} recorded",
                want.path,
                got.values.len(),
                want.values.len()
            )));
        }
        out.extend_from_slice(&got.values);
    }
    Ok(out)
}

/// Our objective: the received logit gradient `(softmax(z) − softmax(D))/b`.
fn match_output_gradient(
    o: &Observation,
    settings: &BliSettings,
    device: &Device,
) -> Result<Tensor<2>, AttackError> {
    let inner = device.clone().inner();
    if o.output_kind != OutputKind::ClassLogits {
        return Err(fail(format!(
            "step {} returned {:?}; objective = \"output_gradient\" needs the classifier on \
             the model party (Head–Tail)",
            o.step, o.output_kind
        )));
    }
    let &[n, classes] = o.output.shape.as_slice() else {
        return Err(fail(format!(
            "step {}: logits of shape {:?}, expected [b, classes]",
            o.step, o.output.shape
        )));
    };
    if o.output_grad.shape != o.output.shape {
        return Err(fail(format!(
            "step {}: gradient of shape {:?} for logits of shape {:?}",
            o.step, o.output_grad.shape, o.output.shape
        )));
    }
    let frame = |f: &splitlm_protocol::TensorFrame| -> Result<Tensor<2>, AttackError> {
        let values = f.to_f32().map_err(|e| fail(e.to_string()))?;
        Ok(Tensor::from_data(
            TensorData::new(values, [n, classes]),
            &inner,
        ))
    };
    let predicted = Tensor::from_inner(softmax(frame(&o.output)?, 1));
    let observed = Tensor::from_inner(frame(&o.output_grad)?);
    let batch = o.batch_rows.max(n) as f64;
    adam(
        Tensor::<2>::zeros([n, classes], &inner),
        settings.steps,
        settings.lr,
        "bli",
        |d| {
            let induced = (predicted.clone() - softmax(d, 1)) / batch;
            Ok((induced - observed.clone()).powi_scalar(2).sum())
        },
    )
}
