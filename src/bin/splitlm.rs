//! `splitlm`: split fine-tuning, evaluation and generation from a TOML configuration.
//! `splitlm --help` lists the commands; `configs/` holds example configurations.

fn main() -> std::process::ExitCode {
    splitlm::cli::app::main()
}
