//! Our SQuAD and ROUGE scores equal those of the reference implementations, as written by
//! `fixtures/metrics/generate.py` (the official SQuAD v1.1 script; Google's `rouge-score`).

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use splitlm_tasks::formats::read_squad_json;
use splitlm_tasks::text_metrics::{
    RougeScore, rouge, rouge_l, rouge_n, rouge_tokenize, squad_evaluate, squad_normalize,
    squad_score,
};

fn metrics_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/metrics")
}

fn load(name: &str) -> Value {
    let path = metrics_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

fn assert_close(ours: f64, reference: &Value, what: &str) {
    let reference = number(reference);
    assert!(
        (ours - reference).abs() <= 1e-9,
        "{what}: ours {ours}, reference {reference}"
    );
}

fn assert_rouge(ours: RougeScore, reference: &Value, what: &str) {
    assert_close(
        ours.precision,
        &reference["precision"],
        &format!("{what} precision"),
    );
    assert_close(ours.recall, &reference["recall"], &format!("{what} recall"));
    assert_close(
        ours.fmeasure,
        &reference["fmeasure"],
        &format!("{what} fmeasure"),
    );
}

#[test]
fn squad_scores_equal_the_official_script() {
    let fixture = load("squad.json");
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 20);
    for case in cases {
        let prediction = text(&case["prediction"]);
        let truths: Vec<&str> = case["ground_truths"]
            .as_array()
            .expect("ground_truths")
            .iter()
            .map(text)
            .collect();
        let what = format!("{prediction:?} vs {truths:?}");
        assert_eq!(
            squad_normalize(prediction),
            text(&case["normalized_prediction"]),
            "{what}"
        );
        let score = squad_score(prediction, &truths);
        assert_close(
            score.exact_match,
            &case["exact_match"],
            &format!("{what} EM"),
        );
        assert_close(score.f1, &case["f1"], &format!("{what} F1"));
    }

    let dataset = &fixture["dataset"];
    let questions = read_squad_json(&metrics_dir().join(text(&dataset["file"]))).unwrap();
    let predictions: HashMap<String, String> = dataset["predictions"]
        .as_object()
        .expect("predictions")
        .iter()
        .map(|(id, p)| (id.clone(), text(p).to_string()))
        .collect();
    let evaluation = squad_evaluate(&questions, &predictions);
    assert_close(
        evaluation.exact_match,
        &dataset["exact_match"],
        "dataset EM",
    );
    assert_close(evaluation.f1, &dataset["f1"], "dataset F1");
    assert_eq!(evaluation.total, questions.len());
    assert_eq!(evaluation.unanswered, vec!["q3".to_string()]);
}

#[test]
fn rouge_scores_equal_rouge_score() {
    let fixture = load("rouge.json");
    let cases = fixture["cases"].as_array().expect("cases");
    assert!(cases.len() >= 20);
    for case in cases {
        let (target, prediction) = (text(&case["target"]), text(&case["prediction"]));
        let what = format!("{target:?} / {prediction:?}");
        for (ours, key) in [
            (rouge_tokenize(target), "target_tokens"),
            (rouge_tokenize(prediction), "prediction_tokens"),
        ] {
            let reference: Vec<&str> = case[key].as_array().expect(key).iter().map(text).collect();
            assert_eq!(ours, reference, "{what} {key}");
        }
        let scores = rouge(target, prediction);
        assert_rouge(scores.rouge1, &case["rouge1"], &format!("{what} rouge1"));
        assert_rouge(scores.rouge2, &case["rouge2"], &format!("{what} rouge2"));
        assert_rouge(scores.rouge_l, &case["rougeL"], &format!("{what} rougeL"));
        assert_eq!(rouge_n(target, prediction, 1), scores.rouge1);
        assert_eq!(rouge_n(target, prediction, 2), scores.rouge2);
        assert_eq!(rouge_l(target, prediction), scores.rouge_l);
    }
}
