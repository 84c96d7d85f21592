//! Two machines: the model party as a gRPC service over HTTP/2 with mutual TLS, and the data
//! party's client (docs/ARCHITECTURE.md, "Two machines").
//!
//! * [`server::serve`] runs model-party sessions, each a bidirectional stream of
//!   [`SESSION_METHOD`], each with its own trainable state over one frozen base.
//! * [`client::Connector`] opens such a stream and hands the parties a
//!   [`splitlm_protocol::Transport`], so neither party knows it is on a network.
//! * [`chunk`] carries our validated protocol frames in gRPC messages of bounded size.
//! * [`keys`] makes a CA and certificates to try mutual TLS with.
//!
//! The parties stay blocking; the network runs on a small tokio runtime, and each session's
//! blocking side talks to it through bounded channels (backpressure, no unbounded buffers).

pub mod chunk;
pub mod client;
pub mod config;
mod error;
pub mod keys;
pub mod server;
pub mod terms;

pub use client::{Connector, GrpcTransport};
pub use config::{End, NetworkConfig, TlsFiles};
pub use error::NetError;
pub use server::{ServeOptions, SessionFactory, serve};

use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::Streaming;

/// The gRPC service's name.
pub const SERVICE_NAME: &str = "splitlm.v1.Split";
/// The one method: a session, as a bidirectional stream of chunks.
pub const SESSION_METHOD: &str = "/splitlm.v1.Split/Session";

/// Moves the chunks of a gRPC stream into a channel until either ends; a stream that fails
/// hands on why.
pub(crate) async fn forward(mut inbound: Streaming<Bytes>, to: mpsc::Sender<chunk::Incoming>) {
    loop {
        let next = match inbound.message().await {
            Ok(Some(chunk)) => Ok(chunk),
            Ok(None) => break,
            Err(status) => Err(format!("the stream failed: {}", status.message())),
        };
        let failed = next.is_err();
        if to.send(next).await.is_err() || failed {
            break;
        }
    }
}
