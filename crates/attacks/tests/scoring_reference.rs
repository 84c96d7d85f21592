//! NS and DS against the reference's formulas (`fixtures/vflair/labels.json`, "scoring": the
//! reference computes them with TensorFlow, so `labels.py` re-derives its lines in NumPy).

use serde_json::Value;
use splitlm_attacks::score::{self, Truth};
use splitlm_attacks::{
    AttackerView, DlsRule, DlsSettings, Inferred, direct_label_scoring, direction_scoring,
    norm_scoring,
};
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

/// `DirectLabelScoring_LLM` itself, run by `labels.py`: the first negative entry, not the most
/// negative one (rows 1 and 3 tell them apart).
#[test]
fn dls_reads_labels_as_the_reference() {
    let all: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures_dir().join("vflair/labels.json")).unwrap(),
    )
    .unwrap();
    let case = &all["dls"];
    let rows: Vec<Vec<f64>> = case["grads"]
        .as_array()
        .unwrap()
        .iter()
        .map(numbers)
        .collect();
    let (b, c) = (rows.len(), rows[0].len());
    let flat: Vec<f32> = rows.concat().iter().map(|&g| g as f32).collect();
    let empty = TensorFrame::from_f32(vec![0], &[], WireDType::F32).unwrap();
    let view = AttackerView::steps(vec![Observation {
        session: 1,
        step: 0,
        batch_rows: b,
        hidden: empty.clone(),
        attention_mask: empty.clone(),
        positions: empty.clone(),
        output_kind: OutputKind::ClassLogits,
        output: empty,
        weight_gradients: Vec::new(),
        output_grad: TensorFrame::from_f32(vec![b, c], &flat, WireDType::F32).unwrap(),
    }]);
    let expected: Vec<usize> = numbers(&case["predicted"])
        .iter()
        .map(|&l| l as usize)
        .collect();
    let read = |rule| -> Vec<usize> {
        direct_label_scoring(&view, &DlsSettings { rule })
            .unwrap()
            .iter()
            .map(|g| g.label)
            .collect()
    };
    assert_eq!(read(DlsRule::FirstNegative), expected);
    assert_ne!(
        read(DlsRule::ArgMin),
        expected,
        "the rows tell the rules apart"
    );
}
