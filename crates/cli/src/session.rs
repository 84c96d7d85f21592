//! From a configuration to a running learner: the model opened, cut, each slice on its party's
//! device with its trainability and optimizer, the parties connected in this process.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::tensor::Device;
use splitlm_assets::Asset;
use splitlm_defenses::DefenseConfig;
use splitlm_nn::{SliceSpec, TaskHead};
use splitlm_party::{DataParty, ModelParty, PartySlice};
use splitlm_protocol::{Limits, in_process_pair};
use splitlm_tasks::train::{Learner, Split, Whole};
use splitlm_zoo::Checkpoint;

use crate::config::RunConfig;

/// An opened model.
pub struct Model {
    /// The checkpoint (tensors are read per slice).
    pub checkpoint: Checkpoint,
    /// Where it was read from.
    pub path: PathBuf,
    /// Its name in records: the asset name or the path.
    pub name: String,
}

/// Opens `source`: a demo asset's name (fetched when missing), a Hugging Face directory or a
/// GGUF file.
pub fn open_model(source: &str) -> Result<Model> {
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
    let checkpoint = Checkpoint::open(&path)
        .with_context(|| format!("model.source = \"{source}\" ({})", path.display()))?;
    Ok(Model {
        checkpoint,
        path,
        name,
    })
}

/// A learner: the split model (both parties here) or the whole model.
pub enum Run {
    /// Data party and model party.
    Split(Box<Split>),
    /// The unsplit baseline.
    Whole(Box<Whole>),
}

impl Run {
    /// The learner to train, evaluate and generate with.
    pub fn learner(&mut self) -> &mut dyn Learner {
        match self {
            Run::Split(split) => split.as_mut(),
            Run::Whole(whole) => whole.as_mut(),
        }
    }

    /// The split model, when the run is split.
    pub fn split_mut(&mut self) -> Option<&mut Split> {
        match self {
            Run::Split(split) => Some(split.as_mut()),
            Run::Whole(_) => None,
        }
    }

    /// Ends the session (split runs).
    pub fn finish(self) -> Result<()> {
        if let Run::Split(split) = self {
            split.finish()?;
        }
        Ok(())
    }
}

/// The learner `config` describes for `task`, its learning-rate schedule spanning
/// `total_steps`, and a one-line description of the setting.
pub fn build(
    config: &RunConfig,
    model: &Model,
    task: TaskHead,
    total_steps: usize,
) -> Result<(Run, String)> {
    let ckpt = &model.checkpoint;
    let seed = config.train.seed;
    let data_device = config.split.data_device()?.probe()?.autodiff();
    let slice = |spec: &SliceSpec, device: &Device| -> Result<PartySlice> {
        let loaded = ckpt.load(spec, task, device)?;
        Ok(PartySlice::new(
            loaded,
            &config.finetune,
            &config.optimizer,
            total_steps.max(1),
            seed,
        )?)
    };
    let Some(partition) = config.split.partition else {
        let whole = slice(&SliceSpec::full(ckpt.num_layers()), &data_device)?;
        return Ok((
            Run::Whole(Box::new(Whole::new(whole, data_device))),
            "unsplit".into(),
        ));
    };
    let slices = partition
        .slices(ckpt.num_layers())
        .context("split.partition")?;
    let model_device = config.split.model_device()?.probe()?.autodiff();
    let body = slice(&slices.model, &model_device)?;
    let model_party = ModelParty::new(body, config.split.data_party.wire_dtype);
    let (data_end, model_end) = in_process_pair(Limits::default());
    let server = model_party.spawn(model_end);
    let tail = slices
        .data_tail
        .as_ref()
        .map(|s| slice(s, &data_device))
        .transpose()?;
    let mut data = DataParty::connect(
        slice(&slices.data_head, &data_device)?,
        tail,
        Box::new(data_end),
        &config.split.data_party,
    )?;
    data.set_defenses(DefenseConfig::build_all(&config.defenses, seed)?);
    Ok((
        Run::Split(Box::new(Split::new(data, model_party, server))),
        partition.to_string(),
    ))
}
