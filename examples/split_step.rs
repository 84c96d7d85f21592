//! Benchmark: one split training step against the same step on the whole model.
//!
//! MiniLM with a 2-class head, or SmolLM2 (or any model directory / GGUF file with `--model`)
//! as a causal LM with next-token loss; full fine-tuning or LoRA (`--finetune`) with AdamW; a
//! batch of `--batch` × `--seq` tokens; the data party on `--device` and the model party on
//! `--model-device` (default: the same), over the in-process transport (messages encoded and
//! decoded, so the codec's cost is in). Prints milliseconds per step, the split's overhead in
//! %, and bytes per step each way; `--out` appends JSON lines; `--workload NAME` ends with the
//! line `cargo xtask bench --peer-python` pairs with the PyTorch peer's.
//!
//! ```text
//! cargo xtask bench            # runs this with the issue's settings (16 x 64, cpu)
//! cargo run --example split_step -- --device cpu --batch 16 --seq 64
//! cargo run --example split_step -- --model smollm2 --finetune lora --batch 8 --seq 128
//! ```

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Parser;
use splitlm::device::DeviceSpec;
use splitlm::nn::batch::PaddingSide;
use splitlm::nn::{Labels, SliceSpec, TaskHead, TokenBatch, TransformerSlice, loss};
use splitlm::partition::{LoraSettings, Partition, Trainability};
use splitlm::party::{DataParty, ModelParty, OptimizerConfig, PartyOptions, PartySlice};
use splitlm::protocol::{Limits, WireDType, in_process_pair};
use splitlm::zoo::{Family, Pretrained};

#[derive(Parser)]
#[command(about = "Split vs unsplit training step of MiniLM")]
struct Args {
    /// Where the data party (and the unsplit baseline) computes: cpu, flex, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Where the model party computes (default: `--device`).
    #[arg(long)]
    model_device: Option<DeviceSpec>,
    /// `minilm`, `smollm2` (the demo assets), or a model directory or GGUF file. Causal models
    /// train as language models (next-token loss), the others with a 2-class head.
    #[arg(long, default_value = "minilm")]
    model: String,
    /// `full` fine-tuning, or `lora` (rank 4, α 32, the family's default targets; embeddings
    /// frozen, task head trained).
    #[arg(long, default_value = "full")]
    finetune: Finetune,
    /// The cuts to measure, comma-separated: `hbt` (Head–Body–Tail 2/2), `ht` (Head–Tail 2).
    #[arg(long, value_delimiter = ',', default_value = "hbt,ht")]
    cuts: Vec<Cut>,
    /// Sequences per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 64)]
    seq: usize,
    /// Timed steps per setting (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Append one JSON line per setting to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// End with one side-by-side JSON line for this workload name on stdout: the unsplit
    /// step's median, the process's peak memory after it, and the first cut's step.
    #[arg(long)]
    workload: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Finetune {
    Full,
    Lora,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Cut {
    Hbt,
    Ht,
}

impl Cut {
    fn partition(self) -> Partition {
        match self {
            Cut::Hbt => Partition::head_body_tail(2, 2),
            Cut::Ht => Partition::head_tail(2),
        }
    }
}

/// What one benchmark step trains: the model's head, its labels, the trainable parameters.
struct Recipe {
    task: TaskHead,
    trainability: Trainability,
}

impl Recipe {
    fn new(ckpt: &Pretrained, finetune: Finetune) -> Self {
        let task = if matches!(ckpt.family(), Family::Gpt2 | Family::Llama) {
            TaskHead::CausalLm
        } else {
            TaskHead::SequenceClassification { num_labels: 2 }
        };
        let trainability = match finetune {
            Finetune::Full => Trainability::default(),
            Finetune::Lora => Trainability::lora(LoraSettings {
                rank: 4,
                alpha: 32.0,
                ..LoraSettings::default()
            }),
        };
        Self { task, trainability }
    }

    /// Labels for `ids`: alternating classes, or each next token (the last position unweighted).
    fn labels(&self, ids: &[Vec<u32>], device: &Device) -> Labels {
        let (rows, seq) = (ids.len(), ids[0].len());
        match self.task {
            TaskHead::CausalLm => {
                let targets: Vec<i64> = ids
                    .iter()
                    .flat_map(|row| (0..seq).map(|t| i64::from(row[(t + 1).min(seq - 1)])))
                    .collect();
                let weights: Vec<f32> = (0..rows)
                    .flat_map(|_| (0..seq).map(|t| if t + 1 < seq { 1.0 } else { 0.0 }))
                    .collect();
                Labels::Tokens {
                    targets: Tensor::from_data(TensorData::new(targets, [rows, seq]), device),
                    weights: Tensor::from_data(TensorData::new(weights, [rows, seq]), device),
                }
            }
            _ => Labels::Classes(Tensor::<1, Int>::from_data(
                TensorData::new((0..rows as i64).map(|i| i % 2).collect::<Vec<_>>(), [rows]),
                device,
            )),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.probe()?.autodiff();
    let model_spec = args.model_device.unwrap_or(args.device);
    let model_device = model_spec.probe()?.autodiff();
    let ckpt = Pretrained::open(&common::model_path(&args.model)?)?;
    let recipe = Recipe::new(&ckpt, args.finetune);
    let ids = common::synthetic_ids(args.batch, args.seq, 1000);
    let batch = TokenBatch::from_sequences(&ids, 0, PaddingSide::Right, &device)?;
    let labels = recipe.labels(&ids, &device);
    let finetune = match args.finetune {
        Finetune::Full => "full fine-tuning",
        Finetune::Lora => "LoRA r4 α32",
    };
    println!(
        "{} training step, batch {} x {} tokens, data party on {}, model party on {}, {finetune}, AdamW",
        args.model, args.batch, args.seq, args.device, model_spec
    );
    let first_ms = unsplit(&ckpt, &recipe, &batch, &labels, &device, args.steps)?;
    // Read before the split runs add their own allocations: the whole model's footprint.
    let unsplit_peak = splitlm::bench::resources::peak_rss_mib();
    println!("{:<42} {:>8.1} ms/step", "unsplit", first_ms);
    let mut records = vec![serde_json::json!({
        "bench": "split_step", "setting": "unsplit", "device": args.device.to_string(),
        "model": args.model, "finetune": finetune,
        "batch": args.batch, "seq": args.seq, "ms_per_step": first_ms,
        "peak_rss_mib": unsplit_peak,
    })];
    let mut splits = Vec::new();
    for cut in &args.cuts {
        let partition = cut.partition();
        splits.push((
            partition,
            split(
                &ckpt,
                &recipe,
                partition,
                &batch,
                &labels,
                (&device, &model_device),
                args.steps,
            )?,
        ));
    }
    // Measured again after the split runs, so that drift (allocator, frequency) shows.
    let again_ms = unsplit(&ckpt, &recipe, &batch, &labels, &device, args.steps)?;
    println!(
        "{:<42} {:>8.1} ms/step",
        "unsplit (again, after the split runs)", again_ms
    );
    let unsplit_ms = (first_ms + again_ms) / 2.0;
    for &(partition, (ms, sent, received)) in &splits {
        let overhead = 100.0 * (ms - unsplit_ms) / unsplit_ms;
        println!(
            "{:<42} {:>8.1} ms/step  overhead {:+.1}%  sent {} B  received {} B per step",
            partition.to_string(),
            ms,
            overhead,
            sent,
            received
        );
        records.push(serde_json::json!({
            "bench": "split_step", "setting": partition.to_string(), "device": args.device.to_string(),
            "model_device": model_spec.to_string(), "model": args.model, "finetune": finetune,
            "batch": args.batch, "seq": args.seq, "ms_per_step": ms, "overhead_percent": overhead,
            "bytes_sent_per_step": sent, "bytes_received_per_step": received,
        }));
    }
    records.push(serde_json::json!({
        "bench": "split_step", "setting": "unsplit (again)", "device": args.device.to_string(),
        "model": args.model, "finetune": finetune,
        "batch": args.batch, "seq": args.seq, "ms_per_step": again_ms,
    }));
    let activation = args.batch * args.seq * ckpt.hidden_size() * 4;
    println!("one f32 activation tensor (batch x seq x hidden x 4 bytes) = {activation} B");
    if let Some(path) = &args.out {
        for record in &records {
            splitlm::bench::records::append(path, record)?;
        }
    }
    if let Some(workload) = &args.workload {
        let mut extra = serde_json::json!({
            "device": args.device.resolve().to_string(), "unsplit_again_ms": again_ms,
        });
        if let Some((partition, (ms, sent, received))) = splits.first() {
            extra["split"] = serde_json::json!({
                "partition": partition.to_string(), "ms": ms,
                "overhead_percent": 100.0 * (ms - unsplit_ms) / unsplit_ms,
                "bytes_sent": sent, "bytes_received": received,
            });
        }
        let line = common::side_by_side_line(workload, first_ms, "ms/step", unsplit_peak, extra);
        println!("{line}");
    }
    Ok(())
}

fn party_slice(
    ckpt: &Pretrained,
    recipe: &Recipe,
    spec: &SliceSpec,
    device: &Device,
) -> Result<PartySlice> {
    let model = ckpt.load(spec, recipe.task, device)?;
    Ok(PartySlice::new(
        model,
        &recipe.trainability,
        &OptimizerConfig::default(),
        100,
        0,
    )?)
}

fn median_ms(mut step: impl FnMut() -> Result<()>, steps: usize) -> Result<f64> {
    step()?;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let started = Instant::now();
        step()?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn unsplit(
    ckpt: &Pretrained,
    recipe: &Recipe,
    batch: &TokenBatch,
    labels: &Labels,
    device: &Device,
    steps: usize,
) -> Result<f64> {
    let mut whole = party_slice(ckpt, recipe, &SliceSpec::full(ckpt.num_layers()), device)?;
    median_ms(
        || {
            let loss = loss(&whole.model().forward(batch, None)?, labels)?;
            let _: f32 = loss.clone().into_scalar();
            whole.apply_gradients(loss.backward());
            Ok(())
        },
        steps,
    )
}

fn split(
    ckpt: &Pretrained,
    recipe: &Recipe,
    partition: Partition,
    batch: &TokenBatch,
    labels: &Labels,
    (device, model_device): (&Device, &Device),
    steps: usize,
) -> Result<(f64, u64, u64)> {
    let slices = partition.slices(ckpt.num_layers())?;
    let model = ModelParty::new(
        party_slice(ckpt, recipe, &slices.model, model_device)?,
        WireDType::F32,
    );
    let (data_end, model_end) = in_process_pair(Limits::default());
    let server = model.spawn(model_end);
    let tail = slices
        .data_tail
        .as_ref()
        .map(|s| party_slice(ckpt, recipe, s, device))
        .transpose()?;
    let mut data = DataParty::connect(
        party_slice(ckpt, recipe, &slices.data_head, device)?,
        tail,
        Box::new(data_end),
        &PartyOptions::default(),
    )?;
    let mut bytes = (0, 0);
    let ms = median_ms(
        || {
            let step = data.train_step(batch, labels)?;
            bytes = (step.bytes_sent, step.bytes_received);
            Ok(())
        },
        steps,
    )?;
    data.finish()?;
    server.join().expect("model party thread")?;
    Ok((ms, bytes.0, bytes.1))
}
