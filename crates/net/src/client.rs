//! The data party's end: a gRPC channel to the model party (mutual TLS unless `insecure` on
//! loopback), one bidirectional stream per session, bridged to the blocking [`Transport`] the
//! parties speak. Reconnection retries with exponential backoff.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use splitlm_protocol::{Message, ProtocolError, StreamTransport, Traffic, Transport};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Uri};

use crate::chunk::{ChunkCodec, ChunkReader, ChunkWriter, Incoming};
use crate::config::{End, NetworkConfig, TlsMaterial};
use crate::{NetError, SESSION_METHOD};

/// Opens sessions with one model party.
pub struct Connector {
    address: String,
    uri: Uri,
    tls: Option<TlsMaterial>,
    config: NetworkConfig,
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("address", &self.address)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Whether `host` (a URI's host, IPv6 in brackets) is a loopback name or address.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Connector {
    /// A connector to `config.connect`, with the client's TLS material from `config`.
    pub fn new(config: &NetworkConfig) -> Result<Self, NetError> {
        config.validate()?;
        let address = config
            .connect
            .clone()
            .ok_or_else(|| NetError::Setting("network.connect: no address to connect to".into()))?;
        let bad = |detail: String| NetError::Connect {
            address: address.clone(),
            detail,
        };
        let uri: Uri = address
            .parse()
            .map_err(|e| bad(format!("not an address like https://HOST:PORT ({e})")))?;
        let host = uri.host().unwrap_or_default().to_string();
        match (uri.scheme_str(), config.insecure) {
            (Some("https"), false) => {}
            (Some("http"), true) if is_loopback_host(&host) => {}
            (Some("http"), true) => {
                return Err(bad(
                    "--insecure (plaintext) is allowed on a loopback address only".into(),
                ));
            }
            (Some("http"), false) => {
                return Err(bad(
                    "http:// is plaintext; use https:// with --tls, or --insecure on loopback"
                        .into(),
                ));
            }
            (Some("https"), true) => {
                return Err(bad("--insecure needs an http:// address".into()));
            }
            _ => return Err(bad("the address must start with https://".into())),
        }
        let tls = config.tls(End::Client)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("splitlm-net")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("starting the network runtime: {e}")))?;
        Ok(Self {
            address,
            uri,
            tls,
            config: config.clone(),
            runtime: Arc::new(runtime),
        })
    }

    /// The address connected to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Opens one session's stream, once.
    pub fn connect_once(&self) -> Result<GrpcTransport, NetError> {
        let (reader, writer) = self.open_stream()?;
        Ok(GrpcTransport {
            inner: StreamTransport::new(reader, writer, self.config.limits()),
            _runtime: self.runtime.clone(),
        })
    }

    /// Opens one session's stream as raw bytes (what [`Connector::connect_once`] speaks the
    /// protocol over); valid while this connector lives.
    pub fn open_stream(&self) -> Result<(ChunkReader, ChunkWriter), NetError> {
        let fail = |detail: String| NetError::Connect {
            address: self.address.clone(),
            detail,
        };
        let queue = self.config.queue_chunks;
        let chunk = self.config.chunk_bytes;
        let (in_rx, out_tx) = self
            .runtime
            .block_on(async {
                let mut endpoint = Channel::builder(self.uri.clone())
                    .connect_timeout(Duration::from_secs(10))
                    .tcp_nodelay(true)
                    // A peer that vanished without closing the connection is noticed.
                    .http2_keep_alive_interval(Duration::from_secs(30))
                    .keep_alive_timeout(Duration::from_secs(20))
                    .keep_alive_while_idle(true);
                if let Some(tls) = &self.tls {
                    let host = self.uri.host().unwrap_or_default();
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    endpoint = endpoint
                        .tls_config(
                            ClientTlsConfig::new()
                                .ca_certificate(Certificate::from_pem(&tls.ca))
                                .identity(Identity::from_pem(&tls.cert, &tls.key))
                                .domain_name(host),
                        )
                        .map_err(|e| describe(&e))?;
                }
                let channel = endpoint.connect().await.map_err(|e| describe(&e))?;
                let mut grpc = tonic::client::Grpc::new(channel)
                    .max_decoding_message_size(chunk)
                    .max_encoding_message_size(chunk);
                grpc.ready().await.map_err(|e| describe(&e))?;
                let (out_tx, out_rx) = mpsc::channel::<Bytes>(queue);
                let response = grpc
                    .streaming(
                        tonic::Request::new(ReceiverStream::new(out_rx)),
                        PathAndQuery::from_static(SESSION_METHOD),
                        ChunkCodec,
                    )
                    .await
                    .map_err(|status| status.message().to_string())?;
                let (in_tx, in_rx) = mpsc::channel::<Incoming>(queue);
                tokio::spawn(crate::forward(response.into_inner(), in_tx));
                Ok::<_, String>((in_rx, out_tx))
            })
            .map_err(fail)?;
        let handle = self.runtime.handle().clone();
        Ok((
            ChunkReader::new(in_rx, None, handle),
            ChunkWriter::new(out_tx, chunk),
        ))
    }

    /// Opens one session's stream, retrying with exponential backoff (0.2 s doubling to 5 s)
    /// for up to `network.reconnect_for_s`.
    pub fn connect(&self) -> Result<GrpcTransport, NetError> {
        let deadline = Instant::now() + Duration::from_secs_f64(self.config.reconnect_for_s);
        let mut wait = Duration::from_millis(200);
        loop {
            match self.connect_once() {
                Ok(transport) => return Ok(transport),
                Err(e) if Instant::now() + wait < deadline => {
                    log::warn!("{e}; retrying in {:.1} s", wait.as_secs_f64());
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// An error with its causes, one after another (tonic's own messages say only "transport
/// error").
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One session's stream to the model party, as a [`Transport`].
pub struct GrpcTransport {
    inner: StreamTransport<ChunkReader, ChunkWriter>,
    _runtime: Arc<Runtime>,
}

impl Transport for GrpcTransport {
    fn send(&mut self, msg: &Message) -> Result<(), ProtocolError> {
        self.inner.send(msg)
    }

    fn recv(&mut self) -> Result<Message, ProtocolError> {
        self.inner.recv()
    }

    fn traffic(&self) -> Traffic {
        self.inner.traffic()
    }
}
