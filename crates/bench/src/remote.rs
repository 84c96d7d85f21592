//! The parties on two machines: the terms a run's two halves must agree on, the data party's
//! connection to a model party elsewhere, and the model party's server (`splitlm serve`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use splitlm_net::terms::setting;
use splitlm_net::{Connector, ServeOptions, SessionFactory};
use splitlm_nn::TaskHead;
use splitlm_party::{Handshake, ModelParty};
use splitlm_protocol::Transport;
use splitlm_train::session::{self, Run, Setup};
use splitlm_zoo::AnyModel;

use crate::config::RunConfig;
use crate::model::OpenedModel;

/// What the data party and the model party of `config` must agree on, in a fixed order:
/// the checkpoint (a digest of its files), the cut, the task head, what trains and how, the
/// seed (LoRA adapters are seeded from it) and the wire format.
pub fn terms(config: &RunConfig, model: &OpenedModel) -> Result<Vec<(String, String)>> {
    Ok(vec![
        ("checkpoint".into(), digest(&model.path)?),
        (
            "partition".into(),
            config
                .split
                .partition
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unsplit".into()),
        ),
        ("task_head".into(), format!("{:?}", config.task.head())),
        ("finetune".into(), serde_json::to_string(&config.finetune)?),
        (
            "optimizer".into(),
            serde_json::to_string(&config.optimizer)?,
        ),
        ("seed".into(), config.train.seed.to_string()),
        (
            "wire_dtype".into(),
            format!("{:?}", config.split.data_party.wire_dtype),
        ),
    ])
}

/// SHA-256 over a checkpoint's files: a GGUF file, or a directory's `config.json` and
/// `*.safetensors` in name order (each name, then its bytes' digest).
pub fn digest(path: &Path) -> Result<String> {
    let hash = |p: &Path| {
        splitlm_assets::sha256_file(p).with_context(|| format!("hashing {}", p.display()))
    };
    if path.is_file() {
        return hash(path);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name == "config.json" || name.ends_with(".safetensors")
        })
        .collect();
    files.sort();
    let mut summary = String::new();
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        summary.push_str(&format!("{name} {}\n", hash(file)?));
    }
    Ok(splitlm_assets::sha256_bytes(summary.as_bytes()))
}

/// The session's name on the model party (see [`splitlm_net::NetworkConfig::session`]).
pub fn session_key(config: &RunConfig) -> String {
    if let Some(key) = &config.network.session {
        return key.clone();
    }
    let name: String = config
        .run_name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if config.train.checkpoint_dir.is_some() {
        name
    } else {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        format!("{name}-{}-{millis}", std::process::id())
    }
}

/// The data party of `config`, connected to the model party at `network.connect`; the session
/// opens with the run's terms and `total_steps` as a setting.
pub fn build_remote(
    config: &RunConfig,
    setup: &Setup<'_>,
    model: &OpenedModel,
    task: TaskHead,
    total_steps: usize,
) -> Result<(Run, String)> {
    let connector = Connector::new(&config.network)?;
    let mut terms = terms(config, model)?;
    terms.push(("setting.total_steps".into(), total_steps.to_string()));
    let handshake = Handshake {
        session_key: session_key(config),
        terms,
    };
    // The first connection is tried once (a refusal will not change); reconnections retry.
    let transport = Box::new(connector.connect_once()?);
    let connect = Box::new(move || {
        connector
            .connect()
            .map(|t| Box::new(t) as Box<dyn Transport>)
            .map_err(|e| e.to_string())
    });
    Ok(session::build_remote(
        setup,
        &model.checkpoint,
        task,
        total_steps,
        transport,
        connect,
        handshake,
    )?)
}

/// The model party of `config` as a server: the slice loaded once, a session per data party.
struct ModelServer {
    config: RunConfig,
    base: AnyModel,
    terms: Vec<(String, String)>,
}

impl SessionFactory for ModelServer {
    fn terms(&self) -> Vec<(String, String)> {
        self.terms.clone()
    }

    fn open(&self, settings: &[(String, String)]) -> Result<ModelParty, String> {
        let total_steps = match setting(settings, "total_steps") {
            Some(n) => n
                .parse::<usize>()
                .map_err(|_| format!("setting.total_steps = \"{n}\" is not a step count"))?,
            None => 1,
        };
        session::model_session(&self.config.setup(), &self.base, total_steps)
            .map_err(|e| e.to_string())
    }
}

/// Serves the model party of `config` at `options.listen` until the process ends; `ready`
/// gets the bound address.
pub fn serve(
    config: &RunConfig,
    options: ServeOptions,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<()> {
    let model = OpenedModel::open(&config.model.source)?;
    let task = config.task.head();
    let base = session::load_model_slice(&config.setup(), &model.checkpoint, task)?;
    let server = ModelServer {
        terms: terms(config, &model)?,
        config: config.clone(),
        base,
    };
    Ok(splitlm_net::serve(options, Arc::new(server), ready)?)
}
