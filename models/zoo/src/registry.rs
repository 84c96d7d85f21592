//! The machinery behind the one list of families in `lib.rs`.
//!
//! [`register_families!`] takes `Variant(FamilyModelType)` pairs, each type implementing
//! [`splitlm_nn::ModelFamily`], and generates from that single list:
//!
//! - [`crate::Family`], whose facts (name, accepted `model_type`s, LoRA defaults) are read from
//!   the family's `ModelFamily` impl;
//! - [`crate::AnyModel`] (a Burn module enum) with `From` conversions and `family()`;
//! - [`crate::AnyConfig`], a configuration of any family, with `family()`, `from_dir` and
//!   `load`;
//! - the crate-internal `each_model!` / `each_config!` macros, which run one expression on the
//!   family value inside an `AnyModel` / `AnyConfig`.
//!
//! Every `match` over families is generated here, so a family registered in `lib.rs` is
//! handled everywhere and a family not registered cannot be half-handled.

macro_rules! register_families {
    ($($(#[doc = $doc:literal])* $variant:ident($model:ty)),+ $(,)?) => {
        register_families!(@expand ($) $($(#[doc = $doc])* $variant($model)),+);
    };
    (@expand ($d:tt) $($(#[doc = $doc:literal])* $variant:ident($model:ty)),+) => {
        /// The architecture families splitlm implements (one per registered family crate).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Family {
            $($(#[doc = $doc])* $variant,)+
        }

        impl Family {
            /// Every registered family, in registration order.
            pub const ALL: &'static [Family] = &[$(Family::$variant),+];

            /// Short lowercase name (`bert`), as written in configurations and reports.
            pub fn name(self) -> &'static str {
                match self {
                    $(Family::$variant => <$model as splitlm_nn::ModelFamily>::NAME,)+
                }
            }

            /// The Hugging Face `config.json` `model_type` values the family loads.
            pub fn model_types(self) -> &'static [&'static str] {
                match self {
                    $(Family::$variant => <$model as splitlm_nn::ModelFamily>::MODEL_TYPES,)+
                }
            }

            /// The projections LoRA adapts when a configuration names none.
            pub fn default_lora_targets(self) -> &'static [&'static str] {
                match self {
                    $(Family::$variant => {
                        <$model as splitlm_nn::ModelFamily>::DEFAULT_LORA_TARGETS
                    })+
                }
            }

            /// The name Burn's module visitors give the family's level of an [`AnyModel`]
            /// (its variant name, `Bert`): the first segment of raw parameter paths.
            pub fn module_name(self) -> &'static str {
                match self {
                    $(Family::$variant => stringify!($variant),)+
                }
            }
        }

        /// A slice of a model of any family.
        // One value per party, moved only when an optimizer step replaces it: the size gap
        // between variants costs nothing worth boxing for.
        #[allow(clippy::large_enum_variant)]
        #[derive(burn::module::Module, Debug)]
        pub enum AnyModel {
            $($(#[doc = $doc])* $variant($model),)+
        }

        impl AnyModel {
            /// The model's family.
            pub fn family(&self) -> Family {
                match self {
                    $(AnyModel::$variant(_) => Family::$variant,)+
                }
            }
        }

        $(
            impl From<$model> for AnyModel {
                fn from(m: $model) -> Self {
                    AnyModel::$variant(m)
                }
            }
        )+

        /// The Hugging Face configuration of a model of any family.
        #[derive(Debug, Clone)]
        pub enum AnyConfig {
            $($(#[doc = $doc])* $variant(<$model as splitlm_nn::ModelFamily>::Config),)+
        }

        impl AnyConfig {
            /// The configuration's family.
            pub fn family(&self) -> Family {
                match self {
                    $(AnyConfig::$variant(_) => Family::$variant,)+
                }
            }

            /// Reads and validates `config.json` of a `family` checkpoint directory.
            pub fn from_dir(
                family: Family,
                dir: &std::path::Path,
            ) -> Result<Self, splitlm_nn::ModelError> {
                Ok(match family {
                    $(Family::$variant => AnyConfig::$variant(
                        <<$model as splitlm_nn::ModelFamily>::Config
                            as splitlm_nn::FamilyConfig>::from_dir(dir)?,
                    ),)+
                })
            }

            /// Builds the slice `spec` with the head of `task` on `device` from `source`,
            /// reading only its tensors.
            pub fn load(
                &self,
                source: &dyn splitlm_weights::TensorSource,
                spec: &splitlm_nn::SliceSpec,
                task: splitlm_nn::TaskHead,
                device: &burn::tensor::Device,
            ) -> Result<AnyModel, splitlm_nn::ModelError> {
                Ok(match self {
                    $(AnyConfig::$variant(c) => AnyModel::$variant(
                        <$model as splitlm_nn::ModelFamily>::load(source, c, spec, task, device)?,
                    ),)+
                })
            }
        }

        /// Runs `$body` with `$m` bound to the family model inside an [`AnyModel`] (by value
        /// or by reference, as `$self` is).
        macro_rules! each_model {
            ($d self_:expr, $d m:ident => $d body:expr) => {
                match $d self_ {
                    $(AnyModel::$variant($d m) => $d body,)+
                }
            };
        }

        /// Runs `$body` with `$c` bound to the family configuration inside an [`AnyConfig`].
        macro_rules! each_config {
            ($d self_:expr, $d c:ident => $d body:expr) => {
                match $d self_ {
                    $(AnyConfig::$variant($d c) => $d body,)+
                }
            };
        }
    };
}
