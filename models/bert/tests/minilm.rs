//! The real all-MiniLM-L6-v2 (safetensors from the asset cache) against sentence embeddings
//! that Hugging Face transformers computed from the same files
//! (`fixtures/minilm/reference.json`). Skips with a printed reason when the asset is absent.

use serde_json::Value;
use splitlm_bert::{BertConfig, BertModel};
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::head::{l2_normalize, mean_pool};
use splitlm_nn::testing::{assert_close, asset, fixtures_dir, values};
use splitlm_nn::{SliceSpec, TaskHead, TokenBatch, TransformerSlice};
use splitlm_weights::SafetensorsCheckpoint;
use tokenizers::Tokenizer;

#[test]
fn minilm_sentence_embeddings_match_transformers() {
    let dir = asset(splitlm_assets::Asset::MiniLm);
    let path = fixtures_dir().join("minilm/reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let sentences: Vec<&str> = reference["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();

    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tokenizer.with_padding(None);
    let ids: Vec<Vec<u32>> = sentences
        .iter()
        .map(|s| tokenizer.encode(*s, true).unwrap().get_ids().to_vec())
        .collect();
    let expected_ids: Vec<Vec<u32>> =
        serde_json::from_value(reference["input_ids"].clone()).unwrap();
    assert_eq!(ids, expected_ids, "WordPiece ids");

    let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
    let config = BertConfig::from_dir(&dir).unwrap();
    let weights = SafetensorsCheckpoint::open(&dir).unwrap();
    let spec = SliceSpec::full(config.num_hidden_layers);
    let model = BertModel::load(&weights, &config, &spec, TaskHead::Hidden, &device).unwrap();
    let tokens = TokenBatch::from_sequences(&ids, 0, PaddingSide::Right, &device).unwrap();
    let states = model.forward(&tokens, None).unwrap().hidden().unwrap();
    let embeddings = l2_normalize(mean_pool(states, &tokens.attention_mask));
    let expected: Vec<Vec<f32>> = serde_json::from_value(reference["embeddings"].clone()).unwrap();
    assert_close(
        "MiniLM embeddings",
        &values(embeddings.clone()),
        &expected.concat(),
        1e-4,
    );

    let cosine = values(embeddings.clone().matmul(embeddings.transpose()));
    let n = sentences.len();
    let paraphrase = cosine[1];
    let unrelated = [cosine[2], cosine[3], cosine[2 * n + 3]];
    eprintln!("paraphrase cosine {paraphrase:.3}, unrelated {unrelated:?}");
    assert!(paraphrase > 0.5, "paraphrases: cosine {paraphrase}");
    assert!(
        unrelated.iter().all(|c| *c < 0.2),
        "unrelated: {unrelated:?}"
    );
}

#[test]
fn minilm_classifies_the_sentence_embedding_it_was_trained_to_produce() {
    let dir = asset(splitlm_assets::Asset::MiniLm);
    let config = BertConfig::from_dir(&dir).unwrap();
    assert_eq!(
        config.sentence_pooling,
        Some(splitlm_bert::SentencePooling::Mean)
    );
    let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
    let weights = SafetensorsCheckpoint::open(&dir).unwrap();
    let spec = SliceSpec::full(config.num_hidden_layers);
    let task = TaskHead::SequenceClassification { num_labels: 2 };
    let classifier = BertModel::load(&weights, &config, &spec, task, &device).unwrap();
    let encoder = BertModel::load(&weights, &config, &spec, TaskHead::Hidden, &device).unwrap();
    let ids = vec![vec![101, 7592, 2088, 102], vec![101, 2307, 102]];
    let tokens = TokenBatch::from_sequences(&ids, 0, PaddingSide::Right, &device).unwrap();
    let logits = classifier
        .forward(&tokens, None)
        .unwrap()
        .class_logits()
        .unwrap();
    // The classifier (seeded from its name) applied to the mean-pooled states, by hand.
    let pooled = mean_pool(
        encoder.forward(&tokens, None).unwrap().hidden().unwrap(),
        &tokens.attention_mask,
    );
    let w = splitlm_nn::seeded::normal(0, "classifier.weight", 384 * 2, 0.02);
    let w =
        burn::tensor::Tensor::<2>::from_data(burn::tensor::TensorData::new(w, [384, 2]), &device);
    assert_close(
        "mean-pooled classifier",
        &values(logits),
        &values(pooled.matmul(w)),
        1e-5,
    );
}
