//! The defenses, as configured with the reference's defaults, against the reference's own
//! outputs: `fixtures/vflair/defenses.json`, written by VFLAIR-LLM's functions and classes
//! (`fixtures/vflair/defenses.py`), with their random draws stored and injected here.

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::{Value, json};

use crate::dp::Side;
use crate::mid::Bottleneck;
use crate::sparsify::torch_quantile;
use crate::{Crossing, Defense, DefenseConfig, DpNoise, HookContext, KlScale, Sparsification};

const CTX: HookContext = HookContext {
    step: 0,
    training: true,
};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/vflair/defenses.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn device() -> Device {
    splitlm_device::DeviceSpec::Cpu.device().unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn dims(v: &Value) -> [usize; 3] {
    let d: Vec<usize> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    d.try_into().unwrap()
}

fn tensor(values: Vec<f32>, dims: [usize; 3], device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(values, dims), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

/// `got` within `tol` of `want`, relative to magnitudes above 1.
fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: {g} vs the reference's {w}"
        );
    }
}

fn config(value: Value) -> DefenseConfig {
    serde_json::from_value(value).unwrap()
}

#[test]
fn laplace_on_activations_is_the_references() {
    for case in fixture()["laplace_pred"].as_array().unwrap() {
        let mut table = json!({"kind": "laplace_dp", "epsilon": case["epsilon"]});
        // The reference's table gives BERT's Δf; a model outside it (Llama) takes the
        // reference's fallback, which must be our default.
        if !case["delta_f"].is_null() {
            table["sensitivity"] = case["delta_f"].clone();
        }
        let settings = config(table).laplace().unwrap();
        assert_eq!(
            settings.target,
            Crossing::Activations,
            "the reference's 'pred'"
        );
        let dp = DpNoise::laplace_with(settings, 0).unwrap();
        let x = tensor(floats(&case["x"]), dims(&case["dims"]), &device());
        let u = floats(&case["u"]);
        let mut draws = u.iter().map(|&v| v as f64);
        let out = dp.apply(x, Side::Activations, || draws.next().unwrap());
        let what = format!("laplace_pred {}", case["model_type"]);
        assert_close(&values(out), &floats(&case["out"]), 1e-5, &what);
    }
}

#[test]
fn laplace_on_gradients_is_the_references() {
    for case in fixture()["laplace_grad"].as_array().unwrap() {
        let mut table =
            json!({"kind": "laplace_dp", "epsilon": case["epsilon"], "target": "gradients"});
        // `delta_f` unset in the reference: our default must be its default.
        if !case["delta_f"].is_null() {
            table["gradient_sensitivity"] = case["delta_f"].clone();
        }
        let dp = DpNoise::laplace_with(config(table).laplace().unwrap(), 0).unwrap();
        let x = tensor(floats(&case["x"]), dims(&case["dims"]), &device());
        let u = floats(&case["u"]);
        let mut draws = u.iter().map(|&v| v as f64);
        let out = dp.apply(x, Side::Gradients, || draws.next().unwrap());
        let what = format!("laplace_grad delta_f={}", case["delta_f"]);
        assert_close(&values(out), &floats(&case["out"]), 1e-5, &what);
    }
}

#[test]
fn sparsified_activations_are_the_references_and_the_head_gets_the_dense_gradient() {
    let device = device().autodiff();
    for case in fixture()["sparsify_pred"].as_array().unwrap() {
        let table =
            json!({"kind": "sparsification", "rate": case["rate"], "target": "activations"});
        let mut sparse: Sparsification = config(table).sparsification().unwrap();
        if let Some(limit) = case["quantile_limit"].as_u64() {
            sparse = sparse.with_quantile_limit(limit as usize);
        }
        let dims = dims(&case["dims"]);
        let x = tensor(floats(&case["x"]), dims, &device).require_grad();
        let sent = sparse.on_activation(x.clone(), &CTX);
        let what = format!("sparsify_pred rate={} dims={dims:?}", case["rate"]);
        // Kept values cross unchanged, the others as 0: exactly.
        assert_eq!(values(sent.clone()), floats(&case["out"]), "{what}");
        // Straight through: the head's gradient is the model party's, dense.
        let upstream: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|i| 1.0 + i as f32)
            .collect();
        let grads = (sent * tensor(upstream.clone(), dims, &device))
            .sum()
            .backward();
        assert_eq!(values(x.grad(&grads).unwrap()), upstream, "{what}");
    }
}

#[test]
fn thresholds_are_torch_quantiles_bit_for_bit() {
    for case in fixture()["torch_quantile"].as_array().unwrap() {
        let q = case["q"].as_f64().unwrap() as f32;
        let got = torch_quantile(&floats(&case["values"]), q);
        assert_eq!(got, case["out"].as_f64().unwrap() as f32, "q = {q}");
    }
}

#[test]
fn the_chunked_quantile_fallback_is_the_references() {
    let case = &fixture()["sparsify_flat_fallback"];
    let dims = dims(&case["dims"]);
    let n: usize = dims.iter().product();
    // The fixture's `ramp`, in f64 then rounded once to f32.
    let x: Vec<f32> = (0..n)
        .map(|i| {
            let v = ((i as u64 * 7919) % 10007) as f64 / 10007.0 - 0.5;
            (if i >= 100_000 { v * 4.0 } else { v }) as f32
        })
        .collect();
    let table = json!({"kind": "sparsification", "rate": case["rate"], "target": "activations"});
    let mut sparse = config(table)
        .sparsification()
        .unwrap()
        .with_quantile_limit(case["quantile_limit"].as_u64().unwrap() as usize);
    let sent = values(sparse.on_activation(tensor(x.clone(), dims, &device()), &CTX));
    let kept: Vec<usize> = (0..n).filter(|&i| sent[i] != 0.0).collect();
    assert_eq!(kept.len() as u64, case["kept"].as_u64().unwrap());
    let kept_min = kept.iter().map(|&i| x[i].abs()).fold(f32::MAX, f32::min);
    let dropped_max = (0..n)
        .filter(|&i| sent[i] == 0.0)
        .map(|i| x[i].abs())
        .fold(0.0, f32::max);
    assert_eq!(kept_min, case["kept_abs_min"].as_f64().unwrap() as f32);
    assert_eq!(
        dropped_max,
        case["dropped_abs_max"].as_f64().unwrap() as f32
    );
    let sum: f64 = sent.iter().map(|&v| v as f64).sum();
    assert!(
        (sum - case["out_sum"].as_f64().unwrap()).abs() < 1e-6,
        "{sum}"
    );
}

#[test]
fn sparsified_gradients_with_error_feedback_are_the_references() {
    let case = &fixture()["sparsify_grad"];
    // Target and error feedback left to their defaults: the reference's.
    let mut sparse = config(json!({"kind": "sparsification", "rate": case["rate"]}))
        .sparsification()
        .unwrap();
    for (i, step) in case["steps"].as_array().unwrap().iter().enumerate() {
        let g = tensor(floats(&step["g"]), dims(&step["dims"]), &device());
        let sent = sparse.on_gradient(g, &CTX);
        let what = format!("sparsify_grad step {i}");
        assert_close(&values(sent), &floats(&step["out"]), 1e-6, &what);
    }
}

/// PyTorch's `[out, in]` layout of our `[in, out]` weight gradient.
fn torch_layout(values: Vec<f32>, rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(|r| values[r * cols + c]).collect::<Vec<_>>())
        .collect()
}

#[test]
fn mid_forward_kl_gradients_and_adam_step_are_the_references() {
    let case = &fixture()["mid"];
    let settings = config(json!({
        "kind": "mid", "lambda": case["lambda"], "expansion": case["bottleneck_scale"],
        "lr": case["lr"],
    }))
    .mid()
    .unwrap();
    assert_eq!(settings.kl, KlScale::Reference);
    assert_eq!(settings.std_shift, case["std_shift"].as_f64().unwrap());
    let [b, s, d] = dims(&case["dims"]);
    let width = d * settings.expansion;
    let names = [
        "encoder_weight",
        "encoder_bias",
        "decoder_weight",
        "decoder_bias",
    ];
    let params = names.map(|n| floats(&case["params"][n]));
    let mut bottleneck = Bottleneck::from_torch(
        d,
        settings.expansion,
        [&params[0], &params[1], &params[2], &params[3]],
    );
    let device = device().autodiff();
    let x = tensor(floats(&case["x"]), [b, s, d], &device).require_grad();
    let eps = Tensor::<2>::from_data(
        TensorData::new(floats(&case["eps"]), [b * s, width]),
        &device,
    );
    let pass = bottleneck.forward(x.clone(), Some(eps), &settings, true);
    assert_close(
        &values(pass.out.clone()),
        &floats(&case["out"]),
        1e-5,
        "mid out",
    );
    let kl: f32 = pass.kl.clone().into_scalar();
    let want = case["mid_loss"].as_f64().unwrap() as f32;
    assert!((kl - want).abs() <= 1e-5 * want, "KL {kl} vs {want}");

    let upstream = tensor(floats(&case["upstream"]), [b, s, d], &device);
    let grads = (pass.kl + (pass.out * upstream).sum()).backward();
    let grad = |i: usize| values(pass.leaves[i].grad(&grads).unwrap());
    let shapes = [(d, 2 * width), (0, 0), (width, d), (0, 0)];
    for (i, name) in names.iter().enumerate() {
        let got = match shapes[i] {
            (0, 0) => grad(i),
            (rows, cols) => torch_layout(grad(i), rows, cols),
        };
        assert_close(&got, &floats(&case["grads"][name]), 1e-5, name);
    }
    let x_grad = values(x.grad(&grads).unwrap());
    assert_close(&x_grad, &floats(&case["x_grad"]), 1e-5, "x grad");

    bottleneck.step(pass.leaves, &grads, settings.lr);
    for (got, name) in bottleneck.torch_params().iter().zip(names) {
        assert_close(got, &floats(&case["after_adam"][name]), 1e-6, name);
    }
}
