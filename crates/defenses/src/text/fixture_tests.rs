//! The text defenses' tables against the reference's own functions:
//! `fixtures/vflair/text_defenses.json`, written by `fixtures/vflair/text_defenses.py`.

use std::collections::HashMap;

use serde_json::Value;

use super::custext::{customized_mapping, word_frequencies};
use super::geometry::Candidates;
use super::python::most_common;
use super::rantext::{close_weights, in_kit, sensitivity};
use super::santext::{cumulative_rows, sensitive_words};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/vflair/text_defenses.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn device() -> burn::tensor::Device {
    splitlm_device::DeviceSpec::Cpu.device().unwrap()
}

fn matrix(v: &Value) -> (Vec<f32>, usize) {
    let rows = v.as_array().unwrap();
    let dim = rows[0].as_array().unwrap().len();
    let values = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect();
    (values, dim)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: {got} vs the reference's {want}"
    );
}

#[test]
fn santext_probabilities_are_cal_probabilitys() {
    let f = &fixture()["santext"];
    let (all, dim) = matrix(&f["embeddings"]);
    let sensitive: Vec<usize> = f["sensitive"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as usize)
        .collect();
    let sens_rows: Vec<f32> = sensitive
        .iter()
        .flat_map(|&i| all[i * dim..(i + 1) * dim].to_vec())
        .collect();
    let points = Candidates::new(&sens_rows, dim, &device());
    let distances = points.distances(&all);
    for case in f["cases"].as_array().unwrap() {
        let epsilon = case["epsilon"].as_f64().unwrap();
        let rows = cumulative_rows(&distances, sensitive.len(), epsilon);
        for (r, want) in rows.iter().zip(case["prob_matrix"].as_array().unwrap()) {
            let mut previous = 0.0;
            for (c, w) in r.iter().zip(want.as_array().unwrap()) {
                let p = *c as f64 - previous;
                previous = *c as f64;
                close(p, w.as_f64().unwrap(), 2e-6, &format!("ε = {epsilon}"));
            }
        }
    }
}

#[test]
fn santext_sensitive_words_are_the_rarest_plus_one() {
    let f = &fixture()["santext"];
    let corpus = strings(&f["corpus"]);
    let all: Vec<String> = most_common(corpus.iter().flat_map(|t| t.split_whitespace()))
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    for case in f["selections"].as_array().unwrap() {
        assert_eq!(all, strings(&case["all_words"]));
        let fraction = case["fraction"].as_f64().unwrap();
        assert_eq!(
            sensitive_words(&all, fraction),
            strings(&case["sensitive_words"]),
            "fraction {fraction}"
        );
    }
}

#[test]
fn custext_lists_and_probabilities_are_get_customized_mappings() {
    let f = &fixture()["custext"];
    let words = strings(&f["words"]);
    let (raw, dim) = matrix(&f["vectors"]);
    let unit: Vec<f32> = raw
        .chunks(dim)
        .flat_map(|r| {
            let norm = r.iter().map(|v| (v * v) as f64).sum::<f64>().sqrt() as f32;
            r.iter().map(move |v| v / norm)
        })
        .collect();
    let points = Candidates::new(&unit, dim, &device());
    let freq = word_frequencies(&strings(&f["train_data"]));
    for case in f["cases"].as_array().unwrap() {
        let epsilon = case["epsilon"].as_f64().unwrap();
        let top_k = case["top_k"].as_u64().unwrap() as usize;
        let mapping = customized_mapping(&words, &unit, dim, &freq, epsilon, top_k, &points);
        let want_lists = case["sim_word_dict"].as_object().unwrap();
        assert_eq!(
            mapping.words.len(),
            want_lists.len(),
            "ε {epsilon} k {top_k}"
        );
        for (word, list) in want_lists {
            let (index, p) = &mapping.words[word];
            assert_eq!(
                mapping.lists[*index].to_vec(),
                strings(list),
                "{word}, ε {epsilon} k {top_k}"
            );
            let want_p = case["p_dict"][word].as_array().unwrap();
            for (got, want) in p.iter().zip(want_p) {
                close(*got, want.as_f64().unwrap(), 2e-6, word);
            }
        }
    }
}

#[test]
fn rantext_kit_sensitivity_and_candidates_are_inferdpts() {
    let f = &fixture()["rantext"];
    let mut kept: Vec<String> = f["tokens"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|t| in_kit(t))
        .cloned()
        .collect();
    kept.sort();
    assert_eq!(kept, strings(&f["filtered"]));
    let (kit, dim) = matrix(&f["kit"]);
    for (got, want) in sensitivity(&kit, dim)
        .iter()
        .zip(f["delta_f"].as_array().unwrap())
    {
        close(*got, want.as_f64().unwrap(), 1e-6, "Δf");
    }
    let names = strings(&f["kit_words"]);
    let epsilon = f["epsilon"].as_f64().unwrap();
    for draw in f["draws"].as_array().unwrap() {
        let source = draw["source"].as_u64().unwrap() as usize;
        let row: Vec<f32> = kit
            .chunks(dim)
            .map(|r| {
                let s = &kit[source * dim..(source + 1) * dim];
                r.iter()
                    .zip(s)
                    .map(|(a, b)| ((a - b) * (a - b)) as f64)
                    .sum::<f64>()
                    .sqrt() as f32
            })
            .collect();
        let distance = draw["distance"].as_f64().unwrap();
        let weights = close_weights(&row, distance, epsilon);
        let total: f64 = weights.iter().map(|w| w.1).sum();
        let got: HashMap<&str, f64> = weights
            .iter()
            .map(|&(i, w)| (names[i].as_str(), w / total))
            .collect();
        let want = strings(&draw["close_tokens"]);
        assert_eq!(got.len(), want.len(), "source {source}, d = {distance}");
        for (token, p) in want.iter().zip(draw["probabilities"].as_array().unwrap()) {
            close(got[token.as_str()], p.as_f64().unwrap(), 2e-6, token);
        }
    }
}
