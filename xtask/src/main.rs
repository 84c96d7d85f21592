//! `cargo xtask`: developer tasks for the splitlm workspace.

mod assets;
mod bench;
mod side_by_side;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer tasks for the splitlm workspace.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch and verify the demo models and data into the asset cache (no-op when present).
    Assets(assets::AssetsArgs),
    /// Run the benchmarks (and the PyTorch peer side by side) and append their results under
    /// target/bench/.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    match Cli::parse().command {
        Command::Assets(args) => match assets::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => match bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
