//! The messages exchanged by the data party and the model party.

use crate::codec::{Limits, MAX_TERMS};
use crate::error::ProtocolError;
use crate::frame::TensorFrame;

/// Which side of the split a party is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Holds the data, the embeddings/head and (in Head–Body–Tail) the tail.
    DataParty = 0,
    /// Holds the body (or the tail with the task head in Head–Tail).
    ModelParty = 1,
}

/// What a forward pass is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// Training: a [`Message::Gradient`] will follow.
    Train = 0,
    /// Evaluation: no gradient follows.
    Eval = 1,
    /// Generation, continuing the cached sequence: `hidden`, `attention_mask` and `positions`
    /// cover only the new positions; the model party appends them to its KV cache and mask.
    /// No gradient follows, and an LM head's output holds only the last position.
    Infer = 2,
    /// Generation of a new prompt: like [`Mode::Infer`], after the model party drops the
    /// session's KV cache.
    Prefill = 3,
}

/// What the tensors of a [`Message::Output`] hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OutputKind {
    /// Hidden states of the body (H2 in Head–Body–Tail).
    Hidden = 0,
    /// Language-model logits `[b, s, vocab]`.
    LmLogits = 1,
    /// Sequence-classification logits `[b, classes]`.
    ClassLogits = 2,
    /// Span (start, end) logits for extractive QA.
    SpanLogits = 3,
}

macro_rules! wire_enum {
    ($ty:ty, $what:literal, [$($v:path),+]) => {
        impl $ty {
            /// The byte written on the wire.
            pub fn to_u8(self) -> u8 {
                self as u8
            }

            /// Parses a wire byte.
            pub fn from_u8(byte: u8) -> Result<Self, ProtocolError> {
                [$($v),+]
                    .into_iter()
                    .find(|v| *v as u8 == byte)
                    .ok_or(ProtocolError::UnknownEnum { what: $what, value: byte })
            }
        }
    };
}
wire_enum!(Role, "role", [Role::DataParty, Role::ModelParty]);
wire_enum!(
    Mode,
    "mode",
    [Mode::Train, Mode::Eval, Mode::Infer, Mode::Prefill]
);
wire_enum!(
    OutputKind,
    "output kind",
    [
        OutputKind::Hidden,
        OutputKind::LmLogits,
        OutputKind::ClassLogits,
        OutputKind::SpanLogits
    ]
);

/// One protocol message. Tensors travel as [`TensorFrame`]s; nothing executable ever does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Opens a session.
    Hello {
        /// Protocol version the sender speaks.
        version: u16,
        /// The sender's role.
        role: Role,
        /// Free-form party identifier.
        party_id: String,
        /// The data party's name for this session, stable across reconnections: a model party
        /// that keeps state finds the session's saved state under it (empty: a one-off session).
        session_key: String,
        /// What both parties must agree on (checkpoint digest, partition, trainability, wire
        /// dtype…) and the session's settings, as `(name, value)` pairs in a fixed order.
        terms: Vec<(String, String)>,
    },
    /// Accepts a [`Message::Hello`].
    HelloAck {
        /// Protocol version agreed.
        version: u16,
        /// Session identifier chosen by the acceptor.
        session: u64,
    },
    /// Data party → model party: activations of the head.
    Forward {
        /// Step counter, echoed by replies.
        step: u64,
        /// Train, eval or inference.
        mode: Mode,
        /// Hidden states `[b, s, d]`, float.
        hidden: TensorFrame,
        /// Attention mask `[b, t]`, integer.
        attention_mask: TensorFrame,
        /// Position ids `[b, s]`, integer.
        positions: TensorFrame,
    },
    /// Model party → data party: body output (HBT) or task-head output (HT).
    Output {
        /// Step of the [`Message::Forward`] answered.
        step: u64,
        /// What the tensors hold.
        kind: OutputKind,
        /// The output tensors.
        tensors: Vec<TensorFrame>,
    },
    /// Data party → model party: ∂L/∂output.
    Gradient {
        /// Step answered.
        step: u64,
        /// Gradient with the shape of the output.
        grad: TensorFrame,
    },
    /// Model party → data party: ∂L/∂H1 (gradient of the head's activations).
    InputGradient {
        /// Step answered.
        step: u64,
        /// Gradient with the shape of `hidden`.
        grad: TensorFrame,
    },
    /// Orderly end of the session.
    End {
        /// Why the session ends.
        reason: String,
    },
    /// Data party → model party: save the session's trainable state (parameters and optimizer)
    /// under `tag`, atomically; answered by [`Message::StateDone`].
    SaveState {
        /// The data party's name for this checkpoint.
        tag: String,
    },
    /// Data party → model party: return the session's trainable state to what was saved under
    /// `tag`; answered by [`Message::StateDone`].
    RestoreState {
        /// A tag given to an earlier [`Message::SaveState`].
        tag: String,
    },
    /// Model party → data party: the state named `tag` was saved or restored.
    StateDone {
        /// The tag of the request answered.
        tag: String,
        /// Training steps the session's state has taken (the step id both sides compare).
        steps: u64,
    },
    /// The peer failed.
    Error {
        /// Application-defined error code.
        code: u16,
        /// Human-readable message.
        message: String,
    },
}

impl Message {
    /// The wire tag of this variant.
    pub fn tag(&self) -> u8 {
        match self {
            Message::Hello { .. } => 0,
            Message::HelloAck { .. } => 1,
            Message::Forward { .. } => 2,
            Message::Output { .. } => 3,
            Message::Gradient { .. } => 4,
            Message::InputGradient { .. } => 5,
            Message::End { .. } => 6,
            Message::Error { .. } => 7,
            Message::SaveState { .. } => 8,
            Message::RestoreState { .. } => 9,
            Message::StateDone { .. } => 10,
        }
    }

    /// The variant's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::HelloAck { .. } => "HelloAck",
            Message::Forward { .. } => "Forward",
            Message::Output { .. } => "Output",
            Message::Gradient { .. } => "Gradient",
            Message::InputGradient { .. } => "InputGradient",
            Message::End { .. } => "End",
            Message::Error { .. } => "Error",
            Message::SaveState { .. } => "SaveState",
            Message::RestoreState { .. } => "RestoreState",
            Message::StateDone { .. } => "StateDone",
        }
    }

    /// The tensor frames this message carries.
    pub fn frames(&self) -> Vec<&TensorFrame> {
        match self {
            Message::Forward {
                hidden,
                attention_mask,
                positions,
                ..
            } => vec![hidden, attention_mask, positions],
            Message::Output { tensors, .. } => tensors.iter().collect(),
            Message::Gradient { grad, .. } | Message::InputGradient { grad, .. } => vec![grad],
            _ => Vec::new(),
        }
    }

    /// Checks that the message would decode under `limits`: valid frames, strings,
    /// tensor counts and total size. Transports call this before sending.
    pub fn validate(&self, limits: &Limits) -> Result<(), ProtocolError> {
        let strings: Vec<&String> = match self {
            Message::Hello {
                party_id,
                session_key,
                terms,
                ..
            } => {
                limits.check("term count", terms.len() as u64, MAX_TERMS)?;
                let mut all = vec![party_id, session_key];
                all.extend(terms.iter().flat_map(|(k, v)| [k, v]));
                all
            }
            Message::End { reason } => vec![reason],
            Message::Error { message, .. } => vec![message],
            Message::SaveState { tag }
            | Message::RestoreState { tag }
            | Message::StateDone { tag, .. } => vec![tag],
            _ => Vec::new(),
        };
        for s in strings {
            limits.check("string length", s.len() as u64, limits.max_string_bytes)?;
        }
        let frames = self.frames();
        limits.check(
            "tensor count",
            frames.len() as u64,
            limits.max_tensors_per_message,
        )?;
        for f in frames {
            f.validate()?;
            limits.check("tensor rank", f.shape.len() as u64, limits.max_rank as u64)?;
            limits.check(
                "tensor elements",
                f.num_elements() as u64,
                limits.max_tensor_elements,
            )?;
        }
        limits.check(
            "message size",
            crate::codec::encoded_len(self),
            limits.max_message_bytes,
        )
    }
}
