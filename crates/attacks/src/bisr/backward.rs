//! BiSR's backward phase (the paper's BiSR(b); VFLAIR-LLM's BiSR has none): gradient matching
//! on what the model party receives back.
//!
//! In a language-model task the data party's loss scores the logits at position `t` against
//! the token at `t + 1`, so the gradient of the logits is `g_t = w_t·(softmax(z_t) − e_{x_{t+1}})`
//! (`w_t` the loss weight of the position over the batch's total weight): the labels *are* the
//! input. The attacker holds the logits `z` (Head–Tail: it computed and sent them; Head–Body–Tail:
//! it runs its copy of the data party's tail on the body's output, which it computed) and
//! optimises dummy token logits `θ [b, s, vocab]`, started from the inverter's, so that the
//! gradient the dummy labels `y'_t = softmax(θ_{t+1})` would induce matches the observed one:
//!
//! * **Head–Tail** (the model party returns LM logits): the observed gradient is the one of its
//!   output, `g [b, s, vocab]`; the dummy one is `u(θ) = m ⊙ (softmax(z) − y')`, `m` the
//!   positions whose observed gradient is not zero (those the loss scored);
//! * **Head–Body–Tail** (the model party returns the body's hidden states): the observed
//!   gradient arrives from the tail at the body's output, `g [b, s, d] = J_tailᵀ·(w ⊙ (softmax(z)
//!   − e))`; the dummy one is `J_tailᵀ·u(θ)`, one backward pass of the tail copy
//!   (`prior.tail`, else the surrogate's tail), `m` the positions followed by a real token. The
//!   matching loss's gradient needs `J_tail·r` (`r` the loss's gradient at the dummy gradient):
//!   Burn has no second-order autodiff, so it is a central finite difference of the tail's
//!   logits along `r` (step [`super::BisrSettings::jvp_step`] relative to the activations).
//!
//! The matching loss is one minus the cosine similarity of dummy and observed gradient per
//! sample, summed over the samples: it needs no knowledge of the loss weights' normaliser.
//! Position 0 has no label, so it keeps what the inverter read.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use splitlm_nn::Hidden;
use splitlm_party::Observation;
use splitlm_party::replay::{input_gradient, slice_output};
use splitlm_protocol::OutputKind;
use splitlm_zoo::AnyModel;

use super::{BisrSettings, fail, host};
use crate::inversion::argmax_last;
use crate::optimise::adam;
use crate::{AttackError, Prior};

/// The dummy token ids (`b·s`, row-major) after matching the gradient of step `o`, started
/// from the inverter's `logits` (`[b, s, vocab]`, inner device).
pub(super) fn refine(
    o: &Observation,
    prior: &Prior,
    logits: Tensor<3>,
    settings: &BisrSettings,
    device: &Device,
) -> Result<Vec<u32>, AttackError> {
    let inner = device.clone().inner();
    let [b, s, vocab] = logits.dims();
    let frame = |what: &str, f: &splitlm_protocol::TensorFrame| -> Result<Vec<f32>, AttackError> {
        let v = f
            .to_f32()
            .map_err(|e| fail(format!("step {}: {what}: {e}", o.step)))?;
        if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
            return Err(fail(format!("step {}: the {what} holds {bad}", o.step)));
        }
        Ok(v)
    };
    let observed = frame("received gradient", &o.output_grad)?;
    match o.output_kind {
        OutputKind::LmLogits => {
            if o.output.shape != [b, s, vocab] || o.output_grad.shape != [b, s, vocab] {
                return Err(fail(format!(
                    "step {}: logits {:?} and their gradient {:?} do not match [{b}, {s}, \
                     {vocab}] (the head's vocabulary)",
                    o.step, o.output.shape, o.output_grad.shape
                )));
            }
            let z = Tensor::<3>::from_data(
                TensorData::new(frame("logits", &o.output)?, [b, s, vocab]),
                &inner,
            );
            let labelled: Vec<f32> = observed
                .chunks(vocab)
                .map(|g| f32::from(g.iter().any(|&v| v != 0.0)))
                .collect();
            let problem = Problem::new(z, labelled, [b, s, vocab], &inner);
            let g = Tensor::<3>::from_data(TensorData::new(observed, [b, s, vocab]), &inner);
            let theta = adam(
                logits,
                settings.backward_steps,
                settings.backward_lr,
                "bisr",
                |theta| Ok(mismatch(problem.dummy_gradient(theta), &g)),
            )?;
            Ok(argmax_last(theta))
        }
        OutputKind::Hidden => {
            let tail = prior
                .tail
                .as_ref()
                .or(prior.surrogate.as_ref().and_then(|s| s.tail.as_ref()))
                .ok_or_else(|| {
                    fail(
                        "backward matching in Head–Body–Tail needs a copy of the data party's \
                         tail in its prior (tail, or surrogate.tail)",
                    )
                })?;
            through_tail(o, tail, logits, observed, settings, device)
        }
        other => Err(fail(format!(
            "step {}: backward matching needs a language-model task (the labels are the \
             input), but the model party returned {other:?}",
            o.step
        ))),
    }
}

/// The dummy gradient at the logits: `m ⊙ (softmax(z) − shift(softmax(θ)))`.
struct Problem {
    /// `softmax(z)`, inner device.
    probabilities: Tensor<3>,
    /// `[b, s, 1]`: 1 where the position has a label, inner device.
    labelled: Tensor<3>,
    dims: [usize; 3],
}

impl Problem {
    fn new(z: Tensor<3>, labelled: Vec<f32>, [b, s, v]: [usize; 3], inner: &Device) -> Self {
        Self {
            probabilities: softmax(z, 2),
            labelled: Tensor::from_data(TensorData::new(labelled, [b, s, 1]), inner),
            dims: [b, s, v],
        }
    }

    /// On the autodiff device, differentiable in `theta`.
    fn dummy_gradient(&self, theta: Tensor<3>) -> Tensor<3> {
        let [b, s, v] = self.dims;
        let y = softmax(theta, 2);
        let device = y.device();
        let next = if s > 1 {
            Tensor::cat(
                vec![y.narrow(1, 1, s - 1), Tensor::zeros([b, 1, v], &device)],
                1,
            )
        } else {
            Tensor::zeros([b, s, v], &device)
        };
        (Tensor::from_inner(self.probabilities.clone()) - next)
            * Tensor::from_inner(self.labelled.clone())
    }
}

/// `Σ_rows 1 − cos(a_row, g_row)`; `g` on the inner device.
fn mismatch(a: Tensor<3>, g: &Tensor<3>) -> Tensor<1> {
    let [b, _, _] = a.dims();
    let g = Tensor::from_inner(g.clone());
    let norm = |t: Tensor<3>| t.powi_scalar(2).sum_dim(2).sum_dim(1).sqrt().reshape([b]);
    let dot = (a.clone() * g.clone()).sum_dim(2).sum_dim(1).reshape([b]);
    let cos = dot / (norm(a) * norm(g)).clamp_min(1e-20);
    (-cos + 1.0).sum()
}

/// Head–Body–Tail: match the gradient at the body's output through `tail`.
fn through_tail(
    o: &Observation,
    tail: &AnyModel,
    logits: Tensor<3>,
    observed: Vec<f32>,
    settings: &BisrSettings,
    device: &Device,
) -> Result<Vec<u32>, AttackError> {
    use burn::module::Module;
    let inner = device.clone().inner();
    let [b, s, vocab] = logits.dims();
    let err = |e: splitlm_party::PartyError| fail(format!("step {}: {e}", o.step));
    let shape: [usize; 3] = o.output.shape.clone().try_into().map_err(|_| {
        fail(format!(
            "step {}: the body's output {:?} is not [b, s, d]",
            o.step, o.output.shape
        ))
    })?;
    if shape[..2] != [b, s] || o.output_grad.shape != shape {
        return Err(fail(format!(
            "step {}: the body's output {:?}, its gradient {:?} and the activations [{b}, {s}, _] \
             disagree",
            o.step, o.output.shape, o.output_grad.shape
        )));
    }
    let tail = tail.clone().fork(device);
    let body_out = Tensor::<3>::from_data(
        TensorData::new(o.output.to_f32().map_err(|e| fail(e.to_string()))?, shape),
        device,
    );
    let received = o.received(device).map_err(err)?;
    let at = |states: Tensor<3>| -> Hidden { received.clone().with_states(states) };
    let (kind, z) = slice_output(&tail, at(body_out.clone())).map_err(err)?;
    if kind != OutputKind::LmLogits || z.dims() != [b, s, vocab] {
        return Err(fail(format!(
            "step {}: the tail copy gives {kind:?} of shape {:?}, backward matching needs \
             language-model logits [{b}, {s}, {vocab}]",
            o.step,
            z.dims()
        )));
    }
    let mask = o.attention_mask.to_i64().map_err(|e| fail(e.to_string()))?;
    let labelled: Vec<f32> = (0..b * s)
        .map(|i| {
            let t = i % s;
            f32::from(t + 1 < s && mask.get(i + 1).is_some_and(|&m| m != 0))
        })
        .collect();
    let problem = Problem::new(z.inner(), labelled, [b, s, vocab], &inner);
    let g = Tensor::<3>::from_data(TensorData::new(observed, shape), &inner);
    let norm_a = host(body_out.clone().inner().powi_scalar(2).sum())
        .first()
        .map_or(1.0, |v| f64::from(*v).sqrt());
    let theta = adam(
        logits,
        settings.backward_steps,
        settings.backward_lr,
        "bisr",
        |theta| {
            let u = problem.dummy_gradient(theta);
            // The dummy gradient at the body's output and the matching loss's gradient there.
            let dummy = input_gradient(&tail, at(body_out.clone()), u.clone().detach())
                .map_err(err)?
                .inner();
            let leaf = Tensor::from_inner(dummy).require_grad();
            let grads = mismatch(leaf.clone(), &g).backward();
            let r = leaf
                .grad(&grads)
                .ok_or_else(|| fail("no gradient reached the dummy gradient"))?;
            let norm_r = host(r.clone().powi_scalar(2).sum())
                .first()
                .map_or(0.0, |v| f64::from(*v).sqrt());
            if norm_r == 0.0 {
                return Ok((u * 0.0).sum());
            }
            let h = settings.jvp_step * norm_a.max(1e-6) / norm_r;
            let shifted = |sign: f64| -> Result<Tensor<3>, AttackError> {
                let states = body_out.clone().detach() + Tensor::from_inner(r.clone()) * (sign * h);
                Ok(slice_output(&tail, at(states))
                    .map_err(err)?
                    .1
                    .detach()
                    .inner())
            };
            let jvp = (shifted(1.0)? - shifted(-1.0)?) / (2.0 * h);
            Ok((u * Tensor::from_inner(jvp)).sum())
        },
    )?;
    Ok(argmax_last(theta))
}
