//! The model party on wgpu, the data party on the CPU: the same numbers as the whole model on
//! the CPU. Needs a Vulkan driver (`apt-get install mesa-vulkan-drivers` gives lavapipe, as
//! `.ci/run` does); without one the test fails and says so.

use splitlm_device::DeviceSpec;
use splitlm_partition::{LoraSettings, Partition, Trainability};
use splitlm_party::OptimizerConfig;

use crate::common::{Workload, assert_equivalent, cpu, split, unsplit};

#[test]
fn model_party_on_wgpu_data_party_on_cpu() {
    let gpu = match DeviceSpec::Wgpu(None).probe() {
        Ok(device) => device.autodiff(),
        Err(err) => panic!("the model party needs wgpu, which cannot be opened: {err}"),
    };
    let work = Workload::classify("llama");
    let optimizer = OptimizerConfig::default();
    for (name, trainability) in [
        ("full", Trainability::default()),
        (
            "lora",
            Trainability::lora(LoraSettings {
                rank: 2,
                ..LoraSettings::default()
            }),
        ),
    ] {
        let whole = unsplit(&work, &trainability, &optimizer, 2);
        for partition in [Partition::head_tail(1), Partition::head_body_tail(1, 1)] {
            let (observed, _) =
                split(&work, partition, &trainability, &optimizer, &cpu(), &gpu).train(&work, 2);
            let case = format!("wgpu/cpu {name} {partition}");
            let (loss, grads, params) = assert_equivalent(&case, &observed, &whole, 1e-4);
            println!("{case}: loss {loss:.1e}, gradients {grads:.1e}, weights {params:.1e}");
        }
    }
}
