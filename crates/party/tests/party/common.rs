//! Building the same training run split (two parties over an in-process transport) and
//! unsplit (one slice holding the whole model), and comparing them.

use std::collections::BTreeMap;
use std::thread::JoinHandle;

use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_device::DeviceSpec;
use splitlm_nn::testing::{Fixture, fixtures_dir};
use splitlm_nn::{Labels, SliceSpec, TaskHead, TokenBatch, TransformerSlice, loss};
use splitlm_partition::{Partition, Trainability, named_parameters};
use splitlm_party::{
    DataParty, ModelParty, NamedGradient, OptimizerConfig, PartyError, PartyOptions, PartySlice,
    SessionReport,
};
use splitlm_protocol::{Limits, WireDType, in_process_pair};
use splitlm_zoo::Pretrained;

pub const SEED: u64 = 7;
pub const TOTAL_STEPS: usize = 10;

/// One model, task and batch from `fixtures/models`.
#[derive(Clone, Copy)]
pub struct Workload {
    pub fixture: &'static str,
    pub task: TaskHead,
}

impl Workload {
    pub fn classify(fixture: &'static str) -> Self {
        Self {
            fixture,
            task: TaskHead::SequenceClassification { num_labels: 3 },
        }
    }

    pub fn checkpoint(&self) -> Pretrained {
        Pretrained::open(&fixtures_dir().join("models").join(self.fixture)).unwrap()
    }

    pub fn batch(&self, device: &Device) -> TokenBatch {
        let fixture = Fixture::open(self.fixture).unwrap();
        TokenBatch {
            input_ids: fixture.ints("input_ids", device),
            attention_mask: fixture.ints("attention_mask", device),
            token_type_ids: None,
        }
    }

    pub fn labels(&self, batch: &TokenBatch) -> Labels {
        let device = batch.input_ids.device();
        let [b, s] = batch.dims();
        let ints = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v, [b]), &device);
        match self.task {
            TaskHead::SequenceClassification { num_labels } => {
                Labels::Classes(ints((0..b as i64).map(|i| i % num_labels as i64).collect()))
            }
            TaskHead::CausalLm => Labels::next_tokens(&batch.input_ids, &batch.attention_mask),
            TaskHead::SpanQa => Labels::Spans {
                start: ints((0..b as i64).map(|i| i % s as i64).collect()),
                end: ints((0..b as i64).map(|i| (i + 2) % s as i64).collect()),
            },
            TaskHead::Hidden => panic!("no loss for hidden states"),
        }
    }
}

pub fn cpu() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

/// What a run leaves to compare.
pub struct Observed {
    pub losses: Vec<f32>,
    /// Per step: gradient of every trainable parameter, by global path.
    pub gradients: Vec<BTreeMap<String, Vec<f32>>>,
    /// Every parameter (trainable or not) at the end, by global path.
    pub parameters: BTreeMap<String, Vec<f32>>,
}

fn by_path(grads: &[NamedGradient], into: &mut BTreeMap<String, Vec<f32>>) {
    for g in grads {
        assert!(
            into.insert(g.path.clone(), g.values.clone()).is_none(),
            "{} appears in two slices",
            g.path
        );
    }
}

fn parameters(slice: &PartySlice, into: &mut BTreeMap<String, Vec<f32>>) {
    for p in named_parameters(slice.model(), slice.model().spec()) {
        let values = p.value.into_data().try_into_vec_as::<f32>().unwrap();
        assert!(
            into.insert(p.path.clone(), values).is_none(),
            "{} appears in two slices",
            p.path
        );
    }
}

fn slice(
    ckpt: &Pretrained,
    spec: &SliceSpec,
    work: &Workload,
    trainability: &Trainability,
    optimizer: &OptimizerConfig,
    device: &Device,
) -> PartySlice {
    let model = ckpt.load(spec, work.task, device).unwrap();
    let mut slice = PartySlice::new(model, trainability, optimizer, TOTAL_STEPS, SEED).unwrap();
    slice.record_gradients(true);
    slice
}

/// The whole model trained `steps` times on the workload's batch.
pub fn unsplit(
    work: &Workload,
    trainability: &Trainability,
    optimizer: &OptimizerConfig,
    steps: usize,
) -> Observed {
    let device = cpu();
    let ckpt = work.checkpoint();
    let mut whole = slice(
        &ckpt,
        &SliceSpec::full(ckpt.num_layers()),
        work,
        trainability,
        optimizer,
        &device,
    );
    let batch = work.batch(&device);
    let labels = work.labels(&batch);
    let mut observed = Observed {
        losses: Vec::new(),
        gradients: Vec::new(),
        parameters: BTreeMap::new(),
    };
    for _ in 0..steps {
        let output = whole.model().forward(&batch, None).unwrap();
        let loss = loss(&output, &labels).unwrap();
        observed.losses.push(loss.clone().into_scalar());
        whole.apply_gradients(loss.backward());
        let mut grads = BTreeMap::new();
        by_path(whole.recorded_gradients().unwrap_or_default(), &mut grads);
        observed.gradients.push(grads);
    }
    parameters(&whole, &mut observed.parameters);
    observed
}

/// A data party and a model party serving it on another thread.
pub struct Split {
    pub data: DataParty,
    pub model: ModelParty,
    pub server: JoinHandle<Result<SessionReport, PartyError>>,
}

/// The workload's model cut by `partition`: the data party on `data_device`, the model party
/// on `model_device`, both with `trainability` and `optimizer`.
pub fn split(
    work: &Workload,
    partition: Partition,
    trainability: &Trainability,
    optimizer: &OptimizerConfig,
    data_device: &Device,
    model_device: &Device,
) -> Split {
    let ckpt = work.checkpoint();
    let slices = partition.slices(ckpt.num_layers()).unwrap();
    let head = slice(
        &ckpt,
        &slices.data_head,
        work,
        trainability,
        optimizer,
        data_device,
    );
    let tail = slices
        .data_tail
        .as_ref()
        .map(|spec| slice(&ckpt, spec, work, trainability, optimizer, data_device));
    let body = slice(
        &ckpt,
        &slices.model,
        work,
        trainability,
        optimizer,
        model_device,
    );
    let model = ModelParty::new(body, WireDType::F32);
    let (data_end, model_end) = in_process_pair(Limits::default());
    let server = model.spawn(model_end);
    let data =
        DataParty::connect(head, tail, Box::new(data_end), &PartyOptions::default()).unwrap();
    Split {
        data,
        model,
        server,
    }
}

impl Split {
    /// Trains `steps` times on the workload's batch and ends the session.
    pub fn train(mut self, work: &Workload, steps: usize) -> (Observed, SessionReport) {
        let batch = work.batch(&self.data.device());
        let labels = work.labels(&batch);
        let mut observed = Observed {
            losses: Vec::new(),
            gradients: Vec::new(),
            parameters: BTreeMap::new(),
        };
        for _ in 0..steps {
            observed
                .losses
                .push(self.data.train_step(&batch, &labels).unwrap().loss);
            let mut grads = BTreeMap::new();
            by_path(
                self.data.head().recorded_gradients().unwrap_or_default(),
                &mut grads,
            );
            if let Some(tail) = self.data.tail() {
                by_path(tail.recorded_gradients().unwrap_or_default(), &mut grads);
            }
            self.model
                .with_slice(|s| by_path(s.recorded_gradients().unwrap_or_default(), &mut grads));
            observed.gradients.push(grads);
        }
        let (head, tail) = self.data.finish().unwrap();
        let report = self.server.join().unwrap().unwrap();
        parameters(&head, &mut observed.parameters);
        if let Some(tail) = &tail {
            parameters(tail, &mut observed.parameters);
        }
        self.model
            .with_slice(|s| parameters(s, &mut observed.parameters));
        (observed, report)
    }
}

/// `max |a − b| / max |b|` (or `max |a|` when `b` is all zeros).
pub fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f32::max);
    if scale == 0.0 { diff } else { diff / scale }
}

fn compare_maps(
    what: &str,
    split: &BTreeMap<String, Vec<f32>>,
    whole: &BTreeMap<String, Vec<f32>>,
    tolerance: f32,
) -> f32 {
    let split_keys: Vec<_> = split.keys().collect();
    let whole_keys: Vec<_> = whole.keys().collect();
    assert_eq!(
        split_keys, whole_keys,
        "{what}: the split and the whole model name different parameters"
    );
    let mut worst = 0.0f32;
    for (path, expected) in whole {
        let err = relative_error(&split[path], expected);
        assert!(
            err <= tolerance,
            "{what}: {path} differs by {err:e} (relative)"
        );
        worst = worst.max(err);
    }
    worst
}

/// Asserts that a split run matched the unsplit one; returns the worst relative errors of
/// (loss, gradients, parameters).
pub fn assert_equivalent(
    case: &str,
    split: &Observed,
    whole: &Observed,
    tolerance: f32,
) -> (f32, f32, f32) {
    let loss_err = relative_error(&split.losses, &whole.losses);
    assert!(
        loss_err <= tolerance,
        "{case}: losses {:?} vs {:?}",
        split.losses,
        whole.losses
    );
    let mut grad_err = 0.0f32;
    for (step, (s, w)) in split.gradients.iter().zip(&whole.gradients).enumerate() {
        assert!(!w.is_empty() || s.is_empty(), "{case}: step {step}");
        grad_err = grad_err.max(compare_maps(
            &format!("{case}, gradients of step {step}"),
            s,
            w,
            tolerance,
        ));
    }
    let param_err = compare_maps(
        &format!("{case}, parameters"),
        &split.parameters,
        &whole.parameters,
        tolerance,
    );
    (loss_err, grad_err, param_err)
}
