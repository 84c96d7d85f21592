//! What an honest-but-curious model party can keep of what it legitimately receives: the
//! activations and masks of training steps and the gradients of its outputs (docs/ARCHITECTURE.md,
//! "Observer hooks"). Attacks work from these records only; nothing here reaches into the data
//! party.
//!
//! The model party tells a [`StepObserver`] of the training steps it serves, as the data party
//! calls its defenses' hooks; [`Recorder`], the attacker's recording, is one such observer.

use std::any::Any;

use splitlm_protocol::{OutputKind, TensorFrame};
use splitlm_zoo::AnyModel;

use crate::NamedGradient;

/// Watches the training steps a [`crate::ModelParty`] serves
/// ([`crate::ModelParty::set_observer`]); it sees only what the model party holds anyway.
pub trait StepObserver: Any + Send {
    /// Whether to be told of the `train_step`-th training step (0: the first) of `session`,
    /// and what to keep of it beyond what crossed; `None` passes it by. Unless overridden:
    /// every step, nothing more.
    fn wants(&self, _session: u64, _train_step: u64) -> Option<ObserveRequest> {
        Some(ObserveRequest::default())
    }

    /// A training step [`StepObserver::wants`] asked for, after the slice's update and before
    /// the input gradient goes back.
    fn on_train_step(&mut self, step: ObservedStep<'_>);

    /// Whether to be told of the evaluation steps of `session` (none unless overridden).
    fn wants_inference(&self, _session: u64) -> bool {
        false
    }

    /// An evaluation step, after its output went back: what crossed (no gradient, no weight
    /// gradients, no slices).
    fn on_inference_step(&mut self, _step: ObservedStep<'_>) {}
}

/// What an observer wants of a training step besides the tensors that crossed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObserveRequest {
    /// The gradients of the slice's trainable weights, on the host, as the optimizer used them.
    pub weight_gradients: bool,
    /// The slice before and after the step's update.
    pub slices: bool,
}

/// One training step as the model party served it (whole batches, as they crossed).
#[derive(Debug, Clone, Copy)]
pub struct ObservedStep<'a> {
    /// The data party's session.
    pub session: u64,
    /// The step id.
    pub step: u64,
    /// Activations received, `[b, s, d]`.
    pub hidden: &'a TensorFrame,
    /// Their attention mask, `[b, s]`.
    pub attention_mask: &'a TensorFrame,
    /// Their positions, `[b, s]`.
    pub positions: &'a TensorFrame,
    /// What the model party returned.
    pub output_kind: OutputKind,
    /// That output as sent.
    pub output: &'a TensorFrame,
    /// The gradient of that output received back.
    pub output_grad: &'a TensorFrame,
    /// The gradients of the slice's trainable weights (with
    /// [`ObserveRequest::weight_gradients`]; empty otherwise).
    pub weight_gradients: &'a [NamedGradient],
    /// The slice before the update (with [`ObserveRequest::slices`]).
    pub slice_before: Option<&'a AnyModel>,
    /// The slice after it (with [`ObserveRequest::slices`]).
    pub slice_after: Option<&'a AnyModel>,
}

/// How much the model party records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObservationLimits {
    /// Training steps of each session served before recording starts (0: from the first).
    pub from_step: u64,
    /// This many training steps of each session are recorded.
    pub steps: u64,
    /// At most this many samples (batch rows) of each step are kept.
    pub max_samples: usize,
    /// Also keep a host copy of the gradients of the slice's trainable weights of each
    /// recorded step (whole-batch gradients, as the optimizer used them).
    pub weight_gradients: bool,
    /// Also keep the slice as it was before and after each recorded step. Burn modules share
    /// their tensors, so a snapshot costs only the parameters the step changed.
    pub slices: bool,
    /// Also record evaluation steps (their activations and outputs; the gradient frames are
    /// empty): the reference's inversion attacks re-send samples through the trained head.
    pub inference: bool,
}

impl Default for ObservationLimits {
    fn default() -> Self {
        Self {
            from_step: 0,
            steps: 1,
            max_samples: 64,
            weight_gradients: false,
            slices: false,
            inference: false,
        }
    }
}

/// One training step as the model party saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The data party's session.
    pub session: u64,
    /// The step id.
    pub step: u64,
    /// The batch's size before truncation to `max_samples` (the loss averages over it).
    pub batch_rows: usize,
    /// Activations received, `[b, s, d]`.
    pub hidden: TensorFrame,
    /// Their attention mask, `[b, s]`.
    pub attention_mask: TensorFrame,
    /// Their positions, `[b, s]`.
    pub positions: TensorFrame,
    /// What the model party returned.
    pub output_kind: OutputKind,
    /// That output as sent (e.g. the logits in Head–Tail), `[b, …]`.
    pub output: TensorFrame,
    /// The gradient of that output it received back.
    pub output_grad: TensorFrame,
    /// The gradients of its own trainable weights in that step (with
    /// [`ObservationLimits::weight_gradients`]; empty otherwise).
    pub weight_gradients: Vec<NamedGradient>,
}

/// The model party's own slice around one recorded training step.
#[derive(Debug, Clone)]
pub struct SliceSnapshot {
    /// The data party's session.
    pub session: u64,
    /// The step id.
    pub step: u64,
    /// The slice before the step's update.
    pub before: AnyModel,
    /// The slice after it.
    pub after: AnyModel,
}

/// The attacker's recording ([`crate::ModelParty::observe`]): the training steps of each
/// session within [`ObservationLimits`], each cut to its first `max_samples` rows.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    limits: ObservationLimits,
    observations: Vec<Observation>,
    slices: Vec<SliceSnapshot>,
}

impl Recorder {
    /// Records within `limits`; nothing recorded yet.
    pub fn new(limits: ObservationLimits) -> Self {
        Self {
            limits,
            observations: Vec::new(),
            slices: Vec::new(),
        }
    }

    /// The recorded steps, in the order they were served.
    pub fn observations(&self) -> &[Observation] {
        &self.observations
    }

    /// The slice around each recorded step (with [`ObservationLimits::slices`]).
    pub fn slices(&self) -> &[SliceSnapshot] {
        &self.slices
    }
}

impl StepObserver for Recorder {
    fn wants(&self, _session: u64, train_step: u64) -> Option<ObserveRequest> {
        let ObservationLimits {
            from_step, steps, ..
        } = self.limits;
        (from_step..from_step.saturating_add(steps))
            .contains(&train_step)
            .then_some(ObserveRequest {
                weight_gradients: self.limits.weight_gradients,
                slices: self.limits.slices,
            })
    }

    fn wants_inference(&self, _session: u64) -> bool {
        self.limits.inference
    }

    fn on_inference_step(&mut self, seen: ObservedStep<'_>) {
        self.keep(seen);
    }

    fn on_train_step(&mut self, seen: ObservedStep<'_>) {
        self.keep(seen);
    }
}

impl Recorder {
    fn keep(&mut self, seen: ObservedStep<'_>) {
        if let (Some(before), Some(after)) = (seen.slice_before, seen.slice_after) {
            self.slices.push(SliceSnapshot {
                session: seen.session,
                step: seen.step,
                before: before.clone(),
                after: after.clone(),
            });
        }
        let rows = |frame| first_rows(frame, self.limits.max_samples);
        self.observations.push(Observation {
            session: seen.session,
            step: seen.step,
            batch_rows: seen.hidden.shape.first().copied().unwrap_or(0),
            hidden: rows(seen.hidden),
            attention_mask: rows(seen.attention_mask),
            positions: rows(seen.positions),
            output_kind: seen.output_kind,
            output: rows(seen.output),
            output_grad: rows(seen.output_grad),
            weight_gradients: seen.weight_gradients.to_vec(),
        });
    }
}

/// The recorder among `observer`, if that is one.
pub(crate) fn as_recorder(observer: &dyn StepObserver) -> Option<&Recorder> {
    (observer as &dyn Any).downcast_ref()
}

/// The first `n` rows (outermost index) of a frame.
fn first_rows(frame: &TensorFrame, n: usize) -> TensorFrame {
    let Some(&rows) = frame.shape.first() else {
        return frame.clone();
    };
    let n = n.min(rows);
    let row_bytes = frame.data.len() / rows.max(1);
    let mut shape = frame.shape.clone();
    shape[0] = n;
    TensorFrame {
        dtype: frame.dtype,
        shape,
        data: frame.data[..n * row_bytes].to_vec(),
    }
}
