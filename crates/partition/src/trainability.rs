//! Which parameters of a party's slices train: whole slice, frozen, embeddings on/off, a set
//! of blocks, the task head on/off, and LoRA adapters on named projections.

use burn::module::{Lora, Module, ModuleMapper, ModuleVisitor, Param, ParamGroup};
use burn::tensor::{Tensor, TensorData};
use splitlm_nn::{SliceSpec, TransformerSlice};
use splitlm_zoo::{AnyModel, FamilyMap};

use crate::paths::global_path;

/// How a slice is fine-tuned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every selected parameter trains ("vanilla" fine-tuning).
    #[default]
    Full,
    /// Selected blocks get LoRA adapters on their target projections; their weights freeze.
    Lora,
    /// Nothing trains (inference, or a party that only relays gradients).
    Frozen,
}

/// A set of blocks, in the model's numbering: `"all"`, `"none"` or a list of ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BlockSet {
    /// Every block.
    #[default]
    All,
    /// No block.
    None,
    /// These blocks.
    Ids(Vec<usize>),
}

impl BlockSet {
    fn contains(&self, id: usize) -> bool {
        match self {
            BlockSet::All => true,
            BlockSet::None => false,
            BlockSet::Ids(ids) => ids.contains(&id),
        }
    }
}

impl serde::Serialize for BlockSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BlockSet::All => s.serialize_str("all"),
            BlockSet::None => s.serialize_str("none"),
            BlockSet::Ids(ids) => ids.serialize(s),
        }
    }
}

impl<'de> serde::Deserialize<'de> for BlockSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Word(String),
            Ids(Vec<usize>),
        }
        match Repr::deserialize(d).map_err(|_| {
            serde::de::Error::custom("blocks must be \"all\", \"none\" or a list of block ids")
        })? {
            Repr::Word(w) if w == "all" => Ok(BlockSet::All),
            Repr::Word(w) if w == "none" => Ok(BlockSet::None),
            Repr::Word(w) => Err(serde::de::Error::custom(format!(
                "blocks = \"{w}\": expected \"all\", \"none\" or a list of block ids"
            ))),
            Repr::Ids(ids) => Ok(BlockSet::Ids(ids)),
        }
    }
}

/// LoRA settings (reference defaults: rank 4, α 32).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank of the adapters.
    pub rank: usize,
    /// Scale numerator: the update is `α / rank · A·B`.
    pub alpha: f64,
    /// Dropout on the adapters' input. Only 0 is supported (see [`Trainability::validate`]).
    pub dropout: f64,
    /// Projection names to adapt (`query`, `c_attn`, `q_proj`…); `None`: the family default
    /// ([`splitlm_zoo::Family::default_lora_targets`]).
    pub targets: Option<Vec<String>>,
}

impl Default for LoraSettings {
    fn default() -> Self {
        Self {
            rank: 4,
            alpha: 32.0,
            dropout: 0.0,
            targets: None,
        }
    }
}

/// Which parameters of a party's slices train. In configuration, `embeddings` defaults to
/// `true` for full fine-tuning and to `false` with `strategy = "lora"` (as
/// [`Trainability::lora`]): LoRA means adapters, not full-weight embeddings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(from = "TrainabilityConfig")]
pub struct Trainability {
    /// Full fine-tuning, LoRA or frozen.
    pub strategy: Strategy,
    /// Whether the embeddings train (if the party holds them; full weights, also with LoRA).
    pub embeddings: bool,
    /// The blocks that train (fully, or through LoRA adapters).
    pub blocks: BlockSet,
    /// Whether the final norm and task head train (if the party holds them).
    pub task_head: bool,
    /// Adapter settings, used by `strategy = "lora"`.
    pub lora: LoraSettings,
}

/// [`Trainability`] as written in a configuration, before defaults that depend on the
/// strategy are filled in.
#[derive(serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TrainabilityConfig {
    strategy: Strategy,
    embeddings: Option<bool>,
    blocks: BlockSet,
    task_head: bool,
    lora: LoraSettings,
}

impl Default for TrainabilityConfig {
    fn default() -> Self {
        let t = Trainability::default();
        Self {
            strategy: t.strategy,
            embeddings: None,
            blocks: t.blocks,
            task_head: t.task_head,
            lora: t.lora,
        }
    }
}

impl From<TrainabilityConfig> for Trainability {
    fn from(c: TrainabilityConfig) -> Self {
        Self {
            embeddings: c.embeddings.unwrap_or(c.strategy != Strategy::Lora),
            strategy: c.strategy,
            blocks: c.blocks,
            task_head: c.task_head,
            lora: c.lora,
        }
    }
}

impl Default for Trainability {
    fn default() -> Self {
        Self {
            strategy: Strategy::Full,
            embeddings: true,
            blocks: BlockSet::All,
            task_head: true,
            lora: LoraSettings::default(),
        }
    }
}

/// A trainability setting that does not fit the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trainability: {0}")]
pub struct TrainabilityError(pub String);

impl Trainability {
    /// Nothing trains.
    pub fn frozen() -> Self {
        Self {
            strategy: Strategy::Frozen,
            ..Self::default()
        }
    }

    /// LoRA with the given settings on every block, task head trained, embeddings frozen.
    pub fn lora(lora: LoraSettings) -> Self {
        Self {
            strategy: Strategy::Lora,
            embeddings: false,
            lora,
            ..Self::default()
        }
    }

    /// Checks the setting against a model with `num_layers` blocks.
    pub fn validate(&self, num_layers: usize) -> Result<(), TrainabilityError> {
        let fail = |m: String| Err(TrainabilityError(m));
        if let BlockSet::Ids(ids) = &self.blocks
            && let Some(bad) = ids.iter().find(|&&id| id >= num_layers)
        {
            return fail(format!(
                "block {bad} listed as trainable, but the model has {num_layers} blocks (0..{num_layers})"
            ));
        }
        self.validate_lora()
    }

    fn validate_lora(&self) -> Result<(), TrainabilityError> {
        let fail = |m: String| Err(TrainabilityError(m));
        if self.strategy != Strategy::Lora {
            return Ok(());
        }
        let lora = &self.lora;
        if lora.rank == 0 {
            return fail("lora.rank must be at least 1".into());
        }
        if !(lora.alpha.is_finite() && lora.alpha > 0.0) {
            return fail(format!(
                "lora.alpha = {} must be a positive number",
                lora.alpha
            ));
        }
        if lora.dropout != 0.0 {
            return fail(format!(
                "lora.dropout = {}: adapter dropout is not supported yet (Burn merges the adapter \
                 into the weight, leaving no separate adapter input to drop); set it to 0",
                lora.dropout
            ));
        }
        if let Some(targets) = &lora.targets {
            if targets.is_empty() {
                return fail("lora.targets is empty; omit it for the family's default".into());
            }
            if let Some(bad) = targets.iter().find(|t| !is_identifier(t)) {
                return fail(format!("lora.targets: \"{bad}\" is not a projection name"));
            }
        }
        Ok(())
    }

    /// Applies the setting to a slice (loaded on an autodiff device). LoRA factors `A` are drawn
    /// from a normal law seeded by `seed` and each weight's path in the model, so the same
    /// seed gives the same adapters whether the model is split or not, on any backend.
    pub fn apply(&self, model: AnyModel, seed: u64) -> Result<AnyModel, TrainabilityError> {
        self.validate_lora()?;
        let spec = model.spec().clone();
        let targets: Vec<String> = match &self.lora.targets {
            Some(t) => t.clone(),
            None => model
                .family()
                .default_lora_targets()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let local_blocks: Vec<usize> = spec
            .blocks
            .ids()
            .filter(|&id| self.blocks.contains(id))
            .map(|id| id - spec.blocks.start)
            .collect();
        let plan = Plan {
            setting: self,
            spec: &spec,
            targets: &targets,
            local_blocks: &local_blocks,
            seed,
        };
        model.map_family(&plan)
    }
}

/// Folds every LoRA adapter into its weight (`W + α/r · A·B`), giving a plain model with the
/// fine-tuned behaviour and the original parameter shapes, for export or serving.
pub fn merge_lora(model: AnyModel) -> AnyModel {
    model.materialize()
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Plan<'a> {
    setting: &'a Trainability,
    spec: &'a SliceSpec,
    targets: &'a [String],
    local_blocks: &'a [usize],
    seed: u64,
}

impl Plan<'_> {
    /// Path patterns (relative to a family model) of the parts trained with full weights.
    fn full_weight_patterns(&self, with_blocks: bool) -> Vec<String> {
        let mut patterns = Vec::new();
        if self.setting.embeddings {
            patterns.push(r"^embeddings\.".to_string());
        }
        if self.setting.task_head {
            patterns.push(r"^top\.".to_string());
        }
        if with_blocks && !self.local_blocks.is_empty() {
            patterns.push(format!(r"^blocks\.({})\.", self.block_alternatives()));
        }
        patterns
    }

    fn block_alternatives(&self) -> String {
        let ids: Vec<String> = self.local_blocks.iter().map(|i| i.to_string()).collect();
        ids.join("|")
    }
}

fn group(patterns: &[String]) -> ParamGroup {
    ParamGroup::from_any_regexes(patterns.to_vec()).expect("patterns are built from identifiers")
}

impl FamilyMap for Plan<'_> {
    type Error = TrainabilityError;

    fn apply<M: Module>(&self, module: M) -> Result<M, TrainabilityError> {
        let module = module.set_require_grad(false);
        let full = match self.setting.strategy {
            Strategy::Frozen => return Ok(module),
            Strategy::Full => self.full_weight_patterns(true),
            Strategy::Lora => self.full_weight_patterns(false),
        };
        let module = if self.setting.strategy == Strategy::Lora && !self.local_blocks.is_empty() {
            let lora = &self.setting.lora;
            let targets = group(&[format!(
                r"^blocks\.({})\.({})\.weight$",
                self.block_alternatives(),
                self.targets.join("|")
            )]);
            let module =
                module.apply_lora(Lora::new(lora.rank, lora.alpha).set_param_group(targets));
            let module = module.map(&mut SeededLoraInit::new(self.spec, self.seed, lora.rank));
            if count_adapters(&module) == 0 {
                return Err(TrainabilityError(format!(
                    "LoRA targets [{}] match no 2-D weight in blocks {} of this slice",
                    self.targets.join(", "),
                    self.spec.blocks
                )));
            }
            module
        } else {
            module
        };
        Ok(if full.is_empty() {
            module
        } else {
            module.set_require_grad_group(group(&full), true)
        })
    }
}

fn count_adapters<M: Module>(module: &M) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn enter_module(&mut self, name: &str, container: &str) {
            if name == "lora" && container == "Reparameterization" {
                self.0 += 1;
            }
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}

/// Redraws every LoRA `A` factor from N(0, 1/rank) with a generator seeded by the run's seed
/// and the weight's global path (Burn's own draw depends on call order and device).
struct SeededLoraInit<'a> {
    spec: &'a SliceSpec,
    seed: u64,
    std: f64,
    path: Vec<String>,
}

impl<'a> SeededLoraInit<'a> {
    fn new(spec: &'a SliceSpec, seed: u64, rank: usize) -> Self {
        Self {
            spec,
            seed,
            std: 1.0 / rank as f64,
            path: Vec::new(),
        }
    }
}

impl ModuleMapper for SeededLoraInit<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_owned());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        if !path.ends_with(".lora.a") {
            return param;
        }
        let global = global_path(&path, self.spec);
        let std = self.std;
        param.map(|tensor| {
            let shape = tensor.shape();
            let device = tensor.device();
            let require_grad = tensor.is_require_grad();
            let values = splitlm_nn::seeded::normal(self.seed, &global, shape.num_elements(), std);
            Tensor::<D>::from_data(TensorData::new(values, shape), &device)
                .set_require_grad(require_grad)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Trainability, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn settings_parse_and_are_checked() {
        let t =
            parse(r#"{"strategy":"lora","blocks":[0,2],"lora":{"rank":8,"targets":["query"]}}"#)
                .unwrap();
        assert_eq!(t.strategy, Strategy::Lora);
        assert_eq!(t.blocks, BlockSet::Ids(vec![0, 2]));
        assert_eq!((t.lora.rank, t.lora.alpha), (8, 32.0));
        assert!(
            !t.embeddings,
            "LoRA leaves the embeddings frozen unless asked"
        );
        assert!(
            parse(r#"{"strategy":"lora","embeddings":true}"#)
                .unwrap()
                .embeddings
        );
        assert_eq!(parse("{}").unwrap(), Trainability::default());
        assert!(t.validate(6).is_ok());
        let err = t.validate(2).unwrap_err().to_string();
        assert!(err.contains("block 2") && err.contains("2 blocks"), "{err}");
        assert_eq!(
            parse(r#"{"blocks":"none"}"#).unwrap().blocks,
            BlockSet::None
        );
        assert!(
            parse(r#"{"blocks":"some"}"#)
                .unwrap_err()
                .contains("\"some\"")
        );
        assert!(
            parse(r#"{"stratgy":"full"}"#)
                .unwrap_err()
                .contains("stratgy")
        );
        assert!(
            parse(r#"{"lora":{"rank":4,"alpah":1}}"#)
                .unwrap_err()
                .contains("alpah")
        );
        let bad_target = parse(r#"{"strategy":"lora","lora":{"targets":["q.*"]}}"#).unwrap();
        assert!(
            bad_target
                .validate(6)
                .unwrap_err()
                .to_string()
                .contains("q.*")
        );
    }
}
