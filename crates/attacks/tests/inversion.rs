//! VMI against real split runs of the Llama and BERT fixtures: the model party records the
//! activations of the first training step, a white-box copy of the data party's head inverts
//! them. With embeddings only (n_head = 0) the tokens come back; deeper heads hide more.

use burn::tensor::Device;
use splitlm_attacks::{
    AttackerView, InversionMask, InversionObjective, RwiSettings, VmiSettings, rwi,
    token_precision_recall, vmi,
};
use splitlm_defenses::{Crossing, Defenses, DpNoise};
use splitlm_device::DeviceSpec;
use splitlm_nn::testing::{Fixture, fixtures_dir};
use splitlm_nn::{Labels, TaskHead, TokenBatch};
use splitlm_partition::Partition;
use splitlm_party::{DataParty, ModelParty, ObservationLimits, PartyOptions, PartySlice};
use splitlm_protocol::{Limits, WireDType, in_process_pair};
use splitlm_zoo::Pretrained;

/// splitlm's own variant: MSE over the real positions, only they decoded.
fn vmi_ours() -> VmiSettings {
    VmiSettings {
        objective: InversionObjective::Mse,
        mask: InversionMask::Real,
        ..VmiSettings::default()
    }
}

fn cpu() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

#[derive(Clone, Copy)]
enum Attack {
    Vmi(VmiSettings),
    Rwi(RwiSettings),
}

/// Mean token recall of an inversion against a Head–Tail split with `n_head` blocks at the
/// data party.
fn recall(fixture: &str, task: TaskHead, n_head: usize, attack: Attack) -> f64 {
    recall_defended(fixture, task, n_head, attack, Defenses::none())
}

/// [`recall`] with `defenses` applied by the data party.
fn recall_defended(
    fixture: &str,
    task: TaskHead,
    n_head: usize,
    attack: Attack,
    defenses: Defenses,
) -> f64 {
    let device = cpu();
    let ckpt = Pretrained::open(&fixtures_dir().join("models").join(fixture)).unwrap();
    let slices = Partition::head_tail(n_head)
        .slices(ckpt.num_layers())
        .unwrap();
    let frozen = |spec| PartySlice::frozen(ckpt.load(spec, task, &device).unwrap()).unwrap();
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
    data.set_defenses(defenses);
    let f = Fixture::open(fixture).unwrap();
    let batch = TokenBatch {
        input_ids: f.ints("input_ids", &device),
        attention_mask: f.ints("attention_mask", &device),
        token_type_ids: None,
    };
    let labels = match task {
        TaskHead::CausalLm => Labels::next_tokens(&batch.input_ids, &batch.attention_mask),
        _ => {
            let n = batch.dims()[0];
            Labels::Classes(burn::tensor::Tensor::from_data(
                burn::tensor::TensorData::new(vec![0i64; n], [n]),
                &device,
            ))
        }
    };
    data.train_step(&batch, &labels).unwrap();
    data.finish().unwrap();
    server.join().unwrap().unwrap();

    // The prior: the data party's head as pretrained (the attacker's own copy).
    let prior = ckpt.load(&slices.data_head, task, &device).unwrap();
    let view = AttackerView::of(&model);
    let recovered = match attack {
        Attack::Vmi(settings) => vmi(&view, &prior, &settings, &device).unwrap(),
        Attack::Rwi(settings) => rwi(&view, &prior, &settings, &device).unwrap(),
    };
    let s = batch.dims()[1];
    let ids = batch
        .input_ids
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    let mask = batch
        .attention_mask
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    let mut total = 0.0;
    for (row, got) in recovered.iter().enumerate() {
        let truth: Vec<u32> = (0..s)
            .filter(|&t| mask[row * s + t] != 0)
            .map(|t| ids[row * s + t] as u32)
            .collect();
        total += token_precision_recall(&truth, got).1;
    }
    total / recovered.len() as f64
}

#[test]
fn vmi_recovers_tokens_from_an_embeddings_only_head_and_less_through_blocks() {
    let settings = vmi_ours();
    for (fixture, task) in [
        ("llama", TaskHead::CausalLm),
        ("bert", TaskHead::SequenceClassification { num_labels: 3 }),
    ] {
        let recalls: Vec<f64> = (0..3)
            .map(|n| recall(fixture, task, n, Attack::Vmi(settings)))
            .collect();
        eprintln!("VMI recall, {fixture}, n_head 0/1/2: {recalls:?}");
        assert!(recalls[0] >= 0.95, "{fixture}: {recalls:?}");
        assert!(
            recalls[2] <= recalls[1] && recalls[1] <= recalls[0],
            "{fixture}: {recalls:?}"
        );
        if fixture == "llama" {
            // Measured 1.0, 0.56, 0.18: each block hides more of the input.
            assert!(recalls[2] < 0.5 * recalls[0], "{recalls:?}");
        }
    }
}

#[test]
fn rwi_recovers_tokens_from_an_embeddings_only_head() {
    let settings = RwiSettings {
        objective: InversionObjective::Mse,
        mask: InversionMask::Real,
        ..RwiSettings::default()
    };
    let recalls: Vec<f64> = (0..3)
        .map(|n| recall("llama", TaskHead::CausalLm, n, Attack::Rwi(settings)))
        .collect();
    eprintln!("RWI recall, llama, n_head 0/1/2: {recalls:?}");
    assert!(recalls[0] >= 0.95, "{recalls:?}");
    assert!(recalls[2] <= recalls[0], "{recalls:?}");
}

#[test]
fn laplace_dp_on_activations_defeats_vmi_against_an_embeddings_only_head() {
    let vmi = Attack::Vmi(vmi_ours());
    let with_noise = |epsilon: f64| {
        let dp = DpNoise::laplace(epsilon, 1.0, None, Crossing::Activations, 7).unwrap();
        recall_defended(
            "llama",
            TaskHead::CausalLm,
            0,
            vmi,
            Defenses::new(vec![Box::new(dp)]),
        )
    };
    let (clean, weak, strong) = (
        recall("llama", TaskHead::CausalLm, 0, vmi),
        with_noise(100.0),
        with_noise(0.1),
    );
    eprintln!(
        "VMI recall, llama n_head 0: no defense {clean}, Laplace ε=100 {weak}, ε=0.1 {strong}"
    );
    assert!(clean >= 0.95, "{clean}");
    assert!(strong < 0.5 * clean, "ε = 0.1 (b = 10): {strong}");
    assert!(weak > strong, "more noise, less recall: {weak} vs {strong}");
}

#[test]
fn vmi_with_the_reference_defaults_runs_and_is_scored() {
    // The reference's: cross-entropy over the sequence axis, no mask, every padded position.
    let ce = VmiSettings::default();
    let recalls: Vec<f64> = (0..2)
        .map(|n| {
            recall(
                "bert",
                TaskHead::SequenceClassification { num_labels: 3 },
                n,
                Attack::Vmi(ce),
            )
        })
        .collect();
    eprintln!("VMI (the reference's defaults) recall, bert, n_head 0/1: {recalls:?}");
    // Measured 0.64 and 0.34: weaker than splitlm's MSE over the real positions (1.0 and 1.0
    // on this fixture).
    assert!(recalls[0] >= 0.6, "{recalls:?}");
    assert!(recalls[1] < recalls[0], "{recalls:?}");
}
