//! The training loop on a split model and on the whole model gives the same run; resumed runs
//! end where uninterrupted ones end; span QA answers agree split and unsplit.

use std::collections::HashMap;

use splitlm_device::DeviceSpec;
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::testing::{asset, fixtures_dir};
use splitlm_nn::{SliceSpec, TaskHead};
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{DataParty, ModelParty, OptimizerConfig, PartyOptions, PartySlice};
use splitlm_protocol::{Limits, WireDType, in_process_pair};
use splitlm_tasks::Encoder;
use splitlm_tasks::TaskError;
use splitlm_tasks::dataset::{Example, Target};
use splitlm_tasks::predictor::{LabelledTexts, evaluate_classification};
use splitlm_tasks::span_qa::{QaEncoder, SpanDecoding, decode_answers, span_logits};
use splitlm_tasks::text_metrics::squad_evaluate;
use splitlm_train::{FitConfig, FitEvent, Learner, Split, Whole, fit};
use splitlm_zoo::Pretrained;
use tokenizers::Tokenizer;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;

/// A word-level tokenizer over the BERT fixture's 99-token vocabulary: "w5" is id 5.
fn toy_encoder() -> Encoder {
    let vocab: HashMap<String, u32> = (0..99u32).map(|i| (format!("w{i}"), i)).collect();
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("w1".into())
        .build()
        .unwrap();
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Whitespace {}));
    Encoder::new(tokenizer, 12, PaddingSide::Right).unwrap()
}

fn toy_examples(n: usize, seed: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            let len = 3 + (i * 7 + seed) % 6;
            let words: Vec<String> = (0..len)
                .map(|j| format!("w{}", 5 + (i * 13 + j * 31 + seed) % 90))
                .collect();
            Example {
                text: words.join(" "),
                text_pair: None,
                target: Target::Class((i + seed) % 3),
            }
        })
        .collect()
}

const TASK: TaskHead = TaskHead::SequenceClassification { num_labels: 3 };

fn toy_config() -> FitConfig {
    FitConfig {
        epochs: 2,
        batch_size: 8,
        seed: 3,
        ..FitConfig::default()
    }
}

fn cpu() -> burn::tensor::Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

fn toy_slice(spec: &SliceSpec, steps: usize) -> PartySlice {
    let ckpt = Pretrained::open(&fixtures_dir().join("models/bert")).unwrap();
    let optimizer = OptimizerConfig {
        lr: 1e-3,
        ..OptimizerConfig::default()
    };
    PartySlice::new(
        ckpt.load(spec, TASK, &cpu()).unwrap(),
        &Trainability::default(),
        &optimizer,
        steps,
        0,
    )
    .unwrap()
}

fn toy_whole(steps: usize) -> Whole {
    Whole::new(toy_slice(&SliceSpec::full(3), steps), cpu())
}

fn toy_split(steps: usize) -> Split {
    let slices = Partition::head_body_tail(1, 1).slices(3).unwrap();
    let model = ModelParty::new(toy_slice(&slices.model, steps), WireDType::F32);
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let data = DataParty::connect(
        toy_slice(&slices.data_head, steps),
        slices.data_tail.as_ref().map(|s| toy_slice(s, steps)),
        Box::new(a),
        &PartyOptions::default(),
    )
    .unwrap();
    Split::new(data, model, server)
}

fn losses(events: &[FitEvent]) -> Vec<f32> {
    events
        .iter()
        .filter_map(|e| match e {
            FitEvent::Step { loss, .. } => Some(*loss),
            _ => None,
        })
        .collect()
}

#[test]
fn a_split_run_equals_the_unsplit_run() {
    let encoder = toy_encoder();
    let (train, test) = (toy_examples(40, 0), toy_examples(12, 1));
    let data = LabelledTexts {
        encoder: &encoder,
        examples: &train,
    };
    let config = toy_config();
    let steps = config.steps_for(train.len());

    let mut whole = toy_whole(steps);
    let mut whole_events = Vec::new();
    let whole_report = fit(&mut whole, &data, &config, None, |e| whole_events.push(e)).unwrap();
    let whole_scores = evaluate_classification(&mut whole, &encoder, &test, 5).unwrap();

    let mut split = toy_split(steps);
    let mut split_events = Vec::new();
    let split_report = fit(&mut split, &data, &config, None, |e| split_events.push(e)).unwrap();
    let split_scores = evaluate_classification(&mut split, &encoder, &test, 5).unwrap();
    split.finish().unwrap();

    assert_eq!(
        whole_report.steps, 10,
        "2 epochs of 5 batches, each epoch whole"
    );
    assert_eq!(split_report.steps, whole_report.steps);
    assert_eq!(split_report.tokens, whole_report.tokens);
    let (s, w) = (losses(&split_events), losses(&whole_events));
    assert_eq!(s.len(), 10);
    for (s, w) in s.iter().zip(&w) {
        assert!((s - w).abs() <= 1e-5 * w.abs().max(1.0), "{s} vs {w}");
    }
    assert_eq!(split_scores, whole_scores);
    assert!(
        whole_report.epoch_losses[1] < whole_report.epoch_losses[0],
        "{:?}",
        whole_report.epoch_losses
    );
}

#[test]
fn a_run_resumed_from_its_checkpoint_ends_where_the_uninterrupted_run_ends() {
    let encoder = toy_encoder();
    let (train, test) = (toy_examples(40, 0), toy_examples(12, 1));
    let data = LabelledTexts {
        encoder: &encoder,
        examples: &train,
    };
    let dir = tempfile::tempdir().unwrap();
    let config = FitConfig {
        checkpoint_dir: Some(dir.path().to_path_buf()),
        checkpoint_every: 3,
        ..toy_config()
    };
    let steps = config.steps_for(train.len());
    let mut straight = toy_split(steps);
    let mut straight_events = Vec::new();
    fit(&mut straight, &data, &toy_config(), None, |e| {
        straight_events.push(e)
    })
    .unwrap();
    let straight_scores = evaluate_classification(&mut straight, &encoder, &test, 12).unwrap();
    straight.finish().unwrap();

    // A first run that "crashes" after step 7: its last checkpoint is step 6.
    let mut first = toy_split(steps);
    let stop_after = |e: &FitEvent| matches!(e, FitEvent::Step { step: 7, .. });
    let mut crashed = false;
    let mut evaluate = |_: &mut dyn Learner| -> Result<f64, TaskError> {
        Err(TaskError::Config("simulated crash".into()))
    };
    let mut first_events = Vec::new();
    let result = fit(
        &mut first,
        &data,
        &FitConfig {
            eval_every: 7,
            ..config.clone()
        },
        Some(&mut evaluate),
        |e| {
            crashed |= stop_after(&e);
            first_events.push(e)
        },
    );
    assert!(crashed && result.is_err());
    first.finish().unwrap();
    let checkpoints: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        checkpoints.contains(&"step-000006".to_string()),
        "{checkpoints:?}"
    );
    assert!(
        checkpoints.contains(&"step-000003".to_string()),
        "{checkpoints:?}"
    );

    let mut resumed = toy_split(steps);
    let mut events = Vec::new();
    let report = fit(
        &mut resumed,
        &data,
        &FitConfig {
            resume: true,
            ..config.clone()
        },
        None,
        |e| events.push(e),
    )
    .unwrap();
    assert_eq!(report.resumed_from, Some(6));
    assert_eq!(report.steps, 10);
    assert_eq!(losses(&events), losses(&straight_events)[6..]);
    let scores = evaluate_classification(&mut resumed, &encoder, &test, 12).unwrap();
    assert_eq!(scores, straight_scores);
    resumed.finish().unwrap();
    let latest = std::fs::read_to_string(dir.path().join("latest")).unwrap();
    assert_eq!(latest, "step-000010");
    let kept = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(kept, 3, "two checkpoints and the pointer");
}

#[test]
fn early_stopping_ends_the_run_after_patience_evaluations_without_progress() {
    let encoder = toy_encoder();
    let train = toy_examples(40, 0);
    let data = LabelledTexts {
        encoder: &encoder,
        examples: &train,
    };
    let config = FitConfig {
        eval_every: 2,
        patience: 2,
        ..toy_config()
    };
    let mut whole = toy_whole(config.steps_for(train.len()));
    // A metric that peaks at the second evaluation (step 4).
    let metrics = [0.5, 0.7, 0.6, 0.65, 0.9];
    let mut calls = 0;
    let mut evaluate = |_: &mut dyn Learner| -> Result<f64, TaskError> {
        calls += 1;
        Ok(metrics[calls - 1])
    };
    let report = fit(&mut whole, &data, &config, Some(&mut evaluate), |_| {}).unwrap();
    assert!(report.stopped_early);
    assert_eq!(report.steps, 8);
    assert_eq!(
        report.evaluations,
        vec![(2, 0.5), (4, 0.7), (6, 0.6), (8, 0.65)]
    );
    assert_eq!(report.best, Some((4, 0.7)));
}

#[test]
fn bad_training_settings_are_named() {
    let encoder = toy_encoder();
    let train = toy_examples(4, 0);
    let data = LabelledTexts {
        encoder: &encoder,
        examples: &train,
    };
    let mut whole = toy_whole(1);
    let err = fit(
        &mut whole,
        &data,
        &FitConfig {
            batch_size: 0,
            ..toy_config()
        },
        None,
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("batch_size"), "{err}");
    let err = fit(
        &mut whole,
        &data,
        &FitConfig {
            resume: true,
            ..toy_config()
        },
        None,
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("checkpoint_dir"), "{err}");
}

/// SQuAD v1.1 dev questions through MiniLM with a span head: the split model (Head–Body–Tail
/// 2/2) and the whole model give the same windows' logits and the same decoded answers.
#[test]
fn squad_span_qa_split_and_unsplit_give_identical_answers() {
    let minilm = asset(splitlm_assets::Asset::MiniLm);
    asset(splitlm_assets::Asset::SquadDev);
    let questions = splitlm_tasks::formats::read_squad_json(&splitlm_assets::squad_dev()).unwrap();
    assert_eq!(questions.len(), 10_565, "BIG-bench's copy of the dev set");
    let questions = &questions[..16];
    let ckpt = Pretrained::open(&minilm).unwrap();
    let encoder = QaEncoder::new(ckpt.tokenizer().unwrap(), 96, 32).unwrap();
    let features = encoder.features(questions).unwrap();
    assert!(
        features.len() > questions.len(),
        "long contexts are cut into several windows ({} for {})",
        features.len(),
        questions.len()
    );
    let labelled = features.iter().filter(|f| f.label != (0, 0)).count();
    assert!(
        labelled >= questions.len(),
        "every answer lies in some window"
    );
    let device = cpu();
    let frozen = |spec: &SliceSpec| {
        PartySlice::frozen(ckpt.load(spec, TaskHead::SpanQa, &device).unwrap()).unwrap()
    };
    let mut whole = Whole::new(frozen(&SliceSpec::full(ckpt.num_layers())), device.clone());
    let whole_logits = span_logits(&mut whole, &encoder, &features, 8).unwrap();

    let slices = Partition::head_body_tail(2, 2)
        .slices(ckpt.num_layers())
        .unwrap();
    let model = ModelParty::new(frozen(&slices.model), WireDType::F32);
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let data = DataParty::connect(
        frozen(&slices.data_head),
        slices.data_tail.as_ref().map(frozen),
        Box::new(a),
        &PartyOptions::default(),
    )
    .unwrap();
    let mut split = Split::new(data, model, server);
    let split_logits = span_logits(&mut split, &encoder, &features, 8).unwrap();
    split.finish().unwrap();

    for ((ws, we), (ss, se)) in whole_logits.iter().zip(&split_logits) {
        for (w, s) in ws.iter().chain(we).zip(ss.iter().chain(se)) {
            assert!((w - s).abs() <= 1e-4 * w.abs().max(1.0), "{w} vs {s}");
        }
    }
    let settings = SpanDecoding::default();
    let whole_answers = decode_answers(questions, &features, &whole_logits, &settings);
    let split_answers = decode_answers(questions, &features, &split_logits, &settings);
    assert_eq!(whole_answers, split_answers);
    assert!(whole_answers.values().all(|a| !a.is_empty()));
    let whole_scores = squad_evaluate(questions, &whole_answers);
    assert_eq!(whole_scores, squad_evaluate(questions, &split_answers));
    assert_eq!(whole_scores.total, 16);
}
