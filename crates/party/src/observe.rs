//! What an honest-but-curious model party can keep of what it legitimately receives: the
//! activations and masks of training steps and the gradients of its outputs (DESIGN.md §1.4).
//! Attacks work from these records only; nothing here reaches into the data party.

use splitlm_protocol::{OutputKind, TensorFrame};

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
}

impl Default for ObservationLimits {
    fn default() -> Self {
        Self {
            from_step: 0,
            steps: 1,
            max_samples: 64,
            weight_gradients: false,
            slices: false,
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
    /// What the model party returned.
    pub output_kind: OutputKind,
    /// That output as sent (e.g. the logits in Head–Tail), `[b, …]`.
    pub output: TensorFrame,
    /// The gradient of that output it received back.
    pub output_grad: TensorFrame,
    /// The gradients of its own trainable weights in that step (with
    /// [`ObservationLimits::weight_gradients`]; empty otherwise).
    pub weight_gradients: Vec<crate::NamedGradient>,
}

/// The model party's own slice around one recorded training step.
#[derive(Debug, Clone)]
pub struct SliceSnapshot {
    /// The data party's session.
    pub session: u64,
    /// The step id.
    pub step: u64,
    /// The slice before the step's update.
    pub before: splitlm_zoo::AnyModel,
    /// The slice after it.
    pub after: splitlm_zoo::AnyModel,
}

/// The first `n` rows (outermost index) of a frame.
pub(crate) fn first_rows(frame: &TensorFrame, n: usize) -> TensorFrame {
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
