//! BLI against the reference's own code: `fixtures/vflair/labels.py` ran VFLAIR-LLM's
//! `BatchLabelReconstruction_LLM` (second-order autodiff in PyTorch) on the tiny BERT of
//! `fixtures/models/bert`, cut Head–Tail (1 | 2 + classifier) and Head–Body–Tail (1 | 1 | 1 +
//! classifier), after one training step on the fixture batch. Here the same step runs as a
//! real split, the model party records it, and BLI (Gram-matrix route) must land on the same
//! dummy labels after the same number of Adam steps.

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use splitlm_attacks::{AttackerView, BliSettings, Prior, bli_dummy_labels};
use splitlm_device::DeviceSpec;
use splitlm_nn::testing::{Fixture, fixtures_dir};
use splitlm_nn::{Labels, TaskHead, TokenBatch};
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{
    DataParty, ModelParty, ObservationLimits, OptimizerConfig, PartyOptions, PartySlice,
};
use splitlm_protocol::{Limits, WireDType, in_process_pair};
use splitlm_zoo::{AnyModel, Pretrained};

fn cpu() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

fn fixture() -> Value {
    let path = fixtures_dir().join("vflair/labels.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x {
            Value::Array(_) => floats(x),
            _ => vec![x.as_f64().unwrap() as f32],
        })
        .collect()
}

/// One training step of the fixture batch, split by `partition`, the model party recording it;
/// returns what it saw and the data party's tail as it was before the step.
fn observe(partition: Partition, labels: &[usize]) -> (AttackerView, Option<AnyModel>) {
    let device = cpu();
    let ckpt = Pretrained::open(&fixtures_dir().join("models/bert")).unwrap();
    let task = TaskHead::SequenceClassification { num_labels: 3 };
    let slices = partition.slices(ckpt.num_layers()).unwrap();
    let slice = |spec| {
        PartySlice::new(
            ckpt.load(spec, task, &device).unwrap(),
            &Trainability::default(),
            &OptimizerConfig::default(),
            1,
            0,
        )
        .unwrap()
    };
    let model = ModelParty::new(slice(&slices.model), WireDType::F32);
    model.observe(ObservationLimits {
        weight_gradients: true,
        slices: true,
        ..ObservationLimits::default()
    });
    let tail = slices.data_tail.as_ref().map(slice);
    let tail_before = tail.as_ref().map(|t| t.model().clone());
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let mut data = DataParty::connect(
        slice(&slices.data_head),
        tail,
        Box::new(a),
        &PartyOptions::default(),
    )
    .unwrap();
    let bert = Fixture::open("bert").unwrap();
    let batch = TokenBatch {
        input_ids: bert.ints("input_ids", &device),
        attention_mask: bert.ints("attention_mask", &device),
        token_type_ids: Some(bert.ints("token_type_ids", &device)),
    };
    let n = labels.len();
    let labels = Labels::Classes(Tensor::<1, Int>::from_data(
        TensorData::new(labels.iter().map(|&l| l as i64).collect(), [n]),
        &device,
    ));
    data.train_step(&batch, &labels).unwrap();
    data.finish().unwrap();
    server.join().unwrap().unwrap();
    (AttackerView::of(&model), tail_before)
}

fn check(case: &str, partition: Partition) {
    let fixture = fixture();
    let case = &fixture[case];
    let labels: Vec<usize> = case["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let (view, tail) = observe(partition, &labels);
    let o = &view.observations[0];
    // The step itself is the reference's: the gradient the model party received…
    let mut received = o.output_grad.to_f32().unwrap();
    let mut expected = floats(&case["output_grad"]);
    // Outputs at padded positions are meaningless (fixtures/README.md): compare real ones.
    if let [b, s, d] = o.output_grad.shape[..] {
        let mask = o.attention_mask.to_i64().unwrap();
        for (i, m) in mask.iter().enumerate().take(b * s) {
            if *m == 0 {
                received[i * d..(i + 1) * d].fill(0.0);
                expected[i * d..(i + 1) * d].fill(0.0);
            }
        }
    }
    let err = splitlm_nn::testing::relative_error(&received, &expected);
    assert!(err < 1e-3, "output gradient differs by {err} (relative)");
    // …and the weight gradients it computed from it.
    let sq: f64 = o
        .weight_gradients
        .iter()
        .flat_map(|g| &g.values)
        .map(|&v| (v as f64).powi(2))
        .sum();
    let expected_sq = case["weight_grad_sq_norm"].as_f64().unwrap();
    assert!(
        (sq - expected_sq).abs() < 1e-4 * expected_sq,
        "‖weight gradients‖² {sq} vs the reference's {expected_sq}"
    );
    let prior = Prior {
        tail,
        ..Prior::default()
    };
    let lr = case["lr"].as_f64().unwrap();
    for (steps, dummy) in case["dummy_after_steps"].as_object().unwrap() {
        let settings = BliSettings {
            steps: steps.parse().unwrap(),
            lr,
            ..BliSettings::default()
        };
        let ours: Vec<f32> = bli_dummy_labels(&view, &prior, &settings, &cpu())
            .unwrap()
            .concat();
        let reference = floats(dummy);
        let err = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            err < 2e-3,
            "after {steps} steps the dummy labels differ by {err}:\n ours {ours:?}\n reference {reference:?}"
        );
    }
}

#[test]
fn bli_matches_the_reference_in_head_tail() {
    check("bli_head_tail", Partition::head_tail(1));
}

#[test]
fn bli_matches_the_reference_in_head_body_tail() {
    check(
        "bli_head_body_tail",
        Partition::HeadBodyTail {
            n_head: 1,
            n_tail: 1,
        },
    );
}
