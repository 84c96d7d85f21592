//! Benchmark: one split training step against the same step on the whole model.
//!
//! MiniLM (real weights; or any model directory with `--model`) with a 2-class head, full
//! fine-tuning with AdamW, a batch of `--batch` × `--seq` tokens, the data party on `--device`
//! and the model party on `--model-device` (default: the same), over the in-process transport
//! (messages encoded and decoded, so the codec's cost is in). Prints milliseconds per step,
//! the split's overhead in %, and bytes per step each way; `--out` appends JSON lines.
//!
//! ```text
//! cargo xtask bench            # runs this with the issue's settings (16 x 64, cpu)
//! cargo run --example split_step -- --device cpu --batch 16 --seq 64
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
use splitlm::partition::{Partition, Trainability};
use splitlm::party::{DataParty, ModelParty, OptimizerConfig, PartyOptions, PartySlice};
use splitlm::protocol::{Limits, WireDType, in_process_pair};
use splitlm::zoo::Pretrained;

#[derive(Parser)]
#[command(about = "Split vs unsplit training step of MiniLM")]
struct Args {
    /// Where the data party (and the unsplit baseline) computes: cpu, flex, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Where the model party computes (default: `--device`).
    #[arg(long)]
    model_device: Option<DeviceSpec>,
    /// A BERT-family model directory (default: the MiniLM asset).
    #[arg(long)]
    model: Option<PathBuf>,
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
}

const TASK: TaskHead = TaskHead::SequenceClassification { num_labels: 2 };

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.probe()?.autodiff();
    let model_spec = args.model_device.unwrap_or(args.device);
    let model_device = model_spec.probe()?.autodiff();
    let dir = common::model_dir(args.model.as_deref())?;
    let ckpt = Pretrained::open(&dir)?;
    let batch = tokens(&args, &device)?;
    let labels = Labels::Classes(Tensor::<1, Int>::from_data(
        TensorData::new(
            (0..args.batch as i64).map(|i| i % 2).collect::<Vec<_>>(),
            [args.batch],
        ),
        &device,
    ));
    println!(
        "{} training step, batch {} x {} tokens, data party on {}, model party on {}, full fine-tuning, AdamW",
        args.model
            .as_ref()
            .map_or("MiniLM".into(), |d| d.display().to_string()),
        args.batch,
        args.seq,
        args.device,
        model_spec
    );
    let first_ms = unsplit(&ckpt, &batch, &labels, &device, args.steps)?;
    println!("{:<42} {:>8.1} ms/step", "unsplit", first_ms);
    let mut records = vec![serde_json::json!({
        "bench": "split_step", "setting": "unsplit", "device": args.device.to_string(),
        "batch": args.batch, "seq": args.seq, "ms_per_step": first_ms,
    })];
    let mut splits = Vec::new();
    for partition in [Partition::head_body_tail(2, 2), Partition::head_tail(2)] {
        splits.push((
            partition,
            split(
                &ckpt,
                partition,
                &batch,
                &labels,
                (&device, &model_device),
                args.steps,
            )?,
        ));
    }
    // Measured again after the split runs, so that drift (allocator, frequency) shows.
    let again_ms = unsplit(&ckpt, &batch, &labels, &device, args.steps)?;
    println!(
        "{:<42} {:>8.1} ms/step",
        "unsplit (again, after the split runs)", again_ms
    );
    let unsplit_ms = (first_ms + again_ms) / 2.0;
    for (partition, (ms, sent, received)) in splits {
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
            "model_device": model_spec.to_string(),
            "batch": args.batch, "seq": args.seq, "ms_per_step": ms, "overhead_percent": overhead,
            "bytes_sent_per_step": sent, "bytes_received_per_step": received,
        }));
    }
    records.push(serde_json::json!({
        "bench": "split_step", "setting": "unsplit (again)", "device": args.device.to_string(),
        "batch": args.batch, "seq": args.seq, "ms_per_step": again_ms,
    }));
    let activation = args.batch * args.seq * ckpt.hidden_size() * 4;
    println!("one f32 activation tensor (batch x seq x hidden x 4 bytes) = {activation} B");
    if let Some(path) = &args.out {
        for record in &records {
            splitlm::bench::records::append(path, record)?;
        }
    }
    Ok(())
}

/// Deterministic pseudo-random ids, [CLS] … [SEP], no padding: every token costs.
fn tokens(args: &Args, device: &Device) -> Result<TokenBatch> {
    let ids = common::synthetic_ids(args.batch, args.seq, 1000);
    Ok(TokenBatch::from_sequences(
        &ids,
        0,
        PaddingSide::Right,
        device,
    )?)
}

fn party_slice(ckpt: &Pretrained, spec: &SliceSpec, device: &Device) -> Result<PartySlice> {
    let model = ckpt.load(spec, TASK, device)?;
    Ok(PartySlice::new(
        model,
        &Trainability::default(),
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
    batch: &TokenBatch,
    labels: &Labels,
    device: &Device,
    steps: usize,
) -> Result<f64> {
    let mut whole = party_slice(ckpt, &SliceSpec::full(ckpt.num_layers()), device)?;
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
    partition: Partition,
    batch: &TokenBatch,
    labels: &Labels,
    (device, model_device): (&Device, &Device),
    steps: usize,
) -> Result<(f64, u64, u64)> {
    let slices = partition.slices(ckpt.num_layers())?;
    let model = ModelParty::new(
        party_slice(ckpt, &slices.model, model_device)?,
        WireDType::F32,
    );
    let (data_end, model_end) = in_process_pair(Limits::default());
    let server = model.spawn(model_end);
    let tail = slices
        .data_tail
        .as_ref()
        .map(|s| party_slice(ckpt, s, device))
        .transpose()?;
    let mut data = DataParty::connect(
        party_slice(ckpt, &slices.data_head, device)?,
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
