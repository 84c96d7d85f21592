//! Llama-style core against Hugging Face transformers on tiny random checkpoints
//! (`fixtures/models/llama`: GQA + tied embeddings; `fixtures/models/qwen2`: q/k/v biases and
//! an untied LM head), with left and right padding.

use splitlm_llama::{LlamaConfig, LlamaModel};
use splitlm_nn::testing::{Fixture, assert_close, incremental_decoding_error, valid_rows, values};
use splitlm_nn::{HeadOutput, SliceSpec, TaskHead, TokenBatch, TransformerSlice};

struct Case {
    fixture: Fixture,
    config: LlamaConfig,
    tokens: TokenBatch,
    mask: Vec<Vec<i64>>,
}

impl Case {
    fn open(name: &str) -> Self {
        let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
        let fixture = Fixture::open(name).unwrap();
        let config = LlamaConfig::from_dir(&fixture.dir).unwrap();
        let tokens = TokenBatch {
            input_ids: fixture.ints("input_ids", &device),
            attention_mask: fixture.ints("attention_mask", &device),
            token_type_ids: None,
        };
        let mask = fixture.int_rows("attention_mask");
        Self {
            fixture,
            config,
            tokens,
            mask,
        }
    }

    fn model(&self, task: TaskHead, spec: SliceSpec) -> LlamaModel {
        let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
        LlamaModel::load(&self.fixture.weights, &self.config, &spec, task, &device).unwrap()
    }

    fn whole(&self, task: TaskHead) -> LlamaModel {
        self.model(task, SliceSpec::full(self.config.num_hidden_layers))
    }

    fn run(&self, task: TaskHead) -> HeadOutput {
        self.whole(task).forward(&self.tokens, None).unwrap()
    }

    fn assert_per_token(&self, name: &str, actual: burn::tensor::Tensor<3>) {
        let (shape, expected) = self.fixture.floats(name);
        let width = shape[2];
        assert_close(
            name,
            &valid_rows(&values(actual), &self.mask, width),
            &valid_rows(&expected, &self.mask, width),
            1e-4,
        );
    }
}

#[test]
fn llama_lm_logits_and_hidden_states_match_transformers() {
    let case = Case::open("llama");
    assert!(
        case.config.tie_word_embeddings && case.config.kv_heads() < case.config.num_attention_heads
    );
    case.assert_per_token(
        "lm_logits",
        case.run(TaskHead::CausalLm).lm_logits().unwrap(),
    );
    case.assert_per_token(
        "last_hidden_state",
        case.run(TaskHead::Hidden).hidden().unwrap(),
    );
}

#[test]
fn llama_sequence_classification_matches_transformers() {
    let case = Case::open("llama");
    let logits = case
        .run(TaskHead::SequenceClassification { num_labels: 3 })
        .class_logits()
        .unwrap();
    assert_close(
        "seq_cls_logits",
        &values(logits),
        &case.fixture.floats("seq_cls_logits").1,
        1e-4,
    );
}

#[test]
fn qwen2_with_biases_and_untied_head_matches_transformers() {
    let case = Case::open("qwen2");
    assert!(!case.config.tie_word_embeddings && case.config.qkv_bias());
    case.assert_per_token(
        "lm_logits",
        case.run(TaskHead::CausalLm).lm_logits().unwrap(),
    );
}

#[test]
fn kv_cache_decoding_equals_full_forward() {
    for name in ["llama", "qwen2"] {
        let case = Case::open(name);
        let err = incremental_decoding_error(&case.whole(TaskHead::CausalLm), &case.tokens, 2);
        assert!(
            err <= 1e-5,
            "{name}: incremental decoding drifts by {err:.2e}"
        );
    }
}

#[test]
fn head_body_tail_slices_equal_the_whole_model() {
    let case = Case::open("llama");
    let head = case.model(TaskHead::CausalLm, SliceSpec::bottom(1));
    let body = case.model(TaskHead::CausalLm, SliceSpec::middle(1, 2));
    let tail = case.model(TaskHead::CausalLm, SliceSpec::top_from(2, 3));
    let hidden = head
        .forward_blocks(head.embed(&case.tokens).unwrap(), None)
        .unwrap();
    let hidden = body.forward_blocks(hidden, None).unwrap();
    let hidden = tail.forward_blocks(hidden, None).unwrap();
    let split = tail.forward_top(hidden).unwrap().lm_logits().unwrap();
    let whole = case.run(TaskHead::CausalLm).lm_logits().unwrap();
    assert_close("split vs whole", &values(split), &values(whole), 1e-6);
}

#[test]
fn mismatched_cache_and_mask_is_an_error() {
    let case = Case::open("llama");
    let model = case.whole(TaskHead::CausalLm);
    let mut cache = model.new_cache();
    model.forward(&case.tokens, Some(&mut cache)).unwrap();
    // Feeding the same full-length mask again claims no past positions: rejected.
    let err = model
        .forward(&case.tokens, Some(&mut cache))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cache holds 7"), "{err}");
}

#[test]
fn a_slice_reads_only_its_own_tensors() {
    let case = Case::open("llama");
    let source = splitlm_nn::testing::RecordingSource::new(&case.fixture.weights);
    let device = splitlm_device::DeviceSpec::Cpu.device().unwrap();
    let spec = SliceSpec::middle(1, 2);
    LlamaModel::load(&source, &case.config, &spec, TaskHead::CausalLm, &device).unwrap();
    let loaded = source.loaded();
    assert_eq!(
        loaded.len(),
        9,
        "one block: 2 norms + 7 projections, got {loaded:?}"
    );
    assert!(
        loaded.iter().all(|n| n.starts_with("model.layers.1.")),
        "{loaded:?}"
    );
}
