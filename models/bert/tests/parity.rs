//! BERT core against Hugging Face transformers on a tiny random checkpoint
//! (`fixtures/models/bert`, made by `fixtures/generate.py`).

use burn::tensor::Device;
use splitlm_bert::{BertConfig, BertModel};
use splitlm_nn::testing::{Fixture, assert_close, valid_rows, values};
use splitlm_nn::{SliceSpec, TaskHead, TokenBatch, TransformerSlice};

const TOLERANCE: f32 = 1e-4;

fn device() -> Device {
    splitlm_device::DeviceSpec::Cpu.device().unwrap()
}

fn setup(task: TaskHead, spec: Option<SliceSpec>) -> (Fixture, BertModel, TokenBatch) {
    let fixture = Fixture::open("bert").unwrap();
    let config = BertConfig::from_dir(&fixture.dir).unwrap();
    let spec = spec.unwrap_or_else(|| SliceSpec::full(config.num_hidden_layers));
    let device = device();
    let model = BertModel::load(&fixture.weights, &config, &spec, task, &device).unwrap();
    let tokens = TokenBatch {
        input_ids: fixture.ints("input_ids", &device),
        attention_mask: fixture.ints("attention_mask", &device),
        token_type_ids: Some(fixture.ints("token_type_ids", &device)),
    };
    (fixture, model, tokens)
}

#[test]
fn hidden_states_and_pooler_match_transformers() {
    let (fixture, model, tokens) = setup(TaskHead::Hidden, None);
    let states = model.forward(&tokens, None).unwrap().hidden().unwrap();
    let mask = fixture.int_rows("attention_mask");
    let (shape, expected) = fixture.floats("last_hidden_state");
    let d = shape[2];
    let actual = values(states.clone());
    assert_close(
        "last_hidden_state",
        &valid_rows(&actual, &mask, d),
        &valid_rows(&expected, &mask, d),
        TOLERANCE,
    );
    let pooled = model.pool(&states).expect("the fixture has a pooler");
    assert_close(
        "pooler_output",
        &values(pooled),
        &fixture.floats("pooler_output").1,
        TOLERANCE,
    );
}

#[test]
fn sequence_classification_matches_transformers() {
    let task = TaskHead::SequenceClassification { num_labels: 3 };
    let (fixture, model, tokens) = setup(task, None);
    let logits = model
        .forward(&tokens, None)
        .unwrap()
        .class_logits()
        .unwrap();
    assert_eq!(logits.dims(), [3, 3]);
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
        let expected = fixture.floats(name).1;
        assert_close(
            name,
            &valid_rows(&values(actual), &mask, 1),
            &valid_rows(&expected, &mask, 1),
            TOLERANCE,
        );
    }
}

#[test]
fn three_slices_chained_equal_the_whole_model() {
    let task = TaskHead::SequenceClassification { num_labels: 3 };
    let (_, whole, tokens) = setup(task, None);
    let (_, bottom, _) = setup(task, Some(SliceSpec::bottom(1)));
    let (_, middle, _) = setup(task, Some(SliceSpec::middle(1, 2)));
    let (_, top, _) = setup(task, Some(SliceSpec::top_from(2, 3)));
    let hidden = bottom.embed(&tokens).unwrap();
    let hidden = bottom.forward_blocks(hidden, None).unwrap();
    let hidden = middle.forward_blocks(hidden, None).unwrap();
    let hidden = top.forward_blocks(hidden, None).unwrap();
    let split = top.forward_top(hidden).unwrap().class_logits().unwrap();
    let full = whole
        .forward(&tokens, None)
        .unwrap()
        .class_logits()
        .unwrap();
    assert_close("split vs whole", &values(split), &values(full), 1e-6);
}

#[test]
fn slices_refuse_parts_they_do_not_hold() {
    let (_, middle, tokens) = setup(TaskHead::Hidden, Some(SliceSpec::middle(1, 2)));
    let err = middle.embed(&tokens).unwrap_err().to_string();
    assert!(err.contains("holds no embeddings"), "{err}");
    let fixture = Fixture::open("bert").unwrap();
    let config = BertConfig::from_dir(&fixture.dir).unwrap();
    let err = BertModel::load(
        &fixture.weights,
        &config,
        &SliceSpec::bottom(4),
        TaskHead::Hidden,
        &device(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("0..4") && err.contains("3 blocks"), "{err}");
}

#[test]
fn wrong_hidden_width_is_an_error_not_a_panic() {
    let (_, model, tokens) = setup(TaskHead::Hidden, None);
    let mut hidden = model.embed(&tokens).unwrap();
    hidden.states = hidden.states.narrow(2, 0, 16);
    let err = model.forward_blocks(hidden, None).unwrap_err().to_string();
    assert!(err.contains("width 16"), "{err}");
}

fn config_with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<BertConfig, String> {
    let fixture = Fixture::open("bert").unwrap();
    let text = std::fs::read_to_string(fixture.dir.join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut json);
    let config: BertConfig =
        splitlm_nn::hf_config::parse_config(&json.to_string(), "edited config.json")
            .map_err(|e| e.to_string())?;
    config
        .validate("edited config.json")
        .map_err(|e| e.to_string())?;
    Ok(config)
}

#[test]
fn bad_configs_and_checkpoints_get_errors_naming_the_problem() {
    let err = config_with(|c| c["model_type"] = "t5".into()).unwrap_err();
    assert!(err.contains("unsupported architecture `t5`"), "{err}");
    let err = config_with(|c| {
        c.as_object_mut()
            .unwrap()
            .remove("hidden_size")
            .map(drop)
            .unwrap()
    })
    .unwrap_err();
    assert!(err.contains("hidden_size"), "{err}");

    let fixture = Fixture::open("bert").unwrap();
    let load = |config: &BertConfig, spec: SliceSpec| {
        BertModel::load(&fixture.weights, config, &spec, TaskHead::Hidden, &device())
            .unwrap_err()
            .to_string()
    };
    let wider = config_with(|c| c["intermediate_size"] = 64.into()).unwrap();
    let err = load(&wider, SliceSpec::middle(0, 1));
    assert!(
        err.contains("encoder.layer.0.intermediate.dense.weight") && err.contains("[37, 32]"),
        "{err}"
    );
    let deeper = config_with(|c| c["num_hidden_layers"] = 4.into()).unwrap();
    let err = load(&deeper, SliceSpec::middle(3, 4));
    assert!(
        err.contains("encoder.layer.3") && err.contains("not found"),
        "{err}"
    );
}
