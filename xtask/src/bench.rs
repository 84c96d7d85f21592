//! `cargo xtask bench`: the project's benchmarks, each an example of the root crate run with
//! the settings its issue names (the split training step; the same over loopback gRPC and a
//! load of eight clients; the cost of the inversion attacks). Results are appended as JSON lines to
//! `target/bench/results.jsonl` (under `CARGO_TARGET_DIR` when set).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

/// Options of `cargo xtask bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Where the parties compute: cpu, flex, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Build the benchmarks with `--release` (a clean release build of Burn takes ~25 min on
    /// two cores; the default dev profile already runs dependencies at opt-level 3).
    #[arg(long)]
    release: bool,
    /// Timed steps per setting.
    #[arg(long, default_value_t = 5)]
    steps: usize,
}

/// Runs every benchmark.
pub fn run(args: &BenchArgs) -> Result<()> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let out_dir = target.join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let results = out_dir.join("results.jsonl");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut features = String::new();
    for backend in ["cuda", "flex"] {
        if args.device.starts_with(backend) {
            features = format!("--features={backend}");
        }
    }
    let steps = args.steps.to_string();
    let benches: [(&str, &str, Vec<&str>); 3] = [
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
    ];
    for (what, example, settings) in benches {
        let mut command = Command::new(&cargo);
        command.args(["run", "--example", example]);
        if args.release {
            command.arg("--release");
        }
        if !features.is_empty() {
            command.arg(&features);
        }
        command.args(["--", "--device", &args.device]);
        command.args(settings);
        command.arg("--out").arg(&results);
        println!("{what}: {command:?}");
        let status = command.status().context("running cargo")?;
        if !status.success() {
            bail!("the {example} benchmark failed ({status})");
        }
    }
    println!("results appended to {}", results.display());
    Ok(())
}
