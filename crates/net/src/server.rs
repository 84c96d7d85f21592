//! The model party's end: a gRPC service with one bidirectional streaming method, each call
//! one session. Mutual TLS by default (the client's certificate must be signed by the
//! configured CA, and its subject names the session's owner); sessions are admitted up to
//! `network.max_sessions`, run each on their own thread with their own trainable state, and
//! are ended when their peer falls silent for `network.idle_timeout_s`.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use splitlm_party::state::SessionStore;
use splitlm_party::{ModelParty, Opening, SessionReport};
use splitlm_protocol::{Message, PROTOCOL_VERSION, Role, StreamTransport, Transport};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{NamedService, StreamingService};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::chunk::{ChunkCodec, ChunkReader, ChunkWriter, Incoming};
use crate::client::describe;
use crate::config::{End, NetworkConfig};
use crate::terms::agree;
use crate::{NetError, SERVICE_NAME, SESSION_METHOD};

/// Error code of a refused `Hello` (terms, session key or admission).
pub const REFUSED: u16 = 20;

/// What a server needs to open sessions: the terms it holds and a model party per session.
pub trait SessionFactory: Send + Sync + 'static {
    /// The terms a data party must state identically (see [`crate::terms::agree`]).
    fn terms(&self) -> Vec<(String, String)>;
    /// A model party for a new session, with its own trainable state over the shared base;
    /// `settings` are the data party's settings (such as `setting.total_steps`).
    fn open(&self, settings: &[(String, String)]) -> Result<ModelParty, String>;
}

/// Where and how a server listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to bind (port 0: any free port; the bound address is reported).
    pub listen: SocketAddr,
    /// Where sessions' saved states and the sessions' records go.
    pub state: PathBuf,
    /// Limits and TLS material.
    pub network: NetworkConfig,
}

struct Shared {
    factory: Arc<dyn SessionFactory>,
    terms: Vec<(String, String)>,
    network: NetworkConfig,
    state: PathBuf,
    insecure: bool,
    live: Mutex<HashSet<(String, String)>>,
    count: Mutex<usize>,
    next_anonymous: Mutex<u64>,
}

/// Serves model-party sessions until the process ends; calls `ready` with the bound address
/// once listening.
pub fn serve(
    options: ServeOptions,
    factory: Arc<dyn SessionFactory>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), NetError> {
    let address = options.listen.to_string();
    let fail = |detail: String| NetError::Serve {
        address: address.clone(),
        detail,
    };
    options.network.validate()?;
    if options.network.insecure && !options.listen.ip().is_loopback() {
        return Err(fail(
            "--insecure (plaintext) is allowed on a loopback address only".into(),
        ));
    }
    let tls = options.network.tls(End::Server)?;
    std::fs::create_dir_all(&options.state)
        .map_err(|e| fail(format!("state directory {}: {e}", options.state.display())))?;
    let shared = Arc::new(Shared {
        terms: factory.terms(),
        factory,
        insecure: tls.is_none(),
        network: options.network.clone(),
        state: options.state.clone(),
        live: Mutex::new(HashSet::new()),
        count: Mutex::new(0),
        next_anonymous: Mutex::new(0),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("splitlm-serve")
        .enable_all()
        .build()
        .map_err(|e| fail(format!("starting the runtime: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let bound = listener.local_addr().map_err(|e| fail(e.to_string()))?;
        let mut builder = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
        if let Some(tls) = &tls {
            builder = builder
                .tls_config(
                    ServerTlsConfig::new()
                        .identity(Identity::from_pem(&tls.cert, &tls.key))
                        .client_ca_root(Certificate::from_pem(&tls.ca)),
                )
                .map_err(|e| fail(describe(&e)))?;
        }
        let service = SplitService {
            shared: shared.clone(),
        };
        ready(bound);
        builder
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .map_err(|e| fail(describe(&e)))
    })
}

/// The gRPC service: routes [`SESSION_METHOD`] to a session, anything else to `UNIMPLEMENTED`.
#[derive(Clone)]
struct SplitService {
    shared: Arc<Shared>,
}

impl NamedService for SplitService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for SplitService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != SESSION_METHOD {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let handler = SessionHandler {
            shared: self.shared.clone(),
        };
        let chunk = self.shared.network.chunk_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ChunkCodec)
                .max_decoding_message_size(chunk)
                .max_encoding_message_size(chunk);
            Ok(grpc.streaming(handler, request).await)
        })
    }
}

struct SessionHandler {
    shared: Arc<Shared>,
}

type Outbound = Pin<Box<dyn tokio_stream::Stream<Item = Result<Bytes, Status>> + Send>>;

impl StreamingService<Bytes> for SessionHandler {
    type Response = Bytes;
    type ResponseStream = Outbound;
    type Future = BoxFuture<Response<Outbound>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move {
            let identity = identity_of(&request, shared.insecure)?;
            let admission = Admission::new(&shared)?;
            let network = &shared.network;
            let (in_tx, in_rx) = mpsc::channel::<Incoming>(network.queue_chunks);
            tokio::spawn(crate::forward(request.into_inner(), in_tx));
            let (out_tx, out_rx) = mpsc::channel::<Bytes>(network.queue_chunks);
            let reader = ChunkReader::new(
                in_rx,
                Some(network.idle_timeout()),
                tokio::runtime::Handle::current(),
            );
            let writer = ChunkWriter::new(out_tx, network.chunk_bytes);
            let transport = StreamTransport::new(reader, writer, network.limits());
            let session_shared = shared.clone();
            std::thread::Builder::new()
                .name("splitlm-session".into())
                .spawn(move || {
                    let _admission = admission;
                    run_session(&session_shared, identity, transport);
                })
                .map_err(|e| Status::internal(format!("starting a session thread: {e}")))?;
            let outbound = tokio_stream::StreamExt::map(ReceiverStream::new(out_rx), Ok);
            Ok(Response::new(Box::pin(outbound) as Outbound))
        })
    }
}

/// Who the peer is: its client certificate's subject (mutual TLS), or `insecure-loopback`.
fn identity_of(request: &Request<Streaming<Bytes>>, insecure: bool) -> Result<String, Status> {
    if insecure {
        return Ok("insecure-loopback".into());
    }
    let certs = request.peer_certs().ok_or_else(|| {
        Status::unauthenticated("a client certificate signed by this model party's CA is required")
    })?;
    certs
        .first()
        .and_then(|der| crate::keys::subject_of(der))
        .ok_or_else(|| Status::unauthenticated("the client certificate has no readable subject"))
}

/// A place among the sessions served at once, given back when dropped.
struct Admission {
    shared: Arc<Shared>,
}

impl Admission {
    fn new(shared: &Arc<Shared>) -> Result<Self, Status> {
        let mut count = shared.count.lock().unwrap_or_else(|p| p.into_inner());
        if *count >= shared.network.max_sessions {
            return Err(Status::resource_exhausted(format!(
                "this model party serves at most {} sessions at once (network.max_sessions); \
                 try again later",
                shared.network.max_sessions
            )));
        }
        *count += 1;
        Ok(Self {
            shared: shared.clone(),
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        *self.shared.count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
    }
}

/// A session's key held by a live session, released when dropped.
struct Claim {
    shared: Arc<Shared>,
    key: (String, String),
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.shared
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// A refusal of a session's opening, sent to the peer and logged.
fn refuse(transport: &mut impl Transport, identity: &str, why: String) {
    log::warn!("session of {identity} refused: {why}");
    let _ = transport.send(&Message::Error {
        code: REFUSED,
        message: why,
    });
}

/// Reads the `Hello`, checks it, opens the model party and serves the session.
fn run_session(shared: &Arc<Shared>, identity: String, mut transport: impl Transport) {
    let hello = match transport.recv() {
        Ok(hello) => hello,
        Err(e) => {
            log::warn!("session of {identity} ended before its Hello: {e}");
            refuse(&mut transport, &identity, format!("no valid Hello: {e}"));
            return;
        }
    };
    let Message::Hello {
        version,
        role: Role::DataParty,
        party_id,
        session_key,
        terms,
    } = hello
    else {
        let why = format!("expected a data party's Hello, received {}", hello.name());
        return refuse(&mut transport, &identity, why);
    };
    if version != PROTOCOL_VERSION {
        let why = format!(
            "the parties disagree on `protocol version`: the data party has {version}, the \
             model party has {PROTOCOL_VERSION}"
        );
        return refuse(&mut transport, &identity, why);
    }
    let settings = match agree(&shared.terms, &terms) {
        Ok(settings) => settings,
        Err(why) => return refuse(&mut transport, &identity, why),
    };
    let session_key = if session_key.is_empty() {
        let mut next = shared
            .next_anonymous
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *next += 1;
        format!("anonymous-{}-{next}", std::process::id())
    } else {
        session_key
    };
    if !is_name(&session_key) {
        let why = format!(
            "session key \"{session_key}\" is not a name (ASCII letters, digits, - _ . only, at \
             most 128 bytes)"
        );
        return refuse(&mut transport, &identity, why);
    }
    let key = (identity.clone(), session_key.clone());
    let claimed = shared
        .live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key.clone());
    if !claimed {
        let why = format!("session \"{session_key}\" is already being served to {identity}");
        return refuse(&mut transport, &identity, why);
    }
    let _claim = Claim {
        shared: shared.clone(),
        key,
    };
    let party = match shared.factory.open(&settings) {
        Ok(party) => party,
        Err(why) => return refuse(&mut transport, &identity, why),
    };
    let store = SessionStore::new(shared.state.join(dir_name(&identity)).join(&session_key));
    log::info!("session \"{session_key}\" of {identity} ({party_id}) opened");
    let opening = Opening {
        party_id: party_id.clone(),
        identity: identity.clone(),
        store: Some(store),
    };
    let outcome = party.serve_opened(transport, opening);
    match &outcome {
        Ok(report) => log::info!(
            "session \"{session_key}\" of {identity} ended: {} training steps",
            report.train_steps
        ),
        Err(e) => log::warn!("session \"{session_key}\" of {identity} failed: {e}"),
    }
    record(&shared.state, &session_key, &identity, &party_id, &outcome);
}

/// Appends one JSON line per finished session to `sessions.jsonl` in the state directory.
fn record(
    state: &Path,
    session_key: &str,
    identity: &str,
    party_id: &str,
    outcome: &Result<SessionReport, splitlm_party::PartyError>,
) {
    let line = match outcome {
        Ok(r) => serde_json::json!({
            "session_key": session_key,
            "identity": identity,
            "party_id": party_id,
            "outcome": "ended",
            "train_steps": r.train_steps,
            "eval_steps": r.eval_steps,
            "decode_steps": r.decode_steps,
            "bytes_sent": r.traffic.bytes_sent,
            "bytes_received": r.traffic.bytes_received,
        }),
        Err(e) => serde_json::json!({
            "session_key": session_key,
            "identity": identity,
            "party_id": party_id,
            "outcome": "failed",
            "error": e.to_string(),
        }),
    };
    let path = state.join("sessions.jsonl");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        log::warn!("{}: {e}", path.display());
    }
}

/// Whether `name` can name a directory: ASCII letters, digits, `-`, `_`, `.`, not starting
/// with `.`, at most 128 bytes.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A directory name for a certificate subject: its safe characters and a hash of the whole,
/// so two subjects never share a directory.
fn dir_name(identity: &str) -> String {
    let safe: String = identity
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect();
    // FNV-1a: stable across builds and platforms.
    let hash = identity.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{safe}-{hash:016x}")
}
