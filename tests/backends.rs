//! The same model gives the same numbers on every backend this build contains. A backend
//! compiled in but impossible to open fails the test with the reason: wgpu needs a Vulkan
//! driver (`apt-get install mesa-vulkan-drivers` gives lavapipe, a CPU one, as `.ci/run` does).

use burn::tensor::Device;
use splitlm::device::DeviceSpec;
use splitlm::llama::{LlamaConfig, LlamaModel};
use splitlm::nn::testing::{Fixture, assert_close, incremental_decoding_error, values};
use splitlm::nn::{SliceSpec, TaskHead, TokenBatch, TransformerSlice};

fn other_backends() -> Vec<(DeviceSpec, Device)> {
    [DeviceSpec::Wgpu(None), DeviceSpec::Cuda(0)]
        .into_iter()
        .filter(DeviceSpec::is_compiled)
        .map(|spec| match spec.probe() {
            Ok(device) => (spec, device),
            Err(err) => panic!("{spec} is compiled in but cannot be opened: {err}"),
        })
        .collect()
}

fn llama_on(device: &Device) -> (LlamaModel, TokenBatch) {
    let fixture = Fixture::open("llama").unwrap();
    let config = LlamaConfig::from_dir(&fixture.dir).unwrap();
    let spec = SliceSpec::full(config.num_hidden_layers);
    let model =
        LlamaModel::load(&fixture.weights, &config, &spec, TaskHead::CausalLm, device).unwrap();
    let tokens = TokenBatch {
        input_ids: fixture.ints("input_ids", device),
        attention_mask: fixture.ints("attention_mask", device),
        token_type_ids: None,
    };
    (model, tokens)
}

#[test]
fn llama_logits_agree_across_backends() {
    let cpu = DeviceSpec::Cpu.device().unwrap();
    let (model, tokens) = llama_on(&cpu);
    let reference = values(model.forward(&tokens, None).unwrap().lm_logits().unwrap());
    for (spec, device) in other_backends() {
        let (model, tokens) = llama_on(&device);
        let logits = values(model.forward(&tokens, None).unwrap().lm_logits().unwrap());
        assert_close(
            &format!("llama logits on {spec} vs cpu"),
            &logits,
            &reference,
            1e-4,
        );
        let drift = incremental_decoding_error(&model, &tokens, 2);
        assert!(
            drift <= 1e-4,
            "{spec}: cached decoding drifts by {drift:.2e}"
        );
    }
}
