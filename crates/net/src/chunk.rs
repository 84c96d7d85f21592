//! Our protocol's byte stream carried as gRPC messages: the encoded frames of
//! `splitlm-protocol` cut into chunks of at most the configured size, one gRPC message each.
//!
//! The gRPC layer only moves opaque bytes ([`ChunkCodec`]); framing, validation and the limits
//! stay where they are for every transport, in `splitlm_protocol::StreamTransport`, which reads
//! a message's header, checks its announced size against the limits, and only then reads (and
//! allocates) the body as chunks arrive. A message larger than one chunk is never held twice.

use std::io::{self, Read, Write};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A codec whose messages are raw bytes (no protobuf): each is one chunk of our stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkCodec;

impl Codec for ChunkCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = ChunkCodec;
    type Decoder = ChunkCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ChunkCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        ChunkCodec
    }
}

impl Encoder for ChunkCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for ChunkCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// What the task reading a gRPC stream hands to the blocking side: a chunk, or why the stream
/// ended abnormally.
pub(crate) type Incoming = Result<Bytes, String>;

/// The reading half of a session's stream, for blocking code: chunks from a channel fed by the
/// task that reads the gRPC stream. A silence longer than `idle` is an error, so a peer that
/// vanished without closing its connection cannot hold a session forever.
pub struct ChunkReader {
    chunks: mpsc::Receiver<Incoming>,
    current: Bytes,
    idle: Option<Duration>,
    runtime: Handle,
}

impl ChunkReader {
    pub(crate) fn new(
        chunks: mpsc::Receiver<Incoming>,
        idle: Option<Duration>,
        runtime: Handle,
    ) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
            idle,
            runtime,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            let next = self.chunks.recv();
            let next = match self.idle {
                Some(idle) => self
                    .runtime
                    .block_on(async { tokio::time::timeout(idle, next).await })
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the peer sent nothing for {} s", idle.as_secs_f64()),
                        )
                    })?,
                None => self.runtime.block_on(next),
            };
            match next {
                None => return Ok(0),
                Some(Err(why)) => {
                    return Err(io::Error::new(io::ErrorKind::ConnectionAborted, why));
                }
                Some(Ok(chunk)) => self.current = chunk,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// The writing half of a session's stream, for blocking code: bytes are gathered into chunks of
/// at most `chunk_bytes` and queued for the task that writes the gRPC stream; a full queue
/// blocks the writer (backpressure), so a session never buffers more than its queue.
pub struct ChunkWriter {
    chunks: mpsc::Sender<Bytes>,
    pending: Vec<u8>,
    chunk_bytes: usize,
}

impl ChunkWriter {
    pub(crate) fn new(chunks: mpsc::Sender<Bytes>, chunk_bytes: usize) -> Self {
        Self {
            chunks,
            pending: Vec::new(),
            chunk_bytes: chunk_bytes.max(1),
        }
    }

    fn ship(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        self.chunks
            .blocking_send(Bytes::from(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the stream is closed"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let written = buf.len();
        while !buf.is_empty() {
            let room = self.chunk_bytes - self.pending.len();
            let (now, later) = buf.split_at(room.min(buf.len()));
            self.pending.extend_from_slice(now);
            buf = later;
            if self.pending.len() == self.chunk_bytes {
                let full = std::mem::take(&mut self.pending);
                self.ship(full)?;
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.ship(rest)?;
        }
        Ok(())
    }
}
