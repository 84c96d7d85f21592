//! The real SmolLM2-135M-Instruct (Q4_1 GGUF) against references that Hugging Face
//! transformers produced from the same file (`fixtures/smollm2/reference.json`).
//! Skips with a printed reason when the asset cache lacks the model (see `cargo xtask assets`).

use std::path::PathBuf;

use serde_json::Value;
use splitlm_llama::{GgufLlamaSource, LlamaModel};
use splitlm_nn::generate::greedy;
use splitlm_nn::testing::{asset, fixtures_dir, relative_error, values};
use splitlm_nn::{SliceSpec, TaskHead, TokenBatch, TransformerSlice};
use splitlm_weights::tokenizer_from_gguf;

fn gguf() -> PathBuf {
    asset(splitlm_assets::Asset::SmolLm2);
    splitlm_assets::smollm2_gguf()
}

fn reference() -> Value {
    let path = fixtures_dir().join("smollm2/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokenizer_matches_hugging_face_ids() {
    let path = gguf();
    let source = GgufLlamaSource::open(&path).unwrap();
    let tokenizer = tokenizer_from_gguf(source.file()).unwrap();
    let reference = reference();
    for case in reference["tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ours = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ours, ids(&case["ids"]), "ids of {text:?}");
    }
    let prompt = &reference["chat_prompt"];
    let ours = tokenizer
        .encode(prompt["text"].as_str().unwrap(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(ours, ids(&prompt["ids"]), "chat prompt ids");
}

#[test]
fn greedy_answer_and_logits_match_transformers() {
    let path = gguf();
    let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
    let source = GgufLlamaSource::open(&path).unwrap();
    let config = source.config().clone();
    assert_eq!(
        (
            config.hidden_size,
            config.num_hidden_layers,
            config.kv_heads()
        ),
        (576, 30, 3)
    );
    let spec = SliceSpec::full(config.num_hidden_layers);
    let model = LlamaModel::load(&source, &config, &spec, TaskHead::CausalLm, &device).unwrap();
    let reference = reference();
    let prompt = ids(&reference["chat_prompt"]["ids"]);

    // Logits of the prompt's last position: the reference's top 20, within 1e-3 of its scale.
    let batch = TokenBatch::from_sequences(
        std::slice::from_ref(&prompt),
        0,
        splitlm_nn::batch::PaddingSide::Left,
        &device,
    )
    .unwrap();
    let logits = model.forward(&batch, None).unwrap().lm_logits().unwrap();
    let [_, seq, vocab] = logits.dims();
    let last = values(logits.narrow(1, seq - 1, 1).reshape([vocab]));
    let top = &reference["prompt_last_logits_top"];
    let top_ids = ids(&top["ids"]);
    let expected: Vec<f32> = top["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let ours: Vec<f32> = top_ids.iter().map(|&i| last[i as usize]).collect();
    let err = relative_error(&ours, &expected);
    eprintln!("SmolLM2 top-20 prompt logits: relative error {err:.2e}");
    assert!(err <= 1e-3, "top-20 logits differ by {err:.2e}");

    let generated = greedy(&model, &prompt, 16, &[2], &device).unwrap();
    assert_eq!(generated, ids(&reference["greedy"]["generated_ids"]));
    let tokenizer = tokenizer_from_gguf(source.file()).unwrap();
    let text = tokenizer.decode(&generated, true).unwrap();
    assert!(text.contains("Paris"), "{text}");
}

#[test]
fn a_data_party_head_holds_only_its_blocks() {
    let path = gguf();
    let source = GgufLlamaSource::open(&path).unwrap();
    let recording = splitlm_nn::testing::RecordingSource::new(&source);
    let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
    let config = source.config().clone();
    let head = LlamaModel::load(
        &recording,
        &config,
        &SliceSpec::bottom(2),
        TaskHead::Hidden,
        &device,
    )
    .unwrap();
    let loaded = recording.loaded();
    assert_eq!(loaded.len(), 1 + 2 * 9, "embeddings + 2 blocks: {loaded:?}");
    assert!(loaded.iter().all(|n| n == "model.embed_tokens.weight"
        || n.starts_with("model.layers.0.")
        || n.starts_with("model.layers.1.")));
    // Parameters held: the embedding matrix and two blocks, nothing of the other 28.
    let d = config.hidden_size;
    let kv = config.kv_heads() * config.head_size();
    let block = 2 * d + d * d * 2 + d * kv * 2 + 3 * d * config.intermediate_size;
    use burn::module::Module;
    assert_eq!(head.num_params(), config.vocab_size * d + 2 * block);
}
