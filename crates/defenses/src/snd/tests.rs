//! Unit tests: the noise against the reference's sampler, the denoiser against the reference's
//! module on fixed weights, settings, hooks, and pretraining on a synthetic head and body.

use std::sync::Arc;

use burn::tensor::{Device, TensorData};
use serde_json::Value;
use splitlm_device::DeviceSpec;
use splitlm_nn::Hidden;

use super::*;

fn device() -> Device {
    DeviceSpec::Cpu.device().unwrap()
}

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/vflair/snd.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn tensor3(values: Vec<f32>, dims: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(values, dims), device)
}

fn ctx(training: bool) -> HookContext {
    HookContext { step: 0, training }
}

#[test]
fn the_denoiser_gives_the_reference_modules_output_on_its_weights() {
    let f = &fixture()["denoiser"];
    let device = device();
    let state = &f["state_dict"];
    let get = |name: &str| -> (Vec<usize>, Vec<f32>) {
        let t = &state[name];
        assert!(!t.is_null(), "no {name} in the fixture");
        let dims = t["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        (dims, floats(&t["values"]))
    };
    let layers = f["config"]["num_layers"].as_u64().unwrap() as usize;
    let heads = f["config"]["num_heads"].as_u64().unwrap() as usize;
    let model = Denoiser::from_torch(&get, layers, heads, &device);
    let dims: Vec<usize> = f["dims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let dims = [dims[0], dims[1], dims[2]];
    let input = |key: &str| tensor3(floats(&f[key]), dims, &device);
    let mask = Tensor::<2>::from_data(
        TensorData::new(floats(&f["mask"]), [dims[0], dims[1]]),
        &device,
    );
    let out = values(model.forward(
        input("clean"),
        input("noise"),
        input("output"),
        Some(mask),
        None,
    ));
    let want = floats(&f["denoised"]);
    assert_eq!(out.len(), want.len());
    for (i, (o, w)) in out.iter().zip(&want).enumerate() {
        assert!(
            (o - w).abs() < 1e-5,
            "element {i}: {o} vs the reference's {w}"
        );
    }
}

#[test]
fn the_noise_has_the_moments_of_the_reference_sampler() {
    for row in fixture()["noise"].as_array().unwrap() {
        let width = row["width"].as_u64().unwrap() as usize;
        let eta = row["eta"].as_f64().unwrap();
        let mut rng = SplitMix64::new(11);
        let n = row["draws"].as_u64().unwrap() as usize;
        let draws: Vec<f64> = (0..n).map(|_| noise::draw(&mut rng, width, eta)).collect();
        let moment = |f: &dyn Fn(f64) -> f64| draws.iter().map(|&x| f(x)).sum::<f64>() / n as f64;
        let second = row["second_moment"].as_f64().unwrap();
        // Both samples' means are within a few standard errors (√(E[x²]/n)) of 0.
        let se = (second / n as f64).sqrt();
        assert!(moment(&|x| x).abs() < 5.0 * se, "{width}/{eta}: mean");
        assert!(row["mean"].as_f64().unwrap().abs() < 5.0 * se);
        for (name, got, tol) in [
            ("second_moment", moment(&|x| x * x), 0.02),
            ("mean_abs", moment(&|x| x.abs()), 0.01),
            ("fourth_moment", moment(&|x| x.powi(4)), 0.05),
        ] {
            let want = row[name].as_f64().unwrap();
            assert!(
                (got / want - 1.0).abs() < tol,
                "{width}/{eta}: {name} {got} vs the reference's {want}"
            );
        }
        // And the closed form, E[l²]/3.
        assert!((second / noise::variance(width, eta) - 1.0).abs() < 0.02);
    }
}

#[test]
fn settings_that_cannot_work_are_refused_naming_the_field() {
    let bad = [
        (
            "train_eta",
            SndSettings {
                train_eta: 0.0,
                ..Default::default()
            },
        ),
        (
            "test_eta",
            SndSettings {
                test_eta: -1.0,
                ..Default::default()
            },
        ),
        (
            "test_eta",
            SndSettings {
                test_eta: f64::NAN,
                ..Default::default()
            },
        ),
        (
            "denoise_lr",
            SndSettings {
                denoise_lr: 0.0,
                ..Default::default()
            },
        ),
        (
            "denoise_batch_size",
            SndSettings {
                denoise_batch_size: 0,
                ..Default::default()
            },
        ),
        (
            "noise_per_sample",
            SndSettings {
                noise_per_sample: 0,
                ..Default::default()
            },
        ),
        (
            "num_heads",
            SndSettings {
                num_heads: 0,
                ..Default::default()
            },
        ),
        (
            "num_layers",
            SndSettings {
                num_layers: 0,
                ..Default::default()
            },
        ),
        (
            "dropout",
            SndSettings {
                dropout: 1.0,
                ..Default::default()
            },
        ),
        (
            "max_norm",
            SndSettings {
                max_norm: Some(0.0),
                ..Default::default()
            },
        ),
        (
            "denoise_sample_num",
            SndSettings {
                denoise_sample_num: Some(0),
                ..Default::default()
            },
        ),
    ];
    for (field, settings) in bad {
        let err = settings.validate().unwrap_err();
        assert!(err.reason.contains(field), "{field}: {err}");
        assert!(
            settings
                .build(0, &DefenseEnv::bare(device(), 4, 10))
                .is_err()
        );
    }
    assert!(SndSettings::default().validate().is_ok());
    // From configuration, with the reference's keys; unknown keys refused.
    let parsed: SndSettings =
        serde_json::from_value(serde_json::json!({"test_eta": 50, "num_layers": 2})).unwrap();
    assert_eq!(
        (parsed.test_eta, parsed.num_layers, parsed.d_ff),
        (50.0, 2, 1024)
    );
    assert!(serde_json::from_value::<SndSettings>(serde_json::json!({"eta": 1})).is_err());
}

#[test]
fn head_body_tail_needs_the_pretrained_slices_and_a_clipping_norm() {
    let settings = SndSettings::default();
    let needs = settings.needs();
    assert!(needs.head && needs.body && needs.training_inputs && !needs.text);
    let noise_only = SndSettings {
        denoise: false,
        ..Default::default()
    };
    assert!(noise_only.needs().is_empty());
    let mut env = DefenseEnv::bare(device(), 4, 10);
    env.has_tail = true;
    env.family = "bert".into();
    let err = settings.build(0, &env).err().unwrap();
    assert!(err.reason.contains("pretrained head"), "{err}");
    env.family = "t5".into();
    let err = settings.build(0, &env).err().unwrap();
    assert!(err.reason.contains("max_norm"), "{err}");
    // Noise only needs nothing, in either split, unless the run clips.
    assert!(noise_only.build(0, &env).is_ok());
    let clip_at_run = SndSettings {
        clip_at_run: true,
        ..noise_only.clone()
    };
    assert!(
        clip_at_run
            .build(0, &env)
            .err()
            .unwrap()
            .reason
            .contains("max_norm")
    );
    let given = SndSettings {
        max_norm: Some(3.0),
        ..clip_at_run
    };
    assert!(given.build(0, &env).is_ok());
}

#[test]
fn head_tail_only_adds_seeded_noise_that_passes_the_gradient() {
    let env = DefenseEnv::bare(device(), 16, 10);
    let settings = SndSettings {
        test_eta: 10.0,
        ..Default::default()
    };
    let ad = device().autodiff();
    let hidden = || {
        let v: Vec<f32> = (0..4 * 50 * 16).map(|i| (i as f32 * 0.01).sin()).collect();
        tensor3(v, [4, 50, 16], &ad)
    };
    let run = |seed| {
        let mut snd = settings.build(seed, &env).unwrap();
        let x = hidden().require_grad();
        let sent = snd.on_activation(x.clone(), &ctx(true));
        let grads = (sent.clone() * 3.0).sum().backward();
        let grad = values(x.grad(&grads).unwrap());
        assert!(
            grad.iter().all(|&g| (g - 3.0).abs() < 1e-6),
            "the gradient passes unchanged"
        );
        let received = snd.on_received(sent.clone(), &ctx(true));
        assert_eq!(
            values(received),
            values(sent.clone()),
            "no denoiser in Head–Tail"
        );
        let again = values(snd.on_activation(hidden(), &ctx(false)));
        (values(sent), again)
    };
    let (a, a_eval) = run(5);
    let (b, _) = run(5);
    let (c, _) = run(6);
    assert_eq!(a, b, "the same seed, the same noise");
    assert_ne!(a, c);
    let clean = values(hidden());
    assert_ne!(a_eval, clean, "evaluation steps are noised too");
    let noise: Vec<f64> = a.iter().zip(&clean).map(|(s, h)| (s - h) as f64).collect();
    let second = noise.iter().map(|x| x * x).sum::<f64>() / noise.len() as f64;
    let want = noise::variance(16, 10.0);
    assert!(
        (second / want - 1.0).abs() < 0.1,
        "E[n²] {second} vs {want}"
    );
}

/// A synthetic Head–Body–Tail environment of width `d`: the head embeds ids by fixed vectors,
/// the body is `tanh(x·W)` with a fixed `W`.
fn synthetic_env(d: usize, examples: usize) -> DefenseEnv {
    let device = device().autodiff();
    let vocab = 20;
    let mut rng = SplitMix64::new(3);
    let table: Vec<f32> = (0..vocab * d).map(|_| rng.normal() as f32).collect();
    let w: Vec<f32> = (0..d * d)
        .map(|_| (rng.normal() / (d as f64).sqrt()) as f32)
        .collect();
    let table = Tensor::<2>::from_data(TensorData::new(table, [vocab, d]), &device);
    let w = Tensor::<2>::from_data(TensorData::new(w, [d, d]), &device);
    let mut env = DefenseEnv::bare(device, d, vocab);
    env.has_tail = true;
    env.family = "bert".into();
    env.head = Some(Arc::new(move |batch: &TokenBatch| {
        let [b, s] = batch.dims();
        let ids = batch.input_ids.clone().reshape([b * s]);
        let states = table.clone().select(0, ids).reshape([b, s, d]);
        Ok(Hidden {
            states,
            attention_mask: batch.attention_mask.clone(),
            positions: batch.positions(),
        })
    }));
    env.body = Some(Arc::new(move |hidden: Hidden| {
        let [b, s, _] = hidden.states.dims();
        let states = burn::tensor::activation::tanh(
            hidden.states.clone().reshape([b * s, d]).matmul(w.clone()),
        )
        .reshape([b, s, d]);
        Ok(hidden.with_states(states))
    }));
    let mut rng = SplitMix64::new(4);
    let inputs: Vec<Vec<u32>> = (0..examples)
        .map(|i| {
            let len = 3 + i % 4;
            (0..len)
                .map(|_| (rng.next_u64() % vocab as u64) as u32)
                .collect()
        })
        .collect();
    env.training_inputs = Arc::new(inputs);
    env
}

fn small() -> SndSettings {
    SndSettings {
        test_eta: 8.0,
        train_eta: 8.0,
        denoise_epoch: 4,
        denoise_lr: 3e-3,
        num_layers: 1,
        num_heads: 2,
        dim_head: 4,
        d_ff: 16,
        dropout: 0.1,
        clip_pretraining: false,
        ..Default::default()
    }
}

#[test]
fn pretraining_lowers_the_loss_and_is_reproducible() {
    let env = synthetic_env(8, 48);
    let a = Snd::new(small(), 9, &env).unwrap();
    let losses = a.pretraining_losses();
    assert_eq!(losses.len(), 4);
    assert!(losses[3] < 0.7 * losses[0], "{losses:?}");
    let b = Snd::new(small(), 9, &env).unwrap();
    assert_eq!(
        losses,
        b.pretraining_losses(),
        "the same seed, the same pretraining"
    );
    let c = Snd::new(small(), 10, &env).unwrap();
    assert_ne!(losses, c.pretraining_losses());
    let few = SndSettings {
        denoise_sample_num: Some(12),
        ..small()
    };
    let d = Snd::new(few, 9, &env).unwrap();
    assert_eq!(d.params()["pretraining"]["examples"], 12);
    assert_eq!(a.params()["pretraining"]["examples"], 48);
}

#[test]
fn at_the_tail_the_denoiser_maps_the_body_output_and_ignores_padding() {
    let env = synthetic_env(8, 24);
    let mut snd = Snd::new(small(), 1, &env).unwrap();
    let ad = env.device.clone();
    let batch =
        TokenBatch::from_sequences(&[vec![1, 2, 3, 4], vec![5, 6]], 0, PaddingSide::Right, &ad)
            .unwrap();
    let head = env.head.as_ref().unwrap();
    let body = env.body.as_ref().unwrap();
    let clean = head(&batch).unwrap();
    for training in [true, false] {
        let device = if training {
            ad.clone()
        } else {
            ad.clone().inner()
        };
        let batch = snd.on_input(batch.to_device(&device), &ctx(training));
        let sent = snd.on_activation(clean.states.clone().to_device(&device), &ctx(training));
        let noisy = body(clean.clone().with_states(sent.clone()))
            .unwrap()
            .states;
        let mut received = noisy.to_device(&device);
        if training {
            received = received.require_grad();
        }
        let out = snd.on_received(received.clone(), &ctx(training));
        assert_eq!(out.dims(), [2, 4, 8]);
        assert!(values(out.clone()).iter().all(|v| v.is_finite()));
        if training {
            let grads = out.sum().backward();
            assert!(
                received.grad(&grads).is_some(),
                "the tail's gradient reaches the body"
            );
        }
        drop(batch);
    }
    // Padding keys are masked: what the clean output holds there does not matter.
    let model = &snd.denoiser.as_ref().unwrap().evaluation;
    let dev = device();
    let mask = Tensor::<2>::from_data(TensorData::new(vec![1f32, 1., 1., 0.], [1, 4]), &dev);
    let mut rng = SplitMix64::new(2);
    let mut random = || -> Vec<f32> { (0..32).map(|_| rng.normal() as f32).collect() };
    let (h, n, y) = (random(), random(), random());
    let mut h2 = h.clone();
    for v in &mut h2[24..] {
        *v += 5.0;
    }
    let run = |h: &[f32]| {
        values(model.forward(
            tensor3(h.to_vec(), [1, 4, 8], &dev),
            tensor3(n.clone(), [1, 4, 8], &dev),
            tensor3(y.clone(), [1, 4, 8], &dev),
            Some(mask.clone()),
            None,
        ))
    };
    let (a, b) = (run(&h), run(&h2));
    for (x, z) in a.iter().zip(&b) {
        assert!((x - z).abs() < 1e-5);
    }
    assert_ne!(run(&random()), a, "the clean output at real tokens matters");
}
