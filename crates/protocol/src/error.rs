//! Errors of the codec and transports.

use crate::frame::WireDType;

/// Everything that can go wrong while encoding, decoding or moving messages.
///
/// Decoding never panics: every malformed input maps to one of these variants.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The input ended before `what` was complete.
    #[error("truncated input: {what} is incomplete")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A length, count or size exceeds the configured [`crate::Limits`].
    #[error("{what} of {size} exceeds the limit of {limit}")]
    Oversized {
        /// The quantity that is too large.
        what: &'static str,
        /// Its declared value.
        size: u64,
        /// The limit it broke.
        limit: u64,
    },
    /// The envelope does not start with the `SPLM` magic.
    #[error("bad magic {found:?}, expected b\"SPLM\"")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The envelope carries a protocol version this build does not speak.
    #[error("unknown protocol version {found}, supported {supported}")]
    UnknownVersion {
        /// The version on the wire.
        found: u16,
        /// The version this build speaks.
        supported: u16,
    },
    /// The message tag is not a known [`crate::Message`] variant.
    #[error("unknown message tag {0}")]
    UnknownMessage(u8),
    /// The dtype byte is not a known [`WireDType`].
    #[error("unknown dtype byte {0}")]
    UnknownDType(u8),
    /// An enum field (role, mode, output kind) has an unknown value.
    #[error("unknown {what} value {value}")]
    UnknownEnum {
        /// The field.
        what: &'static str,
        /// Its value on the wire.
        value: u8,
    },
    /// The shape times the dtype size does not match the data length.
    #[error("shape {shape:?} of {dtype:?} does not match {data_len} data bytes")]
    ShapeMismatch {
        /// The declared shape.
        shape: Vec<usize>,
        /// The declared dtype.
        dtype: WireDType,
        /// The number of data bytes.
        data_len: u64,
    },
    /// A tensor was read as a dtype family it does not hold, or converted to a dtype that cannot hold it.
    #[error("tensor of dtype {found:?} cannot be used as {expected}")]
    WrongDType {
        /// What the caller asked for.
        expected: &'static str,
        /// The dtype at hand.
        found: WireDType,
    },
    /// An integer value does not fit the target dtype.
    #[error("integer {value} does not fit {dtype:?}")]
    IntOutOfRange {
        /// The value.
        value: i64,
        /// The target dtype.
        dtype: WireDType,
    },
    /// A string field is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    BadUtf8,
    /// Bytes are left after a complete message.
    #[error("{count} trailing bytes after the message")]
    TrailingBytes {
        /// How many bytes are left.
        count: u64,
    },
    /// The peer of a transport has gone away.
    #[error("transport peer disconnected")]
    Disconnected,
    /// An I/O error of the underlying stream.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
