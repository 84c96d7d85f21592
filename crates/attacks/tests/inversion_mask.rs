//! VMI and RWI through a real split run of the BERT fixture (three rows of 7, 5 and 3 real
//! tokens padded to 7): with the reference's `mask = "none"` (the default) every padded
//! position is decoded, so each recovery has the padded length and token precision is taken
//! over it, as the reference's is; with `mask = "real"` only the real positions are.

use burn::tensor::Device;
use splitlm_attacks::{
    AttackConfig, AttackerView, Inferred, InversionMask, Prior, Recovered, RwiSettings,
    VmiSettings, token_precision_recall,
};
use splitlm_device::DeviceSpec;
use splitlm_nn::testing::{Fixture, fixtures_dir};
use splitlm_nn::{Labels, TaskHead, TokenBatch};
use splitlm_partition::Partition;
use splitlm_party::{DataParty, ModelParty, ObservationLimits, PartyOptions, PartySlice};
use splitlm_protocol::{Limits, WireDType, in_process_pair};
use splitlm_zoo::Pretrained;

const TASK: TaskHead = TaskHead::SequenceClassification { num_labels: 3 };

/// One training step of a Head–Tail split (embeddings + block 0 at the data party) observed by
/// the model party; returns its view, the attacker's white-box head and the batch.
fn observed() -> (AttackerView, Prior, TokenBatch, Device) {
    let device = DeviceSpec::Cpu.device().unwrap().autodiff();
    let ckpt = Pretrained::open(&fixtures_dir().join("models").join("bert")).unwrap();
    let slices = Partition::head_tail(1).slices(ckpt.num_layers()).unwrap();
    let frozen = |spec| PartySlice::frozen(ckpt.load(spec, TASK, &device).unwrap()).unwrap();
    let model = ModelParty::new(frozen(&slices.model), WireDType::F32);
    model.observe(ObservationLimits::default());
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let mut data = DataParty::connect(
        frozen(&slices.data_head),
        None,
        Box::new(a),
        &PartyOptions::default(),
    )
    .unwrap();
    let f = Fixture::open("bert").unwrap();
    let batch = TokenBatch {
        input_ids: f.ints("input_ids", &device),
        attention_mask: f.ints("attention_mask", &device),
        token_type_ids: None,
    };
    let n = batch.dims()[0];
    let labels = Labels::Classes(burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(vec![0i64; n], [n]),
        &device,
    ));
    data.train_step(&batch, &labels).unwrap();
    data.finish().unwrap();
    server.join().unwrap().unwrap();
    let head = ckpt.load(&slices.data_head, TASK, &device).unwrap();
    let prior = Prior::white_box(head, splitlm_attacks::HeadVersion::Pretrained);
    (AttackerView::of(&model), prior, batch, device)
}

fn recover(config: AttackConfig, view: &AttackerView, prior: &Prior, d: &Device) -> Vec<Recovered> {
    match config.build().run(view, prior, d).unwrap().inferred {
        Inferred::Tokens(tokens) => tokens,
        other => panic!("{other:?}"),
    }
}

fn rows(t: burn::tensor::Tensor<2, burn::tensor::Int>) -> Vec<Vec<i64>> {
    let [b, s] = t.dims();
    let v = t.into_data().try_into_vec_as::<i64>().unwrap();
    (0..b).map(|r| v[r * s..(r + 1) * s].to_vec()).collect()
}

#[test]
fn inversions_decode_every_padded_position_by_default_and_the_real_ones_on_request() {
    let (view, prior, batch, device) = observed();
    let ids = rows(batch.input_ids.clone());
    let mask = rows(batch.attention_mask.clone());
    let width = ids[0].len();
    let real_lengths: Vec<usize> = mask
        .iter()
        .map(|m| m.iter().filter(|&&x| x != 0).count())
        .collect();
    assert_eq!(real_lengths, [7, 5, 3]);
    let truth: Vec<Vec<u32>> = ids
        .iter()
        .zip(&mask)
        .map(|(i, m)| {
            i.iter()
                .zip(m)
                .filter(|(_, m)| **m != 0)
                .map(|(&t, _)| t as u32)
                .collect()
        })
        .collect();

    let vmi = VmiSettings {
        steps: 20,
        ..VmiSettings::default()
    };
    let rwi = RwiSettings {
        steps: 20,
        ..RwiSettings::default()
    };
    for mode in [InversionMask::None, InversionMask::Real] {
        for config in [
            AttackConfig::Vmi(VmiSettings { mask: mode, ..vmi }),
            AttackConfig::Rwi(RwiSettings { mask: mode, ..rwi }),
        ] {
            let recovered = recover(config.clone(), &view, &prior, &device);
            let lengths: Vec<usize> = recovered.iter().map(Vec::len).collect();
            match mode {
                InversionMask::None => assert_eq!(lengths, [width; 3], "{config:?}"),
                InversionMask::Real => assert_eq!(lengths, real_lengths, "{config:?}"),
            }
            for (t, r) in truth.iter().zip(&recovered) {
                // Precision's denominator is what was decoded: the padded length by default.
                let (precision, _) = token_precision_recall(t, r);
                let hits = r.iter().filter(|x| t.contains(x)).count();
                assert_eq!(precision, hits as f64 / r.len() as f64);
            }
        }
    }
    // The defaults are the reference's.
    assert_eq!(VmiSettings::default().mask, InversionMask::None);
    assert_eq!(RwiSettings::default().mask, InversionMask::None);
}
