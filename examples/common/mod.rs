//! Pieces the benchmark examples share.

use std::path::{Path, PathBuf};

use anyhow::Result;
use splitlm::assets::{self, Asset};

/// `--model` if given, else the MiniLM asset (fetched when missing).
pub fn model_dir(model: Option<&Path>) -> Result<PathBuf> {
    Ok(match model {
        Some(dir) => dir.to_path_buf(),
        None => assets::ensure(Asset::MiniLm)?,
    })
}

/// Deterministic pseudo-random word pieces from `first_id` on, between BERT's [CLS] (101) and
/// [SEP] (102), `rows` sequences of `seq` tokens, no padding: every token costs.
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
