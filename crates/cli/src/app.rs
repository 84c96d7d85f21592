//! The `splitlm` command: split fine-tuning, evaluation and generation from a TOML
//! configuration (the binary is the root package's `src/bin/splitlm.rs`).
//!
//! ```text
//! splitlm train configs/sentiment.toml
//! splitlm train configs/sentiment.toml --set split.model_device=wgpu --set train.epochs=2
//! splitlm eval configs/sentiment.toml --checkpoint runs/sentiment
//! splitlm generate configs/smollm2-chat.toml "What is the capital of France?"
//! splitlm grid configs/grid-sentiment.toml
//! splitlm report results/grid.jsonl --plot results/grid.svg
//! splitlm check configs/sentiment.toml --set train.epochs=2
//! splitlm import-vflair sst2_gpt_wo.json --out configs/sst2-gpt2.toml
//! splitlm assets
//! splitlm keys --out keys
//! splitlm serve configs/sentiment.toml --listen 0.0.0.0:7070 --state state --tls keys
//! splitlm train configs/sentiment.toml --connect https://gpu-host:7070 --tls keys
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use splitlm_assets::Asset;
use splitlm_bench::{RunConfig, jobs, records, report};

use crate::progress::Terminal;
use crate::vflair::{ImportOptions, import_file};
use crate::{check, files};

#[derive(Parser)]
#[command(
    name = "splitlm",
    version,
    about = "Split learning for large language models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The run's TOML configuration (see configs/).
    config: PathBuf,
    /// Overrides a configuration value, e.g. `--set train.epochs=2` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// No progress bar or intermediate lines, only the final table.
    #[arg(long)]
    quiet: bool,
    /// Run the data party here against the model party served at this address
    /// (`https://HOST:PORT`; see `splitlm serve`). Without it both parties run in this process.
    #[arg(long, value_name = "URL")]
    connect: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(clap::Args)]
struct TlsArgs {
    /// A directory with ca.pem and this party's certificate and key (as `splitlm keys` writes).
    #[arg(long, value_name = "DIR")]
    tls: Option<PathBuf>,
    /// Plaintext HTTP/2 without TLS, on a loopback address only.
    #[arg(long)]
    insecure: bool,
}

impl TlsArgs {
    fn apply(&self, config: &mut RunConfig) {
        if let Some(dir) = &self.tls {
            config.network.tls = Some(dir.clone());
        }
        config.network.insecure |= self.insecure;
    }
}

#[derive(Subcommand)]
enum Command {
    /// Fine-tune the configured model on the configured task.
    Train(ConfigArgs),
    /// Score the configured model (or a saved checkpoint) on the task's held-out set.
    Eval {
        #[command(flatten)]
        args: ConfigArgs,
        /// A checkpoint directory, or a checkpoint root (its latest is used).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Generate answers through the split model.
    Generate {
        #[command(flatten)]
        args: ConfigArgs,
        /// The prompts (a chat template is applied when the tokenizer has one).
        #[arg(required = true)]
        prompts: Vec<String>,
        /// Send the prompts as written, without the chat template.
        #[arg(long)]
        raw: bool,
        /// Also generate with the whole model and report whether the tokens agree.
        #[arg(long)]
        compare_unsplit: bool,
        /// A checkpoint directory, or a checkpoint root, to restore trained state from.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Train and attack once per defense setting of the configuration's [grid], then report.
    Grid {
        #[command(flatten)]
        args: ConfigArgs,
        /// Apply the grid's `full` overrides first: the reference's sizes instead of the
        /// smaller default ones (see the configuration's [grid] full).
        #[arg(long)]
        full: bool,
    },
    /// The MP / AP / DCS table of an experiment's records, and its MP–AP plot.
    Report {
        /// The JSON-lines records file.
        records: PathBuf,
        /// The experiment (run name; default: that of the last training record).
        #[arg(long)]
        experiment: Option<String>,
        /// Write the MP–AP plot (SVG) here.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Validate a configuration without running it and print it fully resolved as TOML
    /// (every default filled in, each attack's and defense's parameters included).
    Check {
        /// The run's TOML configuration.
        config: PathBuf,
        /// Overrides a configuration value, e.g. `--set train.epochs=2` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Turn a VFLAIR-LLM configuration (its configs/llm_configs/…/*.json) into a splitlm one,
    /// refusing by name what has no equivalent; the result is checked as by `check`.
    ImportVflair {
        /// The reference's JSON configuration.
        file: PathBuf,
        /// Write the TOML here (atomically) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing --out file.
        #[arg(long, requires = "out")]
        force: bool,
        /// `model.source` to write instead of the reference's model path (a demo asset, a
        /// Hugging Face directory or a GGUF file).
        #[arg(long)]
        model: Option<String>,
        /// Leave out the attacks and defenses that have no equivalent (listed in the header)
        /// instead of refusing the file.
        #[arg(long)]
        drop_unsupported: bool,
    },
    /// Serve the model party of a configuration to data parties on other machines
    /// (`splitlm train CONFIG --connect https://HOST:PORT`), each session with its own state.
    Serve {
        /// The run's TOML configuration (the same file the data party uses).
        config: PathBuf,
        /// Overrides a configuration value, e.g. `--set split.model_device=cuda` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// The address to listen on, HOST:PORT (port 0: any free port).
        #[arg(long, value_name = "HOST:PORT")]
        listen: std::net::SocketAddr,
        /// Where sessions' saved states and records go (kept across restarts).
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Make a CA and a server and a client certificate for trying mutual TLS out.
    Keys {
        /// The directory to write ca.pem, server.pem, server.key, client.pem, client.key into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A name or address the server certificate is valid for (repeatable; default:
        /// localhost, 127.0.0.1, ::1).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// The client certificate's common name (the identity the model party records).
        #[arg(long, default_value = "splitlm data party")]
        client_name: String,
        /// Replace keys already in the directory.
        #[arg(long)]
        force: bool,
    },
    /// Fetch the demo assets (models and datasets) into the cache.
    Assets {
        /// Only these assets (default: all).
        names: Vec<Asset>,
    },
}

fn load(args: &ConfigArgs) -> anyhow::Result<RunConfig> {
    let mut config = RunConfig::load(&args.config, &args.overrides)?;
    if let Some(url) = &args.connect {
        config.network.connect = Some(url.clone());
    }
    args.tls.apply(&mut config);
    Ok(config)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let table = match cli.command {
        Command::Train(args) => jobs::train(&load(&args)?, &mut Terminal::new(args.quiet))?.table,
        Command::Eval { args, checkpoint } => {
            jobs::evaluate(&load(&args)?, checkpoint.as_deref())?.table
        }
        Command::Generate {
            args,
            prompts,
            raw,
            compare_unsplit,
            checkpoint,
        } => {
            jobs::generate(
                &load(&args)?,
                &prompts,
                raw,
                compare_unsplit,
                checkpoint.as_deref(),
            )?
            .table
        }
        Command::Grid { mut args, full } => {
            if full {
                let grid = load(&args)?.grid.map(|g| g.full).unwrap_or_default();
                anyhow::ensure!(
                    !grid.is_empty(),
                    "--full: the configuration's [grid] has no `full` overrides"
                );
                // The command line's own --set still wins.
                args.overrides = grid.into_iter().chain(args.overrides).collect();
            }
            let done = jobs::grid(&load(&args)?, &mut Terminal::new(args.quiet))?;
            print!("{}", done.report.table());
            println!("plot: {}", done.plot.display());
            return Ok(());
        }
        Command::Report {
            records,
            experiment,
            plot,
        } => {
            let all = records::read(&records)?;
            let report = report::build(&all, experiment.as_deref())?;
            print!("{}", report.table());
            if let Some(path) = plot {
                report.plot(&path)?;
                println!("plot: {}", path.display());
            }
            return Ok(());
        }
        Command::Check { config, overrides } => {
            print!("{}", check::check(&config, &overrides)?);
            return Ok(());
        }
        Command::ImportVflair {
            file,
            out,
            force,
            model,
            drop_unsupported,
        } => {
            let options = ImportOptions {
                model,
                drop_unsupported,
            };
            let imported = import_file(&file, &options)?;
            match out {
                None => print!("{}", imported.toml),
                Some(path) => {
                    files::write_atomically(&path, &imported.toml, force)?;
                    println!("wrote {}", path.display());
                    for todo in &imported.todos {
                        println!("TODO: {todo}");
                    }
                    for dropped in &imported.dropped {
                        println!("dropped: {dropped}");
                    }
                }
            }
            return Ok(());
        }
        Command::Serve {
            config,
            overrides,
            listen,
            state,
            tls,
        } => {
            let mut config = RunConfig::load(&config, &overrides)?;
            tls.apply(&mut config);
            let options = splitlm_net::ServeOptions {
                listen,
                state,
                network: config.network.clone(),
            };
            splitlm_bench::remote::serve(&config, options, |bound| {
                use std::io::Write;
                println!("listening on {bound}");
                let _ = std::io::stdout().flush();
            })?;
            return Ok(());
        }
        Command::Keys {
            out,
            hosts,
            client_name,
            force,
        } => {
            let mut options = splitlm_net::keys::KeyOptions {
                client_name,
                ..Default::default()
            };
            if !hosts.is_empty() {
                options.hosts = hosts;
            }
            for path in splitlm_net::keys::generate(&out, &options, force)? {
                println!("wrote {}", path.display());
            }
            return Ok(());
        }
        Command::Assets { names } => {
            let names = if names.is_empty() {
                Asset::all().to_vec()
            } else {
                names
            };
            let mut failed = false;
            splitlm_assets::ensure_all(&names, |asset, result| match result {
                Ok(path) => println!("{asset:<12} {}", path.display()),
                Err(e) => {
                    failed = true;
                    eprintln!("{asset:<12} failed: {e}");
                }
            });
            anyhow::ensure!(!failed, "some assets could not be fetched");
            return Ok(());
        }
    };
    print!("{}", table.render());
    Ok(())
}

/// Parses the command line, runs the command, prints errors; the binary's `main`.
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
