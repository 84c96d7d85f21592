//! Binary codec: envelope, strings and tensor frames, all little-endian.
//!
//! ```text
//! envelope: b"SPLM" | version u16 | tag u8 | body_len u64 | body
//! string:   len u32 | UTF-8 bytes
//! frame:    dtype u8 | rank u8 | dims u64 × rank | data_len u64 | data
//! hello:    version u16 | role u8 | party_id string | session_key string
//!           | term count u16 | (name string | value string) × count
//! ```
//!
//! Decoding checks every declared length against the bytes remaining and the
//! [`Limits`] before allocating anything, and never panics.

use std::io::{Read, Write};

use crate::error::ProtocolError;
use crate::frame::{MAX_RANK, TensorFrame, WireDType, checked_elements};
use crate::message::{Message, Mode, OutputKind, Role};

/// The four bytes every message starts with.
pub const MAGIC: [u8; 4] = *b"SPLM";
/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 3;
/// Length of the envelope header: magic, version, tag, body length.
pub const HEADER_LEN: usize = 4 + 2 + 1 + 8;
const MAX_TAG: u8 = 10;
/// Most `(name, value)` terms a [`Message::Hello`] may carry.
pub const MAX_TERMS: u64 = 64;

/// Bounds enforced while decoding, before any allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message (header included), in bytes. Default 256 MiB.
    pub max_message_bytes: u64,
    /// Largest element count of one tensor. Default 2^28.
    pub max_tensor_elements: u64,
    /// Largest tensor rank; values above [`MAX_RANK`] act as [`MAX_RANK`]. Default 8.
    pub max_rank: usize,
    /// Largest string, in bytes. Default 64 KiB.
    pub max_string_bytes: u64,
    /// Most tensors in one message. Default 64.
    pub max_tensors_per_message: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 << 20,
            max_tensor_elements: 1 << 28,
            max_rank: MAX_RANK,
            max_string_bytes: 64 << 10,
            max_tensors_per_message: 64,
        }
    }
}

impl Limits {
    pub(crate) fn check(
        &self,
        what: &'static str,
        size: u64,
        limit: u64,
    ) -> Result<(), ProtocolError> {
        if size > limit {
            return Err(ProtocolError::Oversized { what, size, limit });
        }
        Ok(())
    }

    fn rank(&self) -> usize {
        self.max_rank.min(MAX_RANK)
    }
}

// ---------------------------------------------------------------- encoding

/// Encodes a message with its envelope. Frames are written as they are; an
/// invalid frame (see [`TensorFrame::validate`]) encodes but will not decode.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(usize::try_from(encoded_len(msg)).unwrap_or(0));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.push(msg.tag());
    out.extend_from_slice(&0u64.to_le_bytes());
    encode_body(msg, &mut out);
    let body_len = (out.len() - HEADER_LEN) as u64;
    out[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&body_len.to_le_bytes());
    out
}

/// Size of [`encode`]'s output, computed without encoding.
pub fn encoded_len(msg: &Message) -> u64 {
    let s = |s: &String| 4 + s.len() as u64;
    let f = |f: &TensorFrame| 1 + 1 + 8 * f.shape.len() as u64 + 8 + f.data.len() as u64;
    let body = match msg {
        Message::Hello {
            party_id,
            session_key,
            terms,
            ..
        } => {
            2 + 1
                + s(party_id)
                + s(session_key)
                + 2
                + terms.iter().map(|(k, v)| s(k) + s(v)).sum::<u64>()
        }
        Message::HelloAck { .. } => 2 + 8,
        Message::Forward {
            hidden,
            attention_mask,
            positions,
            ..
        } => 8 + 1 + f(hidden) + f(attention_mask) + f(positions),
        Message::Output { tensors, .. } => 8 + 1 + 4 + tensors.iter().map(f).sum::<u64>(),
        Message::Gradient { grad, .. } | Message::InputGradient { grad, .. } => 8 + f(grad),
        Message::End { reason } => s(reason),
        Message::Error { message, .. } => 2 + s(message),
        Message::SaveState { tag } | Message::RestoreState { tag } => s(tag),
        Message::StateDone { tag, .. } => s(tag) + 8,
    };
    HEADER_LEN as u64 + body
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_frame(out: &mut Vec<u8>, f: &TensorFrame) {
    out.push(f.dtype.to_u8());
    out.push(u8::try_from(f.shape.len()).unwrap_or(u8::MAX));
    for &d in &f.shape {
        out.extend_from_slice(&(d as u64).to_le_bytes());
    }
    out.extend_from_slice(&(f.data.len() as u64).to_le_bytes());
    out.extend_from_slice(&f.data);
}

fn encode_body(msg: &Message, out: &mut Vec<u8>) {
    match msg {
        Message::Hello {
            version,
            role,
            party_id,
            session_key,
            terms,
        } => {
            out.extend_from_slice(&version.to_le_bytes());
            out.push(role.to_u8());
            put_str(out, party_id);
            put_str(out, session_key);
            out.extend_from_slice(&u16::try_from(terms.len()).unwrap_or(u16::MAX).to_le_bytes());
            for (name, value) in terms {
                put_str(out, name);
                put_str(out, value);
            }
        }
        Message::HelloAck { version, session } => {
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&session.to_le_bytes());
        }
        Message::Forward {
            step,
            mode,
            hidden,
            attention_mask,
            positions,
        } => {
            out.extend_from_slice(&step.to_le_bytes());
            out.push(mode.to_u8());
            for f in [hidden, attention_mask, positions] {
                put_frame(out, f);
            }
        }
        Message::Output {
            step,
            kind,
            tensors,
        } => {
            out.extend_from_slice(&step.to_le_bytes());
            out.push(kind.to_u8());
            out.extend_from_slice(&(tensors.len() as u32).to_le_bytes());
            for f in tensors {
                put_frame(out, f);
            }
        }
        Message::Gradient { step, grad } | Message::InputGradient { step, grad } => {
            out.extend_from_slice(&step.to_le_bytes());
            put_frame(out, grad);
        }
        Message::End { reason } => put_str(out, reason),
        Message::Error { code, message } => {
            out.extend_from_slice(&code.to_le_bytes());
            put_str(out, message);
        }
        Message::SaveState { tag } | Message::RestoreState { tag } => put_str(out, tag),
        Message::StateDone { tag, steps } => {
            put_str(out, tag);
            out.extend_from_slice(&steps.to_le_bytes());
        }
    }
}

// ---------------------------------------------------------------- decoding

/// Decodes exactly one message from `bytes` (header included), validating it against `limits`.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Message, ProtocolError> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(ProtocolError::Truncated { what: "header" });
    };
    let (tag, body_len) = parse_header(header, limits)?;
    let have = body.len() as u64;
    if have < body_len {
        return Err(ProtocolError::Truncated {
            what: "message body",
        });
    }
    if have > body_len {
        return Err(ProtocolError::TrailingBytes {
            count: have - body_len,
        });
    }
    decode_body(tag, body, limits)
}

/// Checks magic, version, tag and size; returns `(tag, body_len)`.
fn parse_header(h: &[u8; HEADER_LEN], limits: &Limits) -> Result<(u8, u64), ProtocolError> {
    let magic = [h[0], h[1], h[2], h[3]];
    if magic != MAGIC {
        return Err(ProtocolError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::UnknownVersion {
            found: version,
            supported: PROTOCOL_VERSION,
        });
    }
    let tag = h[6];
    if tag > MAX_TAG {
        return Err(ProtocolError::UnknownMessage(tag));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&h[7..15]);
    let body_len = u64::from_le_bytes(len);
    let total = body_len.saturating_add(HEADER_LEN as u64);
    limits.check("message size", total, limits.max_message_bytes)?;
    Ok((tag, body_len))
}

/// A cursor over a body that never reads past its end.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], ProtocolError> {
        let n = usize::try_from(n).map_err(|_| ProtocolError::Truncated { what })?;
        if n > self.buf.len() {
            return Err(ProtocolError::Truncated { what });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ProtocolError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, limits: &Limits) -> Result<String, ProtocolError> {
        let len = u64::from(self.u32("string length")?);
        limits.check("string length", len, limits.max_string_bytes)?;
        let bytes = self.take(len, "string")?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| ProtocolError::BadUtf8)
    }

    fn frame(&mut self, limits: &Limits) -> Result<TensorFrame, ProtocolError> {
        let dtype = WireDType::from_u8(self.u8("tensor dtype")?)?;
        let rank = usize::from(self.u8("tensor rank")?);
        limits.check("tensor rank", rank as u64, limits.rank() as u64)?;
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            let d = self.u64("tensor dimension")?;
            let d = usize::try_from(d).map_err(|_| ProtocolError::Oversized {
                what: "tensor dimension",
                size: d,
                limit: usize::MAX as u64,
            })?;
            shape.push(d);
        }
        let elements = checked_elements(&shape).ok_or(ProtocolError::Oversized {
            what: "tensor elements",
            size: u64::MAX,
            limit: limits.max_tensor_elements,
        })?;
        limits.check(
            "tensor elements",
            elements as u64,
            limits.max_tensor_elements,
        )?;
        let data_len = self.u64("tensor data length")?;
        if elements.checked_mul(dtype.size()).map(|b| b as u64) != Some(data_len) {
            return Err(ProtocolError::ShapeMismatch {
                shape,
                dtype,
                data_len,
            });
        }
        let data = self.take(data_len, "tensor data")?.to_vec();
        Ok(TensorFrame { dtype, shape, data })
    }
}

fn decode_body(tag: u8, body: &[u8], limits: &Limits) -> Result<Message, ProtocolError> {
    let mut c = Cursor { buf: body };
    let msg = match tag {
        0 => {
            let version = c.u16("hello version")?;
            let role = Role::from_u8(c.u8("role")?)?;
            let party_id = c.string(limits)?;
            let session_key = c.string(limits)?;
            let count = u64::from(c.u16("term count")?);
            limits.check("term count", count, MAX_TERMS)?;
            let mut terms = Vec::with_capacity(count as usize);
            for _ in 0..count {
                terms.push((c.string(limits)?, c.string(limits)?));
            }
            Message::Hello {
                version,
                role,
                party_id,
                session_key,
                terms,
            }
        }
        1 => Message::HelloAck {
            version: c.u16("hello version")?,
            session: c.u64("session")?,
        },
        2 => Message::Forward {
            step: c.u64("step")?,
            mode: Mode::from_u8(c.u8("mode")?)?,
            hidden: c.frame(limits)?,
            attention_mask: c.frame(limits)?,
            positions: c.frame(limits)?,
        },
        3 => {
            let step = c.u64("step")?;
            let kind = OutputKind::from_u8(c.u8("output kind")?)?;
            let count = u64::from(c.u32("tensor count")?);
            limits.check("tensor count", count, limits.max_tensors_per_message)?;
            // Each frame takes at least 10 bytes, which bounds the reservation by the input.
            let mut tensors = Vec::with_capacity((count as usize).min(c.buf.len() / 10));
            for _ in 0..count {
                tensors.push(c.frame(limits)?);
            }
            Message::Output {
                step,
                kind,
                tensors,
            }
        }
        4 => Message::Gradient {
            step: c.u64("step")?,
            grad: c.frame(limits)?,
        },
        5 => Message::InputGradient {
            step: c.u64("step")?,
            grad: c.frame(limits)?,
        },
        6 => Message::End {
            reason: c.string(limits)?,
        },
        7 => Message::Error {
            code: c.u16("error code")?,
            message: c.string(limits)?,
        },
        8 => Message::SaveState {
            tag: c.string(limits)?,
        },
        9 => Message::RestoreState {
            tag: c.string(limits)?,
        },
        10 => Message::StateDone {
            tag: c.string(limits)?,
            steps: c.u64("steps")?,
        },
        other => return Err(ProtocolError::UnknownMessage(other)),
    };
    if !c.buf.is_empty() {
        return Err(ProtocolError::TrailingBytes {
            count: c.buf.len() as u64,
        });
    }
    Ok(msg)
}

// ---------------------------------------------------------------- streams

/// Writes one encoded message to a stream; returns the number of bytes written.
pub fn write_message(writer: &mut impl Write, msg: &Message) -> Result<u64, ProtocolError> {
    let bytes = encode(msg);
    writer.write_all(&bytes)?;
    Ok(bytes.len() as u64)
}

/// Reads one message from a stream: the header first (checked against `limits`),
/// then exactly the body it announces.
///
/// A stream that ends cleanly before the first header byte yields
/// [`ProtocolError::Disconnected`]; one that ends inside a message yields
/// [`ProtocolError::Truncated`].
pub fn read_message(reader: &mut impl Read, limits: &Limits) -> Result<Message, ProtocolError> {
    read_message_counted(reader, limits).map(|(msg, _)| msg)
}

/// [`read_message`], also returning the number of bytes consumed.
pub(crate) fn read_message_counted(
    reader: &mut impl Read,
    limits: &Limits,
) -> Result<(Message, u64), ProtocolError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Err(ProtocolError::Disconnected),
            Ok(0) => return Err(ProtocolError::Truncated { what: "header" }),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (tag, body_len) = parse_header(&header, limits)?;
    // The length is already bounded by the limits; grow as bytes actually arrive.
    let mut body = Vec::with_capacity(usize::try_from(body_len.min(1 << 20)).unwrap_or(0));
    reader.take(body_len).read_to_end(&mut body)?;
    if (body.len() as u64) < body_len {
        return Err(ProtocolError::Truncated {
            what: "message body",
        });
    }
    let msg = decode_body(tag, &body, limits)?;
    Ok((msg, HEADER_LEN as u64 + body_len))
}
