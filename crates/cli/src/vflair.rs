//! `splitlm import-vflair`: a configuration of the reference system, VFLAIR-LLM
//! (`configs/llm_configs/…/*.json`, read by its `load/LoadConfigs.py`), as a splitlm run
//! configuration — model, dataset, cut, fine-tuning, optimizer, attacks and defenses with the
//! reference's parameter values — checked like `splitlm check` before it is printed or written.
//!
//! What has no equivalent is refused by name, every such item in one error. Attacks and
//! defenses may instead be dropped (`--drop-unsupported`), listed in the output's header; the
//! model family, dataset, cut, fine-tuning method and protocol cannot. The header also lists
//! what the user must still fill in (local model and data paths), where splitlm differs from
//! the reference, and every key of the file that was not carried over.
//!
//! The mapping lives in the tables below (`ATTACKS`, `DEFENSES`, `DATASETS`,
//! `FINE_TUNING`…); attack and defense settings are built as JSON and typed through the
//! attack and defense crates' own serde definitions, so their defaults fill every parameter
//! the reference does not set.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use splitlm_attacks::{AttackConfig, AttackKind};
use splitlm_bench::RunConfig;
use splitlm_bench::config::{AttackerConfig, ConfigError};
use splitlm_defenses::DefenseConfig;
use splitlm_zoo::Family;

use crate::check;

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `model.source` to write instead of the reference's model path (a demo asset, a Hugging
    /// Face directory or a GGUF file).
    pub model: Option<String>,
    /// Import without the attacks and defenses that have no equivalent instead of refusing.
    pub drop_unsupported: bool,
}

/// One item of a reference configuration that has no equivalent in splitlm.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// What it is, with its reference name (`attack 'BiSR'`).
    pub item: String,
    /// Where it is in the JSON file (`attack_list.2`).
    pub at: String,
    /// Why it has no equivalent.
    pub reason: String,
    /// An attack or defense, which `--drop-unsupported` leaves out; anything else cannot be.
    pub droppable: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.item, self.at, self.reason)
    }
}

/// The error of a configuration with items that have no equivalent in splitlm, naming each.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The file.
    pub origin: String,
    /// Every item refused.
    pub refusals: Vec<Refusal>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} item(s) with no equivalent in splitlm (yet):",
            self.origin,
            self.refusals.len()
        )?;
        for r in &self.refusals {
            write!(f, "\n  - {r}")?;
        }
        if self.refusals.iter().all(|r| r.droppable) {
            write!(
                f,
                "\n(--drop-unsupported imports the rest without these attacks and defenses)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

/// An imported configuration.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The configuration, validated.
    pub config: RunConfig,
    /// It as TOML, every default filled in, under a header of comments (what to fill in, the
    /// differences from the reference, what was dropped or not carried over). Checked: it
    /// reads back as `config`.
    pub toml: String,
    /// What the user must still do before it runs (local paths).
    pub todos: Vec<String>,
    /// Where the configuration differs from the reference's run.
    pub notes: Vec<String>,
    /// Attacks and defenses left out (`--drop-unsupported`).
    pub dropped: Vec<Refusal>,
    /// Keys of the file that were not carried over, with their values.
    pub not_carried: Vec<(String, Value)>,
}

// ---------------------------------------------------------------------------------------------
// The mapping tables.

/// A reference parameter carried into one of our settings.
struct Param {
    /// The reference's key.
    from: &'static str,
    /// Our field.
    to: &'static str,
    /// The reference's value when its file does not set the key (JSON), if it has one ours
    /// does not share.
    default: Option<&'static str>,
}

const fn p(from: &'static str, to: &'static str) -> Param {
    Param {
        from,
        to,
        default: None,
    }
}

/// A reference attack: ours with its parameters, or why there is none.
struct AttackRule {
    reference: &'static str,
    ours: std::result::Result<OurAttack, &'static str>,
}

/// Our attack for a reference one.
struct OurAttack {
    /// Our attack's `kind`.
    kind: &'static str,
    /// The reference's parameters that are settings of our attack.
    params: &'static [Param],
    /// The reference's parameters that are `[attacker]` settings, which all attacks share.
    attacker: &'static [Param],
    /// What the tables cannot say: values to refuse, settings fixed by the reference's code,
    /// notes.
    special: Option<AttackSpecial>,
}

const fn attack(kind: &'static str, params: &'static [Param]) -> OurAttack {
    OurAttack {
        kind,
        params,
        attacker: &[],
        special: None,
    }
}

/// Where an attack is in the file and what it runs on.
struct Site<'s> {
    /// Its parameters' path (`attack_list.0.parameters`).
    base: &'s str,
    /// Its name for messages (`attack 'BiSR'`).
    item: &'s str,
    /// The reference's slice count (2 or 3).
    slices: u64,
    /// Whether the task's labels are classes.
    classification: bool,
}

/// `[attacker]` settings an attack's special reading fixes: what the value is (for
/// messages), the field, the value.
#[derive(Default)]
struct Extra {
    attacker: Vec<(&'static str, &'static str, Value)>,
}

/// Reads what an attack's tables cannot; `Err`: why it has no equivalent.
type AttackSpecial = fn(&mut Cx<'_>, &Site<'_>) -> std::result::Result<Extra, String>;

/// The reference's `loss_type`, cross-entropy when it is not set (VMI, RWI, BiSR).
const LOSS_TYPE: Param = Param {
    from: "loss_type",
    to: "objective",
    default: Some("\"cross_entropy\""),
};

/// The reference's LLM attacks (`INVERSION_LLM`, `LABEL_INFERENCE_LLM`,
/// `RESULR_RECONSTRUCTION_LLM` in `load/LoadConfigs.py`).
const ATTACKS: &[AttackRule] = &[
    AttackRule {
        reference: "VanillaModelInversion_WhiteBox",
        ours: Ok(OurAttack {
            kind: "vmi",
            params: &[p("epochs", "steps"), p("lr", "lr"), LOSS_TYPE],
            attacker: ATTACKER_PARAMS,
            special: None,
        }),
    },
    AttackRule {
        reference: "WhiteBoxInversion",
        ours: Ok(OurAttack {
            kind: "rwi",
            params: &[
                p("epochs", "steps"),
                p("lr", "lr"),
                p("T", "temperature"),
                LOSS_TYPE,
            ],
            attacker: ATTACKER_PARAMS,
            special: None,
        }),
    },
    AttackRule {
        reference: "BatchLabelReconstruction_LLM",
        ours: Ok(attack("bli", &[p("epochs", "steps"), p("lr", "lr")])),
    },
    AttackRule {
        reference: "NormbasedScoring_LLM",
        ours: Ok(attack("ns", &[])),
    },
    AttackRule {
        reference: "DirectionbasedScoring_LLM",
        ours: Ok(attack("ds", &[])),
    },
    AttackRule {
        reference: "DirectLabelScoring_LLM",
        ours: Ok(attack("dls", &[])),
    },
    // evaluates/attacks/BiSR.py l.63-76 (the keys), l.151-153 (auxiliary_data_num, default
    // 5 % of the training set), l.212-216 (the three stages and the expert scales).
    AttackRule {
        reference: "BiSR",
        ours: Ok(OurAttack {
            kind: "bisr",
            params: &[
                p("expert_epoch", "expert_epochs"),
                p("gate_epoch", "gate_epochs"),
                p("full_epoch", "full_epochs"),
                p("phase1_lr", "inverter_lr"),
                p("expert_scales", "expert_scales"),
                p("epochs", "steps"),
                p("lr", "lr"),
                LOSS_TYPE,
            ],
            attacker: &[
                p("attack_sample_num", "samples"),
                p("target_data", "split"),
                p("auxiliary_data_num", "auxiliary_samples"),
            ],
            special: Some(bisr),
        }),
    },
    AttackRule {
        reference: "VanillaModelInversion_BlackBox",
        ours: Err("black-box model inversion is not built yet"),
    },
    // evaluates/attacks/ModelCompletion_LLM.py l.41-51.
    AttackRule {
        reference: "ModelCompletion_LLM",
        ours: Ok(OurAttack {
            kind: "model_completion",
            params: &[p("lr", "lr"), p("epochs", "epochs")],
            attacker: &[p("aux_data_num", "auxiliary_samples")],
            special: Some(model_completion),
        }),
    },
];

/// Parameters of the reference's inversion attacks that are, in splitlm, settings of the one
/// `[attacker]` all inversion attacks share: how many samples, from which split, in batches of
/// what size.
const ATTACKER_PARAMS: &[Param] = &[
    p("attack_sample_num", "samples"),
    p("target_data", "split"),
    p("batch_size", "batch_size"),
];

/// The reference's BiSR inverters (`attacker_model_name`, BiSR.py l.136-139): the NaMoE is
/// ours.
const BISR_INVERTER: &str = "NaMoE";

/// splitlm's auxiliary examples when `attacker.auxiliary_samples` is not set: 5 % of the
/// training set, as the reference's BiSR (BiSR.py l.153).
const AUXILIARY_SHARE: f64 = 0.05;

/// Builds our defenses from a reference defense's parameters: the ways to say it, preferred
/// first (the defense crate's settings have grown; an older build lacks the newer fields).
type DefenseMapper = fn(&mut Cx<'_>, &str) -> Vec<Rendering>;

/// One way to express a reference defense in our settings.
#[derive(Default)]
struct Rendering {
    /// Our defenses and the parts that have no equivalent.
    pieces: Vec<Piece>,
    /// Where this rendering differs from the reference.
    notes: Vec<String>,
}

/// One of our defenses from a reference defense, or a part of it that has no equivalent.
enum Piece {
    Ours(Value),
    Refused { part: String, reason: String },
}

impl Rendering {
    fn refused(part: &str, reason: &str) -> Vec<Rendering> {
        vec![Rendering {
            pieces: vec![Piece::Refused {
                part: part.into(),
                reason: reason.into(),
            }],
            notes: Vec::new(),
        }]
    }
}

/// A reference defense: how it maps, or why it does not.
struct DefenseRule {
    reference: &'static str,
    ours: std::result::Result<DefenseMapper, &'static str>,
}

/// The reference's LLM defenses (`load/LoadConfigs.py`, `evaluates/defenses`).
const DEFENSES: &[DefenseRule] = &[
    DefenseRule {
        reference: "LaplaceDP",
        ours: Ok(laplace_dp),
    },
    DefenseRule {
        reference: "GradientSparsification",
        ours: Ok(sparsification),
    },
    DefenseRule {
        reference: "MID",
        ours: Ok(mid),
    },
    DefenseRule {
        reference: "GaussianDP",
        ours: Err(
            "the reference has no LLM implementation of it (its LLM path applies only \
                   LaplaceDP and GradientSparsification to what crosses)",
        ),
    },
    DefenseRule {
        reference: "AdversarialTraining",
        ours: Ok(adversarial_training),
    },
    DefenseRule {
        reference: "TextObfuscator",
        ours: Ok(text_obfuscator),
    },
    DefenseRule {
        reference: "SanText",
        ours: Ok(santext),
    },
    DefenseRule {
        reference: "CusText",
        ours: Ok(custext),
    },
    DefenseRule {
        reference: "SnD",
        ours: Ok(snd),
    },
    DefenseRule {
        reference: "InferDPT",
        ours: Ok(rantext),
    },
    DefenseRule {
        reference: "CAE",
        ours: Err("confusional autoencoders are not built"),
    },
    DefenseRule {
        reference: "DCAE",
        ours: Err("confusional autoencoders are not built"),
    },
    DefenseRule {
        reference: "DistanceCorrelation",
        ours: Err("distance correlation is not built"),
    },
    DefenseRule {
        reference: "GradPerturb",
        ours: Err("gradient perturbation is not built"),
    },
];

/// The reference's Laplace sensitivity Δf for activations, by its `model_type`
/// (`DELTAF` in `evaluates/defenses/defense_functions.py`; 10 for any other model).
const LAPLACE_ACTIVATION_SENSITIVITY: &[(&str, f64)] =
    &[("Bert", 81.82), ("Roberta", 4.15), ("GPT2", 110.2)];
const LAPLACE_ACTIVATION_SENSITIVITY_OTHER: f64 = 10.0;
/// The reference's Laplace sensitivity for gradients when `delta_f` is not set, and the
/// bound of the divisor it scales them by first (`LaplaceDP_for_llm_grad`), for settings
/// without those fields.
const LAPLACE_GRADIENT_SENSITIVITY: f64 = 1e-2;
const LAPLACE_GRADIENT_CLIP: f64 = 0.2;

/// A reference defense parameter carried into one of our settings under the same meaning.
struct Key {
    /// The reference's key (under `defense.parameters`).
    from: &'static str,
    /// Our field.
    to: &'static str,
    /// The reference's loader reads it without a default (a `KeyError` when missing).
    required: bool,
}

const fn key(from: &'static str, to: &'static str) -> Key {
    Key {
        from,
        to,
        required: true,
    }
}

const fn optional(from: &'static str, to: &'static str) -> Key {
    Key {
        from,
        to,
        required: false,
    }
}

/// AdversarialTraining (party/passive_party.py l.113-152: `lambda` and the two learning
/// rates without a default, the hidden sizes 80 and `at_epsilon` 1 by default).
const ADVERSARIAL_KEYS: &[Key] = &[
    key("adversarial_model_lr", "mapping_lr"),
    optional("adversarial_model_hidden_size", "mapping_hidden_size"),
    key("imagined_adversary_lr", "adversary_lr"),
    optional("imagined_adversary_hidden_size", "adversary_hidden_size"),
    optional("at_epsilon", "at_epsilon"),
];

/// The reference's per-token AT models, the ones splitlm builds (`Mapping_MLP3_noflatten`,
/// `ImaginedAdversary_MLP3_noflatten`), and the reference's choice when its file names none
/// (passive_party.py l.118-121, l.129-130).
const AT_MODELS: &[(&str, &str, &str)] = &[
    (
        "adversarial_model",
        "Mapping_MLP3_noflatten",
        "Adversarial_Mapping",
    ),
    (
        "imagined_adversary",
        "ImaginedAdversary_MLP3_noflatten",
        "ImaginedAdversary_Tail_MLP3",
    ),
];

/// Keys of the reference's tail-side imagined *label* adversary (passive_party.py l.132-142,
/// 791-810), whose loss reaches no weight but its own; splitlm does not build it.
const AT_LABEL_ADVERSARY_KEYS: &[&str] = &[
    "tail_imagined_adversary",
    "tail_imagined_adversary_lr",
    "imagined_adversary_num_layer",
    "imagined_adversary_num_heads",
    "imagined_adversary_attack_eta",
];

/// TextObfuscator (load/LoadConfigs.py l.820-825, every key without a default).
const OBFUSCATOR_KEYS: &[Key] = &[
    key("cluster_method", "cluster_method"),
    key("cluster_num", "cluster_num"),
    key("w_cluster_close", "w_cluster_close"),
    key("w_cluster_away", "w_cluster_away"),
    key("epsilon", "epsilon"),
];

/// SanText (load/LoadConfigs.py l.833-838).
const SANTEXT_KEYS: &[Key] = &[
    key("epsilon", "epsilon"),
    key("sensitive_word_percentage", "sensitive_word_percentage"),
    key("p", "p"),
];

/// CusText (load/LoadConfigs.py l.827-831).
const CUSTEXT_KEYS: &[Key] = &[key("epsilon", "epsilon"), key("topk", "topk")];

/// InferDPT's RanText (load/LoadConfigs.py l.861-867).
const RANTEXT_KEYS: &[Key] = &[key("epsilon", "epsilon")];

/// SnD (load/LoadConfigs.py l.840-860, every key without a default).
const SND_KEYS: &[Key] = &[
    key("train_eta", "train_eta"),
    key("test_eta", "test_eta"),
    key("noise_per_sample", "noise_per_sample"),
    key("denoise_epoch", "denoise_epoch"),
    key("denoise_batch_size", "denoise_batch_size"),
    key("denoise_lr", "denoise_lr"),
    key("dim_head", "dim_head"),
    key("dropout", "dropout"),
    key("num_heads", "num_heads"),
    key("num_layers", "num_layers"),
    key("d_ff", "d_ff"),
];

/// The reference's SnD denoisers (`denoise_model_type_dict`, passive_party.py l.388-394).
const SND_DENOISERS: &[&str] = &[
    "MydenoiseModel_2slice",
    "denoiseModelv3",
    "denoiseModelv3_2slice",
    "denoiseModelv3_3slice",
];

/// The datasets for which the reference's CusText keeps number words and numbers
/// (utils/custext_utils.py l.106, l.116).
const CUSTEXT_MATH_DATASETS: &[&str] = &["GMS8K", "GMS8K-test", "MATH"];
/// The datasets for which the reference's RanText replaces numbers at random
/// (party/passive_party.py l.913).
const RANTEXT_MATH_DATASETS: &[&str] = &["MATH", "GMS8K"];

/// What a reference dataset becomes.
enum Data {
    /// A GLUE task: its name, and its TSV files under `data/`.
    Glue {
        task: &'static str,
        train: &'static str,
        dev: &'static str,
    },
    /// SQuAD v1.1 (our default: the `squad-dev` asset).
    Squad,
    /// Lambada passages, one per line.
    Lambada { path: &'static str },
    /// Instruction following.
    Instruction {
        format: &'static str,
        path: &'static str,
    },
    /// Math word problems.
    Math {
        format: &'static str,
        path: &'static str,
    },
}

const fn glue(task: &'static str, train: &'static str, dev: &'static str) -> Data {
    Data::Glue { task, train, dev }
}

/// The reference's dataset names (`load/LoadDataset.py`) that splitlm has a task for, with
/// placeholder paths in the reference's layout (a file that sets `train_set_file` /
/// `test_set_file` gets its own).
const DATASETS: &[(&str, Data)] = &[
    (
        "CoLA",
        glue("cola", "data/CoLA/train.tsv", "data/CoLA/dev.tsv"),
    ),
    (
        "SST-2",
        glue("sst2", "data/SST-2/train.tsv", "data/SST-2/dev.tsv"),
    ),
    (
        "SST-2-test",
        glue("sst2", "data/SST-2/train.tsv", "data/SST-2/dev.tsv"),
    ),
    (
        "MRPC",
        glue("mrpc", "data/MRPC/train.tsv", "data/MRPC/dev.tsv"),
    ),
    (
        "STS-B",
        glue("stsb", "data/STS-B/train.tsv", "data/STS-B/dev.tsv"),
    ),
    ("QQP", glue("qqp", "data/QQP/train.tsv", "data/QQP/dev.tsv")),
    (
        "MNLI",
        glue("mnli", "data/MNLI/train.tsv", "data/MNLI/dev_matched.tsv"),
    ),
    (
        "QNLI",
        glue("qnli", "data/QNLI/train.tsv", "data/QNLI/dev.tsv"),
    ),
    ("RTE", glue("rte", "data/RTE/train.tsv", "data/RTE/dev.tsv")),
    (
        "WNLI",
        glue("wnli", "data/WNLI/train.tsv", "data/WNLI/dev.tsv"),
    ),
    ("SQuAD", Data::Squad),
    (
        "Lambada",
        Data::Lambada {
            path: "data/Lambada/lambada.txt",
        },
    ),
    (
        "Lambada_test",
        Data::Lambada {
            path: "data/Lambada/lambada.txt",
        },
    ),
    (
        "Alpaca",
        Data::Instruction {
            format: "alpaca",
            path: "data/alpaca/alpaca_data.json",
        },
    ),
    (
        "Alpaca-test",
        Data::Instruction {
            format: "alpaca",
            path: "data/alpaca/alpaca_data.json",
        },
    ),
    (
        "CodeAlpaca",
        Data::Instruction {
            format: "code_alpaca",
            path: "data/CodeAlpaca-20k/code_alpaca_20k.json",
        },
    ),
    (
        "Dolly",
        Data::Instruction {
            format: "dolly",
            path: "data/dolly/databricks-dolly-15k.jsonl",
        },
    ),
    // The reference spells GSM8K "GMS8K"; one shipped configuration spells it right.
    (
        "GMS8K",
        Data::Math {
            format: "gsm8k",
            path: "data/GMS8K/train.jsonl",
        },
    ),
    (
        "GMS8K-test",
        Data::Math {
            format: "gsm8k",
            path: "data/GMS8K/train.jsonl",
        },
    ),
    (
        "GSM8K",
        Data::Math {
            format: "gsm8k",
            path: "data/GMS8K/train.jsonl",
        },
    ),
    (
        "MATH",
        Data::Math {
            format: "math",
            path: "data/MATH/train",
        },
    ),
];

/// Reference datasets splitlm has no task for, with the reason (any other name is unknown).
const DATASETS_WITHOUT_TASK: &[(&str, &str)] = &[
    (
        "yelp-polarity",
        "splitlm reads Yelp CSV files but has no Yelp task yet",
    ),
    (
        "yelp-polarity-test",
        "splitlm reads Yelp CSV files but has no Yelp task yet",
    ),
    (
        "TextVQA",
        "multimodal (image and text) tasks are not supported",
    ),
    (
        "TextVQA-test",
        "multimodal (image and text) tasks are not supported",
    ),
    (
        "CC_SBU",
        "multimodal (image and text) tasks are not supported",
    ),
    ("MMLU", "there is no MMLU task yet"),
    ("CNNDailyMail", "there is no summarisation task yet"),
    ("emotion", "there is no emotion classification task yet"),
];

/// The reference's fine-tuning methods (`finetune_configs.name`) and our strategies.
const FINE_TUNING: &[(&str, &str)] = &[("Vanilla", "full"), ("LoRA", "lora")];

/// The reference's model architectures (`model_architect`) that splitlm runs: classification,
/// causal LM, span QA. The task follows from the dataset.
const ARCHITECTURES: &[&str] = &["CLS", "CLM", "TQA"];

/// The reference's LoRA settings when `finetune_configs.configs` is empty (its model loaders'
/// `_set_peft`): rank 4, α 32, dropout 0.1.
const LORA_DEFAULT: (u64, f64, f64) = (4, 32.0, 0.1);

/// The reference's optimizer: Adam at `lr`, `LinearLR(end_factor = 0.01, total_iters = 10)`
/// stepped once per epoch.
const LR_END_FACTOR: f64 = 0.01;

// ---------------------------------------------------------------------------------------------
// Reading the file.

/// The reference file, remembering which keys were read.
struct Doc<'a> {
    root: &'a Value,
    used: RefCell<BTreeSet<String>>,
}

impl<'a> Doc<'a> {
    fn lookup(&self, path: &str) -> Option<&'a Value> {
        path.split('.').try_fold(self.root, |v, k| v.get(k))
    }

    /// Marks `path` and everything under it as dealt with.
    fn consume(&self, path: &str) {
        self.used.borrow_mut().insert(path.to_string());
    }

    /// Every leaf not read, with its value (empty tables carry nothing and are left out).
    fn unused(&self) -> Vec<(String, Value)> {
        fn walk(v: &Value, path: &str, used: &BTreeSet<String>, out: &mut Vec<(String, Value)>) {
            if used.contains(path) {
                return;
            }
            match v {
                Value::Object(m) => {
                    for k in in_order(m) {
                        let child = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        walk(&m[k], &child, used, out);
                    }
                }
                other => out.push((path.to_string(), other.clone())),
            }
        }
        let mut out = Vec::new();
        walk(self.root, "", &self.used.borrow(), &mut out);
        out
    }
}

/// A table's keys, numbered ones (`attack_list`'s "0", "1"…) in numeric order first.
fn in_order(map: &Map<String, Value>) -> Vec<&String> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_by(|a, b| {
        let n = |k: &str| k.parse::<usize>().unwrap_or(usize::MAX);
        n(a).cmp(&n(b)).then_with(|| a.cmp(b))
    });
    keys
}

/// The import under way: the file, what was refused, what to tell the user.
struct Cx<'a> {
    doc: Doc<'a>,
    refusals: Vec<Refusal>,
    todos: Vec<String>,
    notes: Vec<String>,
}

impl<'a> Cx<'a> {
    fn refuse(&mut self, item: impl Into<String>, at: &str, reason: impl Into<String>) {
        self.push_refusal(item, at, reason, false);
    }

    fn refuse_droppable(&mut self, item: impl Into<String>, at: &str, reason: impl Into<String>) {
        self.push_refusal(item, at, reason, true);
    }

    fn push_refusal(
        &mut self,
        item: impl Into<String>,
        at: &str,
        reason: impl Into<String>,
        droppable: bool,
    ) {
        self.refusals.push(Refusal {
            item: item.into(),
            at: at.to_string(),
            reason: reason.into(),
            droppable,
        });
    }

    fn note(&mut self, line: impl Into<String>) {
        let line = line.into();
        if !self.notes.contains(&line) {
            self.notes.push(line);
        }
    }

    /// The value at `path`, marked as read.
    fn get(&self, path: &str) -> Option<&'a Value> {
        let v = self.doc.lookup(path)?;
        self.doc.consume(path);
        Some(v)
    }

    /// A number at `path`; anything else there is refused.
    fn num(&mut self, path: &str) -> Option<f64> {
        let v = self.get(path)?;
        match v.as_f64() {
            Some(x) => Some(x),
            None => {
                self.refuse(format!("{path} = {v}"), path, "expected a number");
                None
            }
        }
    }

    /// A non-negative whole number at `path`; anything else there is refused.
    fn count(&mut self, path: &str) -> Option<u64> {
        let v = self.get(path)?;
        match v.as_u64() {
            Some(x) => Some(x),
            None => {
                self.refuse(format!("{path} = {v}"), path, "expected a whole number ≥ 0");
                None
            }
        }
    }

    /// Text at `path`; anything else there is refused.
    fn text(&mut self, path: &str) -> Option<&'a str> {
        let v = self.get(path)?;
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                self.refuse(format!("{path} = {v}"), path, "expected text");
                None
            }
        }
    }

    /// A flag at `path`, as Python reads it (absent: false).
    fn flag(&self, path: &str) -> bool {
        match self.get(path) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
        }
    }

    /// A list of whole numbers at `path` (absent: empty).
    fn ids(&mut self, path: &str) -> Vec<u64> {
        match self.get(path) {
            None => Vec::new(),
            Some(Value::Array(a)) if a.iter().all(Value::is_u64) => {
                a.iter().filter_map(Value::as_u64).collect()
            }
            Some(v) => {
                self.refuse(
                    format!("{path} = {v}"),
                    path,
                    "expected a list of block ids",
                );
                Vec::new()
            }
        }
    }

    /// The names a reference `position`-like key holds (text or list); the reference tests
    /// them by substring, so both spellings work.
    fn names(&self, path: &str, default: &[&str]) -> Vec<String> {
        match self.get(path) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect(),
            Some(other) => vec![other.to_string()],
            None => default.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Where an attack or defense of ours came from.
#[derive(Debug, Clone)]
struct Origin {
    item: String,
    at: String,
}

// ---------------------------------------------------------------------------------------------
// The import.

/// Imports the VFLAIR-LLM configuration in `path`.
pub fn import_file(path: &Path, options: &ImportOptions) -> Result<Imported> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vflair".into());
    import_str(&text, &name, &path.display().to_string(), options)
}

/// Imports a VFLAIR-LLM configuration from its JSON `text`; `name` becomes the run's name and
/// `origin` names the file in messages and in the header.
pub fn import_str(
    text: &str,
    name: &str,
    origin: &str,
    options: &ImportOptions,
) -> Result<Imported> {
    let root: Value =
        serde_json::from_str(text).with_context(|| format!("{origin}: not valid JSON"))?;
    if !root.is_object() {
        bail!("{origin}: not a VFLAIR-LLM configuration (the top level is not a JSON object)");
    }
    let mut cx = Cx {
        doc: Doc {
            root: &root,
            used: RefCell::new(BTreeSet::new()),
        },
        refusals: Vec::new(),
        todos: Vec::new(),
        notes: Vec::new(),
    };

    setting(&mut cx);
    let model_type = cx.text("model_list.model_type");
    let model = model(&mut cx, model_type, options);
    let (partition, slices) = partition(&mut cx);
    let task = task(&mut cx);
    let (finetune, optimizer, train) = training(&mut cx, slices);
    let generate = generation(&mut cx);
    let (defenses, defense_origins) = defenses(&mut cx, model_type.unwrap_or_default());
    let context = RunFacts {
        slices: slices.count,
        // GLUE's tasks but STS-B (a score) have class labels; the other tasks are not
        // classification.
        classification: task["kind"] == "glue" && task["task"] != "stsb",
    };
    let attacks = attacks(&mut cx, context);

    // Nothing essential may be refused; stop before typing a configuration that lacks it.
    if cx.refusals.iter().any(|r| !r.droppable) {
        return Err(Refused {
            origin: origin.into(),
            refusals: cx.refusals,
        }
        .into());
    }
    let mut run = json!({
        "name": name,
        "model": { "source": model },
        "split": { "partition": partition },
        "finetune": finetune,
        "optimizer": optimizer,
        "task": task,
        "train": train,
        "defenses": defenses,
        "attacks": attacks.values,
    });
    if let Some(generate) = generate {
        run["generate"] = generate;
    }
    let mut config: RunConfig = serde_json::from_value(run).with_context(|| {
        format!("{origin}: the mapped configuration does not type (an import-vflair bug)")
    })?;
    settle(&mut cx, &mut config, attacks.origins, &defense_origins)?;

    let dropped: Vec<Refusal> = cx.refusals.clone();
    if !dropped.is_empty() && !options.drop_unsupported {
        return Err(Refused {
            origin: origin.into(),
            refusals: dropped,
        }
        .into());
    }
    attacker(&mut cx, &mut config, attacks.attacker)?;

    let not_carried = cx.doc.unused();
    let body = check::resolved_toml(&config)?;
    check::reads_back(&body, &config).with_context(|| format!("{origin}: imported"))?;
    let header = header(origin, &cx.todos, &cx.notes, &dropped, &not_carried);
    let toml = format!("{header}\n{body}");
    check::reads_back(&toml, &config).with_context(|| format!("{origin}: imported"))?;
    Ok(Imported {
        config,
        toml,
        todos: cx.todos,
        notes: cx.notes,
        dropped,
        not_carried,
    })
}

/// Parties, protocol and architecture: what splitlm's setting is at all.
fn setting(cx: &mut Cx<'_>) {
    let k = cx.count("k").unwrap_or(2);
    if k != 2 {
        cx.refuse(
            format!("k = {k} parties"),
            "k",
            "splitlm runs one data party with one model party (k = 2)",
        );
    }
    // The reference's default when the key is missing.
    let protocol = cx
        .text("communication.communication_protocol")
        .unwrap_or("FedBCD_p");
    if protocol == "FedSGD" {
        // FedSGD exchanges once per step; the reference then ignores this.
        cx.doc.consume("communication.iteration_per_aggregation");
    } else {
        cx.refuse(
            format!("communication protocol '{protocol}'"),
            "communication.communication_protocol",
            "splitlm exchanges activations and gradients once per step (FedSGD)",
        );
    }
    let architecture = cx.text("model_architect").unwrap_or("CLM");
    if !ARCHITECTURES.contains(&architecture) {
        let reason = if architecture == "MM" {
            "multimodal models are not supported".to_string()
        } else {
            format!("splitlm runs {}", ARCHITECTURES.join(", "))
        };
        cx.refuse(
            format!("model_architect '{architecture}'"),
            "model_architect",
            reason,
        );
    }
    // The task type follows from the dataset.
    cx.doc.consume("model_list.task.task_type");
}

/// `model.source`: the reference's model path (or `--model`), once its family is one of ours.
fn model(cx: &mut Cx<'_>, model_type: Option<&str>, options: &ImportOptions) -> String {
    let name = cx
        .text("model_list.name")
        .unwrap_or("the model")
        .to_string();
    match model_type {
        None => cx.refuse(
            "model_list.model_type",
            "model_list.model_type",
            "missing: the model family cannot be told",
        ),
        Some(t) => {
            let lower = t.to_lowercase();
            match Family::ALL
                .iter()
                .find(|f| f.model_types().contains(&lower.as_str()))
            {
                Some(family) => {
                    if options.model.is_none() {
                        cx.todos.push(format!(
                            "model.source is the reference's path to {name} (model_type {t}, \
                             splitlm family {}): point it at a local Hugging Face directory \
                             or GGUF file of that model, or re-import with --model",
                            family.name()
                        ));
                    }
                }
                None => {
                    let ours: Vec<String> = Family::ALL
                        .iter()
                        .map(|f| format!("{} ({})", f.name(), f.model_types().join(", ")))
                        .collect();
                    cx.refuse(
                        format!("model_type '{t}'"),
                        "model_list.model_type",
                        format!(
                            "splitlm has no such model family; it has {}",
                            ours.join("; ")
                        ),
                    );
                }
            }
        }
    }
    let path = cx
        .text("model_list.0.path")
        .or_else(|| cx.doc.lookup("model_list.path").and_then(Value::as_str))
        .map(str::to_string);
    cx.doc.consume("model_list.path");
    cx.doc.consume("model_list.1.path");
    match (&options.model, path) {
        (Some(m), _) => m.clone(),
        (None, Some(p)) => p,
        (None, None) => name,
    }
}

/// How many slices, and the cut.
#[derive(Debug, Clone, Copy)]
struct Slices {
    count: u64,
    n_head: u64,
    n_tail: u64,
}

/// The cut: the reference's `vfl_model_slice_num`, `local_encoders_num` (the data party's
/// head blocks) and `local_tail_encoders_num` (its tail blocks, three slices).
fn partition(cx: &mut Cx<'_>) -> (Value, Slices) {
    let count = cx.count("model_list.vfl_model_slice_num").unwrap_or(2);
    let n_head = cx.count("model_list.local_encoders_num").unwrap_or(1);
    let n_tail = match count {
        3 => cx.count("model_list.local_tail_encoders_num").unwrap_or(0),
        _ => {
            if cx.doc.lookup("model_list.local_tail_encoders_num") == Some(&json!(0)) {
                cx.doc.consume("model_list.local_tail_encoders_num");
            }
            0
        }
    };
    let partition = match count {
        2 => json!({ "kind": "head_tail", "n_head": n_head }),
        3 => json!({ "kind": "head_body_tail", "n_head": n_head, "n_tail": n_tail }),
        other => {
            cx.refuse(
                format!("vfl_model_slice_num = {other}"),
                "model_list.vfl_model_slice_num",
                "splitlm cuts a model in 2 (Head–Tail) or 3 (Head–Body–Tail) slices",
            );
            Value::Null
        }
    };
    (
        partition,
        Slices {
            count,
            n_head,
            n_tail,
        },
    )
}

/// The task, from the reference's dataset name.
fn task(cx: &mut Cx<'_>) -> Value {
    let Some(name) = cx.text("dataset.dataset_name") else {
        cx.refuse(
            "dataset.dataset_name",
            "dataset.dataset_name",
            "missing: the task cannot be told",
        );
        return Value::Null;
    };
    // The reference matches names exactly; a shipped file spells one differently
    // ("Lambada-test" for "Lambada_test"): read as the name it matches but for case, '-', '_'.
    let plain = |n: &str| n.to_lowercase().replace(['-', '_'], "");
    let found = DATASETS
        .iter()
        .find(|(n, _)| *n == name)
        .or_else(|| DATASETS.iter().find(|(n, _)| plain(n) == plain(name)));
    if let Some((known, _)) = found
        && *known != name
    {
        cx.note(format!(
            "task: dataset '{name}' read as the reference's '{known}'"
        ));
    }
    let Some((_, data)) = found else {
        let reason = DATASETS_WITHOUT_TASK
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("unknown dataset", |(_, why)| why);
        cx.refuse(format!("dataset '{name}'"), "dataset.dataset_name", reason);
        return Value::Null;
    };
    let max_len = cx.count("tokenizer.max_length");
    let train_file = cx.text("model_list.0.train_set_file").map(str::to_string);
    let test_file = cx.text("model_list.0.test_set_file").map(str::to_string);
    let mut task = match data {
        Data::Glue { task, train, dev } => json!({
            "kind": "glue",
            "task": task,
            "train": data_path(cx, name, "train", train, train_file),
            "dev": data_path(cx, name, "dev", dev, test_file),
        }),
        Data::Squad => {
            let mut t = json!({ "kind": "squad" });
            match train_file {
                Some(path) => t["path"] = json!(path),
                None => cx.note(
                    "task: SQuAD reads splitlm's squad-dev asset (SQuAD v1.1 dev, split by \
                     article into training and held-out questions), not the reference's \
                     train-v1.1.json; set task.path to another SQuAD v1.1 file",
                ),
            }
            if let Some(stride) = cx.num("model_list.task.doc_stride").filter(|s| *s > 0.0) {
                t["doc_stride"] = json!(stride as u64);
            }
            t
        }
        Data::Lambada { path } => json!({
            "kind": "lambada",
            "path": data_path(cx, name, "path", path, train_file),
        }),
        Data::Instruction { format, path } => json!({
            "kind": "instruction",
            "format": format,
            "path": data_path(cx, name, "path", path, train_file),
        }),
        Data::Math { format, path } => json!({
            "kind": "math",
            "format": format,
            "path": data_path(cx, name, "path", path, train_file),
        }),
    };
    if let Some(n) = max_len {
        task["max_len"] = json!(n);
    }
    task
}

/// The data file the reference's file names, or a placeholder with a TODO.
fn data_path(
    cx: &mut Cx<'_>,
    dataset: &str,
    key: &str,
    placeholder: &str,
    given: Option<String>,
) -> String {
    given.unwrap_or_else(|| {
        cx.todos.push(format!(
            "task.{key} = \"{placeholder}\" is a placeholder: point it at your copy of \
             {dataset} (the reference reads its own data directory)"
        ));
        placeholder.to_string()
    })
}

/// A slice's trainability flags in the reference's `model_list`.
struct SliceFlags {
    trainable: bool,
    embedding: bool,
    head_layer: bool,
    ids: Vec<u64>,
}

fn slice_flags(cx: &mut Cx<'_>, path: &str) -> Option<SliceFlags> {
    cx.doc.lookup(path)?;
    // The reference's LLM model loaders read the block ids, not this flag.
    cx.doc.consume(&format!("{path}.encoder_trainable"));
    Some(SliceFlags {
        trainable: cx.flag(&format!("{path}.trainable")),
        embedding: cx.flag(&format!("{path}.embedding_trainable")),
        head_layer: cx.flag(&format!("{path}.head_layer_trainable")),
        ids: cx.ids(&format!("{path}.encoder_trainable_ids")),
    })
}

/// Fine-tuning, optimizer and training loop.
fn training(cx: &mut Cx<'_>, slices: Slices) -> (Value, Value, Value) {
    let method = cx.text("finetune_configs.name").unwrap_or("Vanilla");
    let strategy = match FINE_TUNING.iter().find(|(n, _)| *n == method) {
        Some((_, s)) => *s,
        None => {
            let known: Vec<&str> = FINE_TUNING.iter().map(|(n, _)| *n).collect();
            cx.refuse(
                format!("fine-tuning '{method}'"),
                "finetune_configs.name",
                format!("splitlm fine-tunes with {}", known.join(" or ")),
            );
            "full"
        }
    };
    let pipeline = cx.text("pipeline").unwrap_or("finetune");
    let finetune = match pipeline {
        "finetune" => trainability(cx, slices, strategy),
        "pretrained" => {
            cx.note(
                "finetune: the reference's pipeline \"pretrained\" evaluates the pretrained \
                 model without fine-tuning (splitlm eval); here nothing trains \
                 (strategy = \"frozen\"), so splitlm train and grid serve the steps the \
                 attacks observe without updating the model",
            );
            cx.doc.consume("finetune_configs");
            cx.doc.consume("model_list.0.head");
            cx.doc.consume("model_list.0.tail");
            cx.doc.consume("model_list.1.body");
            cx.doc.consume("model_list.1.tail");
            json!({ "strategy": "frozen" })
        }
        other => {
            cx.refuse(
                format!("pipeline '{other}'"),
                "pipeline",
                "the reference's pipelines are \"finetune\" and \"pretrained\"",
            );
            Value::Null
        }
    };
    // The reference's defaults when a key is missing.
    let lr = cx.num("lr").unwrap_or(0.001);
    let epochs = cx.count("epochs").unwrap_or(50);
    let batch_size = cx.count("batch_size").unwrap_or(2048);
    cx.note(
        "optimizer: the reference runs Adam with LinearLR(end_factor = 0.01) stepped once per \
         epoch over its first 10 epochs, then constant; here the linear decay to 0.01× spans \
         the whole run",
    );
    if let Some(patience) = cx.count("early_stop_threshold") {
        cx.note(format!(
            "train: the reference stops early after {patience} epoch(s) without a better \
             metric; to match, set train.eval_every to the steps of one epoch and \
             train.patience = {patience}"
        ));
    }
    let optimizer = json!({
        "kind": "adam",
        "lr": lr,
        "weight_decay": 0.0,
        "schedule": { "kind": "linear", "end_factor": LR_END_FACTOR },
    });
    let train = json!({ "epochs": epochs, "batch_size": batch_size });
    (finetune, optimizer, train)
}

/// What trains on every slice, from the reference's per-slice flags: a slice with
/// `trainable` trains all of it; otherwise its embeddings, listed blocks and head layer as
/// flagged. With LoRA the reference's PEFT wrapper freezes every base weight (embeddings and
/// head layer included) and the flags choose the blocks whose adapters train.
fn trainability(cx: &mut Cx<'_>, slices: Slices, strategy: &str) -> Value {
    let lora = strategy == "lora";
    let head = slice_flags(cx, "model_list.0.head");
    let (middle, top) = if slices.count == 3 {
        (
            slice_flags(cx, "model_list.1.body"),
            slice_flags(cx, "model_list.0.tail"),
        )
    } else {
        (None, slice_flags(cx, "model_list.1.tail"))
    };
    // Each slice's trainable blocks in the model's numbering; `None` where that needs the
    // model's depth (a whole body, a whole tail, tail ids), which import does not read.
    let n_head = slices.n_head;
    let mut parts: Vec<(&str, bool, Option<Vec<u64>>)> = Vec::new();
    if let Some(h) = &head
        && n_head > 0
    {
        let ids = if h.trainable {
            (0..n_head).collect()
        } else {
            h.ids.clone()
        };
        parts.push(("data party's head", h.trainable, Some(ids)));
    }
    if slices.count == 3 {
        if let Some(b) = &middle {
            let ids = (!b.trainable).then(|| b.ids.iter().map(|i| n_head + i).collect());
            parts.push(("model party's body", b.trainable, ids));
        }
        if let Some(t) = &top
            && slices.n_tail > 0
        {
            let ids = (!t.trainable && t.ids.is_empty()).then(Vec::new);
            parts.push(("data party's tail", t.trainable, ids));
        }
    } else if let Some(t) = &top {
        let ids = (!t.trainable).then(|| t.ids.iter().map(|i| n_head + i).collect());
        parts.push(("model party's tail", t.trainable, ids));
    }
    let blocks = if parts.iter().all(|(_, whole, _)| *whole) {
        json!("all")
    } else if parts.iter().all(|(_, _, ids)| ids.is_some()) {
        let ids: BTreeSet<u64> = parts
            .iter()
            .flat_map(|(_, _, ids)| ids.clone().unwrap_or_default())
            .collect();
        if ids.is_empty() {
            json!("none")
        } else {
            json!(ids)
        }
    } else {
        let unknown: Vec<&str> = parts
            .iter()
            .filter(|(_, _, ids)| ids.is_none())
            .map(|(name, _, _)| *name)
            .collect();
        cx.refuse(
            "per-slice trainable blocks",
            "model_list",
            format!(
                "the {} trains blocks while other slices do not; splitlm names trainable \
                 blocks by id in the model's numbering, which for {} needs the model's depth \
                 (import reads no model): write finetune.blocks by hand",
                unknown.join(" and "),
                if unknown.len() == 1 { "it" } else { "them" }
            ),
        );
        json!("all")
    };
    let embeddings = !lora && head.as_ref().is_some_and(|h| h.trainable || h.embedding);
    let task_head = top
        .as_ref()
        .is_some_and(|t| t.head_layer || (!lora && t.trainable));
    let mut finetune = json!({
        "strategy": strategy,
        "embeddings": embeddings,
        "blocks": blocks,
        "task_head": task_head,
    });
    if lora {
        finetune["lora"] = lora_settings(cx);
    } else {
        cx.doc.consume("finetune_configs.configs");
    }
    finetune
}

/// LoRA's rank, α and targets from the reference's PEFT `LoraConfig` arguments.
fn lora_settings(cx: &mut Cx<'_>) -> Value {
    let base = "finetune_configs.configs";
    let given = cx
        .doc
        .lookup(base)
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty());
    let (rank, alpha, dropout) = if given {
        (
            cx.count(&format!("{base}.r")).unwrap_or(8),
            cx.num(&format!("{base}.lora_alpha")).unwrap_or(8.0),
            cx.num(&format!("{base}.lora_dropout")).unwrap_or(0.0),
        )
    } else {
        cx.doc.consume(base);
        LORA_DEFAULT
    };
    if dropout != 0.0 {
        cx.note(format!(
            "finetune.lora: the reference's adapters use dropout {dropout}; splitlm's have none"
        ));
    }
    let mut lora = json!({ "rank": rank, "alpha": alpha });
    if let Some(targets) = cx.get(&format!("{base}.target_modules")) {
        lora["targets"] = match targets {
            Value::String(s) => json!([s]),
            other => other.clone(),
        };
    }
    lora
}

/// Decoding, from the task's generation settings (Hugging Face's `generate` arguments).
fn generation(cx: &mut Cx<'_>) -> Option<Value> {
    let base = "model_list.task.generation_config_dict";
    let mut generate = Map::new();
    let max_new = cx
        .count(&format!("{base}.max_new_tokens"))
        .or_else(|| cx.count("model_list.task.max_new_tokens"));
    if let Some(n) = max_new {
        generate.insert("max_new_tokens".into(), json!(n));
        cx.doc.consume("model_list.task.max_new_tokens");
    }
    if cx.doc.lookup(base).is_some() {
        if cx.flag(&format!("{base}.do_sample")) {
            for (from, to) in [
                ("temperature", "temperature"),
                ("top_p", "top_p"),
                ("top_k", "top_k"),
            ] {
                if let Some(v) = cx.num(&format!("{base}.{from}")) {
                    generate.insert(to.into(), json!(v));
                }
            }
        } else {
            // Without sampling Hugging Face decodes greedily whatever the temperature.
            for key in ["temperature", "top_p", "top_k"] {
                cx.doc.consume(&format!("{base}.{key}"));
            }
            generate.insert("temperature".into(), json!(0.0));
        }
    }
    if let Some(Value::Number(n)) = generate.get("top_k")
        && let Some(k) = n.as_f64()
    {
        generate.insert("top_k".into(), json!(k as u64));
    }
    (!generate.is_empty()).then_some(Value::Object(generate))
}

/// The reference's single defense, as ours (one or two of them).
fn defenses(cx: &mut Cx<'_>, model_type: &str) -> (Vec<Value>, Vec<Origin>) {
    let mut out = Vec::new();
    let mut origins = Vec::new();
    if cx.doc.lookup("defense").is_none() {
        return (out, origins);
    }
    let Some(name) = cx.text("defense.name") else {
        cx.refuse_droppable("defense", "defense", "has no name");
        cx.doc.consume("defense");
        return (out, origins);
    };
    let item = format!("defense '{name}'");
    let party = cx.get("defense.parameters.party").cloned();
    if party != Some(json!([0])) {
        cx.refuse_droppable(
            &item,
            "defense.parameters.party",
            format!(
                "applied by party {}: splitlm's defenses are the data party's (party [0])",
                party.map_or_else(|| "(unset)".to_string(), |p| p.to_string())
            ),
        );
        cx.doc.consume("defense");
        return (out, origins);
    }
    let Some(rule) = DEFENSES.iter().find(|r| r.reference == name) else {
        cx.refuse_droppable(&item, "defense.name", "unknown to splitlm");
        cx.doc.consume("defense");
        return (out, origins);
    };
    let mapper = match rule.ours {
        Ok(mapper) => mapper,
        Err(reason) => {
            cx.refuse_droppable(&item, "defense", reason);
            cx.doc.consume("defense");
            return (out, origins);
        }
    };
    let renderings = mapper(cx, model_type);
    // The first rendering our settings take as it is; failing all, the last, with the fields
    // they lack left out (noted) or refused.
    let fits = |r: &Rendering| {
        r.pieces.iter().all(|piece| match piece {
            Piece::Ours(v) => serde_json::from_value::<DefenseConfig>(v.clone()).is_ok(),
            Piece::Refused { .. } => true,
        })
    };
    let Some(chosen) = renderings
        .iter()
        .position(fits)
        .or_else(|| renderings.len().checked_sub(1))
    else {
        return (out, origins);
    };
    let Rendering { pieces, notes } = renderings.into_iter().nth(chosen).unwrap_or_default();
    for line in notes {
        cx.note(line);
    }
    for piece in pieces {
        match piece {
            Piece::Ours(value) => {
                match typed::<DefenseConfig>(cx, value, &item, "defense.parameters") {
                    Ok((config, value)) => match config.validate() {
                        Ok(_) => {
                            out.push(value);
                            origins.push(Origin {
                                item: item.clone(),
                                at: "defense".into(),
                            });
                        }
                        Err(e) => cx.refuse_droppable(
                            &item,
                            "defense.parameters",
                            format!(
                                "splitlm's {} refuses the reference's values: {e}",
                                kind_of(&value)
                            ),
                        ),
                    },
                    Err(reason) => cx.refuse_droppable(&item, "defense.parameters", reason),
                }
            }
            Piece::Refused { part, reason } => {
                cx.refuse_droppable(format!("{item} {part}"), "defense.parameters", reason)
            }
        }
    }
    (out, origins)
}

fn kind_of(value: &Value) -> String {
    value["kind"].as_str().unwrap_or("setting").to_string()
}

/// The crossings a reference `position` names: `pred` (what the data party sends forward)
/// and `grad` (the gradient it sends back).
fn crossings(positions: &[String]) -> (bool, bool) {
    (
        positions.iter().any(|p| p.contains("pred")),
        positions.iter().any(|p| p.contains("grad")),
    )
}

/// Our name for what crosses.
fn target(pred: bool, grad: bool) -> &'static str {
    match (pred, grad) {
        (true, true) => "both",
        (true, false) => "activations",
        _ => "gradients",
    }
}

/// LaplaceDP: noise of scale Δf / ε, on the activations with the reference's Δf for the model
/// type, on the gradients with `delta_f` (default 0.01) after the reference's scaling.
fn laplace_dp(cx: &mut Cx<'_>, model_type: &str) -> Vec<Rendering> {
    let base = "defense.parameters";
    let Some(epsilon) = cx.num(&format!("{base}.epsilon")) else {
        return Rendering::refused("without epsilon", "the reference requires epsilon");
    };
    // The reference reads `position` as text and tests it by substring; default: pred.
    let (pred, grad) = crossings(&cx.names(&format!("{base}.position"), &["pred"]));
    if !pred && !grad {
        return Rendering::refused("position", "names neither pred nor grad: no noise is added");
    }
    let activation_sensitivity = LAPLACE_ACTIVATION_SENSITIVITY
        .iter()
        .find(|(t, _)| *t == model_type)
        .map_or(LAPLACE_ACTIVATION_SENSITIVITY_OTHER, |(_, s)| *s);
    let delta_f = cx.num(&format!("{base}.delta_f"));
    let sensitivity_note = format!(
        "defenses: Laplace noise on the activations has the reference's Δf for model_type \
         {model_type}, {activation_sensitivity} (scale Δf / ε)"
    );
    // Settings with one Δf per crossing; what is left out (the gradients' Δf when `delta_f`
    // is not set, their scaling bound) defaults to the reference's.
    let mut one = json!({ "kind": "laplace_dp", "epsilon": epsilon, "target": target(pred, grad) });
    if pred {
        one["sensitivity"] = json!(activation_sensitivity);
    }
    if grad && let Some(d) = delta_f {
        one["gradient_sensitivity"] = json!(d);
    }
    let mut current = Rendering {
        pieces: vec![Piece::Ours(one)],
        notes: Vec::new(),
    };
    if pred {
        current.notes.push(sensitivity_note.clone());
    }
    // Settings with one Δf and a per-position clip: one defense per crossing.
    let mut older = Rendering::default();
    if pred {
        older.pieces.push(Piece::Ours(json!({
            "kind": "laplace_dp",
            "epsilon": epsilon,
            "sensitivity": activation_sensitivity,
            "target": "activations",
        })));
        older.notes.push(sensitivity_note);
    }
    if grad {
        older.pieces.push(Piece::Ours(json!({
            "kind": "laplace_dp",
            "epsilon": epsilon,
            "sensitivity": delta_f.unwrap_or(LAPLACE_GRADIENT_SENSITIVITY),
            "clip": LAPLACE_GRADIENT_CLIP,
            "target": "gradients",
        })));
        older.notes.push(
            "defenses: the reference divides a gradient by its largest per-sample norm over \
             the sequence (bound 0.2) before the Laplace noise; splitlm clips each position's \
             vector to 0.2"
                .into(),
        );
    }
    vec![current, older]
}

/// GradientSparsification: the reference's rate is scaled into [0, 1] (divided by 100 while
/// above 1), on the crossings its `position` names (default: gradients).
fn sparsification(cx: &mut Cx<'_>, _: &str) -> Vec<Rendering> {
    let base = "defense.parameters";
    let Some(mut rate) = cx.num(&format!("{base}.gradient_sparse_rate")) else {
        return Rendering::refused(
            "without gradient_sparse_rate",
            "the reference requires gradient_sparse_rate",
        );
    };
    while rate > 1.0 {
        rate /= 100.0;
    }
    let (pred, grad) = crossings(&cx.names(&format!("{base}.position"), &["grad"]));
    if !pred && !grad {
        return Rendering::refused(
            "position",
            "names neither pred nor grad: nothing is sparsified",
        );
    }
    vec![Rendering {
        pieces: vec![Piece::Ours(json!({
            "kind": "sparsification",
            "rate": rate,
            "target": target(pred, grad),
        }))],
        notes: Vec::new(),
    }]
}

/// MID on the data party's head output (`mid_position` "head"), on what its tail receives
/// ("tail") or both, where our settings have a position; otherwise on the head only.
fn mid(cx: &mut Cx<'_>, _: &str) -> Vec<Rendering> {
    let base = "defense.parameters";
    let Some(lambda) = cx.num(&format!("{base}.lambda")) else {
        return Rendering::refused("without lambda", "the reference requires lambda");
    };
    let positions = cx.names(&format!("{base}.mid_position"), &["head"]);
    let head = positions.iter().any(|p| p.contains("head"));
    let tail = positions.iter().any(|p| p.contains("tail"));
    if !head && !tail {
        return Rendering::refused("mid_position", "names neither head nor tail");
    }
    let mut settings = json!({ "kind": "mid", "lambda": lambda });
    if let Some(lr) = cx.num(&format!("{base}.lr")) {
        settings["lr"] = json!(lr);
    }
    // The reference reads `bottleneck_scale` (default 1), not `current_bottleneck_scale`.
    if let Some(scale) = cx.count(&format!("{base}.bottleneck_scale")) {
        settings["expansion"] = json!(scale);
    }
    if let Some(shift) = cx.num(&format!("{base}.std_shift_hyperparameter")) {
        settings["std_shift"] = json!(shift.trunc());
    }
    cx.doc.consume(&format!("{base}.mid_model_name"));
    let mut current = settings.clone();
    current["position"] = json!(match (head, tail) {
        (true, true) => "both",
        (true, false) => "head",
        _ => "tail",
    });
    let mut older = Rendering {
        pieces: Vec::new(),
        notes: vec![
            "defenses: splitlm's MID here is a variational bottleneck on the head's output \
             that starts as the identity; the reference's MIDModel_* start at random"
                .into(),
        ],
    };
    if head {
        older.pieces.push(Piece::Ours(settings));
    }
    if tail {
        older.pieces.push(Piece::Refused {
            part: "at mid_position 'tail'".into(),
            reason: "a bottleneck on what the data party's tail receives has no equivalent in \
                     these settings: splitlm's mid sits on the activations the data party sends"
                .into(),
        });
    }
    vec![
        Rendering {
            pieces: vec![Piece::Ours(current)],
            notes: Vec::new(),
        },
        older,
    ]
}

/// Where a reference defense's parameters are.
const DEFENSE_PARAMS: &str = "defense.parameters";

/// Our settings of `kind` with the reference's values of `keys`; a required key the file
/// lacks (the reference would stop) takes splitlm's default, noted.
fn carried(cx: &mut Cx<'_>, name: &str, kind: &str, keys: &[Key]) -> Value {
    let mut settings = Map::new();
    settings.insert("kind".into(), json!(kind));
    for key in keys {
        match cx.get(&format!("{DEFENSE_PARAMS}.{}", key.from)) {
            Some(v) => {
                settings.insert(key.to.into(), v.clone());
            }
            None if key.required => cx.note(format!(
                "defenses: the reference's {name} requires {} (its loader stops without it); \
                 splitlm's default {kind}.{} is used",
                key.from, key.to
            )),
            None => {}
        }
    }
    Value::Object(settings)
}

/// The reference's dataset name.
fn dataset_name<'a>(cx: &Cx<'a>) -> &'a str {
    cx.doc
        .lookup("dataset.dataset_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The reference's slice count.
fn slice_count(cx: &Cx<'_>) -> u64 {
    cx.doc
        .lookup("model_list.vfl_model_slice_num")
        .and_then(Value::as_u64)
        .unwrap_or(2)
}

fn one_piece(settings: Value, notes: Vec<String>) -> Vec<Rendering> {
    vec![Rendering {
        pieces: vec![Piece::Ours(settings)],
        notes,
    }]
}

/// AdversarialTraining: a mapping at the head and/or the tail as `position` names them, with
/// the reference's λ, learning rates, hidden sizes and ε.
fn adversarial_training(cx: &mut Cx<'_>, _: &str) -> Vec<Rendering> {
    let base = DEFENSE_PARAMS;
    let Some(lambda) = cx.num(&format!("{base}.lambda")) else {
        return Rendering::refused("without lambda", "the reference requires lambda");
    };
    // Required by the reference's party (l.113); its loader names a missing one ["head"].
    let positions = cx.names(&format!("{base}.position"), &["head"]);
    let head = positions.iter().any(|p| p.contains("head"));
    let tail = positions.iter().any(|p| p.contains("tail"));
    if !head && !tail {
        return Rendering::refused("position", "names neither head nor tail");
    }
    let mut settings = carried(
        cx,
        "AdversarialTraining",
        "adversarial_training",
        ADVERSARIAL_KEYS,
    );
    settings["lambda"] = json!(lambda);
    let mut rendering = Rendering::default();
    for (key, ours, default) in AT_MODELS {
        let named = cx.text(&format!("{base}.{key}")).unwrap_or(default);
        // The imagined inversion adversary exists only with a mapping at the head (l.152-181).
        let used = head || *key != "imagined_adversary";
        if used && named != *ours {
            rendering.notes.push(format!(
                "defenses: the reference's {key} {named} is replaced by the per-token {ours} \
                 (the flattening models, as wide as seq_length × the hidden size, are not built)"
            ));
        }
    }
    // Only the flattening models' widths; the hidden size is the model's (l.123).
    cx.doc.consume(&format!("{base}.seq_length"));
    cx.doc.consume(&format!("{base}.embed_dim"));
    let label_adversary = AT_LABEL_ADVERSARY_KEYS
        .iter()
        .filter(|k| cx.get(&format!("{base}.{k}")).is_some())
        .count()
        > 0;
    let tail_here = tail && slice_count(cx) == 3;
    if tail_here || label_adversary {
        rendering.notes.push(
            "defenses: the reference's tail also trains an imagined label adversary on the \
             gradient it sends back, whose loss reaches no weight but its own (passive_party.py \
             l.791-810); splitlm does not build it"
                .into(),
        );
    }
    settings["head"] = json!(head);
    settings["tail"] = json!(tail_here);
    if head || tail_here {
        rendering.pieces.push(Piece::Ours(settings));
    }
    if tail && !tail_here {
        rendering.pieces.push(Piece::Refused {
            part: "at position 'tail'".into(),
            reason: "a mapping at the tail sits on the body's output as it reaches the data \
                     party's tail, which only Head–Body–Tail has (vfl_model_slice_num 3)"
                .into(),
        });
    }
    vec![rendering]
}

/// TextObfuscator with the reference's clusters, weights and ε; λ as its loader reads it.
fn text_obfuscator(cx: &mut Cx<'_>, _: &str) -> Vec<Rendering> {
    let base = DEFENSE_PARAMS;
    let mut settings = carried(cx, "TextObfuscator", "text_obfuscator", OBFUSCATOR_KEYS);
    let mut notes = Vec::new();
    // load/LoadConfigs.py l.825 reads `lambda` only when the misspelt `lamba` is present.
    if cx.get(&format!("{base}.lamba")).is_some() {
        match cx.get(&format!("{base}.lambda")) {
            Some(lambda) => settings["lambda"] = lambda.clone(),
            None => {
                return Rendering::refused(
                    "without lambda",
                    "with `lamba` set the reference reads lambda, which the file lacks",
                );
            }
        }
    } else if let Some(lambda) = cx.get(&format!("{base}.lambda")) {
        notes.push(format!(
            "defenses: the reference ignores TextObfuscator's lambda = {lambda} (it reads it only \
             when the misspelt key `lamba` is present, load/LoadConfigs.py l.825): its loss \
             multiplier is 1, and so is splitlm's here"
        ));
    }
    // Only names the results.
    cx.doc.consume(&format!("{base}.defense_param_name"));
    one_piece(settings, notes)
}

/// SanText+ with the reference's ε, sensitive share and p.
fn santext(cx: &mut Cx<'_>, _: &str) -> Vec<Rendering> {
    let settings = carried(cx, "SanText", "santext", SANTEXT_KEYS);
    one_piece(settings, Vec::new())
}

/// CusText with the reference's ε and top-k, and its handling of math datasets.
fn custext(cx: &mut Cx<'_>, _: &str) -> Vec<Rendering> {
    let mut settings = carried(cx, "CusText", "custext", CUSTEXT_KEYS);
    settings["math_numbers"] = json!(CUSTEXT_MATH_DATASETS.contains(&dataset_name(cx)));
    one_piece(
        settings,
        vec![
            "defenses: CusText embeds a word as the mean of the head's input embeddings of its \
             tokens; the reference trains a word2vec model on the training texts"
                .into(),
        ],
    )
}

/// InferDPT as its RanText perturbation; its decoding model is not built.
fn rantext(cx: &mut Cx<'_>, _: &str) -> Vec<Rendering> {
    let base = DEFENSE_PARAMS;
    let mut settings = carried(cx, "InferDPT", "rantext", RANTEXT_KEYS);
    settings["math_numbers"] = json!(RANTEXT_MATH_DATASETS.contains(&dataset_name(cx)));
    let mut rendering = Rendering::default();
    let kit = cx.text(&format!("{base}.inferdpt_kit_path"));
    rendering.notes.push(match kit {
        Some(path) => format!(
            "defenses: RanText's kit is built from the head's input embeddings, its neighbours \
             sorted by Euclidean distance as in InferDPT's original kit, which the reference \
             loads from inferdpt_kit_path = \"{path}\" (cl100k embeddings, not available here)"
        ),
        None => "defenses: RanText's kit is built from the head's input embeddings, its \
                 neighbours sorted by Euclidean distance as in InferDPT's original kit; the \
                 reference's fallback kit (generate_inferdpt_kit, without inferdpt_kit_path) is \
                 not reproduced"
            .into(),
    });
    let decoder = cx
        .text(&format!("{base}.decode_model_path"))
        .unwrap_or_default();
    // Read only with a decoding model (passive_party.py l.379-381).
    cx.doc.consume(&format!("{base}.decode_model_load_kwargs"));
    cx.doc.consume(&format!("{base}.decode_generation_kwargs"));
    rendering.pieces.push(Piece::Ours(settings));
    if !decoder.is_empty() {
        rendering.pieces.push(Piece::Refused {
            part: format!("decode_model_path \"{decoder}\""),
            reason: "InferDPT's decoding step (a local model extending the prefix from the \
                     perturbed generation, passive_party.py l.379-381, l.1016-1020) is not \
                     built: splitlm runs only its RanText perturbation"
                .into(),
        });
    }
    vec![rendering]
}

/// SnD with the reference's noise rates and its denoiser's pretraining and shape.
fn snd(cx: &mut Cx<'_>, _: &str) -> Vec<Rendering> {
    let base = DEFENSE_PARAMS;
    let denoiser = cx.text(&format!("{base}.denoise_model"));
    if let Some(name) = denoiser
        && !SND_DENOISERS.contains(&name)
    {
        return Rendering::refused(
            &format!("denoise_model \"{name}\""),
            &format!(
                "none of the reference's denoisers ({}; passive_party.py l.388-394)",
                SND_DENOISERS.join(", ")
            ),
        );
    }
    if let Some(path) = cx.text(&format!("{base}.denoise_model_path")) {
        return Rendering::refused(
            &format!("denoise_model_path \"{path}\""),
            "splitlm pretrains the denoiser when the defense is built; loading the reference's \
             saved denoiser is not supported",
        );
    }
    let settings = carried(cx, "SnD", "snd", SND_KEYS);
    let mut notes = Vec::new();
    if let Some(n) = cx.get(&format!("{base}.denoise_sample_num")) {
        notes.push(format!(
            "defenses: SnD's denoise_sample_num = {n} is never read by the reference's code, \
             which pretrains on every training input; so does splitlm (snd.denoise_sample_num \
             unset)"
        ));
    }
    notes.push(if slice_count(cx) == 3 {
        format!(
            "defenses: SnD's denoiser is the per-position denoiseModelv3_3slice on the body's \
             output before the data party's tail{}",
            match denoiser {
                Some("denoiseModelv3_3slice") => String::new(),
                Some("denoiseModelv3") | None => " (the reference's denoiseModelv3 denoises the \
                                                  tail's pooled or last-position output)"
                    .to_string(),
                Some(other) => format!(" (the reference runs {other} there)"),
            }
        )
    } else {
        "defenses: in Head–Tail SnD adds its noise only: the data party holds no tail to \
         denoise at"
            .into()
    });
    one_piece(settings, notes)
}

/// `value` typed as `T` by its own serde definition. A field that `T` does not have (the
/// reference sets something ours fixes) is left out with a note; any other error refuses it.
fn typed<T: DeserializeOwned>(
    cx: &mut Cx<'_>,
    value: Value,
    item: &str,
    at: &str,
) -> std::result::Result<(T, Value), String> {
    let Value::Object(mut map) = value else {
        return Err("not a table".into());
    };
    loop {
        match serde_json::from_value::<T>(Value::Object(map.clone())) {
            Ok(t) => return Ok((t, Value::Object(map))),
            Err(e) => {
                let message = e.to_string();
                let unknown = map
                    .keys()
                    .find(|k| *k != "kind" && message.contains(&format!("unknown field `{k}`")))
                    .cloned();
                match unknown {
                    Some(field) => {
                        let value = map.remove(&field).unwrap_or_default();
                        cx.note(format!(
                            "{item} ({at}): the reference's {field} = {value} has no setting in \
                             splitlm's {}; left out",
                            kind_of(&Value::Object(map.clone()))
                        ));
                    }
                    None => return Err(format!("splitlm's settings refuse it: {message}")),
                }
            }
        }
    }
}

/// Our attacks, where each came from, and the `[attacker]` settings their reference
/// parameters give.
struct Attacks {
    values: Vec<Value>,
    origins: Vec<Origin>,
    attacker: Map<String, Value>,
}

/// What the attacks run on, for the checks the tables cannot make.
#[derive(Debug, Clone, Copy)]
struct RunFacts {
    slices: u64,
    classification: bool,
}

/// The reference's attacks, in its order, as ours; a repeat of an earlier one (another seed,
/// another split) is kept once.
fn attacks(cx: &mut Cx<'_>, context: RunFacts) -> Attacks {
    let mut out = Attacks {
        values: Vec::new(),
        origins: Vec::new(),
        attacker: Map::new(),
    };
    // Where each `[attacker]` setting was taken from.
    let mut attacker_from: Vec<(String, String)> = Vec::new();
    let Some(list) = cx.doc.lookup("attack_list").and_then(Value::as_object) else {
        return out;
    };
    for key in in_order(list) {
        let at = format!("attack_list.{key}");
        let Some(name) = cx.text(&format!("{at}.name")) else {
            cx.refuse_droppable(format!("attack {key}"), &at, "has no name");
            cx.doc.consume(&at);
            continue;
        };
        let item = format!("attack '{name}'");
        let base = format!("{at}.parameters");
        let party = cx.get(&format!("{base}.party")).cloned();
        if party.as_ref().is_some_and(|p| p != &json!([1])) {
            cx.refuse_droppable(
                &item,
                &format!("{base}.party"),
                format!(
                    "mounted by party {}: splitlm's attacks are the model party's (party [1])",
                    party.unwrap_or_default()
                ),
            );
            cx.doc.consume(&at);
            continue;
        }
        let Some(rule) = ATTACKS.iter().find(|r| r.reference == name) else {
            cx.refuse_droppable(&item, &format!("{at}.name"), "unknown to splitlm");
            cx.doc.consume(&at);
            continue;
        };
        let ours = match &rule.ours {
            Ok(ours) => ours,
            Err(reason) => {
                cx.refuse_droppable(&item, &at, *reason);
                cx.doc.consume(&at);
                continue;
            }
        };
        let mut value = Map::new();
        value.insert("kind".into(), json!(ours.kind));
        for param in ours.params {
            if let Some(v) = param_value(cx, &base, param) {
                value.insert(param.to.into(), v);
            }
        }
        let mut attacker_settings: Vec<(String, String, Value)> = ours
            .attacker
            .iter()
            .filter_map(|param| {
                let v = param_value(cx, &base, param)?;
                Some((param.from.to_string(), param.to.to_string(), v))
            })
            .collect();
        if let Some(special) = ours.special {
            let site = Site {
                base: &base,
                item: &item,
                slices: context.slices,
                classification: context.classification,
            };
            match special(cx, &site) {
                Ok(extra) => {
                    for (what, to, v) in extra.attacker {
                        attacker_settings.push((what.to_string(), to.to_string(), v));
                    }
                }
                Err(reason) => {
                    cx.refuse_droppable(&item, &base, reason);
                    cx.doc.consume(&at);
                    continue;
                }
            }
        }
        let (config, value) = match typed::<AttackConfig>(cx, Value::Object(value), &item, &at) {
            Ok(typed) => typed,
            Err(reason) => {
                cx.refuse_droppable(&item, &base, reason);
                cx.doc.consume(&at);
                continue;
            }
        };
        if let Err(e) = config.validate() {
            cx.refuse_droppable(
                &item,
                &base,
                format!(
                    "splitlm's {} refuses the reference's values: {e}",
                    ours.kind
                ),
            );
            cx.doc.consume(&at);
            continue;
        }
        for (from, to, v) in attacker_settings {
            match out.attacker.get(&to) {
                None => {
                    out.attacker.insert(to.clone(), v);
                    attacker_from.push((to, at.clone()));
                }
                Some(first) if *first != v => {
                    let source = attacker_from
                        .iter()
                        .find(|(t, _)| *t == to)
                        .map_or("", |(_, at)| at.as_str());
                    cx.note(format!(
                        "attacker: {item} ({at}) has {from} = {v}, but attacker.{to} = {first} \
                         (from {source}) is the one setting all attacks share"
                    ));
                }
                Some(_) => {}
            }
        }
        match out.values.iter().position(|v| *v == value) {
            Some(first) => cx.note(format!(
                "attacks: {item} ({at}) repeats {} ({}) in splitlm's settings: kept once",
                out.origins[first].item, out.origins[first].at
            )),
            None => {
                out.values.push(value);
                out.origins.push(Origin {
                    item: item.clone(),
                    at: at.clone(),
                });
            }
        }
    }
    out
}

/// A parameter's value in the file, or the reference's default for it.
fn param_value(cx: &Cx<'_>, base: &str, param: &Param) -> Option<Value> {
    let given = cx.get(&format!("{base}.{}", param.from)).cloned();
    given.or_else(|| param.default.and_then(|d| serde_json::from_str(d).ok()))
}

/// BiSR: the NaMoE inverter only; the samples are inverted one at a time, as the reference
/// does whatever its `batch_size` says.
fn bisr(cx: &mut Cx<'_>, site: &Site<'_>) -> std::result::Result<Extra, String> {
    let base = site.base;
    let inverter = cx
        .text(&format!("{base}.attacker_model_name"))
        .unwrap_or(BISR_INVERTER);
    if inverter == "Linear" {
        return Err(
            "its attacker_model_name \"Linear\" (LinearSIPInverter) is not built: splitlm's \
             BiSR trains the NaMoE inverter"
                .into(),
        );
    }
    if inverter != BISR_INVERTER {
        return Err(format!(
            "attacker_model_name \"{inverter}\" is none of the reference's inverters \
             (NaMoE, Linear; BiSR.py l.136-139)"
        ));
    }
    let mut extra = Extra::default();
    extra.attacker.push((
        "its batch size (one sample at a time, BiSR.py l.414)",
        "batch_size",
        json!(1),
    ));
    if cx.get(&format!("{base}.batch_size")).is_some() {
        cx.note(
            "attacks: the reference's BiSR reads its batch_size but does not use it: it inverts \
             its samples one at a time (BiSR.py l.414, so attacker.batch_size = 1 here) and \
             trains its inverter in batches of the run's batch_size (l.168), as splitlm does \
             (train.batch_size)",
        );
    }
    cx.note(
        "attacks: BiSR's auxiliary examples are drawn at random from the training set with \
         the run's seed; the reference takes the first auxiliary_data_num (BiSR.py l.150-154)",
    );
    Ok(extra)
}

/// Model completion: Head–Body–Tail, a classification task, surrogates trained in full from
/// the model's own pretrained weights, on a number of auxiliary examples.
fn model_completion(cx: &mut Cx<'_>, site: &Site<'_>) -> std::result::Result<Extra, String> {
    let base = site.base;
    if site.slices != 3 {
        return Err(format!(
            "model completion trains a surrogate of the data party's tail (ModelCompletion_LLM.py \
             l.158-163), which needs Head–Body–Tail; this file cuts {} slices",
            site.slices
        ));
    }
    if !site.classification {
        return Err(
            "splitlm's model completion predicts class labels and is scored on them, so it \
             needs a classification task; the reference runs it only for generation \
             (ModelCompletion_LLM.py l.86-137), which splitlm's attack does not score"
                .into(),
        );
    }
    if cx.flag(&format!("{base}.use_lora")) {
        return Err(
            "use_lora: the reference trains LoRA adapters on its surrogates (l.165-173); \
             splitlm's surrogate head and tail train in full"
                .into(),
        );
    }
    cx.doc.consume(&format!("{base}.lora_configs"));
    if let Some(origin) = cx.text(&format!("{base}.origin_model_path")) {
        let model = cx
            .doc
            .lookup("model_list.0.path")
            .or_else(|| cx.doc.lookup("model_list.path"))
            .and_then(Value::as_str);
        if model != Some(origin) {
            return Err(format!(
                "origin_model_path \"{origin}\": splitlm's surrogates start from the pretrained \
                 weights of model.source, not from another model"
            ));
        }
    }
    let count = cx.doc.lookup(&format!("{base}.aux_data_num"));
    let share = cx.num(&format!("{base}.aux_data_percentage"));
    if count.is_none() {
        match share {
            // `int(len · 0.05)`, splitlm's default count (5 % of the training set).
            Some(s) if s == AUXILIARY_SHARE => {}
            Some(s) => {
                return Err(format!(
                    "aux_data_percentage = {s}: splitlm counts the auxiliary examples \
                     (attacker.auxiliary_samples; 5 % of the training set when unset), and \
                     import reads no data to turn another share into a count: set aux_data_num"
                ));
            }
            None => {
                return Err(
                    "the reference requires aux_data_num or aux_data_percentage \
                     (ModelCompletion_LLM.py l.184-186)"
                        .into(),
                );
            }
        }
    }
    if let Some(batch) = cx.get(&format!("{base}.batch_size")) {
        cx.note(format!(
            "attacks: {} trains its surrogates in batches of train.batch_size; the reference's \
             are of its batch_size = {batch}",
            site.item
        ));
    }
    if let Some(samples) = cx.get(&format!("{base}.attack_sample_num")) {
        cx.note(format!(
            "attacks: {} predicts every held-out example; the reference predicts the first \
             attack_sample_num = {samples} it recorded (ModelCompletion_LLM.py l.60-61)",
            site.item
        ));
    }
    Ok(Extra::default())
}

/// Runs the configuration-wide checks (`RunConfig::validate`); an attack it refuses (a label
/// inference on a cut that does not show the attacker the classifier's gradient…) is refused
/// by its reference name with splitlm's reason, and the checks run again without it.
fn settle(
    cx: &mut Cx<'_>,
    config: &mut RunConfig,
    mut attack_origins: Vec<Origin>,
    defense_origins: &[Origin],
) -> Result<()> {
    loop {
        match config.validate() {
            Ok(()) => return Ok(()),
            Err(ConfigError::Invalid { key, detail }) => {
                let index = key
                    .strip_prefix("attacks[")
                    .and_then(|rest| rest.strip_suffix(']'))
                    .and_then(|i| i.parse::<usize>().ok())
                    .filter(|i| *i < config.attacks.len());
                match index {
                    Some(i) => {
                        let origin = attack_origins.remove(i);
                        config.attacks.remove(i);
                        cx.refuse_droppable(origin.item, &origin.at, detail);
                        cx.doc.consume(&origin.at);
                    }
                    None if key == "defenses" && !defense_origins.is_empty() => {
                        for origin in defense_origins {
                            cx.refuse_droppable(origin.item.clone(), &origin.at, detail.clone());
                        }
                        cx.doc.consume("defense");
                        config.defenses.clear();
                    }
                    None => bail!(
                        "the imported configuration does not pass splitlm check: {key}: {detail}"
                    ),
                }
            }
            Err(e) => bail!("the imported configuration does not pass splitlm check: {e}"),
        }
    }
}

/// What the attacker knows and observes, as the reference assumes: with inversion attacks,
/// the data party's trained head (the reference inverts with the data party's own head
/// model); the samples its attacks name; the auxiliary examples it holds.
fn attacker(
    cx: &mut Cx<'_>,
    config: &mut RunConfig,
    mut settings: Map<String, Value>,
) -> Result<()> {
    let inversion = config
        .attacks
        .iter()
        .any(|a| a.kind() == AttackKind::Inversion);
    // Settings of attacks that were refused afterwards are left out with them.
    let kinds: BTreeSet<&str> = config.attacks.iter().map(AttackConfig::name).collect();
    if !kinds.contains("bisr") && !kinds.contains("model_completion") {
        settings.remove("auxiliary_samples");
    }
    if !inversion {
        for field in ["samples", "split", "batch_size"] {
            settings.remove(field);
        }
    } else {
        settings.insert("head".into(), json!("fine_tuned"));
    }
    if settings.is_empty() {
        return Ok(());
    }
    match typed::<AttackerConfig>(cx, Value::Object(settings), "attacker", "attack_list") {
        Ok((attacker, _)) => config.attacker = attacker,
        Err(reason) => bail!("the reference's attack settings do not fit [attacker]: {reason}"),
    }
    config
        .validate()
        .context("the imported configuration does not pass splitlm check")
}

/// The comments above the imported TOML.
fn header(
    origin: &str,
    todos: &[String],
    notes: &[String],
    dropped: &[Refusal],
    not_carried: &[(String, Value)],
) -> String {
    let mut out = format!(
        "# Imported by `splitlm import-vflair` from the VFLAIR-LLM configuration\n#   {origin}\n\
         # and checked as by `splitlm check`: every default is filled in.\n"
    );
    let mut section = |title: &str, lines: Vec<String>| {
        if lines.is_empty() {
            return;
        }
        out.push_str(&format!("#\n# {title}\n"));
        for line in lines {
            out.push_str(&format!("#   - {}\n", line.replace('\n', " ")));
        }
    };
    section("TODO before running:", todos.to_vec());
    section(
        "Dropped (--drop-unsupported), with no equivalent in splitlm:",
        dropped.iter().map(ToString::to_string).collect(),
    );
    section("Differences from the reference:", notes.to_vec());
    section(
        "Not carried over (no splitlm setting):",
        not_carried
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables name settings of the attack, defense and task crates by their serde names:
    /// each must still type with its defaults, whatever fields those crates have gained.
    #[test]
    fn the_tables_name_settings_that_exist() {
        for rule in ATTACKS {
            if let Ok(ours) = &rule.ours {
                let attack: AttackConfig = serde_json::from_value(json!({ "kind": ours.kind }))
                    .unwrap_or_else(|e| panic!("{}: {e}", rule.reference));
                attack.validate().unwrap();
            }
        }
        for (name, data) in DATASETS {
            let task = match data {
                Data::Glue { task, train, dev } => {
                    json!({ "kind": "glue", "task": task, "train": train, "dev": dev })
                }
                Data::Squad => json!({ "kind": "squad" }),
                Data::Lambada { path } => json!({ "kind": "lambada", "path": path }),
                Data::Instruction { format, path } => {
                    json!({ "kind": "instruction", "format": format, "path": path })
                }
                Data::Math { format, path } => {
                    json!({ "kind": "math", "format": format, "path": path })
                }
            };
            serde_json::from_value::<splitlm_bench::config::RunConfig>(json!({
                "model": { "source": "minilm" },
                "task": task,
            }))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let names: BTreeSet<&str> = DEFENSES.iter().map(|r| r.reference).collect();
        assert_eq!(names.len(), DEFENSES.len(), "a defense listed twice");
        let names: BTreeSet<&str> = ATTACKS.iter().map(|r| r.reference).collect();
        assert_eq!(names.len(), ATTACKS.len(), "an attack listed twice");
    }

    fn cx(root: &Value) -> Cx<'_> {
        Cx {
            doc: Doc {
                root,
                used: RefCell::new(BTreeSet::new()),
            },
            refusals: Vec::new(),
            todos: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Every defense mapper names a kind of ours that types, given the keys the reference
    /// requires least (`lambda`, `epsilon`, a rate); the rest take splitlm's defaults, noted.
    #[test]
    fn every_defense_mapper_builds_settings_that_type() {
        for rule in DEFENSES {
            let Ok(mapper) = rule.ours else { continue };
            let root = json!({ "defense": { "name": rule.reference, "parameters": {
                "party": [0], "lambda": 0.1, "epsilon": 1.0, "gradient_sparse_rate": 90 } } });
            let mut cx = cx(&root);
            let renderings = mapper(&mut cx, "Bert");
            let first = &renderings[0];
            assert!(!first.pieces.is_empty(), "{}", rule.reference);
            for piece in &first.pieces {
                let Piece::Ours(v) = piece else {
                    panic!("{}: refused", rule.reference)
                };
                let config: DefenseConfig = serde_json::from_value(v.clone())
                    .unwrap_or_else(|e| panic!("{}: {v}: {e}", rule.reference));
                config
                    .validate()
                    .unwrap_or_else(|e| panic!("{}: {e}", rule.reference));
            }
        }
    }

    /// AT's `position` as text or a list, tested by substring as the reference does; a tail
    /// in Head–Tail is refused, the head kept.
    #[test]
    fn adversarial_positions_are_read_as_the_reference_reads_them() {
        for (position, slices, head, tail, refused) in [
            (json!("head"), 2, true, false, false),
            (json!(["head"]), 2, true, false, false),
            (json!(["tail"]), 3, false, true, false),
            (json!(["head", "tail"]), 3, true, true, false),
            (json!("head-tail"), 3, true, true, false),
            (json!(["head", "tail"]), 2, true, false, true),
        ] {
            let root = json!({
                "model_list": { "vfl_model_slice_num": slices },
                "defense": { "name": "AdversarialTraining", "parameters": {
                    "party": [0], "lambda": 0.5, "position": position,
                    "adversarial_model_lr": 0.001, "imagined_adversary_lr": 0.002 } },
            });
            let mut cx = cx(&root);
            let renderings = adversarial_training(&mut cx, "GPT2");
            let pieces = &renderings[0].pieces;
            let Some(Piece::Ours(v)) = pieces.first() else {
                panic!("{position}: nothing kept")
            };
            assert_eq!(
                (v["head"].as_bool(), v["tail"].as_bool()),
                (Some(head), Some(tail))
            );
            assert_eq!(
                (v["mapping_lr"].as_f64(), v["adversary_lr"].as_f64()),
                (Some(0.001), Some(0.002))
            );
            let was_refused = pieces.iter().any(|p| matches!(p, Piece::Refused { .. }));
            assert_eq!(was_refused, refused, "{position} in {slices} slices");
        }
        let root = json!({ "defense": { "name": "AdversarialTraining", "parameters": {
            "party": [0], "lambda": 0.5, "position": "inner" } } });
        let renderings = adversarial_training(&mut cx(&root), "GPT2");
        assert!(matches!(renderings[0].pieces[0], Piece::Refused { .. }));
    }

    /// The reference's rates are percentages divided by 100 until at most 1.
    #[test]
    fn sparsification_rates_are_scaled_as_the_reference_does() {
        for (given, expected) in [(96.0, 0.96), (99.0, 0.99), (100.0, 1.0), (0.5, 0.5)] {
            let root = json!({ "defense": { "name": "GradientSparsification",
                "parameters": { "party": [0], "gradient_sparse_rate": given } } });
            let renderings = sparsification(&mut cx(&root), "Bert");
            let Piece::Ours(v) = &renderings[0].pieces[0] else {
                panic!("refused")
            };
            assert_eq!(v["rate"].as_f64(), Some(expected), "{given}");
            assert_eq!(v["target"], "gradients", "the reference's default position");
        }
    }
}
