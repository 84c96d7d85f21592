//! The `[network]` table of a run configuration: where the model party listens or is reached,
//! the TLS material, and the limits a server enforces.

use std::path::{Path, PathBuf};
use std::time::Duration;

use splitlm_protocol::Limits;

use crate::NetError;

/// How the parties reach each other across machines (the `[network]` table). Without
/// `connect` (and outside `splitlm serve`) both parties run in one process and none of this
/// is used.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The model party's address for the data party, `https://HOST:PORT` (`http://` only with
    /// `insecure`); the command line's `--connect` sets it.
    pub connect: Option<String>,
    /// A directory holding `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`
    /// (as `splitlm keys` writes them); `--tls` sets it. `ca`, `cert` and `key` override
    /// single files.
    pub tls: Option<PathBuf>,
    /// The CA certificate that signs the peer's certificate.
    pub ca: Option<PathBuf>,
    /// This party's certificate (chain), PEM.
    pub cert: Option<PathBuf>,
    /// This party's private key, PEM.
    pub key: Option<PathBuf>,
    /// Plaintext HTTP/2 without TLS; allowed on a loopback address only (`--insecure`).
    pub insecure: bool,
    /// The session's name on the model party, under which it keeps the session's state across
    /// reconnections (default: the run's name when `train.checkpoint_dir` is set, so a restarted
    /// run finds its state; otherwise a name unique to this process).
    pub session: Option<String>,
    /// Largest gRPC message, in bytes: protocol messages larger than this travel in chunks.
    pub chunk_bytes: usize,
    /// Largest protocol message accepted, in bytes (checked from its header, before any
    /// allocation).
    pub max_message_bytes: u64,
    /// Chunks queued per session and direction before the sender waits.
    pub queue_chunks: usize,
    /// Sessions a server serves at once; one more is refused.
    pub max_sessions: usize,
    /// A session whose peer sends nothing for this long is ended and freed, seconds.
    pub idle_timeout_s: f64,
    /// How long a data party keeps trying to reach (or reach again) the model party, seconds.
    pub reconnect_for_s: f64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            connect: None,
            tls: None,
            ca: None,
            cert: None,
            key: None,
            insecure: false,
            session: None,
            chunk_bytes: 1 << 20,
            max_message_bytes: Limits::default().max_message_bytes,
            queue_chunks: 8,
            max_sessions: 16,
            idle_timeout_s: 300.0,
            reconnect_for_s: 60.0,
        }
    }
}

/// Which end of a session a party is, for picking its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The model party (`server.pem`, `server.key`).
    Server,
    /// The data party (`client.pem`, `client.key`).
    Client,
}

/// The three PEM files one party needs for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signs the peer's certificate.
    pub ca: PathBuf,
    /// This party's certificate.
    pub cert: PathBuf,
    /// This party's key.
    pub key: PathBuf,
}

/// The PEM contents of [`TlsFiles`], read.
#[derive(Clone)]
pub struct TlsMaterial {
    /// The CA certificate.
    pub ca: Vec<u8>,
    /// This party's certificate.
    pub cert: Vec<u8>,
    /// This party's key.
    pub key: Vec<u8>,
}

impl TlsFiles {
    /// Reads the three files, naming the one that cannot be read.
    pub fn read(&self) -> Result<TlsMaterial, NetError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| NetError::Tls {
                what: what.into(),
                detail: format!("{}: {e}", path.display()),
            })
        };
        Ok(TlsMaterial {
            ca: read("the CA certificate", &self.ca)?,
            cert: read("this party's certificate", &self.cert)?,
            key: read("this party's key", &self.key)?,
        })
    }
}

impl NetworkConfig {
    /// Checks the values serde's types do not constrain.
    pub fn validate(&self) -> Result<(), NetError> {
        let invalid =
            |key: &str, detail: &str| Err(NetError::Setting(format!("network.{key}: {detail}")));
        if self.chunk_bytes < 1024 {
            return invalid("chunk_bytes", "must be at least 1024");
        }
        if self.chunk_bytes > 64 << 20 {
            return invalid("chunk_bytes", "must be at most 64 MiB");
        }
        if self.queue_chunks == 0 || self.max_sessions == 0 {
            return invalid("queue_chunks / max_sessions", "must be at least 1");
        }
        if !(self.idle_timeout_s > 0.0 && self.idle_timeout_s.is_finite()) {
            return invalid("idle_timeout_s", "must be a positive number of seconds");
        }
        if !(self.reconnect_for_s >= 0.0 && self.reconnect_for_s.is_finite()) {
            return invalid("reconnect_for_s", "must be a number of seconds");
        }
        Ok(())
    }

    /// The protocol limits both ends decode with.
    pub fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes,
            ..Limits::default()
        }
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout_s)
    }

    /// The TLS files of `end`, or `None` when no TLS setting is given at all.
    pub fn tls_files(&self, end: End) -> Option<TlsFiles> {
        let (cert, key) = match end {
            End::Server => ("server.pem", "server.key"),
            End::Client => ("client.pem", "client.key"),
        };
        let from_dir = |name: &str| self.tls.as_ref().map(|d| d.join(name));
        let files = TlsFiles {
            ca: self.ca.clone().or_else(|| from_dir("ca.pem"))?,
            cert: self.cert.clone().or_else(|| from_dir(cert))?,
            key: self.key.clone().or_else(|| from_dir(key))?,
        };
        Some(files)
    }

    /// The TLS material of `end`; an error naming what is missing unless `insecure` is set
    /// (then `None`).
    pub fn tls(&self, end: End) -> Result<Option<TlsMaterial>, NetError> {
        if self.insecure {
            return Ok(None);
        }
        match self.tls_files(end) {
            Some(files) => files.read().map(Some),
            None => Err(NetError::Tls {
                what: "certificates".into(),
                detail: "mutual TLS needs a CA, a certificate and a key: give --tls DIR (as \
                         `splitlm keys --out DIR` makes), or network.ca / cert / key; plaintext \
                         only with --insecure on a loopback address"
                    .into(),
            }),
        }
    }
}
