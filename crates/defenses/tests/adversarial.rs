//! AT in a real split run of the tiny Llama fixture, cut Head–Tail with the embeddings alone at
//! the data party (so that, undefended, what crosses is the input embeddings themselves): the
//! model party trains its blocks on a learnable next-token task while the data party maps what
//! it sends. After training, held-out sentences go through the split model and the model party
//! inverts what it received by the nearest input embedding (cosine), a white-box attacker that
//! knows the pretrained embeddings but not the data party's mapping.

use std::time::Instant;

use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_defenses::{AdversarialSettings, Defense, DefenseEnv, Defenses};
use splitlm_device::DeviceSpec;
use splitlm_nn::seeded::SplitMix64;
use splitlm_nn::testing::fixtures_dir;
use splitlm_nn::{Labels, TaskHead, TokenBatch};
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{
    DataParty, ModelParty, ObservationLimits, OptimizerConfig, PartyOptions, PartySlice,
};
use splitlm_protocol::{Limits, WireDType, in_process_pair};
use splitlm_zoo::Pretrained;

const STEPS: usize = 20;
const BATCH: usize = 8;
const SEQ: usize = 12;

fn cpu() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

/// Counting sequences `t, t+1, …` over ids `[3, 99)` from random starts: a next-token task the
/// model party can learn in a few steps.
fn counting_batch(rng: &mut SplitMix64, device: &Device) -> TokenBatch {
    let ids: Vec<i64> = (0..BATCH)
        .flat_map(|_| {
            let start = rng.next_u64() % 96;
            (0..SEQ as u64).map(move |t| 3 + ((start + t) % 96) as i64)
        })
        .collect();
    TokenBatch {
        input_ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [BATCH, SEQ]), device),
        attention_mask: Tensor::<2, Int>::from_data(
            TensorData::new(vec![1i64; BATCH * SEQ], [BATCH, SEQ]),
            device,
        ),
        token_type_ids: None,
    }
}

/// What one run measured.
struct Run {
    losses: Vec<f32>,
    /// Mean wall time of a training step, seconds.
    step_seconds: f64,
    /// Share of held-out tokens whose nearest input embedding (cosine) to what crossed is the
    /// token itself, before training and after.
    recovered_before: f64,
    recovered: f64,
}

/// `STEPS` training steps with `defense` (if any), then the nearest-embedding inversion of a
/// held-out batch sent through the trained split model.
fn run(defense: Option<Box<dyn Defense>>) -> Run {
    let device = cpu();
    let ckpt = Pretrained::open(&fixtures_dir().join("models").join("llama")).unwrap();
    let task = TaskHead::CausalLm;
    let slices = Partition::head_tail(0).slices(ckpt.num_layers()).unwrap();
    let optimizer = OptimizerConfig {
        lr: 3e-3,
        ..OptimizerConfig::default()
    };
    let model_slice = PartySlice::new(
        ckpt.load(&slices.model, task, &device).unwrap(),
        &Trainability::default(),
        &optimizer,
        STEPS,
        0,
    )
    .unwrap();
    let model = ModelParty::new(model_slice, WireDType::F32);
    model.observe(ObservationLimits {
        steps: 1_000,
        inference: true,
        ..ObservationLimits::default()
    });
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let head = ckpt.load(&slices.data_head, task, &device).unwrap();
    let embeddings = head.word_embeddings().unwrap().detach();
    let mut data = DataParty::connect(
        PartySlice::frozen(head).unwrap(),
        None,
        Box::new(a),
        &PartyOptions::default(),
    )
    .unwrap();
    if let Some(defense) = defense {
        data.set_defenses(Defenses::new(vec![defense]));
    }

    let held_out = counting_batch(&mut SplitMix64::new(99), &device);
    data.eval_step(&held_out).unwrap();
    let mut rng = SplitMix64::new(11);
    let mut losses = Vec::new();
    let started = Instant::now();
    for _ in 0..STEPS {
        let batch = counting_batch(&mut rng, &device);
        let labels = Labels::next_tokens(&batch.input_ids, &batch.attention_mask);
        losses.push(data.train_step(&batch, &labels).unwrap().loss);
    }
    let step_seconds = started.elapsed().as_secs_f64() / STEPS as f64;
    data.eval_step(&held_out).unwrap();
    data.finish().unwrap();
    server.join().unwrap().unwrap();

    let observations = model.observations();
    let evaluation = |o: &splitlm_party::Observation| o.output_grad.num_elements() == 0;
    assert!(evaluation(observations.first().unwrap()) && evaluation(observations.last().unwrap()));
    let sent_before = observations.first().unwrap().hidden.to_f32().unwrap();
    let sent = observations.last().unwrap().hidden.to_f32().unwrap();
    let truth = held_out
        .input_ids
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    Run {
        losses,
        step_seconds,
        recovered_before: nearest_embedding_rate(&sent_before, &truth, embeddings.clone()),
        recovered: nearest_embedding_rate(&sent, &truth, embeddings),
    }
}

/// The share of rows of `sent` (`[n, d]` row-major) whose most cosine-similar row of
/// `embeddings` is the true id.
fn nearest_embedding_rate(sent: &[f32], truth: &[i64], embeddings: Tensor<2>) -> f64 {
    let [vocab, d] = embeddings.dims();
    let table = embeddings.into_data().try_into_vec_as::<f32>().unwrap();
    let unit = |v: &[f32]| -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter().map(|x| x / norm).collect()
    };
    let table: Vec<Vec<f32>> = table.chunks(d).map(unit).collect();
    let hits = sent
        .chunks(d)
        .zip(truth)
        .filter(|&(row, &id)| {
            let row = unit(row);
            let best = (0..vocab)
                .max_by(|&a, &b| {
                    let dot =
                        |k: usize| -> f32 { table[k].iter().zip(&row).map(|(x, y)| x * y).sum() };
                    dot(a).total_cmp(&dot(b))
                })
                .unwrap();
            best as i64 == id
        })
        .count();
    hits as f64 / truth.len() as f64
}

fn adversarial_training(settings: AdversarialSettings) -> Box<dyn Defense> {
    let device = cpu();
    let ckpt = Pretrained::open(&fixtures_dir().join("models").join("llama")).unwrap();
    let slices = Partition::head_tail(0).slices(ckpt.num_layers()).unwrap();
    let head = ckpt
        .load(&slices.data_head, TaskHead::CausalLm, &device)
        .unwrap();
    let mut env = DefenseEnv::bare(device, ckpt.hidden_size(), ckpt.vocab_size());
    env.token_embeddings = head.word_embeddings().map(|e| e.detach());
    settings.build(7, &env).unwrap()
}

#[test]
fn adversarial_training_hides_the_tokens_from_nearest_embedding_inversion_while_training_runs() {
    let clean = run(None);
    let defended = run(Some(adversarial_training(AdversarialSettings::default())));
    // A faster mapping and adversary (1e-3, the reference's lambada_gpt_ad.json), λ = 1.
    let faster = run(Some(adversarial_training(AdversarialSettings {
        lambda: 1.0,
        mapping_lr: 1e-3,
        adversary_lr: 1e-3,
        ..AdversarialSettings::default()
    })));
    for (name, r) in [("none", &clean), ("AT", &defended), ("AT lr 1e-3", &faster)] {
        eprintln!(
            "{name}: loss {:.3} → {:.3}, {:.1} ms/step, nearest-embedding recovery {:.3} \
             before training, {:.3} after",
            r.losses[0],
            r.losses[STEPS - 1],
            r.step_seconds * 1e3,
            r.recovered_before,
            r.recovered
        );
    }
    assert!(clean.recovered >= 0.95, "undefended: {}", clean.recovered);
    for r in [&defended, &faster] {
        assert!(
            r.recovered < 0.2 * clean.recovered,
            "AT: {} vs undefended {}",
            r.recovered,
            clean.recovered
        );
        assert!(r.losses.iter().all(|l| l.is_finite()));
        // The model party still learns the task through the mapping.
        assert!(
            r.losses[STEPS - 1] < 0.9 * r.losses[0],
            "loss {:?}",
            r.losses
        );
    }
}
