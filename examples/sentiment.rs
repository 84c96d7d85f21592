//! The main job: split fine-tuning of MiniLM on movie-review sentiment.
//!
//! The data party holds the embeddings, blocks 0–1, blocks 4–5, the pooler and classifier, the
//! sentences and their labels; the model party holds blocks 2–3. Both train LoRA adapters
//! (rank 4, α 32, on `query` and `value`) and the data party its task head, with AdamW. Test
//! accuracy is measured before and after fine-tuning on a held-out tenth of the sentences.
//!
//! ```text
//! cargo run --example sentiment                       # split, both parties on the CPU
//! cargo run --example sentiment -- --unsplit          # the same run on the whole model
//! cargo run --example sentiment -- --model-device wgpu
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use splitlm::assets::{self, Asset};
use splitlm::device::DeviceSpec;
use splitlm::nn::batch::PaddingSide;
use splitlm::nn::{SliceSpec, TaskHead};
use splitlm::partition::{LoraSettings, Partition, Trainability};
use splitlm::party::{
    DataParty, LrSchedule, ModelParty, OptimizerConfig, PartyOptions, PartySlice,
};
use splitlm::protocol::{Limits, WireDType, in_process_pair};
use splitlm::tasks::train::{
    ClassificationScores, FitConfig, Learner, Whole, evaluate_classification, fit,
};
use splitlm::tasks::{Encoder, sentiment};
use splitlm::zoo::Checkpoint;

#[derive(Parser)]
#[command(about = "Split fine-tuning of MiniLM on movie-review sentiment")]
struct Args {
    /// The data party's device: cpu, flex, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// The model party's device (default: the data party's).
    #[arg(long)]
    model_device: Option<DeviceSpec>,
    /// Train the whole model in one place instead (the unsplit baseline).
    #[arg(long)]
    unsplit: bool,
    /// Blocks of the data party's head and tail.
    #[arg(long, default_value_t = 2)]
    n_head: usize,
    #[arg(long, default_value_t = 2)]
    n_tail: usize,
    /// Training sentences used (of 9,511); 0 = all.
    #[arg(long, default_value_t = 4000)]
    train_examples: usize,
    /// Passes over the training sentences.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Sentences per step.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Longest sentence in tokens (longer ones are truncated).
    #[arg(long, default_value_t = 64)]
    max_len: usize,
    /// Peak learning rate (AdamW, linear decay to 1% of it).
    #[arg(long, default_value_t = 4e-4)]
    lr: f64,
    /// Seed of the split, the shuffling and the adapters.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

const TASK: TaskHead = TaskHead::SequenceClassification { num_labels: 2 };

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let started = Instant::now();
    let minilm = assets::ensure(Asset::MiniLm)?;
    assets::ensure(Asset::Sentiment)?;
    let (mut train, test) = sentiment::binary_split(&assets::movie_reviews(), 0.1, args.seed)?;
    if args.train_examples > 0 {
        train.truncate(args.train_examples);
    }
    let encoder = Encoder::from_file(
        &minilm.join("tokenizer.json"),
        args.max_len,
        PaddingSide::Right,
    )?;
    let ckpt = Checkpoint::open(&minilm)?;
    let fit_config = FitConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        seed: args.seed,
    };
    let steps = fit_config.steps_for(train.len());
    let optimizer = OptimizerConfig {
        lr: args.lr,
        schedule: LrSchedule::Linear { end_factor: 0.01 },
        ..OptimizerConfig::default()
    };
    let lora = Trainability::lora(LoraSettings::default());
    let data_device = args.device.probe()?.autodiff();
    let slice = |spec: &SliceSpec, device: &Device| -> Result<PartySlice> {
        let model = ckpt.load(spec, TASK, device)?;
        Ok(PartySlice::new(model, &lora, &optimizer, steps, args.seed)?)
    };

    let setting;
    let mut run = if args.unsplit {
        setting = "unsplit".to_string();
        let whole = slice(&SliceSpec::full(ckpt.num_layers()), &data_device)?;
        Run::Whole(Box::new(Whole::new(whole, data_device.clone())))
    } else {
        let partition = Partition::head_body_tail(args.n_head, args.n_tail);
        setting = partition.to_string();
        let slices = partition.slices(ckpt.num_layers())?;
        let model_device = match &args.model_device {
            Some(spec) => spec.probe()?.autodiff(),
            None => data_device.clone(),
        };
        let model = ModelParty::new(slice(&slices.model, &model_device)?, WireDType::F32);
        let (data_end, model_end) = in_process_pair(Limits::default());
        let server = model.spawn(model_end);
        let tail = slices
            .data_tail
            .as_ref()
            .map(|s| slice(s, &data_device))
            .transpose()?;
        let data = DataParty::connect(
            slice(&slices.data_head, &data_device)?,
            tail,
            Box::new(data_end),
            &PartyOptions::default(),
        )?;
        Run::Split {
            data: Box::new(data),
            server,
        }
    };
    println!(
        "MiniLM, {setting}, LoRA r4 α32 on query/value + task head, AdamW lr {:.1e} → {:.1e}; {} train / {} test sentences; {} steps of {}",
        args.lr,
        args.lr * 0.01,
        train.len(),
        test.len(),
        steps,
        args.batch_size
    );

    let before = evaluate_classification(run.learner(), &encoder, &test, 64)?;
    println!(
        "test accuracy before fine-tuning: {:.2}%",
        100.0 * before.accuracy
    );
    let bar = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}")
            .expect("a valid template"),
    );
    let traffic_before = run.traffic();
    let mut recent = Vec::new();
    let report = fit(run.learner(), &encoder, &train, &fit_config, |_, loss| {
        recent.push(loss);
        if recent.len() > 20 {
            recent.remove(0);
        }
        bar.set_message(format!(
            "loss {:.3}",
            recent.iter().sum::<f32>() / recent.len() as f32
        ));
        bar.inc(1);
    })?;
    bar.finish();
    let (sent, received) = match (traffic_before, run.traffic()) {
        (Some(a), Some(b)) => (
            b.bytes_sent - a.bytes_sent,
            b.bytes_received - a.bytes_received,
        ),
        _ => (0, 0),
    };
    let after = evaluate_classification(run.learner(), &encoder, &test, 64)?;

    if let Run::Split { data, server } = run {
        data.finish()?;
        server.join().expect("model party thread")?;
    }
    summary(
        &setting,
        &before,
        &after,
        &report,
        sent,
        received,
        started.elapsed().as_secs_f64(),
    );
    if let Some(path) = &args.out {
        let record = serde_json::json!({
            "job": "sentiment", "model": "all-MiniLM-L6-v2", "setting": setting,
            "seed": args.seed, "train_examples": train.len(), "test_examples": test.len(),
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "accuracy_before": before.accuracy, "accuracy_after": after.accuracy,
            "f1_after": after.f1, "mcc_after": after.mcc,
            "train_seconds": report.seconds, "train_tokens": report.tokens,
            "bytes_sent": sent, "bytes_received": received,
        });
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(file, "{record}")?;
    }
    Ok(())
}

/// The run: a data party with its model party serving on another thread, or the whole model.
enum Run {
    Split {
        data: Box<DataParty>,
        server: std::thread::JoinHandle<
            Result<splitlm::party::SessionReport, splitlm::party::PartyError>,
        >,
    },
    Whole(Box<Whole>),
}

impl Run {
    /// The data party's traffic so far (split runs).
    fn traffic(&self) -> Option<splitlm::protocol::Traffic> {
        match self {
            Run::Split { data, .. } => Some(data.traffic()),
            Run::Whole(_) => None,
        }
    }

    fn learner(&mut self) -> &mut dyn Learner {
        match self {
            Run::Split { data, .. } => data.as_mut(),
            Run::Whole(whole) => whole.as_mut(),
        }
    }
}

fn summary(
    setting: &str,
    before: &ClassificationScores,
    after: &ClassificationScores,
    report: &splitlm::tasks::train::FitReport,
    sent: u64,
    received: u64,
    total_seconds: f64,
) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("\n{:<34} {}", "setting", setting);
    println!(
        "{:<34} {:.2}% → {:.2}%",
        "test accuracy (before → after)",
        100.0 * before.accuracy,
        100.0 * after.accuracy
    );
    println!(
        "{:<34} F1 {:.3}, MCC {:.3}",
        "after fine-tuning", after.f1, after.mcc
    );
    println!(
        "{:<34} {} steps, {} sentences, {} tokens",
        "trained", report.steps, report.examples, report.tokens
    );
    println!(
        "{:<34} {:.1} s ({:.0} tokens/s)",
        "training time",
        report.seconds,
        report.tokens as f64 / report.seconds
    );
    if sent > 0 {
        println!(
            "{:<34} {:.1} MiB sent, {:.1} MiB received ({:.2} / {:.2} MiB per step)",
            "training traffic (data party)",
            mib(sent),
            mib(received),
            mib(sent) / report.steps as f64,
            mib(received) / report.steps as f64
        );
    }
    println!("{:<34} {:.1} s", "total wall time", total_seconds);
}
