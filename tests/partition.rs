//! Cutting a model by a partition and running the parties' slices in order reproduces the
//! whole model, for both partition kinds.

use splitlm::llama::{LlamaConfig, LlamaModel};
use splitlm::nn::testing::{Fixture, assert_close, values};
use splitlm::nn::{SliceSpec, TaskHead, TokenBatch, TransformerSlice};
use splitlm::partition::Partition;

#[test]
fn partitioned_slices_reproduce_the_whole_model() {
    let device = splitlm::device::DeviceSpec::Cpu.device().unwrap();
    let fixture = Fixture::open("llama").unwrap();
    let config = LlamaConfig::from_dir(&fixture.dir).unwrap();
    let load = |spec: &SliceSpec| {
        LlamaModel::load(&fixture.weights, &config, spec, TaskHead::CausalLm, &device).unwrap()
    };
    let tokens = TokenBatch {
        input_ids: fixture.ints("input_ids", &device),
        attention_mask: fixture.ints("attention_mask", &device),
        token_type_ids: None,
    };
    let whole = load(&SliceSpec::full(config.num_hidden_layers));
    let expected = values(whole.forward(&tokens, None).unwrap().lm_logits().unwrap());

    for partition in [
        Partition::head_tail(0),
        Partition::head_tail(2),
        Partition::HeadBodyTail {
            n_head: 1,
            n_tail: 1,
        },
        Partition::HeadBodyTail {
            n_head: 1,
            n_tail: 0,
        },
    ] {
        let slices = partition.slices(config.num_hidden_layers).unwrap();
        let head = load(&slices.data_head);
        let model = load(&slices.model);
        let mut hidden = head
            .forward_blocks(head.embed(&tokens).unwrap(), None)
            .unwrap();
        hidden = model.forward_blocks(hidden, None).unwrap();
        let top = match &slices.data_tail {
            Some(spec) => {
                let tail = load(spec);
                hidden = tail.forward_blocks(hidden, None).unwrap();
                tail.forward_top(hidden)
            }
            None => model.forward_top(hidden),
        };
        let logits = values(top.unwrap().lm_logits().unwrap());
        assert_close(&partition.to_string(), &logits, &expected, 1e-6);
    }
}
