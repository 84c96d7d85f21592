//! `cargo xtask bench`: the project's benchmarks, each an example of the root crate run with
//! the settings its issue names:
//! - `split_step`: the split training step against the unsplit one;
//! - `grpc_step`: the same over loopback gRPC, and a load of eight clients;
//! - `attack_cost`: the cost of the inversion attacks;
//! - `side_by_side`: every workload against a PyTorch peer ([`crate::side_by_side`]);
//! - `scaling`: how step time, bytes and each party's memory grow (plots in `docs/`).
//!
//! The examples are built once, then run from the target directory. Results are appended as
//! JSON lines under `target/bench/` (under `CARGO_TARGET_DIR` when set).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::side_by_side;

/// Options of `cargo xtask bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Where the parties compute: cpu, ndarray, flex, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Build the benchmarks with `--release` (a clean release build of Burn takes ~25 min on
    /// two cores; the default dev profile already runs dependencies at opt-level 3).
    #[arg(long)]
    release: bool,
    /// Timed steps per setting.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// A Python with torch, transformers and peft (xtask/peers/requirements.txt) to run the
    /// PyTorch side of `side_by_side`; without it that side is skipped.
    #[arg(long, value_name = "PATH")]
    peer_python: Option<PathBuf>,
    /// Threads for both sides of `side_by_side` (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Alternating (splitlm, PyTorch) rounds per side-by-side workload; the best of each counts.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Run only these benchmarks (split_step, grpc_step, attack_cost, side_by_side, scaling)
    /// or side-by-side workloads (minilm_step_16x64_full, …, main_job), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

const SECTIONS: [&str; 5] = [
    "split_step",
    "grpc_step",
    "attack_cost",
    "side_by_side",
    "scaling",
];

/// Runs the selected benchmarks.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.rounds == 0 || args.steps == 0 {
        bail!("--rounds and --steps must be at least 1");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let out_dir = target.join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let binaries = target.join(if args.release { "release" } else { "debug" });
    let (sections, workloads): (Vec<String>, Vec<String>) = args
        .only
        .iter()
        .cloned()
        .partition(|name| SECTIONS.contains(&name.as_str()));
    let wanted = |section: &str| {
        args.only.is_empty()
            || sections.iter().any(|s| s == section)
            || (section == "side_by_side" && !workloads.is_empty())
    };
    let needed: Vec<&str> = SECTIONS
        .iter()
        .copied()
        .filter(|s| wanted(s))
        .flat_map(|section| match section {
            "side_by_side" => vec!["split_step", "decode"],
            example => vec![example],
        })
        .collect();
    build(args, &needed, wanted("side_by_side"))?;

    let results = out_dir.join("results.jsonl");
    let steps = args.steps.to_string();
    let examples: [(&str, &str, Vec<&str>); 4] = [
        (
            "split vs unsplit training step (MiniLM, 16 x 64)",
            "split_step",
            vec!["--batch", "16", "--seq", "64", "--steps", &steps],
        ),
        (
            "the split step over loopback gRPC with mutual TLS vs in one process; 8 clients at once",
            "grpc_step",
            vec![
                "--batch",
                "16",
                "--seq",
                "64",
                "--steps",
                &steps,
                "--clients",
                "8",
            ],
        ),
        (
            "seconds per attacked sample, VMI and RWI (MiniLM head of 2 blocks, 32 tokens)",
            "attack_cost",
            vec!["--samples", "4", "--seq", "32"],
        ),
        (
            "how cost grows with batch, sequence, cut and model size (random-weight Llama shapes)",
            "scaling",
            vec!["--sweep", "all", "--plot", "docs"],
        ),
    ];
    for (what, example, settings) in examples {
        if !wanted(example) {
            continue;
        }
        let out = match example {
            "scaling" => out_dir.join("scaling.jsonl"),
            _ => results.clone(),
        };
        let mut command = Command::new(binaries.join("examples").join(example));
        command.args(["--device", &args.device]);
        command.args(settings);
        command.arg("--out").arg(&out);
        println!("{what}: {command:?}");
        let status = command.status().context("running the benchmark")?;
        if !status.success() {
            bail!("the {example} benchmark failed ({status})");
        }
        println!("results appended to {}", out.display());
    }

    if wanted("side_by_side") {
        let out = out_dir.join("side_by_side.jsonl");
        // Absolute, since the peer runs from the workspace root.
        let peer_python = match &args.peer_python {
            Some(path) if path.components().count() > 1 => Some(
                std::path::absolute(path)
                    .with_context(|| format!("resolving {}", path.display()))?,
            ),
            other => other.clone(),
        };
        let settings = side_by_side::Settings {
            peer_python,
            threads: args
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            rounds: args.rounds,
            steps: args.steps,
            device: args.device.clone(),
            binaries: binaries.clone(),
            only: workloads,
        };
        side_by_side::run(&settings, &out)?;
        println!("comparisons appended to {}", out.display());
    }
    Ok(())
}

/// Builds the `examples` (and the `splitlm` binary if `binary`), with the device's feature.
fn build(args: &BenchArgs, examples: &[&str], binary: bool) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command.arg("build");
    if binary {
        command.args(["--bin", "splitlm"]);
    }
    for example in examples {
        command.args(["--example", example]);
    }
    if args.release {
        command.arg("--release");
    }
    if let Some(feature) = device_feature(&args.device) {
        command.arg(format!("--features={feature}"));
    }
    println!("building the benchmarks: {command:?}");
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("building the benchmarks failed ({status})");
    }
    Ok(())
}

/// The Cargo feature a device needs beyond the default ones (flex, ndarray, wgpu).
fn device_feature(device: &str) -> Option<&'static str> {
    device.starts_with("cuda").then_some("cuda")
}

/// The workspace root: benchmarks read `configs/` and `xtask/peers/` relative to it.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
}
