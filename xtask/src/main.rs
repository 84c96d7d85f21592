//! `cargo xtask`: developer tasks for the splitlm workspace.

mod assets;

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
    /// Run the benchmarks (not built yet).
    Bench {
        /// Arguments for the benchmarks.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
        Command::Bench { .. } => {
            eprintln!("not built yet: see issue 3");
            ExitCode::from(2)
        }
    }
}
