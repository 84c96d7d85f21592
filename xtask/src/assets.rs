//! `cargo xtask assets`: fetch the demo models and data into the asset cache. Assets that
//! come from one distribution (`squad-dev` and `e2e-nlg`: BIG-bench's source archive) share
//! a single download.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use splitlm_assets::{ArchiveKind, Asset, assets_dir, disk_usage, ensure_all, locate};

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
    let present: Vec<bool> = selected.iter().map(|&a| locate(a).is_some()).collect();
    let mut failed = Vec::new();
    let mut start = Instant::now();
    ensure_all(selected, |asset, result| {
        // Time since the previous asset finished: a shared download counts for the first.
        let elapsed = start.elapsed().as_secs_f64();
        let status = match selected.iter().position(|&a| a == asset) {
            Some(i) if present[i] => "present",
            _ => "fetched",
        };
        let reported = result
            .map_err(anyhow::Error::from)
            .and_then(|dir| report(asset, status, &dir, elapsed));
        if let Err(e) = reported {
            log::error!("{e:#}");
            failed.push(asset.name());
        }
        start = Instant::now();
    });
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

fn report(asset: Asset, status: &str, dir: &Path, seconds: f64) -> Result<()> {
    let size = disk_usage(dir).with_context(|| format!("measuring {}", dir.display()))?;
    println!(
        "{:<10} {:<8} {}  {}  {:.1}s",
        asset.name(),
        status,
        dir.display(),
        human_size(size),
        seconds
    );
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    format!("{:.1} MiB ({bytes} bytes)", bytes as f64 / MIB)
}
