//! Label inference against a real split run: the model party records its first training
//! steps (and no more); DLS reads every label back from the logit gradients in Head–Tail.

use burn::tensor::{Int, Tensor, TensorData};
use splitlm_attacks::{AttackerView, direct_label_scoring};
use splitlm_device::DeviceSpec;
use splitlm_nn::testing::{Fixture, fixtures_dir};
use splitlm_nn::{Labels, TaskHead, TokenBatch};
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{
    DataParty, ModelParty, ObservationLimits, OptimizerConfig, PartyOptions, PartySlice,
};
use splitlm_protocol::{Limits, WireDType, in_process_pair};
use splitlm_zoo::Checkpoint;

#[test]
fn dls_recovers_every_label_in_head_tail() {
    let device = DeviceSpec::Cpu.device().unwrap().autodiff();
    let ckpt = Checkpoint::open(&fixtures_dir().join("models/bert")).unwrap();
    let task = TaskHead::SequenceClassification { num_labels: 3 };
    let slices = Partition::head_tail(1).slices(ckpt.num_layers()).unwrap();
    let slice = |spec| {
        PartySlice::new(
            ckpt.load(spec, task, &device).unwrap(),
            &Trainability::default(),
            &OptimizerConfig::default(),
            10,
            0,
        )
        .unwrap()
    };
    let model = ModelParty::new(slice(&slices.model), WireDType::F32);
    model.observe(ObservationLimits {
        steps: 2,
        max_samples: 64,
    });
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let mut data = DataParty::connect(
        slice(&slices.data_head),
        None,
        Box::new(a),
        &PartyOptions::default(),
    )
    .unwrap();
    let fixture = Fixture::open("bert").unwrap();
    let batch = TokenBatch {
        input_ids: fixture.ints("input_ids", &device),
        attention_mask: fixture.ints("attention_mask", &device),
        token_type_ids: None,
    };
    let n = batch.dims()[0];
    let truth: Vec<usize> = (0..n).map(|i| (i * 7 + 1) % 3).collect();
    let labels = Labels::Classes(Tensor::<1, Int>::from_data(
        TensorData::new(truth.iter().map(|&l| l as i64).collect(), [n]),
        &device,
    ));
    for _ in 0..3 {
        data.train_step(&batch, &labels).unwrap();
    }
    data.finish().unwrap();
    server.join().unwrap().unwrap();

    let view = AttackerView {
        observations: model.observations(),
    };
    assert_eq!(
        view.observations.len(),
        2,
        "only the first two steps are kept"
    );
    let guesses = direct_label_scoring(&view).unwrap();
    let expected: Vec<usize> = truth.iter().chain(&truth).copied().collect();
    let recovered: Vec<usize> = guesses.iter().map(|g| g.label).collect();
    assert_eq!(
        recovered, expected,
        "DLS recovers 100 % of labels without a defense"
    );
}
