//! Wire protocol between the data party and the model party of split learning.
//!
//! The reference system sends tensors as protobuf `float64` lists and pickles
//! Python objects (remote code execution on receipt). This crate instead moves
//! raw little-endian tensor frames tagged with dtype and shape, validates every
//! length against the bytes present and against [`Limits`] before allocating,
//! and never deserializes code. It depends on no tensor library: another crate
//! converts [`TensorFrame`]s to tensors.
//!
//! * [`frame`]: [`TensorFrame`] and [`WireDType`], with f32/f16/bf16/int conversions.
//! * [`message`]: the [`Message`] enum exchanged in Head–Tail and Head–Body–Tail splits.
//! * [`codec`]: [`encode`], [`decode`], and the streaming [`read_message`] / [`write_message`].
//! * [`transport`]: the [`Transport`] trait, an in-process pair and a byte-stream transport.
//!
//! ```
//! use splitlm_protocol::{Limits, Message, TensorFrame, Transport, WireDType, in_process_pair};
//!
//! let (mut data_party, mut model_party) = in_process_pair(Limits::default());
//! let grad = TensorFrame::from_f32(vec![1, 2], &[0.25, -1.0], WireDType::BF16)?;
//! data_party.send(&Message::Gradient { step: 3, grad: grad.clone() })?;
//! let Message::Gradient { step, grad: received } = model_party.recv()? else { unreachable!() };
//! assert_eq!((step, received.to_f32()?), (3, vec![0.25, -1.0]));
//! assert_eq!(data_party.traffic().bytes_sent, model_party.traffic().bytes_received);
//! # Ok::<(), splitlm_protocol::ProtocolError>(())
//! ```

pub mod codec;
pub mod error;
pub mod frame;
pub mod message;
pub mod transport;

pub use codec::{
    HEADER_LEN, Limits, MAGIC, MAX_TERMS, PROTOCOL_VERSION, decode, encode, read_message,
    write_message,
};
pub use error::ProtocolError;
pub use frame::{MAX_RANK, TensorFrame, WireDType};
pub use message::{Message, Mode, OutputKind, Role};
pub use transport::{InProcessTransport, StreamTransport, Traffic, Transport, in_process_pair};
