//! Pieces the benchmark examples share.

use std::path::{Path, PathBuf};

use anyhow::Result;
use splitlm::assets::{self, Asset};

/// `--model` if given, else the MiniLM asset (fetched when missing).
#[allow(dead_code)] // not every example that shares this module takes a model directory
pub fn model_dir(model: Option<&Path>) -> Result<PathBuf> {
    Ok(match model {
        Some(dir) => dir.to_path_buf(),
        None => assets::ensure(Asset::MiniLm)?,
    })
}

/// A model named on the command line: `minilm` or `smollm2` (the demo assets, fetched when
/// missing), or a model directory / `.gguf` file.
#[allow(dead_code)]
pub fn model_path(name: &str) -> Result<PathBuf> {
    Ok(match name {
        "minilm" => assets::ensure(Asset::MiniLm)?,
        "smollm2" => {
            assets::ensure(Asset::SmolLm2)?;
            assets::smollm2_gguf()
        }
        path => PathBuf::from(path),
    })
}

/// One JSON line in the side-by-side format that `cargo xtask bench --peer-python` pairs with
/// the PyTorch peer's (`xtask/peers/peer.py`): `workload`, `impl`, `value`, `unit`,
/// `peak_rss_mib`, `threads`, and whatever else the example measured.
#[allow(dead_code)]
pub fn side_by_side_line(
    workload: &str,
    value: f64,
    unit: &str,
    peak_rss_mib: Option<f64>,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut line = serde_json::json!({
        "workload": workload,
        "impl": "splitlm",
        "value": value,
        "unit": unit,
        "peak_rss_mib": peak_rss_mib,
        "threads": std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    });
    if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
        line.extend(extra);
    }
    line
}

/// Deterministic pseudo-random word pieces from `first_id` on, between BERT's [CLS] (101) and
/// [SEP] (102), `rows` sequences of `seq` tokens, no padding: every token costs.
#[allow(dead_code)]
pub fn synthetic_ids(rows: usize, seq: usize, first_id: u32) -> Vec<Vec<u32>> {
    (0..rows)
        .map(|b| {
            (0..seq)
                .map(|i| match i {
                    0 => 101,
                    i if i + 1 == seq => 102,
                    i => first_id + ((b * 7919 + i * 104_729) % 20_000) as u32,
                })
                .collect()
        })
        .collect()
}
