//! Forward throughput of the real demo models on one device: MiniLM encoding a batch of
//! sequences, SmolLM2 loading and decoding with its KV cache.
//!
//! ```text
//! cargo run --example throughput -- --device cpu --batch 32 --seq 128
//! ```

use std::time::Instant;

use anyhow::Result;
use burn::tensor::Device;
use clap::Parser;
use splitlm::assets::{self, Asset};
use splitlm::bert::{BertConfig, BertModel};
use splitlm::device::DeviceSpec;
use splitlm::llama::GgufLlamaSource;
use splitlm::nn::batch::PaddingSide;
use splitlm::nn::generate::{Sampling, generate};
use splitlm::nn::{SliceSpec, TaskHead, TokenBatch, TransformerSlice};
use splitlm::weights::SafetensorsCheckpoint;

#[derive(Parser)]
#[command(about = "Measure forward throughput of MiniLM and SmolLM2")]
struct Args {
    /// Where the models run: cpu, wgpu, wgpu:N or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// MiniLM sequences per batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// MiniLM tokens per sequence.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Timed MiniLM batches (after one warm-up batch).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// SmolLM2 tokens to decode (no stop token).
    #[arg(long, default_value_t = 32)]
    decode_tokens: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.probe()?;
    println!("device: {}", args.device);
    minilm(&device, &args)?;
    smollm2(&device, args.decode_tokens)?;
    Ok(())
}

fn minilm(device: &Device, args: &Args) -> Result<()> {
    let dir = assets::ensure(Asset::MiniLm)?;
    let config = BertConfig::from_dir(&dir)?;
    let weights = SafetensorsCheckpoint::open(&dir)?;
    let spec = SliceSpec::full(config.num_hidden_layers);
    let model = BertModel::load(&weights, &config, &spec, TaskHead::Hidden, device)?;
    // Deterministic pseudo-random ids, [CLS] ... [SEP], no padding: every token costs.
    let ids: Vec<Vec<u32>> = (0..args.batch)
        .map(|b| {
            (0..args.seq)
                .map(|i| match i {
                    0 => 101,
                    i if i + 1 == args.seq => 102,
                    i => 1000 + ((b * 7919 + i * 104_729) % 20_000) as u32,
                })
                .collect()
        })
        .collect();
    let tokens = TokenBatch::from_sequences(&ids, 0, PaddingSide::Right, device)?;
    let run = || -> Result<()> {
        let states = model.forward(&tokens, None)?.hidden().expect("hidden");
        let _ = states.sum().into_scalar::<f32>(); // wait for the device
        Ok(())
    };
    run()?;
    let started = Instant::now();
    for _ in 0..args.repeats {
        run()?;
    }
    let per_batch = started.elapsed().as_secs_f64() / args.repeats as f64;
    println!(
        "MiniLM [{} x {}]: {:.1} ms/batch, {:.0} sequences/s, {:.0} tokens/s",
        args.batch,
        args.seq,
        per_batch * 1e3,
        args.batch as f64 / per_batch,
        (args.batch * args.seq) as f64 / per_batch
    );
    Ok(())
}

fn smollm2(device: &Device, decode_tokens: usize) -> Result<()> {
    assets::ensure(Asset::SmolLm2)?;
    let started = Instant::now();
    let source = GgufLlamaSource::open(&assets::smollm2_gguf())?;
    let model = source.load_model(None, TaskHead::CausalLm, device)?;
    println!(
        "SmolLM2 load (GGUF dequantisation included): {:.2?}",
        started.elapsed()
    );
    let prompt: Vec<u32> = (0..32).map(|i| 1000 + i * 37).collect();
    let generation = generate(
        &model,
        &prompt,
        &Sampling::greedy(decode_tokens, &[]),
        device,
    )?;
    println!(
        "SmolLM2 prompt of {} tokens: {:.2?}; decoding: {:.1} tokens/s",
        prompt.len(),
        generation.prefill,
        generation.decode_rate().unwrap_or(0.0)
    );
    Ok(())
}
