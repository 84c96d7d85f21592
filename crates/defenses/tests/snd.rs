//! SnD on a real Head–Body–Tail split of the tiny BERT fixture (one block at each party): the
//! denoiser, pretrained with the pretrained head and body on the data party's training inputs,
//! brings the tail's input closer to the body's output on the clean input than the noisy
//! output is; and a split run with it gives logits closer to the undefended run's than noise
//! alone does.

use std::sync::Arc;
use std::time::Instant;

use burn::tensor::{Device, Tensor};
use splitlm_defenses::{Defense, DefenseConfig, DefenseEnv, Defenses, HookContext, SndSettings};
use splitlm_device::DeviceSpec;
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::seeded::SplitMix64;
use splitlm_nn::testing::fixtures_dir;
use splitlm_nn::{HeadOutput, Hidden, Labels, SliceSpec, TaskHead, TokenBatch, TransformerSlice};
use splitlm_partition::{Partition, PartySlices};
use splitlm_party::{DataParty, ModelParty, PartyOptions, PartySlice};
use splitlm_protocol::{Limits, WireDType, in_process_pair};
use splitlm_zoo::Pretrained;

const TASK: TaskHead = TaskHead::SequenceClassification { num_labels: 3 };

fn device() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

struct Setup {
    ckpt: Pretrained,
    slices: PartySlices,
    device: Device,
}

fn setup() -> Setup {
    let ckpt = Pretrained::open(&fixtures_dir().join("models").join("bert")).unwrap();
    let slices = Partition::head_body_tail(1, 1)
        .slices(ckpt.num_layers())
        .unwrap();
    Setup {
        ckpt,
        slices,
        device: device(),
    }
}

/// Random id sequences of 4–11 tokens (ids 1–98 of the fixture's 99; 0 pads).
fn sequences(n: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let len = 4 + (rng.next_u64() % 8) as usize;
            (0..len).map(|_| 1 + (rng.next_u64() % 98) as u32).collect()
        })
        .collect()
}

fn detached(h: Hidden) -> Hidden {
    let states = h.states.clone().detach();
    h.with_states(states)
}

/// The data party's environment, built as `splitlm_train::defense_env` builds it.
fn env(s: &Setup, inputs: Vec<Vec<u32>>) -> DefenseEnv {
    let mut env = DefenseEnv::bare(s.device.clone(), s.ckpt.hidden_size(), s.ckpt.vocab_size());
    env.family = s.ckpt.family().name().to_string();
    env.has_tail = true;
    env.num_classes = Some(3);
    env.training_inputs = Arc::new(inputs);
    let head = s.ckpt.load(&s.slices.data_head, TASK, &s.device).unwrap();
    env.head = Some(Arc::new(move |batch| {
        let hidden = head.embed(batch).map_err(|e| e.to_string())?;
        head.forward_blocks(hidden, None)
            .map(detached)
            .map_err(|e| e.to_string())
    }));
    let spec = SliceSpec {
        top: false,
        ..s.slices.model.clone()
    };
    let body = s.ckpt.load(&spec, TASK, &s.device).unwrap();
    env.body = Some(Arc::new(move |hidden| {
        body.forward_blocks(hidden, None)
            .map(detached)
            .map_err(|e| e.to_string())
    }));
    env
}

/// A denoiser of a size that pretrains in seconds; every other setting the reference's,
/// except the learning rate (its 1e-4 needs more steps than a test affords) and clipping.
fn settings(eta: f64) -> SndSettings {
    SndSettings {
        train_eta: eta,
        test_eta: eta,
        denoise_lr: 1e-3,
        num_layers: 2,
        num_heads: 4,
        dim_head: 8,
        d_ff: 64,
        // The reference clips the noisy activations in pretraining only, so its denoiser is
        // pretrained on inputs unlike the run's; the fixture's head outputs have norm ≈ 5.7,
        // well above BERT's 2.5. Here neither clips (with the reference's clipping, η = 30:
        // 0.316 → 0.301 measured, against 0.277 without).
        clip_pretraining: false,
        ..Default::default()
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

/// MSE over the real tokens of `mask` `[b, s]` (ints).
fn mse(a: &Tensor<3>, b: &Tensor<3>, mask: &[i64]) -> f64 {
    let [_, _, d] = a.dims();
    let (a, b) = (values(a.clone()), values(b.clone()));
    let (mut total, mut n) = (0.0, 0usize);
    for (t, &m) in mask.iter().enumerate() {
        if m == 0 {
            continue;
        }
        for k in 0..d {
            let e = (a[t * d + k] - b[t * d + k]) as f64;
            total += e * e;
        }
        n += d;
    }
    total / n as f64
}

/// Through the hooks on held-out inputs: MSE to the body's clean output of the noisy output
/// and of the denoised one.
fn tail_input_errors(snd: &mut dyn Defense, env: &DefenseEnv, held_out: &[Vec<u32>]) -> (f64, f64) {
    let ctx = HookContext {
        step: 0,
        training: false,
    };
    let batch = TokenBatch::from_sequences(held_out, 0, PaddingSide::Right, &env.device).unwrap();
    let mask = values(batch.attention_mask.clone().float())
        .into_iter()
        .map(|m| m as i64)
        .collect::<Vec<_>>();
    let head = env.head.as_ref().unwrap();
    let body = env.body.as_ref().unwrap();
    let clean = head(&batch).unwrap();
    let target = body(clean.clone()).unwrap().states;
    let batch = snd.on_input(batch, &ctx);
    let sent = snd.on_activation(clean.states.clone(), &ctx);
    let noisy = body(clean.clone().with_states(sent)).unwrap().states;
    let denoised = snd.on_received(noisy.clone(), &ctx);
    drop(batch);
    (mse(&noisy, &target, &mask), mse(&denoised, &target, &mask))
}

/// Pretrains SnD with `settings` and measures it on held-out inputs: (noisy MSE, denoised MSE).
fn measure(env: &DefenseEnv, settings: SndSettings, held_out: &[Vec<u32>]) -> (f64, f64) {
    let name = format!(
        "η = {}, {}{}",
        settings.test_eta,
        if settings.residual {
            "residual"
        } else {
            "reference model"
        },
        if settings.clip_pretraining {
            ", clipped in pretraining"
        } else {
            ""
        },
    );
    let start = Instant::now();
    let mut snd = DefenseConfig::Snd(settings).build(7, env).unwrap();
    let built = start.elapsed().as_secs_f64();
    let record = &snd.params()["pretraining"];
    let (noisy, denoised) = tail_input_errors(snd.as_mut(), env, held_out);
    eprintln!(
        "{name}: tail-input MSE noisy {noisy:.5}, denoised {denoised:.5} ({:.2}×); \
         pretraining {built:.1} s on {} examples, epochs' seconds {}, losses {}, {} parameters",
        noisy / denoised,
        record["examples"],
        record["epoch_seconds"],
        record["epoch_losses"],
        record["denoiser_parameters"],
    );
    let losses: Vec<f64> = serde_json::from_value(record["epoch_losses"].clone()).unwrap();
    assert!(losses.last().unwrap() < &losses[0], "{name}: {losses:?}");
    (noisy, denoised)
}

#[test]
fn the_pretrained_denoiser_brings_the_tails_input_closer_to_the_clean_one() {
    let s = setup();
    let env = env(&s, sequences(120, 1));
    let held_out = sequences(24, 2);
    // Measured 1.153 → 0.454 (η = 30: 0.316 → 0.277).
    let (noisy, denoised) = measure(&env, settings(10.0), &held_out);
    assert!(denoised < 0.7 * noisy, "η = 10: {denoised} vs {noisy}");
    // η = 100 leaves this 32-wide model's activations nearly clean (noise norm ≈ 1 per token
    // against ≈ 5.7): the reference's model, starting as a random map, needs longer than a
    // test to beat passing the noisy output on; the residual option does it at once.
    let residual = SndSettings {
        residual: true,
        ..settings(100.0)
    };
    // Measured 0.0336 → 0.0304; the reference's model: 0.0336 → 0.0816 after 8 epochs on 240
    // examples.
    let (noisy, denoised) = measure(&env, residual, &held_out);
    assert!(denoised < noisy, "residual, η = 100: {denoised} vs {noisy}");
}

/// The logits of the split run on `batch`, `defenses` applied, and the seconds of `steps`
/// training steps (frozen slices: the tail's backward pass runs, nothing updates).
fn split_run(s: &Setup, defenses: Defenses, batch: &TokenBatch, steps: usize) -> (Vec<f32>, f64) {
    let frozen =
        |spec: &SliceSpec| PartySlice::frozen(s.ckpt.load(spec, TASK, &s.device).unwrap()).unwrap();
    let model = ModelParty::new(frozen(&s.slices.model), WireDType::F32);
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let tail = s.slices.data_tail.as_ref().map(frozen);
    let mut data = DataParty::connect(
        frozen(&s.slices.data_head),
        tail,
        Box::new(a),
        &PartyOptions::default(),
    )
    .unwrap();
    data.set_defenses(defenses);
    let logits = match data.eval_step(batch).unwrap() {
        HeadOutput::ClassLogits(l) => values(l),
        _ => panic!("a classification head"),
    };
    let n = batch.dims()[0];
    let labels = Labels::Classes(Tensor::from_data(
        burn::tensor::TensorData::new(vec![1i64; n], [n]),
        &s.device,
    ));
    let start = Instant::now();
    for _ in 0..steps {
        data.train_step(batch, &labels).unwrap();
    }
    let seconds = start.elapsed().as_secs_f64() / steps.max(1) as f64;
    data.finish().unwrap();
    server.join().unwrap().unwrap();
    (logits, seconds)
}

#[test]
fn in_a_split_run_the_denoiser_keeps_the_logits_closer_to_the_undefended_ones() {
    let s = setup();
    let env = env(&s, sequences(120, 1));
    let batch =
        TokenBatch::from_sequences(&sequences(12, 3), 0, PaddingSide::Right, &s.device).unwrap();
    let build = |denoise: bool| {
        let config = DefenseConfig::Snd(SndSettings {
            denoise,
            ..settings(10.0)
        });
        Defenses::new(vec![config.build(5, &env).unwrap()])
    };
    let (clean, plain_step) = split_run(&s, Defenses::none(), &batch, 3);
    let (noised, noise_step) = split_run(&s, build(false), &batch, 3);
    let (denoised, snd_step) = split_run(&s, build(true), &batch, 3);
    let err = |x: &[f32]| -> f64 {
        x.iter()
            .zip(&clean)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / x.len() as f64
    };
    let argmax = |x: &[f32]| -> Vec<usize> {
        x.chunks(3)
            .map(|r| (0..3).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap())
            .collect()
    };
    let agree = |x: &[f32]| {
        argmax(x)
            .iter()
            .zip(argmax(&clean))
            .filter(|(a, b)| **a == *b)
            .count()
    };
    eprintln!(
        "logit MSE to the undefended run: noise only {:.6}, with denoiser {:.6}; argmax agreement \
         {}/12 vs {}/12; seconds per training step (batch 12): none {plain_step:.3}, noise \
         {noise_step:.3}, noise + denoiser {snd_step:.3}",
        err(&noised),
        err(&denoised),
        agree(&noised),
        agree(&denoised),
    );
    assert!(
        err(&denoised) < err(&noised),
        "{} vs {}",
        err(&denoised),
        err(&noised)
    );
}
