//! Benchmark: how the cost of a split training step grows — step time, bytes per step and each
//! party's peak memory as the batch, the sequence length, the cut position and the model size
//! grow.
//!
//! Llama-shaped models with random weights (N(0, 0.02²) seeded by each tensor's name; no
//! checkpoint): SmolLM2-135M, SmolLM2-360M and TinyLlama-1.1B's shapes. The task is causal LM
//! (next-token loss on every position) with LoRA (rank 4, α 32 on `q_proj`/`v_proj`, the Llama
//! default) on both parties' blocks and everything else frozen, AdamW. The cut is Head–Tail with
//! the LM head at the model party (the reference's setting, so the logits cross) unless a point
//! says Head–Body–Tail.
//!
//! Every measured point runs in a fresh pair of processes, this example re-run twice: the model
//! party (`--role model-party`) serves its slice over loopback gRPC (plaintext, loopback only),
//! the data party (`--role data-party`) connects, takes `--warmup` steps and then `--steps` timed
//! steps. Each party loads only its own slice. Peak memory is each process's own `VmHWM` (peak
//! resident set, /proc): the data party reads its own, this (parent) process reads the model
//! party's before stopping it. Step time is the data party's wall time per training step
//! (median); `data_compute_ms` is the part of it spent outside the transport's send and receive
//! calls (its own forward, loss, backward and tensor conversion), the rest being the wait for
//! the model party and the link. `data_cpu_ms` and `model_cpu_ms` are each process's CPU time
//! per timed step (all threads). Bytes per step are the protocol's own count (frames with their
//! envelopes), each way.
//!
//! Sweeps (`--sweep`):
//! - `batch`: batch 1, 2, 4, 8 at seq 64 (SmolLM2-135M, n_head 2);
//! - `seq`: seq 32, 64, 128, 256 at batch 2;
//! - `cut`: n_head 1, 2, 4, 8, 16 (batch 2, seq 64), and Head–Body–Tail with n_tail 2 at
//!   n_head 2 and 8;
//! - `size`: SmolLM2-135M, SmolLM2-360M, TinyLlama-1.1B at batch 1, seq 64, n_head 2 (at most
//!   2 timed steps for TinyLlama-1.1B).
//!
//! Each point appends one JSON line to `--out`; `--plot DIR` draws `DIR/scaling-<sweep>.svg`
//! from that file (the last record of each point wins).
//!
//! ```text
//! cargo run --example scaling -- --sweep all --plot docs          # every sweep, then the plots
//! cargo run --example scaling -- --sweep batch --quick            # two points, one step each
//! cargo run --example scaling -- --sweep size --models smollm2-135m,smollm2-360m
//! cargo run --example scaling -- --plot docs                      # only redraw
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use clap::{Parser, ValueEnum};
use plotters::prelude::*;
use serde_json::{Value, json};
use splitlm::device::DeviceSpec;
use splitlm::llama::LlamaConfig;
use splitlm::net::{Connector, NetworkConfig, ServeOptions, SessionFactory};
use splitlm::nn::batch::PaddingSide;
use splitlm::nn::{Labels, RandomWeights, SliceSpec, TaskHead, TokenBatch};
use splitlm::partition::{LoraSettings, Partition, Trainability};
use splitlm::party::{DataParty, Handshake, ModelParty, OptimizerConfig, PartyOptions, PartySlice};
use splitlm::protocol::{Message, ProtocolError, Traffic, Transport, WireDType};
use splitlm::zoo::{AnyConfig, AnyModel};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SweepArg {
    Batch,
    Seq,
    Cut,
    Size,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    ModelParty,
    DataParty,
}

#[derive(Parser)]
#[command(
    about = "How the cost of a split training step grows with batch, sequence, cut and model size"
)]
struct Args {
    /// The sweep to run (default: all of them, unless only `--plot` is given).
    #[arg(long, value_enum)]
    sweep: Option<SweepArg>,
    /// Timed steps per point (median reported); TinyLlama-1.1B takes at most 2.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Untimed steps before the timed ones.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// A quick check: the first two points of each chosen sweep, one timed step each, no
    /// Head–Body–Tail points.
    #[arg(long)]
    quick: bool,
    /// The models of the size sweep, comma-separated (default: all; see the list in the error
    /// an unknown name gives).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Where the data party computes: cpu, ndarray, flex, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Where the model party computes (default: `--device`).
    #[arg(long)]
    model_device: Option<DeviceSpec>,
    /// Seed of the random weights and the LoRA adapters.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The JSON lines file points are appended to (and plots read from); default
    /// `$CARGO_TARGET_DIR/bench/scaling.jsonl`, else `target/bench/scaling.jsonl`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw one SVG per sweep found in `--out` into this directory (after running, if a sweep
    /// is also given).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Internal: run as one party of one point.
    #[arg(long, hide = true, value_enum)]
    role: Option<Role>,
    /// Internal: the point, as JSON.
    #[arg(long, hide = true)]
    point: Option<String>,
    /// Internal (data party): the model party's address.
    #[arg(long, hide = true)]
    connect: Option<String>,
    /// Internal (data party): the model party's process id, for its CPU time.
    #[arg(long, hide = true)]
    model_pid: Option<u32>,
    /// Internal (model party): the server's state directory.
    #[arg(long, hide = true)]
    state: Option<PathBuf>,
}

const TASK: TaskHead = TaskHead::CausalLm;

// ---------------------------------------------------------------------------------------------
// Model shapes

/// A Llama-family shape.
#[derive(Debug, Clone, Copy)]
struct Shape {
    name: &'static str,
    label: &'static str,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    intermediate: usize,
    vocab: usize,
    tied: bool,
    rope_theta: f64,
    eps: f64,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "smollm2-135m",
        label: "SmolLM2-135M",
        hidden: 576,
        layers: 30,
        heads: 9,
        kv_heads: 3,
        intermediate: 1536,
        vocab: 49152,
        tied: true,
        rope_theta: 100_000.0,
        eps: 1e-5,
    },
    Shape {
        name: "smollm2-360m",
        label: "SmolLM2-360M",
        hidden: 960,
        layers: 32,
        heads: 15,
        kv_heads: 5,
        intermediate: 2560,
        vocab: 49152,
        tied: true,
        rope_theta: 100_000.0,
        eps: 1e-5,
    },
    Shape {
        name: "tinyllama-1.1b",
        label: "TinyLlama-1.1B",
        hidden: 2048,
        layers: 22,
        heads: 32,
        kv_heads: 4,
        intermediate: 5632,
        vocab: 32000,
        tied: false,
        rope_theta: 10_000.0,
        eps: 1e-5,
    },
];

fn shape(name: &str) -> Result<Shape> {
    SHAPES
        .iter()
        .find(|s| s.name == name)
        .copied()
        .with_context(|| {
            format!(
                "unknown model `{name}`: expected one of {}",
                SHAPES.map(|s| s.name).join(", ")
            )
        })
}

impl Shape {
    fn config(&self) -> Result<AnyConfig> {
        let config: LlamaConfig = serde_json::from_value(json!({
            "model_type": "llama",
            "vocab_size": self.vocab,
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.eps,
            "tie_word_embeddings": self.tied,
            "hidden_act": "silu",
        }))?;
        config.validate(self.name)?;
        Ok(AnyConfig::Llama(config))
    }

    fn block_params(&self) -> u64 {
        let (d, hd) = (self.hidden, self.hidden / self.heads);
        let q_o = 2 * d * self.heads * hd;
        let k_v = 2 * d * self.kv_heads * hd;
        (q_o + k_v + 3 * d * self.intermediate + 2 * d) as u64
    }

    fn embedding_params(&self) -> u64 {
        (self.vocab * self.hidden) as u64
    }

    /// The whole model's parameters (a tied LM head counted once).
    fn params(&self) -> u64 {
        let head = if self.tied {
            0
        } else {
            self.embedding_params()
        };
        self.embedding_params()
            + self.layers as u64 * self.block_params()
            + self.hidden as u64
            + head
    }
}

// ---------------------------------------------------------------------------------------------
// Points

/// Where the model is cut.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cut {
    n_head: usize,
    /// `Some`: Head–Body–Tail with this many tail blocks.
    n_tail: Option<usize>,
}

impl Cut {
    fn partition(&self) -> Partition {
        match self.n_tail {
            None => Partition::head_tail(self.n_head),
            Some(t) => Partition::head_body_tail(self.n_head, t),
        }
    }

    fn kind(&self) -> &'static str {
        if self.n_tail.is_some() { "hbt" } else { "ht" }
    }

    /// Parameters held by the data party and by the model party (a tied LM head apart from
    /// the embeddings is a copy, counted where it is held).
    fn params(&self, s: &Shape) -> (u64, u64) {
        let block = s.block_params();
        let top = s.hidden as u64 + s.embedding_params();
        let head = s.embedding_params() + self.n_head as u64 * block;
        match self.n_tail {
            None => (head, (s.layers - self.n_head) as u64 * block + top),
            Some(t) => (
                head + t as u64 * block + top,
                (s.layers - self.n_head - t) as u64 * block,
            ),
        }
    }
}

/// One measured point.
#[derive(Debug, Clone)]
struct Point {
    sweep: &'static str,
    shape: Shape,
    batch: usize,
    seq: usize,
    cut: Cut,
    steps: usize,
    warmup: usize,
    seed: u64,
    device: DeviceSpec,
    model_device: DeviceSpec,
}

impl Point {
    fn to_json(&self) -> Value {
        json!({
            "sweep": self.sweep, "model": self.shape.name, "batch": self.batch, "seq": self.seq,
            "n_head": self.cut.n_head, "n_tail": self.cut.n_tail, "steps": self.steps,
            "warmup": self.warmup, "seed": self.seed, "device": self.device.to_string(),
            "model_device": self.model_device.to_string(),
        })
    }

    fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)?;
        let num = |k: &str| {
            v[k].as_u64()
                .map(|n| n as usize)
                .with_context(|| format!("point: no `{k}`"))
        };
        let text = |k: &str| v[k].as_str().with_context(|| format!("point: no `{k}`"));
        Ok(Self {
            sweep: match text("sweep")? {
                "batch" => "batch",
                "seq" => "seq",
                "cut" => "cut",
                _ => "size",
            },
            shape: shape(text("model")?)?,
            batch: num("batch")?,
            seq: num("seq")?,
            cut: Cut {
                n_head: num("n_head")?,
                n_tail: v["n_tail"].as_u64().map(|n| n as usize),
            },
            steps: num("steps")?,
            warmup: num("warmup")?,
            seed: v["seed"].as_u64().unwrap_or(0),
            device: DeviceSpec::from_str(text("device")?)?,
            model_device: DeviceSpec::from_str(text("model_device")?)?,
        })
    }

    /// Bytes both parties together are expected to need at their peak (weights with a margin,
    /// logits and saved activations): only to refuse a point that cannot fit before starting.
    fn expected_bytes(&self) -> u64 {
        let s = &self.shape;
        let (data, model) = self.cut.params(s);
        let tokens = (self.batch * self.seq) as u64;
        let logits = tokens * s.vocab as u64 * 4 * 8;
        let per_block = tokens * (10 * s.hidden + 3 * s.intermediate + s.heads * self.seq) as u64;
        let activations = per_block * 4 * s.layers as u64;
        (data + model) * 4 * 13 / 10 + logits + activations + (600 << 20)
    }
}

fn plan(args: &Args, sweep: SweepArg) -> Result<Vec<Point>> {
    let small = shape("smollm2-135m")?;
    let model_device = args.model_device.unwrap_or(args.device);
    let steps = if args.quick { 1 } else { args.steps.max(1) };
    let point = |sweep: &'static str, shape: Shape, batch, seq, cut: Cut| Point {
        sweep,
        shape,
        batch,
        seq,
        cut,
        // The 1.1B model's steps take long on a CPU: at most two timed ones.
        steps: if shape.params() > 1_000_000_000 {
            steps.min(2)
        } else {
            steps
        },
        warmup: args.warmup,
        seed: args.seed,
        device: args.device,
        model_device,
    };
    let ht = |n_head| Cut {
        n_head,
        n_tail: None,
    };
    let mut points = Vec::new();
    let all = sweep == SweepArg::All;
    let quick = |mut v: Vec<Point>| {
        if args.quick {
            v.truncate(2);
        }
        v
    };
    if all || sweep == SweepArg::Batch {
        points.extend(quick(
            [1, 2, 4, 8]
                .map(|b| point("batch", small, b, 64, ht(2)))
                .to_vec(),
        ));
    }
    if all || sweep == SweepArg::Seq {
        points.extend(quick(
            [32, 64, 128, 256]
                .map(|s| point("seq", small, 2, s, ht(2)))
                .to_vec(),
        ));
    }
    if all || sweep == SweepArg::Cut {
        let mut cut: Vec<Point> = [1, 2, 4, 8, 16]
            .map(|n| point("cut", small, 2, 64, ht(n)))
            .to_vec();
        if !args.quick {
            for n_head in [2, 8] {
                cut.push(point(
                    "cut",
                    small,
                    2,
                    64,
                    Cut {
                        n_head,
                        n_tail: Some(2),
                    },
                ));
            }
        }
        points.extend(quick(cut));
    }
    if all || sweep == SweepArg::Size {
        let names: Vec<String> = match &args.models {
            Some(names) => names.clone(),
            None => SHAPES.iter().map(|s| s.name.to_string()).collect(),
        };
        let shapes = names
            .iter()
            .map(|n| shape(n.trim()))
            .collect::<Result<Vec<_>>>()?;
        points.extend(quick(
            shapes
                .into_iter()
                .map(|s| point("size", s, 1, 64, ht(2)))
                .collect(),
        ));
    }
    Ok(points)
}

// ---------------------------------------------------------------------------------------------
// Process measurements (Linux /proc)

/// A `/proc/<pid>/status` field in MiB (`VmHWM`: peak resident set; `VmRSS`: now).
fn status_mib(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time (user + system, all threads) of a process so far, ms; clock ticks of 1/100 s
/// (Linux's `USER_HZ`).
fn cpu_ms(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0)
}

/// `MemAvailable` of /proc/meminfo, bytes.
fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

// ---------------------------------------------------------------------------------------------
// The two parties

fn network(connect: Option<String>) -> NetworkConfig {
    NetworkConfig {
        connect,
        insecure: true,
        // Logits of a large batch are bigger than the default 256 MiB bound.
        max_message_bytes: 1 << 30,
        idle_timeout_s: 3600.0,
        reconnect_for_s: 0.0,
        ..NetworkConfig::default()
    }
}

/// LoRA (rank 4, α 32, the family's targets) on the slice's blocks; embeddings, norms and the
/// LM head frozen.
fn party_slice(model: AnyModel, point: &Point) -> Result<PartySlice> {
    let trainability = Trainability {
        task_head: false,
        ..Trainability::lora(LoraSettings::default())
    };
    Ok(PartySlice::new(
        model,
        &trainability,
        &OptimizerConfig::default(),
        point.warmup + point.steps,
        point.seed,
    )?)
}

struct Factory {
    base: AnyModel,
    point: Point,
}

impl SessionFactory for Factory {
    fn terms(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn open(&self, _: &[(String, String)]) -> Result<ModelParty, String> {
        let slice = party_slice(self.base.clone(), &self.point).map_err(|e| e.to_string())?;
        Ok(ModelParty::new(slice, WireDType::F32))
    }
}

/// The model party's process: loads its slice, prints `params N` and `listening on ADDR`,
/// serves until killed.
fn model_party(point: Point, state: PathBuf) -> Result<()> {
    let slices = point.cut.partition().slices(point.shape.layers)?;
    let device = point.model_device.probe()?.autodiff();
    let config = point.shape.config()?;
    let base = config.load(
        &RandomWeights::new(point.seed),
        &slices.model,
        TASK,
        &device,
    )?;
    println!("params {}", base.num_params());
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse()?,
        state,
        network: network(None),
    };
    splitlm::net::serve(options, Arc::new(Factory { base, point }), |addr| {
        println!("listening on {addr}");
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}

/// A transport that adds the time spent in its calls (sending, and waiting for and decoding
/// what comes back) to a counter.
struct Timed<T> {
    inner: T,
    nanos: Arc<AtomicU64>,
}

impl<T: Transport> Timed<T> {
    fn time<R>(&mut self, f: impl FnOnce(&mut T) -> R) -> R {
        let started = Instant::now();
        let result = f(&mut self.inner);
        self.nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        result
    }
}

impl<T: Transport> Transport for Timed<T> {
    fn send(&mut self, msg: &Message) -> Result<(), ProtocolError> {
        self.time(|t| t.send(msg))
    }

    fn recv(&mut self) -> Result<Message, ProtocolError> {
        self.time(|t| t.recv())
    }

    fn traffic(&self) -> Traffic {
        self.inner.traffic()
    }
}

/// Deterministic pseudo-random ids after a BOS (1), no padding; next-token labels on every
/// position.
fn lm_batch(
    rows: usize,
    seq: usize,
    vocab: usize,
    device: &Device,
) -> Result<(TokenBatch, Labels)> {
    let span = (vocab - 3).min(30_000);
    let ids: Vec<Vec<u32>> = (0..rows)
        .map(|b| {
            (0..seq)
                .map(|i| match i {
                    0 => 1,
                    i => 3 + ((b * 7919 + i * 104_729) % span) as u32,
                })
                .collect()
        })
        .collect();
    let batch = TokenBatch::from_sequences(&ids, 0, PaddingSide::Right, device)?;
    let trained = Tensor::<2, Int>::ones([rows, seq], device);
    let labels = Labels::next_tokens(&batch.input_ids, &trained);
    Ok((batch, labels))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The data party's process: loads its slices, connects, steps, prints its report as one JSON
/// line.
fn data_party(point: Point, url: String, model_pid: u32) -> Result<()> {
    let base_rss = status_mib("self", "VmRSS:");
    let model_pid = model_pid.to_string();
    let slices = point.cut.partition().slices(point.shape.layers)?;
    let device = point.device.probe()?.autodiff();
    let config = point.shape.config()?;
    let source = RandomWeights::new(point.seed);
    let started = Instant::now();
    let mut loaded = 0;
    let mut load = |spec: &SliceSpec| -> Result<PartySlice> {
        let model = config.load(&source, spec, TASK, &device)?;
        loaded += model.num_params() as u64;
        party_slice(model, &point)
    };
    let head = load(&slices.data_head)?;
    let tail = slices.data_tail.as_ref().map(&mut load).transpose()?;
    let load_s = started.elapsed().as_secs_f64();

    let connector = Connector::new(&network(Some(url)))?;
    let nanos = Arc::new(AtomicU64::new(0));
    let transport = Timed {
        inner: connector.connect_once()?,
        nanos: nanos.clone(),
    };
    let mut data = DataParty::connect_with(
        head,
        tail,
        Box::new(transport),
        &PartyOptions::default(),
        Handshake::default(),
    )?;
    let (batch, labels) = lm_batch(point.batch, point.seq, point.shape.vocab, &device)?;
    for _ in 0..point.warmup {
        data.train_step(&batch, &labels)?;
    }
    let (cpu0, model_cpu0) = (cpu_ms("self"), cpu_ms(&model_pid));
    let (mut step_ms, mut compute_ms, mut up, mut down, mut loss) = (vec![], vec![], 0, 0, 0.0);
    for _ in 0..point.steps {
        nanos.store(0, Ordering::Relaxed);
        let started = Instant::now();
        let step = data.train_step(&batch, &labels)?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        step_ms.push(ms);
        compute_ms.push(ms - nanos.load(Ordering::Relaxed) as f64 / 1e6);
        (up, down, loss) = (step.bytes_sent, step.bytes_received, step.loss);
    }
    let per_step =
        |before: Option<f64>, after: Option<f64>| Some((after? - before?) / point.steps as f64);
    let cpu = per_step(cpu0, cpu_ms("self"));
    let model_cpu = per_step(model_cpu0, cpu_ms(&model_pid));
    data.finish()?;
    let report = json!({
        "step_ms": median(&step_ms), "step_ms_all": step_ms,
        "data_compute_ms": median(&compute_ms), "data_cpu_ms": cpu, "model_cpu_ms": model_cpu,
        "bytes_up": up, "bytes_down": down, "loss": loss,
        "data_peak_rss_mib": status_mib("self", "VmHWM:"), "data_base_rss_mib": base_rss,
        "data_load_s": load_s, "data_params_loaded": loaded,
    });
    println!("{report}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The parent: one fresh pair of processes per point

/// A child process, killed on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_point(point: &Point) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let spec = point.to_json().to_string();
    let state = tempfile::tempdir()?;
    let started = Instant::now();
    let mut model = ChildGuard(
        Command::new(&exe)
            .args(["--role", "model-party", "--point", &spec, "--state"])
            .arg(state.path())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let model_pid = model.0.id();
    let mut lines = BufReader::new(model.0.stdout.take().context("model party stdout")?).lines();
    let mut model_params = None;
    let addr: SocketAddr = loop {
        let Some(line) = lines.next().transpose()? else {
            let status = model.0.wait()?;
            bail!("the model party ended before listening ({status})");
        };
        if let Some(n) = line.strip_prefix("params ") {
            model_params = n.trim().parse::<u64>().ok();
        } else if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.trim().parse()?;
        }
    };
    let model_load_s = started.elapsed().as_secs_f64();
    let data = Command::new(&exe)
        .args(["--role", "data-party", "--point", &spec, "--connect"])
        .arg(format!("http://{addr}"))
        .args(["--model-pid", &model_pid.to_string()])
        .stdout(Stdio::piped())
        .output()?;
    if !data.status.success() {
        bail!(
            "the data party failed ({}) at {}",
            data.status,
            point.to_json()
        );
    }
    let stdout = String::from_utf8_lossy(&data.stdout);
    let report: Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .context("the data party printed no report")?,
    )?;
    let model_peak = status_mib(&model_pid.to_string(), "VmHWM:");
    drop(model);

    let s = &point.shape;
    let (data_params, model_party_params) = point.cut.params(s);
    let mut record = json!({
        "bench": "scaling", "sweep": point.sweep, "model": s.name, "model_label": s.label,
        "params": s.params(), "head_params": s.embedding_params() + point.cut.n_head as u64 * s.block_params(),
        "data_params": data_params, "model_params": model_party_params,
        "model_params_loaded": model_params,
        "hidden": s.hidden, "layers": s.layers, "vocab": s.vocab,
        "batch": point.batch, "seq": point.seq, "cut": point.cut.kind(),
        "n_head": point.cut.n_head, "n_tail": point.cut.n_tail,
        "partition": point.cut.partition().to_string(),
        "task": "causal-lm", "trainability": "lora r4 a32 q_proj,v_proj (base, embeddings, LM head frozen)",
        "optimizer": "adamw", "wire_dtype": "f32", "transport": "grpc loopback (plaintext)",
        "device": point.device.to_string(), "model_device": point.model_device.to_string(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "steps": point.steps, "warmup": point.warmup, "seed": point.seed,
        "model_peak_rss_mib": model_peak, "model_load_s": model_load_s,
        "point_s": started.elapsed().as_secs_f64(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
    });
    if let (Value::Object(record), Value::Object(report)) = (&mut record, report) {
        record.extend(report);
    }
    // The parameter counts above are computed from the shape; the parties count what they
    // loaded (before LoRA adds its adapters).
    for (loaded, expected) in [
        (&record["data_params_loaded"], data_params),
        (&record["model_params_loaded"], model_party_params),
    ] {
        if loaded.as_u64() != Some(expected) {
            log::warn!("a party loaded {loaded} parameters where {expected} were expected");
        }
    }
    Ok(record)
}

fn default_out() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("bench").join("scaling.jsonl")
}

fn mib(v: &Value) -> String {
    v.as_f64().map_or("?".into(), |m| format!("{m:.0}"))
}

fn run(args: &Args, sweep: SweepArg, out: &Path) -> Result<()> {
    let points = plan(args, sweep)?;
    // Refuse what cannot fit before spending time on anything.
    if let Some(available) = available_bytes() {
        for p in &points {
            let need = p.expected_bytes();
            if need > available {
                bail!(
                    "{} ({:.0}M parameters) at batch {} x {} needs about {:.1} GiB for the two \
                     parties, but this machine has {:.1} GiB available (MemAvailable); leave it \
                     out with --models",
                    p.shape.label,
                    p.shape.params() as f64 / 1e6,
                    p.batch,
                    p.seq,
                    need as f64 / (1u64 << 30) as f64,
                    available as f64 / (1u64 << 30) as f64
                );
            }
        }
    }
    println!(
        "{} points -> {}\n{:<6} {:<15} {:>5} {:>5} {:<10} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8}",
        points.len(),
        out.display(),
        "sweep",
        "model",
        "batch",
        "seq",
        "cut",
        "step ms",
        "data ms",
        "up B",
        "down B",
        "data MiB",
        "model MiB"
    );
    for point in &points {
        let r = run_point(point)?;
        splitlm::bench::records::append(out, &r)?;
        let cut = match point.cut.n_tail {
            None => format!("ht {}", point.cut.n_head),
            Some(t) => format!("hbt {}/{t}", point.cut.n_head),
        };
        println!(
            "{:<6} {:<15} {:>5} {:>5} {:<10} {:>9.0} {:>9.0} {:>10} {:>10} {:>8} {:>8}",
            point.sweep,
            point.shape.name,
            point.batch,
            point.seq,
            cut,
            r["step_ms"].as_f64().unwrap_or(f64::NAN),
            r["data_compute_ms"].as_f64().unwrap_or(f64::NAN),
            r["bytes_up"],
            r["bytes_down"],
            mib(&r["data_peak_rss_mib"]),
            mib(&r["model_peak_rss_mib"]),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Plots

const SWEEPS: [&str; 4] = ["batch", "seq", "cut", "size"];

fn plot(records: &Path, dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(records)
        .with_context(|| format!("reading {}", records.display()))?;
    // The last record of each point wins.
    let mut points: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let r: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", records.display(), i + 1))?;
        let Some(sweep) = r["sweep"].as_str().filter(|_| r["bench"] == "scaling") else {
            continue;
        };
        let key = format!(
            "{} {} {} {} {}",
            r["model"], r["batch"], r["seq"], r["n_head"], r["n_tail"]
        );
        points.entry(sweep.to_string()).or_default().insert(key, r);
    }
    if points.is_empty() {
        bail!("no scaling records in {}", records.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for sweep in SWEEPS {
        let Some(records) = points.get(sweep) else {
            continue;
        };
        let records: Vec<&Value> = records.values().collect();
        let path = dir.join(format!("scaling-{sweep}.svg"));
        let partial = path.with_extension("svg.partial");
        draw(sweep, &records, &partial).with_context(|| format!("drawing {}", path.display()))?;
        std::fs::rename(&partial, &path)?;
        println!("wrote {} ({} points)", path.display(), records.len());
    }
    Ok(())
}

fn num(r: &Value, key: &str) -> f64 {
    r[key].as_f64().unwrap_or(f64::NAN)
}

fn params_text(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.2}B", n / 1e9)
    } else {
        format!("{:.0}M", n / 1e6)
    }
}

fn cut_text(r: &Value) -> String {
    match r["n_tail"].as_u64() {
        None => format!("Head–Tail n_head {}", r["n_head"]),
        Some(t) => format!("Head–Body–Tail {}/{t}", r["n_head"]),
    }
}

/// One series: a name, a colour, whether it is a Head–Body–Tail one, and its points as
/// (category, value).
type Series = (String, RGBColor, bool, Vec<(usize, f64)>);

/// A quantity to draw: its name, its colour and how to read it from a record.
type Metric<'a> = (&'a str, RGBColor, &'a dyn Fn(&Value) -> f64);

fn draw(sweep: &str, records: &[&Value], path: &Path) -> Result<()> {
    // The x axis: the swept value's distinct settings, evenly spaced (they double, so this is
    // a log scale), in order.
    let x_of = |r: &Value| -> (f64, String) {
        match sweep {
            "batch" => (num(r, "batch"), r["batch"].to_string()),
            "seq" => (num(r, "seq"), r["seq"].to_string()),
            "cut" => (num(r, "n_head"), r["n_head"].to_string()),
            _ => (
                num(r, "params"),
                format!(
                    "{} ({})",
                    r["model_label"].as_str().unwrap_or("?"),
                    params_text(num(r, "params"))
                ),
            ),
        }
    };
    let mut xs: Vec<(f64, String)> = records.iter().map(|r| x_of(r)).collect();
    xs.sort_by(|a, b| a.0.total_cmp(&b.0));
    xs.dedup_by(|a, b| a.0 == b.0);
    let category = |r: &Value| xs.iter().position(|x| x.0 == x_of(r).0).unwrap_or(0);
    let labels: Vec<String> = xs.iter().map(|x| x.1.clone()).collect();
    let has_hbt = records.iter().any(|r| r["cut"] == "hbt");
    let kinds: &[&str] = if has_hbt { &["ht", "hbt"] } else { &["ht"] };

    let series = |metrics: &[Metric]| -> Vec<Series> {
        let mut out = Vec::new();
        for &kind in kinds {
            for (name, color, value) in metrics {
                let mut points: Vec<(usize, f64)> = records
                    .iter()
                    .filter(|r| r["cut"] == kind)
                    .map(|r| (category(r), value(r)))
                    .filter(|p| p.1.is_finite())
                    .collect();
                points.sort_by_key(|p| p.0);
                let name = match (has_hbt, kind) {
                    (false, _) => name.to_string(),
                    (true, "ht") => format!("{name}, Head–Tail"),
                    _ => format!("{name}, Head–Body–Tail (n_tail 2)"),
                };
                out.push((name, *color, kind == "hbt", points));
            }
        }
        out
    };
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(230, 120, 20);
    let green = RGBColor(44, 160, 44);
    let grey = RGBColor(120, 120, 120);
    let time = series(&[
        ("step (data party's wall time)", blue, &|r| {
            num(r, "step_ms")
        }),
        ("data party's own compute", green, &|r| {
            num(r, "data_compute_ms")
        }),
        ("waiting for the model party and the link", grey, &|r| {
            num(r, "step_ms") - num(r, "data_compute_ms")
        }),
    ]);
    let memory = series(&[
        ("data party", blue, &|r| num(r, "data_peak_rss_mib")),
        ("model party", orange, &|r| num(r, "model_peak_rss_mib")),
    ]);
    let mb = |v: f64| v / (1u64 << 20) as f64;
    let bytes = series(&[
        ("up (data → model)", blue, &|r| mb(num(r, "bytes_up"))),
        ("down (model → data)", orange, &|r| {
            mb(num(r, "bytes_down"))
        }),
    ]);

    let first = records[0];
    let fixed = match sweep {
        "batch" => format!(
            "{}, seq {}, {}",
            first["model_label"].as_str().unwrap_or("?"),
            first["seq"],
            cut_text(first)
        ),
        "seq" => format!(
            "{}, batch {}, {}",
            first["model_label"].as_str().unwrap_or("?"),
            first["batch"],
            cut_text(first)
        ),
        "cut" => format!(
            "{}, batch {}, seq {}",
            first["model_label"].as_str().unwrap_or("?"),
            first["batch"],
            first["seq"]
        ),
        _ => format!(
            "batch {}, seq {}, {}",
            first["batch"],
            first["seq"],
            cut_text(first)
        ),
    };
    let what = match sweep {
        "batch" => "batch size",
        "seq" => "sequence length",
        "cut" => "cut position",
        _ => "model size",
    };
    let x_desc = match sweep {
        "batch" => "batch (sequences per step)",
        "seq" => "sequence length (tokens)",
        "cut" => "n_head (blocks at the data party's head)",
        _ => "model (total parameters)",
    };
    let title = format!("How the cost of a split training step grows with {what}: {fixed}");
    let steps: Vec<u64> = records.iter().filter_map(|r| r["steps"].as_u64()).collect();
    let (fewest, most) = (
        steps.iter().min().copied().unwrap_or(0),
        steps.iter().max().copied().unwrap_or(0),
    );
    let steps = match (fewest, most) {
        (1, 1) => "one timed step".to_string(),
        (a, b) if a == b => format!("median of {a} timed steps"),
        (a, b) => format!("median of {a} to {b} timed steps"),
    };
    let subtitle = format!(
        "random-weight Llama shape, causal-LM loss, LoRA r4 on q_proj/v_proj, AdamW, f32 over \
         loopback gRPC; {} ({} cores), each party its own process; {steps} after {} warm-up",
        first["device"].as_str().unwrap_or("?"),
        first["cpus"],
        first["warmup"]
    );

    let root = SVGBackend::new(path, (1650, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let (top, body) = root.split_vertically(64);
    top.draw(&Text::new(
        title,
        (20, 10),
        ("sans-serif", 22).into_font().color(&BLACK),
    ))
    .map_err(drawing)?;
    top.draw(&Text::new(
        subtitle,
        (20, 40),
        ("sans-serif", 15).into_font().color(&grey),
    ))
    .map_err(drawing)?;
    let panels = body.split_evenly((1, 3));
    let specs: [(&str, &str, &[Series]); 3] = [
        ("Time per training step", "milliseconds", &time),
        ("Peak memory of each party (peak RSS)", "MiB", &memory),
        ("Bytes per step, each way (protocol frames)", "MiB", &bytes),
    ];
    for (panel, (caption, unit, series)) in panels.iter().zip(specs) {
        panel_chart(panel, caption, unit, x_desc, &labels, series)?;
    }
    root.present().map_err(drawing)?;
    Ok(())
}

fn panel_chart(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    caption: &str,
    unit: &str,
    x_desc: &str,
    labels: &[String],
    series: &[Series],
) -> Result<()> {
    let top = series
        .iter()
        .flat_map(|s| s.3.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    // Room above the highest point for the legend (about 15 px a line of a ~380 px plot).
    let drawn = series.iter().filter(|s| !s.3.is_empty()).count() as f64;
    let legend = ((drawn * 15.0 + 30.0) / 380.0).min(0.6);
    let top = if top > 0.0 {
        top / (0.95 - legend)
    } else {
        1.0
    };
    let n = labels.len() as i32;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(70)
        // `0..k` is k + 1 segments.
        .build_cartesian_2d((0..(n - 1).max(0)).into_segmented(), 0f64..top)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(x_desc)
        .y_desc(unit)
        .x_labels(labels.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| axis_number(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(drawing)?;
    for (i, (name, color, hbt, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let color = *color;
        let at = |p: &(usize, f64)| (SegmentValue::CenterOf(p.0 as i32), p.1);
        // The first series of a panel is drawn wide and light, so a series that coincides
        // with it (bytes up and down in Head–Tail) stays visible on top.
        let (alpha, width) = match (i % metrics_per_kind(series), *hbt) {
            (0, false) => (0.55, 5),
            (0, true) => (0.35, 5),
            (_, false) => (1.0, 2),
            (_, true) => (0.6, 2),
        };
        let line = color.mix(alpha).stroke_width(width);
        chart
            .draw_series(LineSeries::new(points.iter().map(at), line))
            .map_err(drawing)?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 18, y)],
                    color.mix(alpha).stroke_width(width),
                )
            });
        if *hbt {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|p| TriangleMarker::new(at(p), 6, color.mix(0.8).filled())),
                )
                .map_err(drawing)?;
        } else {
            chart
                .draw_series(points.iter().map(|p| Circle::new(at(p), 4, color.filled())))
                .map_err(drawing)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(drawing)?;
    Ok(())
}

/// How many series a panel draws per cut kind (the series come kind by kind).
fn metrics_per_kind(series: &[Series]) -> usize {
    let kinds = if series.iter().any(|s| s.2) { 2 } else { 1 };
    (series.len() / kinds).max(1)
}

/// An axis value with at most three decimals and no trailing zeros.
fn axis_number(v: f64) -> String {
    let text = format!("{v:.3}");
    match text.trim_end_matches('0').trim_end_matches('.') {
        "" | "-" | "-0" => "0".to_string(),
        short => short.to_string(),
    }
}

/// plotters' drawing errors as `anyhow` errors.
fn drawing(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

// ---------------------------------------------------------------------------------------------

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    match args.role {
        Some(Role::ModelParty) => {
            let point = Point::from_json(args.point.as_deref().context("--point")?)?;
            return model_party(point, args.state.clone().context("--state")?);
        }
        Some(Role::DataParty) => {
            let point = Point::from_json(args.point.as_deref().context("--point")?)?;
            return data_party(
                point,
                args.connect.clone().context("--connect")?,
                args.model_pid.context("--model-pid")?,
            );
        }
        None => {}
    }
    let out = args.out.clone().unwrap_or_else(default_out);
    let sweep = match (args.sweep, &args.plot) {
        (Some(s), _) => Some(s),
        (None, Some(_)) => None,
        (None, None) => Some(SweepArg::All),
    };
    if let Some(sweep) = sweep {
        let started = Instant::now();
        run(&args, sweep, &out)?;
        println!("done in {:.0} s", started.elapsed().as_secs_f64());
    }
    if let Some(dir) = &args.plot {
        plot(&out, dir)?;
    }
    Ok(())
}
