//! Parameter paths in the model's own numbering, so that a party's slice and the whole model
//! name the same weight alike.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};
use splitlm_nn::SliceSpec;
use splitlm_zoo::Family;

/// Rewrites a path local to a slice (`blocks.0.query.weight`, where block 0 is the slice's
/// first) into the model's numbering (`blocks.4.query.weight`). The family level of an
/// [`AnyModel`](splitlm_zoo::AnyModel) (`Bert.`, see [`Family::module_name`]) is dropped.
pub fn global_path(local: &str, spec: &SliceSpec) -> String {
    let mut parts: Vec<String> = local.split('.').map(str::to_owned).collect();
    if parts
        .first()
        .is_some_and(|first| Family::from_module_name(first).is_some())
    {
        parts.remove(0);
    }
    if parts.first().map(String::as_str) == Some("blocks")
        && let Some(id) = parts.get(1).and_then(|p| p.parse::<usize>().ok())
    {
        parts[1] = (spec.blocks.start + id).to_string();
    }
    parts.join(".")
}

/// A float parameter of a module, found by [`named_parameters`].
#[derive(Debug, Clone)]
pub struct NamedParameter {
    /// Path in the model's numbering.
    pub path: String,
    /// The parameter's id (what gradients are keyed by).
    pub id: ParamId,
    /// Its current value (flattened shape kept in `dims`).
    pub value: Tensor<1>,
    /// Its shape.
    pub dims: Vec<usize>,
    /// Whether it trains.
    pub trainable: bool,
}

/// Every float parameter of `module` (a slice described by `spec`), with global paths. LoRA
/// factors appear as `<weight path>.lora.a` / `.lora.b`.
pub fn named_parameters<M: Module>(module: &M, spec: &SliceSpec) -> Vec<NamedParameter> {
    struct Collect<'a> {
        spec: &'a SliceSpec,
        path: Vec<String>,
        found: Vec<NamedParameter>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            let dims = value.dims().to_vec();
            let trainable = value.is_require_grad();
            self.found.push(NamedParameter {
                path: global_path(&self.path.join("."), self.spec),
                id: param.id,
                value: value.flatten::<1>(0, D - 1),
                dims,
                trainable,
            });
        }
    }
    let mut collect = Collect {
        spec,
        path: Vec::new(),
        found: Vec::new(),
    };
    module.visit(&mut collect);
    collect.found
}

/// A parameter's saved value, to put back with [`restore_parameters`].
#[derive(Debug, Clone, PartialEq)]
pub struct SavedParameter {
    /// The id the parameter had (optimizer state is keyed by it).
    pub id: ParamId,
    /// Its shape.
    pub dims: Vec<usize>,
    /// Its values, row-major.
    pub values: Vec<f32>,
}

/// Puts `saved` parameters (by global path) back into `module`, with their saved ids, keeping
/// whether each trains. Every saved path must exist with the same shape; parameters not saved
/// keep their values.
pub fn restore_parameters<M: Module>(
    module: M,
    spec: &SliceSpec,
    mut saved: BTreeMap<String, SavedParameter>,
) -> Result<M, String> {
    struct Restore<'a> {
        spec: &'a SliceSpec,
        path: Vec<String>,
        saved: &'a mut BTreeMap<String, SavedParameter>,
        errors: Vec<String>,
    }
    impl ModuleMapper for Restore<'_> {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_owned());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let path = global_path(&self.path.join("."), self.spec);
            let Some(found) = self.saved.remove(&path) else {
                return param;
            };
            let (_, value, mapper) = param.consume();
            if found.dims != value.dims() {
                self.errors.push(format!(
                    "{path}: saved shape {:?}, the model's is {:?}",
                    found.dims,
                    value.dims()
                ));
                return Param::from_mapped_value(found.id, value, mapper);
            }
            let restored =
                Tensor::from_data(TensorData::new(found.values, found.dims), &value.device());
            let restored = if value.is_require_grad() {
                restored.require_grad()
            } else {
                restored
            };
            Param::from_mapped_value(found.id, restored, mapper)
        }
    }
    let mut restore = Restore {
        spec,
        path: Vec::new(),
        saved: &mut saved,
        errors: Vec::new(),
    };
    let module = module.map(&mut restore);
    let mut errors = restore.errors;
    errors.extend(
        saved
            .keys()
            .map(|path| format!("{path}: saved, but this slice has no such parameter")),
    );
    if errors.is_empty() {
        Ok(module)
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_are_renumbered_into_the_model() {
        let spec = SliceSpec::middle(4, 6);
        assert_eq!(
            global_path("blocks.1.query.weight", &spec),
            "blocks.5.query.weight"
        );
        assert_eq!(
            global_path("Bert.blocks.0.value.bias", &spec),
            "blocks.4.value.bias"
        );
        assert_eq!(global_path("top.norm.gamma", &spec), "top.norm.gamma");
        assert_eq!(
            global_path("embeddings.words.weight", &spec),
            "embeddings.words.weight"
        );
    }

    #[test]
    fn every_family_level_is_dropped() {
        let spec = SliceSpec::middle(4, 6);
        for family in Family::ALL {
            let local = format!("{}.blocks.1.query.weight", family.module_name());
            assert_eq!(
                global_path(&local, &spec),
                "blocks.5.query.weight",
                "{family}"
            );
        }
    }
}
