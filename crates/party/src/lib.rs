//! The two parties of split learning and what passes between them.
//!
//! A [`DataParty`] holds the private text, the labels, the loss, the head and (Head–Body–Tail)
//! the tail; a [`ModelParty`] holds the body (or, in Head–Tail, the rest of the model with the
//! task head) and serves one or several data parties. Each party owns its tensors on its own
//! device and backend; everything crossing goes through a [`Transport`] as protocol messages,
//! even in one process.
//!
//! One training step (docs/ARCHITECTURE.md, "A training step"): the data party sends the head's
//! activations `H1`; the model party makes them a leaf, runs its slice and returns its output
//! (`H2`, or the task head's output in Head–Tail); the data party makes that a leaf, computes the
//! loss, backprops, updates its tail and returns `∂L/∂output`; the model party backprops it through
//! `(output · grad).sum()`, updates its slice and returns `∂L/∂H1`; the data party backprops that
//! into its head and updates it. Evaluation steps send no gradient.
//!
//! Traffic: per training step each cut carries `batch × seq × hidden × dtype bytes` each way.
//! In Head–Tail with an LM head, the output crossing back is `batch × seq × vocab` logits
//! (SmolLM2: 49152 / 576 ≈ 85× the hidden states) and its gradient the same size again; keep
//! the task head with the data party instead by cutting Head–Body–Tail with `n_tail = 0`
//! ([`splitlm_partition::Partition::HeadTail`]'s `task_head_with = "data"` does exactly that).
//!
//! [`Transport`]: splitlm_protocol::Transport

mod data;
mod error;
mod model;
mod observe;
pub mod optim;
pub mod replay;
mod slice;
pub mod state;
pub mod wire;

pub use data::{ByteCount, DataParty, Handshake, SplitGeneration, TrainStep};
pub use error::PartyError;
pub use model::{ModelParty, Opening, SessionReport};
pub use observe::{
    Observation, ObservationLimits, ObserveRequest, ObservedStep, Recorder, SliceSnapshot,
    StepObserver,
};
pub use optim::{LrSchedule, OptimizerConfig, OptimizerKind};
pub use slice::{NamedGradient, PartySlice};

use splitlm_protocol::{Message, Transport, WireDType};

/// Settings of a party's side of a session.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartyOptions {
    /// How this party identifies itself.
    pub party_id: String,
    /// Float format of the tensors this party sends.
    #[serde(with = "wire_dtype_name")]
    pub wire_dtype: WireDType,
}

impl Default for PartyOptions {
    fn default() -> Self {
        Self {
            party_id: "data-party".into(),
            wire_dtype: WireDType::F32,
        }
    }
}

mod wire_dtype_name {
    use splitlm_protocol::WireDType;

    pub fn serialize<S: serde::Serializer>(d: &WireDType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match d {
            WireDType::F16 => "f16",
            WireDType::BF16 => "bf16",
            _ => "f32",
        })
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<WireDType, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(d)?;
        match name.as_str() {
            "f32" => Ok(WireDType::F32),
            "f16" => Ok(WireDType::F16),
            "bf16" => Ok(WireDType::BF16),
            other => Err(serde::de::Error::custom(format!(
                "wire_dtype = \"{other}\": expected f32, f16 or bf16"
            ))),
        }
    }
}

/// Receives the next message; a peer's `Error` becomes [`PartyError::Peer`].
pub(crate) fn recv_expected(transport: &mut dyn Transport) -> Result<Message, PartyError> {
    match transport.recv()? {
        Message::Error { code, message } => Err(PartyError::Peer { code, message }),
        other => Ok(other),
    }
}
