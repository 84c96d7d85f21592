//! NS and DS against the reference's formulas (`fixtures/vflair/labels.json`, "scoring": the
//! reference computes them with TensorFlow, so `labels.py` re-derives its lines in NumPy).

use serde_json::Value;
use splitlm_attacks::score::{self, Truth};
use splitlm_attacks::{AttackerView, Inferred, direction_scoring, norm_scoring};
use splitlm_nn::testing::fixtures_dir;
use splitlm_party::Observation;
use splitlm_protocol::{OutputKind, TensorFrame, WireDType};

fn scoring() -> Value {
    let path = fixtures_dir().join("vflair/labels.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all["scoring"].clone()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// One observed step whose received gradient is the fixture's.
fn view(case: &Value) -> AttackerView {
    let shape: Vec<usize> = numbers(&case["grads_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let grads: Vec<f32> = numbers(&case["grads"]).iter().map(|&g| g as f32).collect();
    let empty = TensorFrame::from_f32(vec![0], &[], WireDType::F32).unwrap();
    AttackerView::steps(vec![Observation {
        session: 1,
        step: 0,
        batch_rows: shape[0],
        hidden: empty.clone(),
        attention_mask: empty.clone(),
        positions: empty.clone(),
        output_kind: OutputKind::Hidden,
        output: empty,
        weight_gradients: Vec::new(),
        output_grad: TensorFrame::from_f32(shape, &grads, WireDType::F32).unwrap(),
    }])
}

#[test]
fn ns_and_ds_score_as_the_reference() {
    let case = scoring();
    let v = view(&case);
    let truth = Truth {
        labels: numbers(&case["labels"])
            .iter()
            .map(|&l| l as usize)
            .collect(),
        ..Truth::default()
    };
    let ns = norm_scoring(&v, false).unwrap();
    for (ours, reference) in ns.iter().zip(numbers(&case["ns"]["scores"])) {
        assert!(
            (ours.score - reference).abs() < 1e-6,
            "{} vs {reference}",
            ours.score
        );
    }
    let scored = score::score("ns", &Inferred::Labels(ns), &truth, |_| String::new()).unwrap();
    let reference_ap = case["ns"]["ap"].as_f64().unwrap();
    assert!((scored.ap() - reference_ap).abs() < 1e-12);

    let known = case["ds_known_positive"].as_u64().unwrap() as usize;
    let ds = direction_scoring(&v, known).unwrap();
    for (ours, reference) in ds.iter().zip(numbers(&case["ds"]["cosines"])) {
        assert!(
            (ours.score - reference).abs() < 1e-6,
            "{} vs {reference}",
            ours.score
        );
    }
    let scored = score::score("ds", &Inferred::Labels(ds), &truth, |_| String::new()).unwrap();
    assert!((scored.ap() - case["ds"]["acc"].as_f64().unwrap()).abs() < 1e-12);
}
