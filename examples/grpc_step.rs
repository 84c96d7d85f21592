//! Benchmark: the split training step over loopback gRPC with mutual TLS against the same step
//! in one process, and a load of several clients on one server.
//!
//! MiniLM (real weights) with a 2-class head, full fine-tuning with AdamW, Head–Tail and
//! Head–Body–Tail. The server runs in a child process (this example re-run with `--serve`), so
//! its peak RSS is its own. A counting TCP relay between client and server measures the bytes
//! on the wire (TLS records, HTTP/2 frames, gRPC prefixes and our frames), against the bytes of
//! our own frames the transport counts. The load test runs `--clients` sessions at once for
//! `--load-steps` steps each and reports steps/s and step latency percentiles.
//!
//! ```text
//! cargo xtask bench                      # runs this with the issue's settings
//! cargo run --example grpc_step -- --batch 16 --seq 64 --steps 5 --clients 8
//! ```

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Parser;
use splitlm::device::DeviceSpec;
use splitlm::net::{Connector, NetworkConfig, ServeOptions, SessionFactory};
use splitlm::nn::batch::PaddingSide;
use splitlm::nn::{Labels, SliceSpec, TaskHead, TokenBatch};
use splitlm::partition::{Partition, Trainability};
use splitlm::party::{DataParty, Handshake, ModelParty, OptimizerConfig, PartyOptions, PartySlice};
use splitlm::protocol::{Limits, Transport, WireDType, in_process_pair};
use splitlm::zoo::{AnyModel, Pretrained};

#[derive(Parser)]
#[command(about = "Split training step over loopback gRPC vs in one process; a load test")]
struct Args {
    /// Where both parties compute: cpu, flex, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Sequences per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Timed steps per setting (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Clients of the load test.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Steps each load-test client takes.
    #[arg(long, default_value_t = 4)]
    load_steps: usize,
    /// Sequences per batch in the load test (each client's).
    #[arg(long, default_value_t = 4)]
    load_batch: usize,
    /// Append one JSON line per measurement to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: serve this partition (`ht` or `hbt`) with the keys in this directory.
    #[arg(long, hide = true, num_args = 2, value_names = ["PARTITION", "KEYS"])]
    serve: Option<Vec<String>>,
}

const TASK: TaskHead = TaskHead::SequenceClassification { num_labels: 2 };

fn partition(name: &str) -> Partition {
    match name {
        "ht" => Partition::head_tail(2),
        _ => Partition::head_body_tail(2, 2),
    }
}

fn party_slice(model: AnyModel) -> Result<PartySlice> {
    Ok(PartySlice::new(
        model,
        &Trainability::default(),
        &OptimizerConfig::default(),
        100,
        0,
    )?)
}

struct Factory {
    base: AnyModel,
}

impl SessionFactory for Factory {
    fn terms(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn open(&self, _: &[(String, String)]) -> Result<ModelParty, String> {
        let slice = party_slice(self.base.clone()).map_err(|e| e.to_string())?;
        Ok(ModelParty::new(slice, WireDType::F32))
    }
}

fn tls(keys: &Path) -> NetworkConfig {
    NetworkConfig {
        tls: Some(keys.to_path_buf()),
        max_sessions: 64,
        ..NetworkConfig::default()
    }
}

/// The server half, in this (child) process: prints its address, serves until killed.
fn serve(args: &Args, which: &str, keys: &Path) -> Result<()> {
    let ckpt = Pretrained::open(&common::model_dir(None)?)?;
    let slices = partition(which).slices(ckpt.num_layers())?;
    let device = args.device.probe()?.autodiff();
    let base = ckpt.load(&slices.model, TASK, &device)?;
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse()?,
        state: std::env::temp_dir().join(format!("splitlm-grpc-bench-{}", std::process::id())),
        network: tls(keys),
    };
    splitlm::net::serve(options, Arc::new(Factory { base }), |addr| {
        println!("listening on {addr}");
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}

/// A server child process; killed on drop.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(args: &Args, which: &str, keys: &Path) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--device", &args.device.to_string(), "--serve", which])
            .arg(keys)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("the server said {line:?}"))?
            .parse()?;
        Ok(Self { child, addr })
    }

    /// Peak resident memory so far, MiB (Linux).
    fn peak_rss_mib(&self) -> Option<f64> {
        splitlm::bench::resources::peak_rss_mib_of(self.child.id())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay on loopback that counts the bytes each way; returns its address.
fn counting_relay(server: SocketAddr, counted: Arc<[AtomicU64; 2]>) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(upstream) = TcpStream::connect(server) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut to: TcpStream, n: usize| {
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(read) = from.read(&mut buf) {
                        if read == 0 || to.write_all(&buf[..read]).is_err() {
                            break;
                        }
                        counted[n].fetch_add(read as u64, Ordering::Relaxed);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            };
            let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            pipe(client, upstream, 0);
            pipe(u2, c2, 1);
        }
    });
    Ok(addr)
}

fn batch(rows: usize, seq: usize, device: &Device) -> Result<(TokenBatch, Labels)> {
    let ids = common::synthetic_ids(rows, seq, 1000);
    let batch = TokenBatch::from_sequences(&ids, 0, PaddingSide::Right, device)?;
    let labels = Labels::Classes(Tensor::<1, Int>::from_data(
        TensorData::new((0..rows as i64).map(|i| i % 2).collect::<Vec<_>>(), [rows]),
        device,
    ));
    Ok((batch, labels))
}

fn data_party(
    ckpt: &Pretrained,
    which: &str,
    device: &Device,
    transport: Box<dyn Transport>,
) -> Result<DataParty> {
    let slices = partition(which).slices(ckpt.num_layers())?;
    let load = |spec: &SliceSpec| party_slice(ckpt.load(spec, TASK, device)?);
    let tail = slices.data_tail.as_ref().map(load).transpose()?;
    Ok(DataParty::connect_with(
        load(&slices.data_head)?,
        tail,
        transport,
        &PartyOptions::default(),
        Handshake::default(),
    )?)
}

/// Median ms per step and our frames' bytes per step (sent, received).
fn time_steps(
    data: &mut DataParty,
    batch: &(TokenBatch, Labels),
    steps: usize,
) -> Result<(f64, u64, u64)> {
    data.train_step(&batch.0, &batch.1)?;
    let mut times = Vec::new();
    let mut bytes = (0, 0);
    for _ in 0..steps {
        let started = Instant::now();
        let step = data.train_step(&batch.0, &batch.1)?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        bytes = (step.bytes_sent, step.bytes_received);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], bytes.0, bytes.1))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(serve_args) = &args.serve {
        return serve(&args, &serve_args[0], Path::new(&serve_args[1]));
    }
    let keys = tempfile::tempdir()?;
    splitlm::net::keys::generate(keys.path(), &Default::default(), false)?;
    let device = args.device.probe()?.autodiff();
    let ckpt = Pretrained::open(&common::model_dir(None)?)?;
    let step_batch = batch(args.batch, args.seq, &device)?;
    let mut records = Vec::new();
    println!(
        "MiniLM training step, batch {} x {}, {} (both parties), full fine-tuning, AdamW",
        args.batch, args.seq, args.device
    );
    for which in ["ht", "hbt"] {
        // In one process.
        let slices = partition(which).slices(ckpt.num_layers())?;
        let model = ModelParty::new(
            party_slice(ckpt.load(&slices.model, TASK, &device)?)?,
            WireDType::F32,
        );
        let (data_end, model_end) = in_process_pair(Limits::default());
        let server = model.spawn(model_end);
        let mut data = data_party(&ckpt, which, &device, Box::new(data_end))?;
        let (local_ms, sent, received) = time_steps(&mut data, &step_batch, args.steps)?;
        data.finish()?;
        server.join().expect("model party thread")?;

        // Over loopback gRPC with mutual TLS, through the counting relay.
        let server = ServerProcess::start(&args, which, keys.path())?;
        let counted = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let relay = counting_relay(server.addr, counted.clone())?;
        let connector = Connector::new(&NetworkConfig {
            connect: Some(format!("https://{relay}")),
            ..tls(keys.path())
        })?;
        let mut data = data_party(&ckpt, which, &device, Box::new(connector.connect_once()?))?;
        data.train_step(&step_batch.0, &step_batch.1)?;
        let wire_before = [0, 1].map(|i| counted[i].load(Ordering::Relaxed));
        let (grpc_ms, grpc_sent, grpc_received) = time_steps(&mut data, &step_batch, args.steps)?;
        let wire = [0, 1].map(|i| counted[i].load(Ordering::Relaxed) - wire_before[i]);
        let per_step = |b: u64| b as f64 / (args.steps + 1) as f64;
        data.finish()?;
        let name = partition(which).to_string();
        let envelope = 100.0 * (per_step(wire[0] + wire[1]) - (grpc_sent + grpc_received) as f64)
            / (grpc_sent + grpc_received) as f64;
        println!(
            "{name:<44} in process {local_ms:>8.1} ms   gRPC+mTLS {grpc_ms:>8.1} ms   ratio {:.3}",
            grpc_ms / local_ms
        );
        println!(
            "{:<44} frames {sent} B sent / {received} B received per step; on the wire {:.0} / {:.0} B (envelope {envelope:+.2} %)",
            "",
            per_step(wire[0]),
            per_step(wire[1])
        );
        records.push(serde_json::json!({
            "bench": "grpc_step", "setting": name, "device": args.device.to_string(),
            "batch": args.batch, "seq": args.seq,
            "in_process_ms_per_step": local_ms, "grpc_ms_per_step": grpc_ms,
            "ratio": grpc_ms / local_ms,
            "frame_bytes_sent_per_step": grpc_sent, "frame_bytes_received_per_step": grpc_received,
            "wire_bytes_sent_per_step": per_step(wire[0]),
            "wire_bytes_received_per_step": per_step(wire[1]),
            "envelope_overhead_percent": envelope,
        }));
    }

    // The load test: `clients` sessions at once on one server (Head–Body–Tail).
    let server = ServerProcess::start(&args, "hbt", keys.path())?;
    let url = format!("https://{}", server.addr);
    let load_batch = batch(args.load_batch, args.seq, &device)?;
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|_| {
            let connector = Connector::new(&NetworkConfig {
                connect: Some(url.clone()),
                ..tls(keys.path())
            });
            let ckpt = Pretrained::open(&common::model_dir(None).unwrap());
            let device = device.clone();
            let load_batch = (load_batch.0.clone(), load_batch.1.clone());
            let steps = args.load_steps;
            std::thread::spawn(move || -> Result<Vec<f64>> {
                let connector = connector?;
                let mut data =
                    data_party(&ckpt?, "hbt", &device, Box::new(connector.connect_once()?))?;
                let mut times = Vec::new();
                for _ in 0..steps {
                    let t = Instant::now();
                    data.train_step(&load_batch.0, &load_batch.1)?;
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                }
                data.finish()?;
                Ok(times)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.join().expect("client thread")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let steps_per_second = latencies.len() as f64 / seconds;
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let rss = server.peak_rss_mib();
    println!(
        "load: {} clients x {} steps ({} x {}): {steps_per_second:.2} steps/s, p50 {p50:.0} ms, p99 {p99:.0} ms, server peak RSS {} MiB",
        args.clients,
        args.load_steps,
        args.load_batch,
        args.seq,
        rss.map_or("?".into(), |r| format!("{r:.0}"))
    );
    records.push(serde_json::json!({
        "bench": "grpc_load", "setting": "head-body-tail (n_head = 2, n_tail = 2)",
        "device": args.device.to_string(), "clients": args.clients, "steps_each": args.load_steps,
        "batch": args.load_batch, "seq": args.seq, "steps_per_second": steps_per_second,
        "p50_ms": p50, "p99_ms": p99, "server_peak_rss_mib": rss, "seconds": seconds,
    }));
    if let Some(path) = &args.out {
        for record in &records {
            splitlm::bench::records::append(path, record)?;
        }
    }
    Ok(())
}
