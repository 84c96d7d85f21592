//! From settings to a running learner: the pretrained model cut by the partition, each slice on
//! its party's device with its trainability and optimizer, the parties connected in this
//! process (or the whole model in one place).

use burn::tensor::Device;
use splitlm_defenses::DefenseConfig;
use splitlm_device::DeviceSpec;
use splitlm_nn::{SliceSpec, TaskHead};
use splitlm_partition::PartySlices as Slices;
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{DataParty, Handshake, ModelParty, OptimizerConfig, PartyOptions, PartySlice};
use splitlm_protocol::{Limits, Transport, in_process_pair};
use splitlm_tasks::Predictor;
use splitlm_zoo::AnyModel;
use splitlm_zoo::Pretrained;

use crate::defense_env::{DefenseData, defense_env};
use crate::error::TrainError;
use crate::learner::{Connect, Learner, Split, Whole};

/// The cut and the devices (the `[split]` table of a run configuration).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// Head–Tail or Head–Body–Tail; absent trains the whole model in one place (the unsplit
    /// baseline).
    pub partition: Option<Partition>,
    /// The data party's device: `cpu`, `ndarray`, `flex`, `wgpu[:N]`, `cuda[:N]`.
    pub data_device: String,
    /// The model party's device (default: the data party's).
    pub model_device: Option<String>,
    /// The data party's session settings (wire dtype).
    pub data_party: PartyOptions,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            partition: None,
            data_device: "cpu".into(),
            model_device: None,
            data_party: PartyOptions::default(),
        }
    }
}

impl SplitConfig {
    /// The data party's device.
    pub fn data_device(&self) -> Result<DeviceSpec, TrainError> {
        parse_device("split.data_device", &self.data_device)
    }

    /// The model party's device.
    pub fn model_device(&self) -> Result<DeviceSpec, TrainError> {
        match &self.model_device {
            Some(d) => parse_device("split.model_device", d),
            None => self.data_device(),
        }
    }
}

/// `value` as a device, or an error naming `key`.
pub fn parse_device(key: &str, value: &str) -> Result<DeviceSpec, TrainError> {
    value.parse().map_err(|e| TrainError::Invalid {
        key: key.into(),
        detail: format!("\"{value}\": {e}"),
    })
}

/// Everything [`build`] needs besides the model: where each party runs, what trains and how.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// The cut and the devices.
    pub split: &'a SplitConfig,
    /// What trains, on every slice.
    pub finetune: &'a Trainability,
    /// Each party's optimizer.
    pub optimizer: &'a OptimizerConfig,
    /// The data party's defenses, in order.
    pub defenses: &'a [DefenseConfig],
    /// Seeds LoRA adapters and defenses.
    pub seed: u64,
    /// The tokenizer and training inputs, for defenses that need them (text-level ones,
    /// TextObfuscator).
    pub defense_data: Option<&'a DefenseData>,
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

    /// The learner as a task sees it.
    pub fn predictor(&mut self) -> &mut dyn Predictor {
        self.learner()
    }

    /// The split model, when the run is split.
    pub fn split_mut(&mut self) -> Option<&mut Split> {
        match self {
            Run::Split(split) => Some(split.as_mut()),
            Run::Whole(_) => None,
        }
    }

    /// Ends the session (split runs).
    pub fn finish(self) -> Result<(), TrainError> {
        if let Run::Split(split) = self {
            split.finish()?;
        }
        Ok(())
    }
}

/// The learner `setup` describes on `pretrained` for `task`, its learning-rate schedule
/// spanning `total_steps`, and a one-line description of the setting.
pub fn build(
    setup: &Setup<'_>,
    pretrained: &Pretrained,
    task: TaskHead,
    total_steps: usize,
) -> Result<(Run, String), TrainError> {
    let data_device = setup.split.data_device()?.probe()?.autodiff();
    let slice = |spec: &SliceSpec, device: &Device| {
        party_slice(setup, pretrained, task, total_steps, spec, device)
    };
    let Some(partition) = setup.split.partition else {
        let whole = slice(&SliceSpec::full(pretrained.num_layers()), &data_device)?;
        return Ok((
            Run::Whole(Box::new(Whole::new(whole, data_device))),
            "unsplit".into(),
        ));
    };
    let slices = slices_of(partition, pretrained)?;
    let model_device = setup.split.model_device()?.probe()?.autodiff();
    let body = slice(&slices.model, &model_device)?;
    let model_party = ModelParty::new(body, setup.split.data_party.wire_dtype);
    let (data_end, model_end) = in_process_pair(Limits::default());
    let server = model_party.spawn(model_end);
    let data = data_party(
        setup,
        pretrained,
        task,
        total_steps,
        &slices,
        Box::new(data_end),
        Handshake::default(),
    )?;
    Ok((
        Run::Split(Box::new(Split::new(data, model_party, server))),
        partition.to_string(),
    ))
}

/// The data party's half of [`build`], connected over `transport` to a model party in another
/// process; `connect` opens new transports when the link breaks. The handshake carries the
/// terms both parties must agree on.
pub fn build_remote(
    setup: &Setup<'_>,
    pretrained: &Pretrained,
    task: TaskHead,
    total_steps: usize,
    transport: Box<dyn Transport>,
    connect: Connect,
    handshake: Handshake,
) -> Result<(Run, String), TrainError> {
    let Some(partition) = setup.split.partition else {
        return Err(TrainError::Invalid {
            key: "split.partition".into(),
            detail: "a remote model party needs a split run".into(),
        });
    };
    let slices = slices_of(partition, pretrained)?;
    let data = data_party(
        setup,
        pretrained,
        task,
        total_steps,
        &slices,
        transport,
        handshake,
    )?;
    Ok((
        Run::Split(Box::new(Split::remote(data, connect))),
        partition.to_string(),
    ))
}

/// The model party's slice of `setup`'s cut, loaded once on its device and shared by every
/// session a server opens ([`model_session`]): its frozen weights are never copied.
pub fn load_model_slice(
    setup: &Setup<'_>,
    pretrained: &Pretrained,
    task: TaskHead,
) -> Result<AnyModel, TrainError> {
    let Some(partition) = setup.split.partition else {
        return Err(TrainError::Invalid {
            key: "split.partition".into(),
            detail: "a model party serves a split run".into(),
        });
    };
    let slices = slices_of(partition, pretrained)?;
    let device = setup.split.model_device()?.probe()?.autodiff();
    Ok(pretrained.load(&slices.model, task, &device)?)
}

/// A model party for one session on `base` (from [`load_model_slice`]): its own trainable
/// parameters (LoRA adapters or trainable blocks, as `setup` says) and optimizer state over the
/// shared frozen weights, its learning-rate schedule spanning `total_steps`.
pub fn model_session(
    setup: &Setup<'_>,
    base: &AnyModel,
    total_steps: usize,
) -> Result<ModelParty, TrainError> {
    let slice = PartySlice::new(
        base.clone(),
        setup.finetune,
        setup.optimizer,
        total_steps.max(1),
        setup.seed,
    )?;
    Ok(ModelParty::new(slice, setup.split.data_party.wire_dtype))
}

/// `partition`'s slices of `pretrained`, or an error naming the setting.
fn slices_of(partition: Partition, pretrained: &Pretrained) -> Result<Slices, TrainError> {
    partition
        .slices(pretrained.num_layers())
        .map_err(|e| TrainError::Invalid {
            key: "split.partition".into(),
            detail: e.to_string(),
        })
}

/// A slice of `pretrained` on `device`, with `setup`'s trainability and optimizer.
fn party_slice(
    setup: &Setup<'_>,
    pretrained: &Pretrained,
    task: TaskHead,
    total_steps: usize,
    spec: &SliceSpec,
    device: &Device,
) -> Result<PartySlice, TrainError> {
    let loaded = pretrained.load(spec, task, device)?;
    Ok(PartySlice::new(
        loaded,
        setup.finetune,
        setup.optimizer,
        total_steps.max(1),
        setup.seed,
    )?)
}

/// The data party of `slices` with its defenses, its session opened over `transport`.
fn data_party(
    setup: &Setup<'_>,
    pretrained: &Pretrained,
    task: TaskHead,
    total_steps: usize,
    slices: &Slices,
    transport: Box<dyn Transport>,
    handshake: Handshake,
) -> Result<DataParty, TrainError> {
    let data_device = setup.split.data_device()?.probe()?.autodiff();
    let slice =
        |spec: &SliceSpec| party_slice(setup, pretrained, task, total_steps, spec, &data_device);
    let tail = slices.data_tail.as_ref().map(slice).transpose()?;
    let mut data = DataParty::connect_with(
        slice(&slices.data_head)?,
        tail,
        transport,
        &setup.split.data_party,
        handshake,
    )?;
    let env = defense_env(
        setup.defenses,
        setup.defense_data,
        pretrained,
        task,
        slices,
        &data_device,
    )?;
    data.set_defenses(DefenseConfig::build_all(setup.defenses, setup.seed, &env)?);
    Ok(data)
}
