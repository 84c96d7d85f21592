//! An attacker's own task head. A task head absent from the checkpoint is drawn from its name
//! (`Weights::linear_or_new`), the same values for every party: a surrogate tail loaded like
//! the data party's would start exactly where the data party's tail started, which a real
//! attacker cannot know. The reference's attacker loads the pretrained model anew, its head
//! drawn by its own generator (`ModelCompletion_LLM.py` l.158-163).

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use splitlm_zoo::AnyModel;

/// `model` with every classification head parameter (modules named `classifier`, as in BERT,
/// or `score`, as in the decoders) redrawn from N(0, 0.02²) keyed by `seed` and its path.
pub fn fresh_task_head(model: AnyModel, seed: u64) -> AnyModel {
    model.map(&mut Redraw {
        seed,
        path: Vec::new(),
    })
}

struct Redraw {
    seed: u64,
    path: Vec<String>,
}

impl ModuleMapper for Redraw {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !self.path.iter().any(|p| p == "classifier" || p == "score") {
            return param;
        }
        let (seed, path) = (self.seed, self.path.join("."));
        param.map(|t| {
            let shape = t.shape();
            // A weight and its bias share the path; their shapes tell them apart.
            let key = format!("attacker.{path}.{:?}", shape);
            let values = splitlm_nn::seeded::normal(seed, &key, shape.num_elements(), 0.02);
            Tensor::from_data(TensorData::new(values, shape), &t.device())
        })
    }
}
