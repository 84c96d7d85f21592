//! The model a run names (`[model] source`): a demo asset fetched into the cache, a Hugging
//! Face directory or a GGUF file, opened once per run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use splitlm_assets::Asset;
use splitlm_zoo::Pretrained;

/// An opened pretrained model.
pub struct OpenedModel {
    /// Its weights and configuration (tensors are read per slice).
    pub checkpoint: Pretrained,
    /// Where it was read from.
    pub path: PathBuf,
    /// Its name in records: the asset name or the path.
    pub name: String,
}

impl OpenedModel {
    /// Opens `source`: a demo asset's name (fetched when missing), a Hugging Face directory or
    /// a GGUF file.
    pub fn open(source: &str) -> Result<Self> {
        let (path, name) = match source.parse::<Asset>() {
            Ok(asset) => {
                let dir = splitlm_assets::ensure(asset)
                    .with_context(|| format!("fetching the {asset} asset"))?;
                let path = match asset {
                    Asset::SmolLm2 => splitlm_assets::smollm2_gguf(),
                    Asset::MiniLm => dir,
                    other => anyhow::bail!("model.source = \"{other}\" is a dataset, not a model"),
                };
                (path, asset.name().to_string())
            }
            Err(_) => (PathBuf::from(source), source.to_string()),
        };
        let checkpoint = Pretrained::open(&path)
            .with_context(|| format!("model.source = \"{source}\" ({})", path.display()))?;
        Ok(Self {
            checkpoint,
            path,
            name,
        })
    }

    /// Its tokenizer.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        Ok(self.checkpoint.tokenizer()?)
    }
}
