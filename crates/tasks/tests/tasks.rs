//! The training loop on a split model and on the whole model gives the same run; the encoder
//! reproduces MiniLM's tokenizer with our padding and truncation.

use std::collections::HashMap;

use splitlm_device::DeviceSpec;
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::testing::{fixtures_dir, require_asset};
use splitlm_nn::{SliceSpec, TaskHead};
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{DataParty, ModelParty, OptimizerConfig, PartyOptions, PartySlice};
use splitlm_protocol::{Limits, WireDType, in_process_pair};
use splitlm_tasks::Encoder;
use splitlm_tasks::dataset::{Example, Target};
use splitlm_tasks::train::{FitConfig, Whole, evaluate_classification, fit};
use splitlm_zoo::Checkpoint;
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

#[test]
fn a_split_run_equals_the_unsplit_run() {
    let cpu = DeviceSpec::Cpu.device().unwrap().autodiff();
    let ckpt = Checkpoint::open(&fixtures_dir().join("models/bert")).unwrap();
    let task = TaskHead::SequenceClassification { num_labels: 3 };
    let encoder = toy_encoder();
    let (train, test) = (toy_examples(40, 0), toy_examples(12, 1));
    let config = FitConfig {
        epochs: 2,
        batch_size: 8,
        seed: 3,
    };
    let steps = config.steps_for(train.len());
    let optimizer = OptimizerConfig {
        lr: 1e-3,
        ..OptimizerConfig::default()
    };
    let slice = |spec: &SliceSpec| {
        PartySlice::new(
            ckpt.load(spec, task, &cpu).unwrap(),
            &Trainability::default(),
            &optimizer,
            steps,
            0,
        )
        .unwrap()
    };

    let mut whole = Whole::new(slice(&SliceSpec::full(3)), cpu.clone());
    let mut whole_losses = Vec::new();
    let whole_report = fit(&mut whole, &encoder, &train, &config, |_, l| {
        whole_losses.push(l)
    })
    .unwrap();
    let whole_scores = evaluate_classification(&mut whole, &encoder, &test, 5).unwrap();

    let slices = Partition::head_body_tail(1, 1).slices(3).unwrap();
    let model = ModelParty::new(slice(&slices.model), WireDType::F32);
    let (a, b) = in_process_pair(Limits::default());
    let server = model.spawn(b);
    let mut data = DataParty::connect(
        slice(&slices.data_head),
        slices.data_tail.as_ref().map(slice),
        Box::new(a),
        &PartyOptions::default(),
    )
    .unwrap();
    let mut split_losses = Vec::new();
    let split_report = fit(&mut data, &encoder, &train, &config, |_, l| {
        split_losses.push(l)
    })
    .unwrap();
    let split_scores = evaluate_classification(&mut data, &encoder, &test, 5).unwrap();
    data.finish().unwrap();
    server.join().unwrap().unwrap();

    assert_eq!(
        whole_report.steps, 10,
        "2 epochs of 5 batches, each epoch whole"
    );
    assert_eq!(split_report.steps, whole_report.steps);
    assert_eq!(split_report.tokens, whole_report.tokens);
    for (s, w) in split_losses.iter().zip(&whole_losses) {
        assert!(
            (s - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{split_losses:?} vs {whole_losses:?}"
        );
    }
    assert_eq!(split_scores, whole_scores);
    assert!(
        whole_report.epoch_losses[1] < whole_report.epoch_losses[0],
        "{:?}",
        whole_report.epoch_losses
    );
}

#[test]
fn minilm_tokenizer_pads_and_truncates_our_way() {
    let Some(dir) = require_asset(
        "MiniLM",
        splitlm_assets::locate(splitlm_assets::Asset::MiniLm),
    ) else {
        return;
    };
    let encoder = Encoder::from_file(&dir.join("tokenizer.json"), 8, PaddingSide::Right).unwrap();
    let cpu = DeviceSpec::Cpu.device().unwrap();
    let examples = vec![
        Example {
            text: "hello world".into(),
            text_pair: None,
            target: Target::Class(1),
        },
        Example {
            text: "a much longer sentence that will certainly be truncated".into(),
            text_pair: None,
            target: Target::Class(0),
        },
    ];
    let batch = encoder.tokens(&examples, &cpu).unwrap();
    assert_eq!(
        batch.dims(),
        [2, 8],
        "padded to the longest, truncated to 8 (not MiniLM's 128)"
    );
    let ids = batch
        .input_ids
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    assert_eq!(&ids[..8], &[101, 7592, 2088, 102, 0, 0, 0, 0]);
    assert_eq!(
        (ids[8], ids[15]),
        (101, 102),
        "truncation keeps [CLS] … [SEP]"
    );
    let mask = batch
        .attention_mask
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    assert_eq!(&mask[..8], &[1, 1, 1, 1, 0, 0, 0, 0]);
    let pair = vec![Example {
        text: "hello".into(),
        text_pair: Some("world".into()),
        target: Target::Class(0),
    }];
    let batch = encoder.tokens(&pair, &cpu).unwrap();
    let types = batch
        .token_type_ids
        .unwrap()
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    assert_eq!(types, vec![0, 0, 0, 1, 1]);
}

#[test]
fn the_movie_review_set_has_the_published_counts_and_a_fixed_split() {
    let Some(_) = require_asset(
        "sentiment",
        splitlm_assets::locate(splitlm_assets::Asset::Sentiment),
    ) else {
        return;
    };
    let path = splitlm_assets::movie_reviews();
    let snippets = splitlm_tasks::sentiment::read_scored_snippets(&path).unwrap();
    assert_eq!(snippets.len(), 10_605);
    let positive = snippets.iter().filter(|s| s.score > 0.0).count();
    let negative = snippets.iter().filter(|s| s.score < 0.0).count();
    assert_eq!((positive, negative), (5_242, 5_326));
    let (train, test) = splitlm_tasks::sentiment::binary_split(&path, 0.1, 0).unwrap();
    assert_eq!((train.len(), test.len()), (9_511, 1_057));
    let (train2, test2) = splitlm_tasks::sentiment::binary_split(&path, 0.1, 0).unwrap();
    assert_eq!(
        (train[0].clone(), test[0].clone()),
        (train2[0].clone(), test2[0].clone())
    );
    assert!(test.iter().all(|t| !train[..100].contains(t)));
}
