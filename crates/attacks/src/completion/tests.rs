use burn::tensor::{Int, Tensor, TensorData};
use splitlm_device::DeviceSpec;
use splitlm_nn::TaskHead;
use splitlm_nn::testing::fixtures_dir;
use splitlm_partition::Partition;
use splitlm_zoo::Pretrained;

use super::*;
use crate::{AttackConfig, Auxiliary, Surrogate};

fn device() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

fn tokens(rows: usize, device: &Device) -> (TokenBatch, Labels) {
    let seqs: Vec<Vec<u32>> = (0..rows).map(|r| vec![5 + r as u32, 7, 9]).collect();
    let batch = TokenBatch::from_sequences(&seqs, 0, splitlm_nn::batch::PaddingSide::Right, device)
        .unwrap();
    let labels = (0..rows).map(|r| (r % 2) as i64).collect();
    let labels = Labels::Classes(Tensor::<1, Int>::from_data(
        TensorData::new(labels, [rows]),
        device,
    ));
    (batch, labels)
}

/// A complete prior over the BERT fixture cut 1 | 1 | 1, Head–Body–Tail.
fn prior() -> Prior {
    let device = device();
    let ckpt = Pretrained::open(&fixtures_dir().join("models/bert")).unwrap();
    let task = TaskHead::SequenceClassification { num_labels: 3 };
    let slices = Partition::head_body_tail(1, 1).slices(3).unwrap();
    let load = |spec| ckpt.load(spec, task, &device).unwrap();
    Prior {
        body: Some(load(&slices.model)),
        surrogate: Some(Surrogate {
            head: load(&slices.data_head),
            tail: slices.data_tail.as_ref().map(load),
        }),
        auxiliary: Some(Auxiliary {
            source: "test".into(),
            batches: vec![tokens(4, &device)],
        }),
        evaluation: Some(vec![tokens(2, &device)]),
        ..Prior::default()
    }
}

fn refusal(prior: &Prior, settings: &CompletionSettings) -> String {
    match model_completion(&AttackerView::default(), prior, settings, &device()) {
        Ok(guesses) => panic!("ran: {guesses:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_missing_prior_piece_is_named() {
    let settings = CompletionSettings::default();
    let full = prior();
    let cases: Vec<(Prior, &str)> = vec![
        (Prior::default(), "`body`"),
        (
            Prior {
                surrogate: None,
                ..full.clone()
            },
            "`surrogate`",
        ),
        (
            Prior {
                surrogate: full
                    .surrogate
                    .clone()
                    .map(|s| Surrogate { tail: None, ..s }),
                ..full.clone()
            },
            "`surrogate.tail`",
        ),
        (
            Prior {
                auxiliary: None,
                ..full.clone()
            },
            "`auxiliary`",
        ),
        (
            Prior {
                auxiliary: Some(Auxiliary {
                    source: "an empty set".into(),
                    batches: Vec::new(),
                }),
                ..full.clone()
            },
            "an empty set",
        ),
        (
            Prior {
                evaluation: Some(Vec::new()),
                ..full.clone()
            },
            "`evaluation`",
        ),
    ];
    for (prior, word) in cases {
        let err = refusal(&prior, &settings);
        assert!(
            err.contains("model_completion") && err.contains(word),
            "{word}: {err}"
        );
    }
}

#[test]
fn a_head_tail_body_and_bad_settings_are_refused() {
    let device = device();
    let ckpt = Pretrained::open(&fixtures_dir().join("models/bert")).unwrap();
    let task = TaskHead::SequenceClassification { num_labels: 3 };
    let head_tail = Partition::head_tail(1).slices(3).unwrap();
    let with_top = Prior {
        body: Some(ckpt.load(&head_tail.model, task, &device).unwrap()),
        ..prior()
    };
    let err = refusal(&with_top, &CompletionSettings::default());
    assert!(err.contains("Head–Tail"), "{err}");
    for (settings, word) in [
        (
            CompletionSettings {
                lr: f64::NAN,
                ..CompletionSettings::default()
            },
            "lr",
        ),
        (
            CompletionSettings {
                max_auxiliary: Some(0),
                ..CompletionSettings::default()
            },
            "max_auxiliary",
        ),
    ] {
        let err = refusal(&prior(), &settings);
        assert!(err.contains(word), "{err}");
    }
}

#[test]
fn predicting_from_observations_needs_recorded_evaluation_steps() {
    let settings = CompletionSettings {
        epochs: 1,
        ..CompletionSettings::default()
    };
    let err = refusal(&prior(), &settings);
    assert!(
        err.contains("recorded 0 evaluation steps") && err.contains("completed_model"),
        "{err}"
    );
    // The completed model needs no traffic: one guess per held-out example.
    let guesses = model_completion(
        &AttackerView::default(),
        &prior(),
        &CompletionSettings {
            predict_from: PredictFrom::CompletedModel,
            ..settings
        },
        &device(),
    )
    .unwrap();
    assert_eq!(guesses.len(), 2);
    assert!(guesses.iter().all(|g| g.label < 3 && g.score >= 1.0 / 3.0));
}

#[test]
fn auxiliary_examples_are_cut_to_the_first_ones() {
    let device = device();
    let batches = vec![tokens(3, &device), tokens(3, &device)];
    let rows = |max| -> Vec<usize> {
        train::first_examples(&batches, max)
            .unwrap()
            .iter()
            .map(|(b, _)| b.dims()[0])
            .collect()
    };
    assert_eq!(rows(None), vec![3, 3]);
    assert_eq!(rows(Some(4)), vec![3, 1]);
    assert_eq!(rows(Some(3)), vec![3]);
}

#[test]
fn settings_default_to_the_reference_and_refuse_unknown_fields() {
    let parsed: AttackConfig = serde_json::from_str(r#"{"kind": "model_completion"}"#).unwrap();
    assert_eq!(
        parsed,
        AttackConfig::ModelCompletion(CompletionSettings::default())
    );
    // mnist_test_attack_allattack_10class.json l.48-50; ModelCompletion_LLM.py l.270-276.
    let d = CompletionSettings::default();
    assert_eq!((d.lr, d.epochs, d.patience), (2e-3, 25, 2));
    assert_eq!(
        (d.max_auxiliary, d.predict_from),
        (None, PredictFrom::Observed)
    );
    let ours: AttackConfig = serde_json::from_str(
        r#"{"kind": "model_completion", "predict_from": "completed_model", "epochs": 3}"#,
    )
    .unwrap();
    let AttackConfig::ModelCompletion(ours) = ours else {
        panic!("{ours:?}")
    };
    assert_eq!(
        (ours.predict_from, ours.epochs),
        (PredictFrom::CompletedModel, 3)
    );
    let err = serde_json::from_str::<AttackConfig>(r#"{"kind": "model_completion", "epoch": 3}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("epoch"), "{err}");
}
