//! Benchmark: wall time per attacked sample of the white-box inversions (VMI, RWI) against the
//! head of split MiniLM (Head–Body–Tail 2/2, the example grid's cut), with the reference's
//! default settings, on one device.
//!
//! The model party records the first training step of a batch of `--samples` sequences of
//! `--seq` tokens; each attack then inverts every recorded sample. Prints seconds per sample
//! and the recall reached; `--out` appends JSON lines.
//!
//! ```text
//! cargo xtask bench                         # runs this (and split_step) on the CPU
//! cargo run --example attack_cost -- --device cpu --samples 4 --seq 32
//! ```

mod common;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use splitlm::attacks::score::{self, Truth};
use splitlm::attacks::{AttackConfig, AttackerView, HeadVersion, Prior, RwiSettings, VmiSettings};
use splitlm::device::DeviceSpec;
use splitlm::nn::batch::PaddingSide;
use splitlm::nn::{Labels, TaskHead, TokenBatch};
use splitlm::partition::Partition;
use splitlm::party::{DataParty, ModelParty, ObservationLimits, PartyOptions, PartySlice};
use splitlm::protocol::{Limits, WireDType, in_process_pair};
use splitlm::zoo::Pretrained;

#[derive(Parser)]
#[command(about = "Seconds per attacked sample of VMI and RWI against split MiniLM")]
struct Args {
    /// Where the parties and the attacks compute: cpu, flex, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// A BERT-family model directory (default: the MiniLM asset).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Samples attacked.
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Tokens per sample.
    #[arg(long, default_value_t = 32)]
    seq: usize,
    /// Append one JSON line per attack to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

const TASK: TaskHead = TaskHead::SequenceClassification { num_labels: 2 };

fn main() -> Result<()> {
    let args = Args::parse();
    let device = args.device.probe()?.autodiff();
    let dir = common::model_dir(args.model.as_deref())?;
    let ckpt = Pretrained::open(&dir)?;
    let slices = Partition::head_body_tail(2, 2).slices(ckpt.num_layers())?;
    let frozen =
        |spec| -> Result<PartySlice> { Ok(PartySlice::frozen(ckpt.load(spec, TASK, &device)?)?) };
    let model = ModelParty::new(frozen(&slices.model)?, WireDType::F32);
    model.observe(ObservationLimits {
        from_step: 0,
        steps: 1,
        max_samples: args.samples,
        ..ObservationLimits::default()
    });
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let tail = slices.data_tail.as_ref().map(frozen).transpose()?;
    let mut data = DataParty::connect(
        frozen(&slices.data_head)?,
        tail,
        Box::new(a),
        &PartyOptions::default(),
    )?;
    let ids = common::synthetic_ids(args.samples, args.seq, 2000);
    let batch = TokenBatch::from_sequences(&ids, 0, PaddingSide::Right, &device)?;
    let labels = Labels::Classes(Tensor::<1, Int>::from_data(
        TensorData::new(vec![0i64; args.samples], [args.samples]),
        &device,
    ));
    data.train_step(&batch, &labels)?;
    data.finish()?;
    server.join().expect("model party thread")?;
    let view = AttackerView::of(&model);
    let prior = Prior::white_box(
        ckpt.load(&slices.data_head, TASK, &device)?,
        HeadVersion::Pretrained,
    );
    let truth = Truth {
        tokens: ids,
        labels: Vec::new(),
    };
    println!(
        "white-box inversion of MiniLM's 2-block head, {} samples x {} tokens, device {}",
        args.samples, args.seq, args.device
    );
    let mut lines = Vec::new();
    for attack in [
        AttackConfig::Vmi(VmiSettings::default()),
        AttackConfig::Rwi(RwiSettings::default()),
    ] {
        let started = Instant::now();
        let inferred = attack.build().run(&view, &prior, &device)?.inferred;
        let seconds = started.elapsed().as_secs_f64();
        let ap = score::score(attack.name(), &inferred, &truth, |_| String::new())?.ap();
        let per_sample = seconds / args.samples as f64;
        println!(
            "{:<4} {:>8.2} s per sample  ({seconds:.1} s in all, recall {ap:.3}) {}",
            attack.name(),
            per_sample,
            serde_json::to_string(&attack)?
        );
        lines.push(serde_json::json!({
            "bench": "attack_cost", "attack": attack, "device": args.device.to_string(),
            "samples": args.samples, "seq": args.seq, "seconds_per_sample": per_sample,
            "recall": ap,
        }));
    }
    if let Some(path) = &args.out {
        for line in &lines {
            splitlm::bench::records::append(path, line)?;
        }
    }
    Ok(())
}
