//! Every registered family opens its fixture checkpoint as itself, and Burn names its level of
//! an `AnyModel` as `Family::module_name` says (what parameter paths are rewritten by).

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use splitlm_device::DeviceSpec;
use splitlm_nn::{SliceSpec, TaskHead, TransformerSlice};
use splitlm_zoo::{Family, Pretrained};

#[derive(Default)]
struct FirstSegments(Vec<String>);

impl ModuleVisitor for FirstSegments {
    fn enter_module(&mut self, name: &str, container: &str) {
        if container.starts_with("Enum:") && !self.0.iter().any(|n| n == name) {
            self.0.push(name.to_owned());
        }
    }

    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {}
}

#[test]
fn each_family_opens_its_fixture_and_names_its_module_level() {
    let device = DeviceSpec::Cpu.device().unwrap();
    for &family in Family::ALL {
        // The fixtures are named after the families.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/models")
            .join(family.name());
        let checkpoint = Pretrained::open(&dir).unwrap();
        assert_eq!(checkpoint.family(), family);
        let spec = SliceSpec::full(checkpoint.num_layers());
        let model = checkpoint.load(&spec, TaskHead::Hidden, &device).unwrap();
        assert_eq!(model.family(), family);
        assert_eq!(model.family_name(), family.name());
        assert_eq!(model.hidden_size(), checkpoint.hidden_size());
        let mut levels = FirstSegments::default();
        model.visit(&mut levels);
        assert_eq!(levels.0, [family.module_name()], "{family}");
    }
}
