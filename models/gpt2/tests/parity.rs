//! GPT-2 core against Hugging Face transformers on a tiny random checkpoint
//! (`fixtures/models/gpt2`, made by `fixtures/generate.py`), with left and right padding.

use burn::tensor::Device;
use splitlm_gpt2::{Gpt2Config, Gpt2Model};
use splitlm_nn::testing::{Fixture, assert_close, incremental_decoding_error, valid_rows, values};
use splitlm_nn::{SliceSpec, TaskHead, TokenBatch, TransformerSlice};

const TOLERANCE: f32 = 1e-4;

fn device() -> Device {
    splitlm_device::DeviceSpec::Cpu.device().unwrap()
}

fn setup(task: TaskHead, spec: Option<SliceSpec>) -> (Fixture, Gpt2Model, TokenBatch) {
    let fixture = Fixture::open("gpt2").unwrap();
    let config = Gpt2Config::from_dir(&fixture.dir).unwrap();
    let spec = spec.unwrap_or_else(|| SliceSpec::full(config.n_layer));
    let device = device();
    let model = Gpt2Model::load(&fixture.weights, &config, &spec, task, &device).unwrap();
    let tokens = TokenBatch {
        input_ids: fixture.ints("input_ids", &device),
        attention_mask: fixture.ints("attention_mask", &device),
        token_type_ids: None,
    };
    (fixture, model, tokens)
}

#[test]
fn positions_follow_the_fixture_convention() {
    let (fixture, _, tokens) = setup(TaskHead::Hidden, None);
    let ours: Vec<i64> = tokens
        .positions()
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    let theirs: Vec<i64> = fixture.int_rows("position_ids").concat();
    assert_eq!(ours, theirs);
}

#[test]
fn lm_logits_and_hidden_states_match_transformers() {
    let mask = Fixture::open("gpt2").unwrap().int_rows("attention_mask");
    for (task, name) in [
        (TaskHead::CausalLm, "lm_logits"),
        (TaskHead::Hidden, "last_hidden_state"),
    ] {
        let (fixture, model, tokens) = setup(task, None);
        let out = model.forward(&tokens, None).unwrap();
        let out = match task {
            TaskHead::CausalLm => out.lm_logits().unwrap(),
            _ => out.hidden().unwrap(),
        };
        let (shape, expected) = fixture.floats(name);
        let width = shape[2];
        assert_close(
            name,
            &valid_rows(&values(out), &mask, width),
            &valid_rows(&expected, &mask, width),
            TOLERANCE,
        );
    }
}

#[test]
fn sequence_classification_uses_the_last_real_token() {
    let (fixture, model, tokens) = setup(TaskHead::SequenceClassification { num_labels: 3 }, None);
    let logits = model
        .forward(&tokens, None)
        .unwrap()
        .class_logits()
        .unwrap();
    assert_close(
        "seq_cls_logits",
        &values(logits),
        &fixture.floats("seq_cls_logits").1,
        TOLERANCE,
    );
}

#[test]
fn span_qa_matches_transformers() {
    let (fixture, model, tokens) = setup(TaskHead::SpanQa, None);
    let (start, end) = model.forward(&tokens, None).unwrap().span_logits().unwrap();
    let mask = fixture.int_rows("attention_mask");
    for (name, actual) in [("qa_start_logits", start), ("qa_end_logits", end)] {
        assert_close(
            name,
            &valid_rows(&values(actual), &mask, 1),
            &valid_rows(&fixture.floats(name).1, &mask, 1),
            TOLERANCE,
        );
    }
}

#[test]
fn kv_cache_decoding_equals_full_forward() {
    let (_, model, tokens) = setup(TaskHead::CausalLm, None);
    let err = incremental_decoding_error(&model, &tokens, 3);
    assert!(err <= 1e-5, "incremental decoding drifts by {err:.2e}");
}

#[test]
fn slices_chained_equal_the_whole_model_with_a_copied_tied_head() {
    let (_, whole, tokens) = setup(TaskHead::CausalLm, None);
    let (_, bottom, _) = setup(TaskHead::CausalLm, Some(SliceSpec::bottom(1)));
    let (_, top, _) = setup(TaskHead::CausalLm, Some(SliceSpec::top_from(1, 3)));
    let hidden = bottom
        .forward_blocks(bottom.embed(&tokens).unwrap(), None)
        .unwrap();
    let split = top
        .forward_top(top.forward_blocks(hidden, None).unwrap())
        .unwrap()
        .lm_logits()
        .unwrap();
    let full = whole.forward(&tokens, None).unwrap().lm_logits().unwrap();
    assert_close("split vs whole", &values(split), &values(full), 1e-6);
}
