//! Transports: how encoded messages travel between the parties.
//!
//! [`Transport`] is blocking, object-safe and `Send`, so a party can hold a
//! `Box<dyn Transport>` and a gRPC or TLS transport can be added later
//! without touching the parties.

use std::io::{Read, Write};
use std::sync::mpsc::{Receiver, Sender, channel};

use crate::codec::{Limits, decode, encode, read_message_counted};
use crate::error::ProtocolError;
use crate::message::Message;

/// Bytes and messages moved by one endpoint (encoded sizes, envelope included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages received.
    pub messages_received: u64,
}

impl Traffic {
    /// The traffic of `self` and `other` together.
    pub fn plus(&self, other: &Traffic) -> Traffic {
        Traffic {
            bytes_sent: self.bytes_sent + other.bytes_sent,
            bytes_received: self.bytes_received + other.bytes_received,
            messages_sent: self.messages_sent + other.messages_sent,
            messages_received: self.messages_received + other.messages_received,
        }
    }

    /// What moved between `earlier` and `self`, two readings of the same endpoint's counters.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
            messages_sent: self.messages_sent - earlier.messages_sent,
            messages_received: self.messages_received - earlier.messages_received,
        }
    }
}

/// One endpoint of a message channel between the two parties.
pub trait Transport: Send {
    /// Sends one message; blocks until it is handed to the channel.
    fn send(&mut self, msg: &Message) -> Result<(), ProtocolError>;
    /// Receives the next message, decoded and validated; blocks until one arrives.
    /// A peer that has gone away yields [`ProtocolError::Disconnected`].
    fn recv(&mut self) -> Result<Message, ProtocolError>;
    /// Traffic counters of this endpoint so far.
    fn traffic(&self) -> Traffic;
}

/// In-process endpoint: messages pass as encoded bytes over a channel and are
/// decoded and validated on receipt, so the party boundary is real even in one process.
#[derive(Debug)]
pub struct InProcessTransport {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    limits: Limits,
    traffic: Traffic,
}

/// Two connected in-process endpoints; both decode with `limits`.
pub fn in_process_pair(limits: Limits) -> (InProcessTransport, InProcessTransport) {
    let (tx_a, rx_b) = channel();
    let (tx_b, rx_a) = channel();
    let end = |tx, rx| InProcessTransport {
        tx,
        rx,
        limits,
        traffic: Traffic::default(),
    };
    (end(tx_a, rx_a), end(tx_b, rx_b))
}

impl Transport for InProcessTransport {
    fn send(&mut self, msg: &Message) -> Result<(), ProtocolError> {
        msg.validate(&self.limits)?;
        let bytes = encode(msg);
        let len = bytes.len() as u64;
        self.tx
            .send(bytes)
            .map_err(|_| ProtocolError::Disconnected)?;
        self.traffic.bytes_sent += len;
        self.traffic.messages_sent += 1;
        log::trace!("sent {} ({len} bytes)", msg.name());
        Ok(())
    }

    fn recv(&mut self) -> Result<Message, ProtocolError> {
        let bytes = self.rx.recv().map_err(|_| ProtocolError::Disconnected)?;
        self.traffic.bytes_received += bytes.len() as u64;
        self.traffic.messages_received += 1;
        let msg = decode(&bytes, &self.limits)?;
        log::trace!("received {} ({} bytes)", msg.name(), bytes.len());
        Ok(msg)
    }

    fn traffic(&self) -> Traffic {
        self.traffic
    }
}

/// Endpoint over any byte stream (a `TcpStream` and its clone, a pipe, a TLS stream):
/// messages are written with their envelope and read incrementally.
#[derive(Debug)]
pub struct StreamTransport<R, W> {
    reader: R,
    writer: W,
    limits: Limits,
    traffic: Traffic,
}

impl<R: Read + Send, W: Write + Send> StreamTransport<R, W> {
    /// Wraps a reader and a writer; incoming messages are checked against `limits`.
    pub fn new(reader: R, writer: W, limits: Limits) -> Self {
        Self {
            reader,
            writer,
            limits,
            traffic: Traffic::default(),
        }
    }

    /// Returns the reader and writer.
    pub fn into_inner(self) -> (R, W) {
        (self.reader, self.writer)
    }
}

impl<R: Read + Send, W: Write + Send> Transport for StreamTransport<R, W> {
    fn send(&mut self, msg: &Message) -> Result<(), ProtocolError> {
        msg.validate(&self.limits)?;
        let bytes = encode(msg);
        let written = self
            .writer
            .write_all(&bytes)
            .and_then(|()| self.writer.flush());
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Err(ProtocolError::Disconnected);
            }
            other => other?,
        }
        self.traffic.bytes_sent += bytes.len() as u64;
        self.traffic.messages_sent += 1;
        Ok(())
    }

    fn recv(&mut self) -> Result<Message, ProtocolError> {
        let (msg, len) = read_message_counted(&mut self.reader, &self.limits)?;
        self.traffic.bytes_received += len;
        self.traffic.messages_received += 1;
        Ok(msg)
    }

    fn traffic(&self) -> Traffic {
        self.traffic
    }
}
