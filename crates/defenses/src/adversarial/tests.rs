//! AT against the reference's own modules (`fixtures/vflair/adversarial.json`, written by
//! `fixtures/vflair/adversarial.py`), and its settings, shapes, signs and seeding.

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use splitlm_device::DeviceSpec;
use splitlm_nn::TokenBatch;

use super::mlp::Mlp3;
use super::*;
use crate::DefenseConfig;

pub(super) fn device() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

pub(super) fn ctx(training: bool) -> HookContext {
    HookContext { step: 0, training }
}

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/vflair/adversarial.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str::<Value>(&text).unwrap()["at"].clone()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn float_lists(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

pub(super) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

fn batch(ids: &[i64], dims: [usize; 2], device: &Device) -> TokenBatch {
    let n = dims[0] * dims[1];
    TokenBatch {
        input_ids: Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), dims), device),
        attention_mask: Tensor::<2, Int>::from_data(TensorData::new(vec![1i64; n], dims), device),
        token_type_ids: None,
    }
}

fn hidden(b: usize, s: usize, d: usize, device: &Device) -> Tensor<3> {
    let values: Vec<f32> = (0..b * s * d).map(|i| (i as f32 * 0.37).sin()).collect();
    Tensor::from_data(TensorData::new(values, [b, s, d]), device)
}

fn env_with_embeddings(d: usize, vocab: usize, device: &Device) -> DefenseEnv {
    let mut env = DefenseEnv::bare(device.clone(), d, vocab);
    let values: Vec<f32> = (0..vocab * d).map(|i| (i as f32 * 0.53).cos()).collect();
    env.token_embeddings = Some(Tensor::from_data(
        TensorData::new(values, [vocab, d]),
        device,
    ));
    env
}

#[test]
fn one_step_matches_the_references_modules_loss_and_updates() {
    let f = fixture();
    let device = device();
    let dim = |k: &str| f["dims"][k].as_u64().unwrap() as usize;
    let (b, s, d, vocab) = (dim("batch"), dim("seq"), dim("hidden"), dim("vocab"));
    let settings = AdversarialSettings {
        lambda: f["lambda"].as_f64().unwrap(),
        mapping_lr: f["mapping_lr"].as_f64().unwrap(),
        adversary_lr: f["adversary_lr"].as_f64().unwrap(),
        ..AdversarialSettings::default()
    };
    let mapping = Mlp3::from_torch(
        d,
        dim("mapping_hidden"),
        d,
        &float_lists(&f["mapping_before"]),
    );
    let adversary = Mlp3::from_torch(
        d,
        dim("adversary_hidden"),
        d,
        &float_lists(&f["adversary_before"]),
    );
    let embeddings = Tensor::<2>::from_data(
        TensorData::new(floats(&f["embeddings"]), [vocab, d]),
        &device,
    );
    let mut at = AdversarialTraining::with_modules(settings, embeddings, mapping, adversary);
    assert_eq!(
        at.head_mapping.as_ref().unwrap().torch_params(),
        float_lists(&f["mapping_before"])
    );

    let ids: Vec<i64> = f["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let h = Tensor::<3>::from_data(TensorData::new(floats(&f["hidden"]), [b, s, d]), &device)
        .require_grad();
    let model_grad = Tensor::<3>::from_data(
        TensorData::new(floats(&f["local_gradient"]), [b, s, d]),
        &device,
    );
    at.on_input(batch(&ids, [b, s], &device), &ctx(true));
    let sent = at.on_activation(h.clone(), &ctx(true));
    assert_close(&values(sent.clone()), &floats(&f["sent"]), 1e-5, "sent");
    let extra = at
        .extra_loss(&ctx(true))
        .expect("a training step has a loss");
    let objective: f32 = extra.clone().into_scalar();
    assert_close(
        &[objective],
        &[f["objective"].as_f64().unwrap() as f32],
        1e-5,
        "objective",
    );
    // The objective is λ·distance − attack, the fixture's terms.
    let (distance, attack) = (
        f["distance"].as_f64().unwrap(),
        f["attack_loss"].as_f64().unwrap(),
    );
    let lambda = f["lambda"].as_f64().unwrap();
    assert!((objective as f64 - (lambda * distance - attack)).abs() < 1e-5);

    // The data party's head-side backward pass: what was sent times the model party's
    // gradient, plus the defense's term.
    let grads = ((sent * model_grad).sum() + extra).backward();
    // The head learns from the model party's gradient alone, as in the reference.
    let head_grad = values(h.grad(&grads).unwrap());
    assert_close(&head_grad, &floats(&f["head_grad"]), 1e-4, "head gradient");
    at.update(&grads, &ctx(true));
    let after = |m: &Option<Mlp3>| m.as_ref().unwrap().torch_params();
    for (got, want) in after(&at.head_mapping)
        .iter()
        .zip(float_lists(&f["mapping_after"]))
    {
        assert_close(got, &want, 1e-5, "mapping after one Adam step");
    }
    for (got, want) in after(&at.adversary)
        .iter()
        .zip(float_lists(&f["adversary_after"]))
    {
        assert_close(got, &want, 1e-5, "adversary after one Adam step");
    }
}

#[test]
fn shapes_and_evaluation_send_the_mapping_in_zero_one_without_a_loss() {
    let device = device();
    let env = env_with_embeddings(6, 11, &device);
    let mut at = AdversarialSettings::default().build(3, &env).unwrap();
    assert!(at.is_trainable());
    let out = at.on_activation(hidden(2, 5, 6, &device), &ctx(false));
    assert_eq!(out.dims(), [2, 5, 6]);
    let v = values(out);
    assert!(v.iter().all(|&x| x > 0.0 && x < 1.0), "a sigmoid's range");
    assert!(
        at.extra_loss(&ctx(false)).is_none(),
        "no loss outside training"
    );
    // Training: one loss per step, taken once.
    at.on_input(
        batch(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 5], &device),
        &ctx(true),
    );
    at.on_activation(hidden(2, 5, 6, &device), &ctx(true));
    assert!(at.extra_loss(&ctx(true)).is_some());
    assert!(at.extra_loss(&ctx(true)).is_none());
    // Without the head, nothing happens at the head.
    let tail_only = AdversarialSettings {
        head: false,
        tail: true,
        ..AdversarialSettings::default()
    };
    let mut with_tail = DefenseEnv::bare(device.clone(), 6, 11);
    with_tail.has_tail = true;
    let mut at = tail_only.build(0, &with_tail).unwrap();
    assert!(!at.is_trainable());
    let h = hidden(2, 5, 6, &device);
    assert_eq!(values(at.on_activation(h.clone(), &ctx(true))), values(h));
}

#[test]
fn the_mapping_ascends_the_adversarys_loss_and_the_adversary_descends_it() {
    let device = device();
    let env = env_with_embeddings(6, 11, &device);
    let ids: Vec<i64> = (0..10).map(|i| (i * 7 % 11) as i64).collect();
    // The attack loss after `steps` steps where only one side learns (the other's rate is
    // negligible) and λ = 0 (the distance does not pull).
    let attack_after = |mapping_lr: f64, adversary_lr: f64, steps: usize| -> f32 {
        let settings = AdversarialSettings {
            lambda: 0.0,
            mapping_lr,
            adversary_lr,
            ..AdversarialSettings::default()
        };
        let mut at = AdversarialTraining::new(settings, 1, &env).unwrap();
        let mut last = 0.0;
        for step in 0..=steps {
            at.on_input(batch(&ids, [2, 5], &device), &ctx(true));
            let sent = at.on_activation(hidden(2, 5, 6, &device), &ctx(true));
            let extra = at.extra_loss(&ctx(true)).unwrap();
            // With λ = 0 the objective is −attack.
            last = -extra.clone().into_scalar::<f32>();
            if step < steps {
                let grads = (sent.sum() * 0.0 + extra).backward();
                at.update(&grads, &ctx(true));
            }
        }
        last
    };
    let start = attack_after(1e-12, 1e-12, 0);
    let adversary_trained = attack_after(1e-12, 0.01, 30);
    let mapping_trained = attack_after(0.01, 1e-12, 30);
    eprintln!(
        "attack loss: start {start}, adversary trained {adversary_trained}, mapping trained \
         {mapping_trained}"
    );
    assert!(adversary_trained < start, "{adversary_trained} vs {start}");
    assert!(mapping_trained > start, "{mapping_trained} vs {start}");
}

#[test]
fn the_same_seed_draws_the_same_modules() {
    let device = device();
    let env = env_with_embeddings(6, 11, &device);
    let sent = |seed: u64| {
        let mut at = AdversarialSettings::default().build(seed, &env).unwrap();
        values(at.on_activation(hidden(2, 3, 6, &device), &ctx(false)))
    };
    assert_eq!(sent(4), sent(4));
    assert_ne!(sent(4), sent(5));
}

#[test]
fn bad_settings_are_refused_naming_the_field() {
    let device = device();
    let refused = |settings: AdversarialSettings, field: &str| {
        let err = settings.validate().unwrap_err();
        assert!(err.reason.contains(field), "{field}: {err}");
        assert_eq!(err.defense, "adversarial_training");
    };
    let d = AdversarialSettings::default;
    refused(
        AdversarialSettings {
            lambda: -1.0,
            ..d()
        },
        "lambda",
    );
    refused(
        AdversarialSettings {
            lambda: f64::NAN,
            ..d()
        },
        "lambda",
    );
    refused(
        AdversarialSettings {
            mapping_lr: 0.0,
            ..d()
        },
        "mapping_lr",
    );
    refused(
        AdversarialSettings {
            adversary_lr: f64::INFINITY,
            ..d()
        },
        "adversary_lr",
    );
    refused(
        AdversarialSettings {
            mapping_hidden_size: 0,
            ..d()
        },
        "mapping_hidden_size",
    );
    refused(
        AdversarialSettings {
            adversary_hidden_size: 0,
            ..d()
        },
        "adversary_hidden_size",
    );
    refused(
        AdversarialSettings {
            at_epsilon: -0.5,
            ..d()
        },
        "at_epsilon",
    );
    refused(
        AdversarialSettings { head: false, ..d() },
        "neither head nor tail",
    );
    // The head needs the input embeddings; the tail a Head–Body–Tail cut.
    let bare = DefenseEnv::bare(device.clone(), 6, 11);
    let err = d().build(0, &bare).err().unwrap();
    assert!(err.reason.contains("input embeddings"), "{err}");
    let tail = AdversarialSettings { tail: true, ..d() };
    let err = tail
        .build(0, &env_with_embeddings(6, 11, &device))
        .err()
        .unwrap();
    assert!(err.reason.contains("Head–Body–Tail"), "{err}");
    // A config table with an unknown key is refused; left-out keys are the defaults.
    let parse = |text: &str| serde_json::from_str::<DefenseConfig>(text);
    assert!(parse(r#"{"kind": "adversarial_training", "lamda": 0.1}"#).is_err());
    let config = parse(r#"{"kind": "adversarial_training"}"#).unwrap();
    assert_eq!(config, DefenseConfig::AdversarialTraining(d()));
    assert!(
        config.needs().embeddings,
        "the head's adversary needs the input embeddings"
    );
    let config = parse(r#"{"kind": "adversarial_training", "lambda": 5.0, "tail": true}"#).unwrap();
    let DefenseConfig::AdversarialTraining(s) = config else {
        panic!("{config:?}")
    };
    assert_eq!((s.lambda, s.head, s.tail), (5.0, true, true));
}

#[test]
fn defaults_are_the_references() {
    // party/passive_party.py:116–117 (mapping width 80), 135–136 (adversary width 80),
    // 143–144 (ε 1); the configurations' learning rates 1e-4 and sst2_ad.json's λ 0.1.
    let d = AdversarialSettings::default();
    assert_eq!((d.mapping_hidden_size, d.adversary_hidden_size), (80, 80));
    assert_eq!(
        (d.mapping_lr, d.adversary_lr, d.lambda, d.at_epsilon),
        (1e-4, 1e-4, 0.1, 1.0)
    );
    assert_eq!((d.head, d.tail), (true, false));
}

#[test]
fn at_the_tail_it_maps_what_arrives_and_leaves_the_sent_gradient_to_the_task() {
    let device = device();
    let mut env = DefenseEnv::bare(device.clone(), 6, 11);
    env.has_tail = true;
    let settings = AdversarialSettings {
        head: false,
        tail: true,
        lambda: 2.0,
        mapping_lr: 0.01,
        ..AdversarialSettings::default()
    };
    let mut at = settings.build(2, &env).unwrap();
    let received = hidden(2, 3, 6, &device).require_grad();
    // The task's loss on the tail's input, with and without the defense's tail term (the
    // same weights both times: no update in between).
    let out = at.on_received(received.clone(), &ctx(true));
    assert_eq!(out.dims(), [2, 3, 6]);
    let tail_loss = at
        .tail_loss(&ctx(true))
        .expect("a training step has a tail loss");
    let distance: f32 = tail_loss.clone().into_scalar();
    assert!(distance > 0.0);
    let grads = (out.powi_scalar(2).sum() + tail_loss).backward();
    let out = at.on_received(received.clone(), &ctx(true));
    let grads_task_only = out.powi_scalar(2).sum().backward();
    // The gradient sent back is the task's alone.
    assert_eq!(
        values(received.grad(&grads).unwrap()),
        values(received.grad(&grads_task_only).unwrap())
    );
    // The tail mapping learns: the same input maps elsewhere after an update.
    let before = values(at.on_received(received.clone(), &ctx(false)));
    at.on_received(received.clone(), &ctx(true));
    let _ = at.tail_loss(&ctx(true));
    let out = at.on_received(received.clone(), &ctx(true));
    let grads = (out.sum() + at.tail_loss(&ctx(true)).unwrap()).backward();
    at.update_tail(&grads, &ctx(true));
    assert_ne!(before, values(at.on_received(received, &ctx(false))));
}
