//! The main job: split fine-tuning of MiniLM on movie-review sentiment.
//!
//! The data party holds the embeddings, blocks 0–1, blocks 4–5, the pooler and classifier, the
//! sentences and their labels; the model party holds blocks 2–3. Both train LoRA adapters
//! (rank 4, α 32, on `query` and `value`) and the data party its task head, with AdamW. Test
//! accuracy is measured before and after fine-tuning on a held-out tenth of the sentences.
//! The run is `configs/sentiment.toml` (the same as `splitlm train configs/sentiment.toml`);
//! the flags below override it.
//!
//! ```text
//! cargo run --example sentiment                       # split, both parties on the CPU
//! cargo run --example sentiment -- --unsplit          # the same run on the whole model
//! cargo run --example sentiment -- --model-device wgpu
//! ```

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use splitlm::bench::{RunConfig, jobs};
use splitlm::cli::Terminal;
use splitlm::partition::Partition;

#[derive(Parser)]
#[command(about = "Split fine-tuning of MiniLM on movie-review sentiment")]
struct Args {
    /// The data party's device: cpu, flex, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The model party's device (default: the data party's).
    #[arg(long)]
    model_device: Option<String>,
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
    /// Peak learning rate (AdamW, linear decay to 1% of it).
    #[arg(long, default_value_t = 4e-4)]
    lr: f64,
    /// Seed of the split, the shuffling and the adapters.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The JSON-lines file the run's record is appended to.
    #[arg(long, default_value = "results/runs.jsonl")]
    out: PathBuf,
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let mut overrides = vec![
        format!("split.data_device={}", args.device),
        format!("task.train_examples={}", args.train_examples),
        format!("train.epochs={}", args.epochs),
        format!("train.batch_size={}", args.batch_size),
        format!("optimizer.lr={}", args.lr),
        format!("train.seed={}", args.seed),
        format!("output.records={}", args.out.display()),
    ];
    if let Some(device) = &args.model_device {
        overrides.push(format!("split.model_device={device}"));
    }
    let mut config = RunConfig::from_toml(include_str!("../configs/sentiment.toml"), &overrides)?;
    config.name = Some("sentiment".into());
    config.split.partition =
        (!args.unsplit).then(|| Partition::head_body_tail(args.n_head, args.n_tail));
    let outcome = jobs::train(&config, &mut Terminal::new(false))?;
    print!("{}", outcome.table.render());
    Ok(())
}
