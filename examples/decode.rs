//! Benchmark: greedy decoding with a KV cache, the whole model against the split one.
//!
//! SmolLM2-135M (or any causal model directory / GGUF file with `--model`), a fixed prompt of
//! `--prompt` ids, `--new` tokens with no stop token. The split runs over the in-process
//! transport; each party keeps the KV cache of its own blocks, and every step after the prompt
//! sends one position's activations across each cut. Prints the prompt time, the decoding rate
//! (one-position steps per second, the prompt excluded) and the bytes per step; `--workload
//! NAME` ends with the line `cargo xtask bench --peer-python` pairs with the PyTorch peer's.
//!
//! ```text
//! cargo run --example decode -- --device cpu --prompt 32 --new 64
//! ```

mod common;

use std::time::Duration;

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Parser;
use splitlm::device::DeviceSpec;
use splitlm::nn::generate::{Generation, Sampling, generate};
use splitlm::nn::{SliceSpec, TaskHead};
use splitlm::partition::{Partition, Trainability};
use splitlm::party::{DataParty, ModelParty, OptimizerConfig, PartyOptions, PartySlice};
use splitlm::protocol::{Limits, WireDType, in_process_pair};
use splitlm::zoo::Pretrained;

#[derive(Parser)]
#[command(about = "Greedy decoding with a KV cache, whole vs split")]
struct Args {
    /// Where both parties compute: cpu, ndarray, flex, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// `smollm2` (the demo asset), or a causal model directory or GGUF file.
    #[arg(long, default_value = "smollm2")]
    model: String,
    /// Prompt length, tokens (ids 1000, 1037, 1074, …).
    #[arg(long, default_value_t = 32)]
    prompt: u32,
    /// Tokens to generate.
    #[arg(long, default_value_t = 64)]
    new: usize,
    /// Timed generations per setting (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Split with Head–Body–Tail 2/2 (`hbt`) or Head–Tail 2 (`ht`).
    #[arg(long, default_value = "hbt")]
    cut: String,
    /// End with one side-by-side JSON line for this workload name on stdout.
    #[arg(long)]
    workload: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.repeats == 0 || args.new < 2 {
        bail!("--repeats must be at least 1 and --new at least 2 (a decoding rate needs steps)");
    }
    let partition = match args.cut.as_str() {
        "hbt" => Partition::head_body_tail(2, 2),
        "ht" => Partition::head_tail(2),
        other => bail!("unknown cut `{other}`: expected `hbt` or `ht`"),
    };
    let device = args.device.probe()?;
    let ckpt = Pretrained::open(&common::model_path(&args.model)?)?;
    let prompt: Vec<u32> = (0..args.prompt).map(|i| 1000 + i * 37).collect();
    let sampling = Sampling::greedy(args.new, &[]);
    println!(
        "{}: prompt {} tokens, {} new tokens, greedy, KV cache, on {}",
        args.model, args.prompt, args.new, args.device
    );

    let whole = ckpt.load(
        &SliceSpec::full(ckpt.num_layers()),
        TaskHead::CausalLm,
        &device,
    )?;
    let whole_run = median(args.repeats, || {
        Ok(generate(&whole, &prompt, &sampling, &device)?)
    })?;
    drop(whole);
    // Read before the split allocates its own slices: the whole model's footprint.
    let whole_peak = splitlm::bench::resources::peak_rss_mib();
    report("whole", &whole_run);

    let mut data = split(&ckpt, partition, &device)?;
    let mut step_bytes = (0, 0);
    let split_run = median(args.repeats, || {
        let split = data.generate(&prompt, &sampling)?;
        if let Some(step) = split.step_bytes.last() {
            step_bytes = (step.sent, step.received);
        }
        Ok(split.generation)
    })?;
    data.finish()?;
    report(&partition.to_string(), &split_run);
    if whole_run.tokens != split_run.tokens {
        bail!("the split model generated other tokens than the whole one");
    }
    println!(
        "split: {} B sent, {} B received per one-position step",
        step_bytes.0, step_bytes.1
    );

    if let Some(workload) = &args.workload {
        let rate = whole_run.decode_rate().unwrap_or(0.0);
        let split_rate = split_run.decode_rate().unwrap_or(0.0);
        let extra = serde_json::json!({
            "device": args.device.resolve().to_string(),
            "prefill_ms": whole_run.prefill.as_secs_f64() * 1e3,
            "split": {
                "partition": partition.to_string(), "tokens_per_s": split_rate,
                "prefill_ms": split_run.prefill.as_secs_f64() * 1e3,
                "overhead_percent": 100.0 * (rate / split_rate - 1.0),
                "bytes_sent_per_step": step_bytes.0, "bytes_received_per_step": step_bytes.1,
            },
        });
        let line = common::side_by_side_line(workload, rate, "tokens/s", whole_peak, extra);
        println!("{line}");
    }
    Ok(())
}

/// The generation with the median decoding time of `repeats`, after one warm-up.
fn median(repeats: usize, mut run: impl FnMut() -> Result<Generation>) -> Result<Generation> {
    run()?;
    let mut runs = (0..repeats).map(|_| run()).collect::<Result<Vec<_>>>()?;
    runs.sort_by_key(|g| g.decode);
    Ok(runs.swap_remove(repeats / 2))
}

fn report(setting: &str, generation: &Generation) {
    println!(
        "{setting:<24} prompt {:>8.1} ms   decoding {:>6.1} tokens/s",
        ms(generation.prefill),
        generation.decode_rate().unwrap_or(0.0)
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The data party of `partition` over the in-process transport, its model party on a thread.
fn split(ckpt: &Pretrained, partition: Partition, device: &Device) -> Result<DataParty> {
    let slices = partition.slices(ckpt.num_layers())?;
    let frozen = |spec: &SliceSpec| -> Result<PartySlice> {
        let model = ckpt.load(spec, TaskHead::CausalLm, device)?;
        Ok(PartySlice::new(
            model,
            &Trainability::frozen(),
            &OptimizerConfig::default(),
            1,
            0,
        )?)
    };
    let model = ModelParty::new(frozen(&slices.model)?, WireDType::F32);
    let (data_end, model_end) = in_process_pair(Limits::default());
    // The thread ends when the data party finishes the session.
    drop(model.spawn(model_end));
    let tail = slices.data_tail.as_ref().map(&frozen).transpose()?;
    Ok(DataParty::connect(
        frozen(&slices.data_head)?,
        tail,
        Box::new(data_end),
        &PartyOptions::default(),
    )?)
}
