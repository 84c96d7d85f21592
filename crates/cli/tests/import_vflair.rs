//! `splitlm import-vflair` on configurations shipped with the reference (VFLAIR-LLM at
//! ff18565, copied to fixtures/vflair/configs): each imports, passes `splitlm check`, and
//! carries the reference's numbers — read here from the JSON, not from the importer — while
//! what has no equivalent is refused by name.

use std::path::{Path, PathBuf};

use serde_json::Value;
use splitlm_bench::RunConfig;
use splitlm_cli::files::write_atomically;
use splitlm_cli::vflair::{ImportOptions, Imported, Refused, import_file, import_str};

/// The fixtures, all of which import.
const IMPORTABLE: &[&str] = &[
    "vanilla/2-slice/sst2_gpt_wo.json",
    "vanilla/3-slice/codealpaca_codellama.json",
    "with_mia_and_defense/2-slice/lambada_gpt_dp.json",
    "with_mia_and_defense/2-slice/lambada_gpt_mid.json",
    "with_lia_and_defense/3-slice/sst2_dp.json",
    "with_mia_and_lia_and_defense/sst2_gs.json",
    "with_mia_and_defense/2-slice/sst2_at.json",
    "with_mia_and_defense/2-slice/codealpaca_at.json",
    "with_mia_and_lia_and_defense/sst2_ad.json",
    "with_lia_and_defense/3-slice/sst2_at.json",
    "with_mia_and_defense/2-slice/alpaca_gpt2_to.json",
    "with_mia_and_defense/2-slice/alpaca_gpt2_santext.json",
    "with_mia_and_defense/2-slice/gsm8k_mistral_custext.json",
    "with_mia_and_defense/2-slice/gsm8k_mistral_rantext.json",
    "with_mia_and_defense/2-slice/sst2_snd.json",
];

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/vflair/configs")
        .join(rel)
}

fn reference(rel: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap()
}

fn import(rel: &str, drop_unsupported: bool) -> anyhow::Result<Imported> {
    import_file(
        &fixture(rel),
        &ImportOptions {
            model: None,
            drop_unsupported,
        },
    )
}

fn imported(rel: &str) -> Imported {
    import(rel, true).unwrap_or_else(|e| panic!("{rel}: {e:#}"))
}

/// Our configuration as JSON, to read any field by name.
fn ours(imported: &Imported) -> Value {
    serde_json::to_value(&imported.config).unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1.0)
}

/// A reference attack, ours, and the reference's parameter behind each of our fields.
type AttackFields = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The reference's attack parameters and splitlm's field for each, per attack we have.
const ATTACK_FIELDS: &[AttackFields] = &[
    (
        "VanillaModelInversion_WhiteBox",
        "vmi",
        &[("epochs", "steps"), ("lr", "lr")],
    ),
    (
        "WhiteBoxInversion",
        "rwi",
        &[("epochs", "steps"), ("lr", "lr"), ("T", "temperature")],
    ),
    (
        "BatchLabelReconstruction_LLM",
        "bli",
        &[("epochs", "steps"), ("lr", "lr")],
    ),
    ("NormbasedScoring_LLM", "ns", &[]),
    ("DirectionbasedScoring_LLM", "ds", &[]),
    ("DirectLabelScoring_LLM", "dls", &[]),
    (
        "BiSR",
        "bisr",
        &[
            ("epochs", "steps"),
            ("lr", "lr"),
            ("phase1_lr", "inverter_lr"),
            ("expert_epoch", "expert_epochs"),
            ("gate_epoch", "gate_epochs"),
            ("full_epoch", "full_epochs"),
        ],
    ),
];

/// A numbered table's values (`attack_list`) in numeric order, as the reference reads them.
fn numbered(list: &serde_json::Map<String, Value>) -> Vec<&Value> {
    let mut entries: Vec<(usize, &Value)> =
        list.iter().map(|(k, v)| (k.parse().unwrap(), v)).collect();
    entries.sort_by_key(|(k, _)| *k);
    entries.into_iter().map(|(_, v)| v).collect()
}

#[test]
fn every_importable_fixture_imports_and_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    for rel in IMPORTABLE {
        let imported = imported(rel);
        // The TOML as written reads back, through the loader `train` uses, as the same
        // configuration, and `splitlm check` takes it.
        let path = dir.path().join("imported.toml");
        std::fs::write(&path, &imported.toml).unwrap();
        let loaded = RunConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(loaded, imported.config, "{rel}");
        splitlm_cli::check::check(&path, &[]).unwrap_or_else(|e| panic!("{rel}: {e:#}"));
        // The run is named after the file, and the header says what to fill in.
        let stem = Path::new(rel).file_stem().unwrap().to_str().unwrap();
        assert_eq!(imported.config.name.as_deref(), Some(stem));
        assert!(
            imported
                .toml
                .starts_with("# Imported by `splitlm import-vflair`")
        );
        assert!(
            imported.todos.iter().any(|t| t.contains("model.source")),
            "{rel}: {:?}",
            imported.todos
        );
        assert!(imported.toml.contains("# TODO before running:"), "{rel}");
    }
}

#[test]
fn the_cut_task_and_training_loop_are_the_reference_numbers() {
    for rel in IMPORTABLE {
        let json = reference(rel);
        let imported = imported(rel);
        let ours = ours(&imported);
        let models = &json["model_list"];
        let partition = &ours["split"]["partition"];
        assert_eq!(partition["n_head"], models["local_encoders_num"], "{rel}");
        match models["vfl_model_slice_num"].as_u64() {
            Some(2) => {
                assert_eq!(partition["kind"], "head_tail", "{rel}");
                assert_eq!(partition["task_head_with"], "model", "{rel}");
            }
            Some(3) => {
                assert_eq!(partition["kind"], "head_body_tail", "{rel}");
                assert_eq!(
                    partition["n_tail"], models["local_tail_encoders_num"],
                    "{rel}"
                );
            }
            other => panic!("{rel}: {other:?} slices"),
        }
        assert!(
            same(num(&ours["optimizer"]["lr"]), num(&json["lr"])),
            "{rel}"
        );
        assert_eq!(ours["optimizer"]["kind"], "adam", "{rel}");
        assert_eq!(ours["train"]["epochs"], json["epochs"], "{rel}");
        assert_eq!(ours["train"]["batch_size"], json["batch_size"], "{rel}");
        assert_eq!(
            ours["task"]["max_len"], json["tokenizer"]["max_length"],
            "{rel}"
        );
        let dataset = json["dataset"]["dataset_name"].as_str().unwrap();
        let kind = ours["task"]["kind"].as_str().unwrap();
        match dataset {
            "SST-2" => {
                assert_eq!(
                    (kind, ours["task"]["task"].as_str()),
                    ("glue", Some("sst2"))
                )
            }
            "Lambada" => assert_eq!(kind, "lambada"),
            "CodeAlpaca" => {
                assert_eq!(kind, "instruction");
                assert_eq!(ours["task"]["format"], "code_alpaca");
            }
            "Alpaca" => {
                assert_eq!(kind, "instruction");
                assert_eq!(ours["task"]["format"], "alpaca");
            }
            "GSM8K" | "GMS8K" => {
                assert_eq!(kind, "math");
                assert_eq!(ours["task"]["format"], "gsm8k");
            }
            other => panic!("{rel}: no expectation for {other}"),
        }
        let path = models["0"]["path"].as_str().unwrap_or_else(|| {
            models["path"]
                .as_str()
                .unwrap_or_else(|| panic!("{rel}: no model path"))
        });
        assert_eq!(ours["model"]["source"], path, "{rel}");
    }
}

#[test]
fn fine_tuning_follows_the_reference_flags() {
    // sst2_gpt_wo: full fine-tuning of nothing but the classifier (the head's and the tail's
    // blocks and embeddings are flagged off, the tail's head layer on).
    let json = reference("vanilla/2-slice/sst2_gpt_wo.json");
    let models = &json["model_list"];
    assert_eq!(json["finetune_configs"]["name"], "Vanilla");
    let finetune = &ours(&imported("vanilla/2-slice/sst2_gpt_wo.json"))["finetune"];
    assert_eq!(finetune["strategy"], "full");
    assert_eq!(
        models["0"]["head"]["encoder_trainable_ids"],
        serde_json::json!([])
    );
    assert_eq!(finetune["blocks"], "none");
    assert_eq!(
        finetune["embeddings"].as_bool(),
        Some(models["0"]["head"]["embedding_trainable"] == 1)
    );
    assert_eq!(
        finetune["task_head"].as_bool(),
        Some(models["1"]["tail"]["head_layer_trainable"] == 1)
    );

    // lambada_gpt_mid: every slice trainable, full fine-tuning.
    let json = reference("with_mia_and_defense/2-slice/lambada_gpt_mid.json");
    assert_eq!(json["model_list"]["0"]["head"]["trainable"], 1);
    assert_eq!(json["model_list"]["1"]["tail"]["trainable"], 1);
    let finetune = &ours(&imported(
        "with_mia_and_defense/2-slice/lambada_gpt_mid.json",
    ))["finetune"];
    assert_eq!(
        (
            &finetune["strategy"],
            &finetune["blocks"],
            &finetune["embeddings"],
            &finetune["task_head"]
        ),
        (&"full".into(), &"all".into(), &true.into(), &true.into())
    );

    // codealpaca_codellama: LoRA with the reference's settings for an empty `configs`
    // (`_set_peft` in its model loaders: r 4, lora_alpha 32) on every slice.
    let json = reference("vanilla/3-slice/codealpaca_codellama.json");
    assert_eq!(json["finetune_configs"]["name"], "LoRA");
    assert_eq!(json["finetune_configs"]["configs"], serde_json::json!({}));
    let llama = imported("vanilla/3-slice/codealpaca_codellama.json");
    let finetune = &ours(&llama)["finetune"];
    assert_eq!(finetune["strategy"], "lora");
    assert_eq!(finetune["blocks"], "all");
    assert_eq!(finetune["lora"]["rank"], 4);
    assert!(same(num(&finetune["lora"]["alpha"]), 32.0));
    // Its generation settings (do_sample with temperature, top_p, top_k, max_new_tokens).
    let generation = &json["model_list"]["task"]["generation_config_dict"];
    let generate = &ours(&llama)["generate"];
    assert_eq!(generate["max_new_tokens"], generation["max_new_tokens"]);
    assert_eq!(generate["top_k"], generation["top_k"]);
    assert!((num(&generate["temperature"]) - num(&generation["temperature"])).abs() < 1e-6);
    assert!((num(&generate["top_p"]) - num(&generation["top_p"])).abs() < 1e-6);
    // The reference's LoRA dropout (0.1 by default) is noted, splitlm's adapters having none.
    assert!(
        llama.notes.iter().any(|n| n.contains("dropout")),
        "{:?}",
        llama.notes
    );

    // lambada_gpt_dp runs the reference's "pretrained" pipeline: nothing trains.
    let json = reference("with_mia_and_defense/2-slice/lambada_gpt_dp.json");
    assert_eq!(json["pipeline"], "pretrained");
    let finetune = &ours(&imported(
        "with_mia_and_defense/2-slice/lambada_gpt_dp.json",
    ))["finetune"];
    assert_eq!(finetune["strategy"], "frozen");
}

#[test]
fn attacks_carry_the_reference_parameters_or_are_dropped_by_name() {
    for rel in IMPORTABLE {
        let json = reference(rel);
        let Some(list) = json["attack_list"].as_object() else {
            continue;
        };
        let imported = imported(rel);
        let attacks = &ours(&imported)["attacks"];
        let attacks = attacks.as_array().unwrap();
        for (key, attack) in list {
            let name = attack["name"].as_str().unwrap();
            let at = format!("attack_list.{key}");
            let dropped = imported
                .dropped
                .iter()
                .find(|d| d.at == at || d.at.starts_with(&format!("{at}.")));
            let Some((_, kind, fields)) = ATTACK_FIELDS.iter().find(|(n, _, _)| *n == name) else {
                // An attack splitlm does not have: dropped, by name.
                let dropped = dropped.unwrap_or_else(|| panic!("{rel}: {at} {name} kept?"));
                assert!(dropped.item.contains(name), "{dropped}");
                continue;
            };
            if let Some(dropped) = dropped {
                // Refused by splitlm's own checks for this cut: the reason is splitlm's.
                assert!(dropped.item.contains(name), "{dropped}");
                continue;
            }
            let params = &attack["parameters"];
            let found = attacks.iter().any(|a| {
                a["kind"] == *kind
                    && fields
                        .iter()
                        .all(|(from, to)| same(num(&a[*to]), num(&params[*from])))
            });
            assert!(found, "{rel}: {at} {name} {params} not among {attacks:?}");
        }
        // Inversions get the data party's trained head, as in the reference; the samples
        // they attack are those the reference's first inversion attack names, in its batches
        // (BiSR's: one at a time, BiSR.py l.414, whatever its batch_size).
        if attacks
            .iter()
            .any(|a| matches!(a["kind"].as_str(), Some("vmi" | "rwi" | "bisr")))
        {
            let attacker = &ours(&imported)["attacker"];
            assert_eq!(attacker["head"], "fine_tuned", "{rel}");
            let first = numbered(list)
                .into_iter()
                .find(|a| {
                    matches!(
                        a["name"].as_str(),
                        Some("VanillaModelInversion_WhiteBox" | "WhiteBoxInversion" | "BiSR")
                    )
                })
                .unwrap();
            assert_eq!(
                attacker["samples"], first["parameters"]["attack_sample_num"],
                "{rel}"
            );
            // Without target_data (the reference's code would stop), splitlm's default.
            let split = match &first["parameters"]["target_data"] {
                Value::Null => &Value::from("test"),
                given => given,
            };
            assert_eq!(&attacker["split"], split, "{rel}");
            let batch = if first["name"] == "BiSR" {
                &Value::from(1)
            } else {
                &first["parameters"]["batch_size"]
            };
            assert_eq!(&attacker["batch_size"], batch, "{rel}");
        }
        // BiSR's auxiliary examples are the reference's auxiliary_data_num (absent: the
        // reference's 5 % of the training set, splitlm's default too).
        if let Some(bisr) = numbered(list).into_iter().find(|a| a["name"] == "BiSR") {
            let attacker = &ours(&imported)["attacker"];
            let expected = &bisr["parameters"]["auxiliary_data_num"];
            match attacker.get("auxiliary_samples") {
                Some(v) if !v.is_null() => assert_eq!(v, expected, "{rel}"),
                _ => assert!(expected.is_null(), "{rel}"),
            }
            let ours_bisr = attacks.iter().find(|a| a["kind"] == "bisr").unwrap();
            assert_eq!(
                ours_bisr["expert_scales"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(num)
                    .collect::<Vec<_>>(),
                bisr["parameters"]["expert_scales"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(num)
                    .collect::<Vec<_>>(),
                "{rel}"
            );
        }
    }
    // VMI without a loss_type takes the reference's default objective, cross-entropy.
    let imported = imported("with_mia_and_defense/2-slice/lambada_gpt_dp.json");
    let vmi = ours(&imported)["attacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "vmi")
        .cloned()
        .unwrap();
    assert_eq!(vmi["objective"], "cross_entropy");
}

/// Our defenses of a fixture, as JSON.
fn defenses(rel: &str) -> Vec<Value> {
    ours(&imported(rel))["defenses"].as_array().unwrap().clone()
}

/// Whether `defense` targets the activations (`pred`) / the gradients (`grad`).
fn targets(defense: &Value) -> (bool, bool) {
    match defense["target"].as_str() {
        Some("activations") => (true, false),
        Some("gradients") => (false, true),
        Some("both") => (true, true),
        other => panic!("target {other:?}"),
    }
}

#[test]
fn defenses_carry_the_reference_parameters() {
    // LaplaceDP on what the data party sends (the reference's default position, "pred"),
    // with the reference's Δf for GPT2 (DELTAF in evaluates/defenses/defense_functions.py).
    let rel = "with_mia_and_defense/2-slice/lambada_gpt_dp.json";
    let params = &reference(rel)["defense"]["parameters"];
    assert!(params.get("position").is_none());
    assert_eq!(reference(rel)["model_list"]["model_type"], "GPT2");
    let ours = defenses(rel);
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0]["kind"], "laplace_dp");
    assert!(same(num(&ours[0]["epsilon"]), num(&params["epsilon"])));
    assert_eq!(targets(&ours[0]), (true, false));
    assert!(same(num(&ours[0]["sensitivity"]), 110.2), "{ours:?}");

    // LaplaceDP on the gradients (3 slices), no `delta_f`: the reference's 0.01.
    let rel = "with_lia_and_defense/3-slice/sst2_dp.json";
    let params = &reference(rel)["defense"]["parameters"];
    assert_eq!(params["position"], serde_json::json!(["grad"]));
    assert!(params.get("delta_f").is_none());
    let ours = defenses(rel);
    assert!(!ours.is_empty());
    for d in &ours {
        assert_eq!(d["kind"], "laplace_dp");
        assert!(same(num(&d["epsilon"]), num(&params["epsilon"])));
        assert_eq!(targets(d), (false, true), "{d}");
        // Settings with a gradient Δf of their own, or an older single Δf with a clip.
        let delta_f = d.get("gradient_sensitivity").unwrap_or(&d["sensitivity"]);
        assert!(same(num(delta_f), 0.01), "{d}");
    }

    // GradientSparsification on both crossings, its rate given in percent.
    let rel = "with_mia_and_lia_and_defense/sst2_gs.json";
    let params = &reference(rel)["defense"]["parameters"];
    assert_eq!(params["position"], serde_json::json!(["grad", "pred"]));
    let ours = defenses(rel);
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0]["kind"], "sparsification");
    assert!(same(
        num(&ours[0]["rate"]),
        num(&params["gradient_sparse_rate"]) / 100.0
    ));
    assert_eq!(targets(&ours[0]), (true, true));

    // MID at the head, with its λ and learning rate.
    let rel = "with_mia_and_defense/2-slice/lambada_gpt_mid.json";
    let params = &reference(rel)["defense"]["parameters"];
    assert_eq!(params["mid_position"], "head");
    let ours = defenses(rel);
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0]["kind"], "mid");
    assert!(same(num(&ours[0]["lambda"]), num(&params["lambda"])));
    assert!(same(num(&ours[0]["lr"]), num(&params["lr"])));
    // The reference reads `bottleneck_scale` (default 1); this file sets another key.
    assert!(params.get("bottleneck_scale").is_none());
    assert_eq!(ours[0]["expansion"], 1);
    if let Some(position) = ours[0].get("position") {
        assert_eq!(position, "head");
    }
}

/// The one defense a fixture imports to, and the reference's parameters.
fn one_defense(rel: &str) -> (Value, Value) {
    let ours = defenses(rel);
    assert_eq!(ours.len(), 1, "{rel}: {ours:?}");
    (
        ours[0].clone(),
        reference(rel)["defense"]["parameters"].clone(),
    )
}

/// Each `(reference key, our field)` pair holds the same number.
fn same_numbers(rel: &str, ours: &Value, params: &Value, pairs: &[(&str, &str)]) {
    for (from, to) in pairs {
        assert!(
            same(num(&ours[*to]), num(&params[*from])),
            "{rel}: {from} {} → {to} {}",
            params[*from],
            ours[*to]
        );
    }
}

#[test]
fn the_text_and_learned_defenses_carry_the_reference_parameters() {
    // AdversarialTraining at the head (the per-token models), its keys renamed.
    let at_pairs: &[(&str, &str)] = &[
        ("lambda", "lambda"),
        ("adversarial_model_lr", "mapping_lr"),
        ("imagined_adversary_lr", "adversary_lr"),
    ];
    let rel = "with_mia_and_defense/2-slice/codealpaca_at.json";
    let (ours, params) = one_defense(rel);
    assert_eq!(ours["kind"], "adversarial_training");
    assert_eq!(params["position"], serde_json::json!(["head"]));
    assert_eq!(params["adversarial_model"], "Mapping_MLP3_noflatten");
    same_numbers(rel, &ours, &params, at_pairs);
    same_numbers(
        rel,
        &ours,
        &params,
        &[
            ("adversarial_model_hidden_size", "mapping_hidden_size"),
            ("imagined_adversary_hidden_size", "adversary_hidden_size"),
        ],
    );
    assert_eq!(
        (&ours["head"], &ours["tail"]),
        (&true.into(), &false.into())
    );
    assert!(!imported(rel).notes.iter().any(|n| n.contains("flattening")));
    // No hidden sizes nor at_epsilon in the file: the reference's 80 and 1
    // (party/passive_party.py l.116-117, 135-136, 143-144).
    let rel = "with_mia_and_defense/2-slice/sst2_at.json";
    let (ours, params) = one_defense(rel);
    assert!(params.get("adversarial_model_hidden_size").is_none());
    assert!(params.get("at_epsilon").is_none());
    same_numbers(rel, &ours, &params, at_pairs);
    assert_eq!(
        (&ours["mapping_hidden_size"], &ours["adversary_hidden_size"]),
        (&80.into(), &80.into())
    );
    assert!(same(num(&ours["at_epsilon"]), 1.0));
    assert_eq!(params["position"], "head");
    assert_eq!(
        (&ours["head"], &ours["tail"]),
        (&true.into(), &false.into())
    );
    // The flattening Mapping_MLP3 becomes the per-token model, noted.
    assert_eq!(params["adversarial_model"], "Mapping_MLP3");
    let notes = imported(rel).notes;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("Mapping_MLP3") && n.contains("flattening")),
        "{notes:?}"
    );
    // Head and tail (Head–Body–Tail); the tail's label adversary, not built, is noted.
    let rel = "with_mia_and_lia_and_defense/sst2_ad.json";
    let (ours, params) = one_defense(rel);
    assert_eq!(params["position"], serde_json::json!(["head", "tail"]));
    same_numbers(rel, &ours, &params, at_pairs);
    assert_eq!((&ours["head"], &ours["tail"]), (&true.into(), &true.into()));
    assert!(
        imported(rel)
            .notes
            .iter()
            .any(|n| n.contains("label adversary"))
    );
    // The tail alone.
    let rel = "with_lia_and_defense/3-slice/sst2_at.json";
    let (ours, params) = one_defense(rel);
    assert_eq!(params["position"], serde_json::json!(["tail"]));
    assert_eq!(
        (&ours["head"], &ours["tail"]),
        (&false.into(), &true.into())
    );

    // TextObfuscator: its keys as they are; λ 1, as the reference's loader leaves it.
    let rel = "with_mia_and_defense/2-slice/alpaca_gpt2_to.json";
    let (ours, params) = one_defense(rel);
    assert_eq!(ours["kind"], "text_obfuscator");
    same_numbers(
        rel,
        &ours,
        &params,
        &[
            ("cluster_num", "cluster_num"),
            ("epsilon", "epsilon"),
            ("w_cluster_close", "w_cluster_close"),
            ("w_cluster_away", "w_cluster_away"),
        ],
    );
    assert_eq!(ours["cluster_method"], params["cluster_method"]);
    assert!(same(num(&ours["lambda"]), 1.0));
    // A `lambda` is read only beside the misspelt `lamba` (load/LoadConfigs.py l.825).
    let mut json = reference(rel);
    json["defense"]["parameters"]["lambda"] = 0.3.into();
    let edited = import_json(&json, false).unwrap();
    assert!(same(num(&ours_of(&edited)["lambda"]), 1.0));
    assert!(edited.notes.iter().any(|n| n.contains("lamba")));
    json["defense"]["parameters"]["lamba"] = 1.into();
    let edited = import_json(&json, false).unwrap();
    assert!(same(num(&ours_of(&edited)["lambda"]), 0.3));

    // SanText+.
    let rel = "with_mia_and_defense/2-slice/alpaca_gpt2_santext.json";
    let (ours, params) = one_defense(rel);
    assert_eq!(ours["kind"], "santext");
    same_numbers(
        rel,
        &ours,
        &params,
        &[
            ("epsilon", "epsilon"),
            ("sensitive_word_percentage", "sensitive_word_percentage"),
            ("p", "p"),
        ],
    );

    // CusText; the reference treats numbers apart only for its "GMS8K", "GMS8K-test" and
    // "MATH" (utils/custext_utils.py l.106), and this file spells GSM8K right.
    let rel = "with_mia_and_defense/2-slice/gsm8k_mistral_custext.json";
    let (ours, params) = one_defense(rel);
    assert_eq!(ours["kind"], "custext");
    same_numbers(
        rel,
        &ours,
        &params,
        &[("epsilon", "epsilon"), ("topk", "topk")],
    );
    assert_eq!(reference(rel)["dataset"]["dataset_name"], "GSM8K");
    assert_eq!(ours["math_numbers"], false);

    // InferDPT: its RanText, numbers replaced for "GMS8K" (party/passive_party.py l.913).
    let rel = "with_mia_and_defense/2-slice/gsm8k_mistral_rantext.json";
    let (ours, params) = one_defense(rel);
    assert_eq!(ours["kind"], "rantext");
    same_numbers(rel, &ours, &params, &[("epsilon", "epsilon")]);
    assert_eq!(reference(rel)["dataset"]["dataset_name"], "GMS8K");
    assert_eq!(ours["math_numbers"], true);
    let rantext = imported(rel);
    assert!(
        rantext
            .notes
            .iter()
            .any(|n| n.contains("inferdpt_kit_path"))
    );
    assert!(
        !rantext
            .not_carried
            .iter()
            .any(|(k, _)| k.starts_with("defense.parameters.decode")),
        "{:?}",
        rantext.not_carried
    );

    // SnD: every key of the reference's loader as it is; denoise_sample_num, which its code
    // never reads, is not carried over.
    let rel = "with_mia_and_defense/2-slice/sst2_snd.json";
    let (ours, params) = one_defense(rel);
    assert_eq!(ours["kind"], "snd");
    same_numbers(
        rel,
        &ours,
        &params,
        &[
            ("train_eta", "train_eta"),
            ("test_eta", "test_eta"),
            ("noise_per_sample", "noise_per_sample"),
            ("denoise_epoch", "denoise_epoch"),
            ("denoise_batch_size", "denoise_batch_size"),
            ("denoise_lr", "denoise_lr"),
            ("dim_head", "dim_head"),
            ("dropout", "dropout"),
            ("num_heads", "num_heads"),
            ("num_layers", "num_layers"),
            ("d_ff", "d_ff"),
        ],
    );
    assert!(params["denoise_sample_num"].is_number());
    assert!(ours["denoise_sample_num"].is_null(), "{ours}");
    assert!(
        imported(rel)
            .notes
            .iter()
            .any(|n| n.contains("denoise_sample_num"))
    );
}

/// The one defense of an import.
fn ours_of(imported: &Imported) -> Value {
    ours(imported)["defenses"][0].clone()
}

/// The configuration `json` (an edited fixture) imported, or why not.
fn import_json(json: &Value, drop_unsupported: bool) -> anyhow::Result<Imported> {
    import_str(
        &json.to_string(),
        "edited",
        "edited.json",
        &ImportOptions {
            model: None,
            drop_unsupported,
        },
    )
}

#[test]
fn every_reference_attack_and_defense_of_the_shipped_files_has_an_equivalent() {
    // Every attack and defense of the reference's LLM configurations has an equivalent: the
    // shipped files import as they are, nothing dropped.
    for rel in IMPORTABLE {
        let imported = import(rel, false).unwrap_or_else(|e| panic!("{rel}: {e:#}"));
        assert!(imported.dropped.is_empty(), "{rel}: {:?}", imported.dropped);
        let json = reference(rel);
        let defenses = usize::from(json.get("defense").is_some());
        assert_eq!(imported.config.defenses.len(), defenses, "{rel}");
    }
}

#[test]
fn what_has_no_equivalent_is_refused_by_name() {
    // AT at the tail of a Head–Tail split (no data party tail) and BiSR's linear inverter.
    let rel = "with_mia_and_defense/2-slice/sst2_at.json";
    let mut json = reference(rel);
    assert_eq!(json["model_list"]["vfl_model_slice_num"], 2);
    json["defense"]["parameters"]["position"] = serde_json::json!(["head", "tail"]);
    assert_eq!(json["attack_list"]["0"]["name"], "BiSR");
    json["attack_list"]["0"]["parameters"]["attacker_model_name"] = "Linear".into();
    let err = import_json(&json, false).unwrap_err();
    let refused = err.downcast_ref::<Refused>().expect("a Refused error");
    let message = err.to_string();
    for (name, why) in [
        ("AdversarialTraining", "Head–Body–Tail"),
        ("BiSR", "LinearSIPInverter"),
    ] {
        let refusal = refused
            .refusals
            .iter()
            .find(|r| r.item.contains(name))
            .unwrap_or_else(|| panic!("{message}"));
        assert!(refusal.reason.contains(why), "{refusal}");
        assert!(refusal.droppable, "{refusal}");
    }
    assert!(message.contains("--drop-unsupported"), "{message}");

    // Dropping them imports the rest, saying what was dropped: AT at the head stays.
    let imported = import_json(&json, true).unwrap();
    let config = ours(&imported);
    assert_eq!(config["defenses"].as_array().unwrap().len(), 1);
    assert_eq!(config["defenses"][0]["kind"], "adversarial_training");
    assert_eq!(
        (
            &config["defenses"][0]["head"],
            &config["defenses"][0]["tail"]
        ),
        (&true.into(), &false.into())
    );
    assert!(imported.toml.contains("at position 'tail'"));
    assert!(imported.dropped.iter().any(|d| d.item.contains("BiSR")));
    assert!(
        !config["attacks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "bisr")
    );

    // InferDPT with its decoding model: RanText only, the decoder refused.
    let rel = "with_mia_and_defense/2-slice/gsm8k_mistral_rantext.json";
    let mut json = reference(rel);
    assert_eq!(json["defense"]["parameters"]["decode_model_path"], "");
    json["defense"]["parameters"]["decode_model_path"] = "/models/decoder".into();
    let message = import_json(&json, false).unwrap_err().to_string();
    assert!(
        message.contains("defense 'InferDPT' decode_model_path"),
        "{message}"
    );
    let imported = import_json(&json, true).unwrap();
    assert_eq!(ours(&imported)["defenses"][0]["kind"], "rantext");

    // TextObfuscator by a method splitlm lacks: splitlm's own reason.
    let mut json = reference("with_mia_and_defense/2-slice/alpaca_gpt2_to.json");
    json["defense"]["parameters"]["cluster_method"] = "gmm".into();
    let message = import_json(&json, false).unwrap_err().to_string();
    assert!(
        message.contains("TextObfuscator") && message.contains("not built"),
        "{message}"
    );

    // SnD with a denoiser the reference does not have, or a saved one.
    for (key, value) in [
        ("denoise_model", "denoiseModelv9"),
        ("denoise_model_path", "/models/denoiser.pth"),
    ] {
        let mut json = reference("with_mia_and_defense/2-slice/sst2_snd.json");
        json["defense"]["parameters"][key] = value.into();
        let message = import_json(&json, false).unwrap_err().to_string();
        assert!(
            message.contains("defense 'SnD'") && message.contains(value),
            "{message}"
        );
    }
}

/// A reference attack list of one model completion attack with `parameters` (besides its
/// party).
fn with_model_completion(rel: &str, parameters: Value) -> Value {
    let mut json = reference(rel);
    let mut parameters = parameters;
    parameters["party"] = serde_json::json!([1]);
    json["attack_list"] = serde_json::json!({
        "0": { "name": "ModelCompletion_LLM", "parameters": parameters }
    });
    json
}

#[test]
fn model_completion_carries_its_parameters_where_splitlm_runs_it() {
    // No LLM configuration of the reference sets one: its keys (ModelCompletion_LLM.py
    // l.41-51) on the 3-slice BERT SST-2 configuration.
    let rel = "with_lia_and_defense/3-slice/sst2_dp.json";
    let parameters = serde_json::json!({
        "lr": 0.01, "epochs": 3, "batch_size": 4, "attack_sample_num": 50,
        "aux_data_num": 40, "use_lora": false, "attack_seed": 1
    });
    let imported = import_json(&with_model_completion(rel, parameters.clone()), false)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let config = ours(&imported);
    let attack = &config["attacks"][0];
    assert_eq!(attack["kind"], "model_completion");
    assert!(same(num(&attack["lr"]), num(&parameters["lr"])));
    assert_eq!(attack["epochs"], parameters["epochs"]);
    assert_eq!(
        config["attacker"]["auxiliary_samples"],
        parameters["aux_data_num"]
    );
    for what in ["batch_size = 4", "attack_sample_num = 50"] {
        assert!(
            imported.notes.iter().any(|n| n.contains(what)),
            "{what}: {:?}",
            imported.notes
        );
    }
    // The reference's aux_data_percentage 0.05 is splitlm's default count.
    let edited = with_model_completion(
        rel,
        serde_json::json!({ "lr": 0.01, "epochs": 3, "aux_data_percentage": 0.05 }),
    );
    let imported = import_json(&edited, false).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(ours(&imported)["attacker"]["auxiliary_samples"].is_null());

    // Refused, each with its reason: in Head–Tail, on a generation task, with LoRA
    // surrogates, with another share of auxiliary examples.
    let cases = [
        (
            "vanilla/2-slice/sst2_gpt_wo.json",
            serde_json::json!({ "lr": 0.01, "epochs": 3, "aux_data_num": 40 }),
            "Head–Body–Tail",
        ),
        (
            "vanilla/3-slice/codealpaca_codellama.json",
            serde_json::json!({ "lr": 0.01, "epochs": 3, "aux_data_num": 40 }),
            "classification",
        ),
        (
            rel,
            serde_json::json!({ "lr": 0.01, "epochs": 3, "aux_data_num": 40, "use_lora": true }),
            "use_lora",
        ),
        (
            rel,
            serde_json::json!({ "lr": 0.01, "epochs": 3, "aux_data_percentage": 0.2 }),
            "aux_data_percentage = 0.2",
        ),
    ];
    for (rel, parameters, why) in cases {
        let err = import_json(&with_model_completion(rel, parameters), false).unwrap_err();
        let refused = err.downcast_ref::<Refused>().expect("a Refused error");
        let refusal = refused
            .refusals
            .iter()
            .find(|r| r.item.contains("ModelCompletion_LLM"))
            .unwrap_or_else(|| panic!("{rel}: {err}"));
        assert!(refusal.reason.contains(why), "{rel}: {refusal}");
    }
}

#[test]
fn every_essential_gap_is_named_at_once_and_never_dropped() {
    let mut json = reference("vanilla/2-slice/sst2_gpt_wo.json");
    json["dataset"]["dataset_name"] = "TextVQA".into();
    json["model_list"]["model_type"] = "ChatGLM".into();
    json["communication"]["communication_protocol"] = "CELU".into();
    json["finetune_configs"]["name"] = "PTuning".into();
    let text = json.to_string();
    for drop_unsupported in [false, true] {
        let options = ImportOptions {
            model: None,
            drop_unsupported,
        };
        let err = import_str(&text, "edited", "edited.json", &options).unwrap_err();
        let message = err.to_string();
        for name in ["TextVQA", "ChatGLM", "CELU", "PTuning"] {
            assert!(message.contains(name), "{name}: {message}");
        }
        assert!(!message.contains("--drop-unsupported"), "{message}");
    }
}

#[test]
fn model_override_and_what_is_not_carried_over() {
    let rel = "vanilla/2-slice/sst2_gpt_wo.json";
    let imported = import_file(
        &fixture(rel),
        &ImportOptions {
            model: Some("/models/gpt2".into()),
            drop_unsupported: false,
        },
    )
    .unwrap();
    assert_eq!(imported.config.model.source, "/models/gpt2");
    assert!(!imported.todos.iter().any(|t| t.contains("model.source")));
    // Placeholder data paths are TODOs; keys without a splitlm setting are listed.
    assert!(imported.todos.iter().any(|t| t.contains("task.train")));
    let json = reference(rel);
    assert_eq!(json["tokenizer"]["padding_side"], "left");
    assert!(
        imported
            .not_carried
            .iter()
            .any(|(k, v)| k == "tokenizer.padding_side" && v == "left"),
        "{:?}",
        imported.not_carried
    );
    assert!(
        imported
            .toml
            .contains("#   - tokenizer.padding_side = \"left\"")
    );
    // What was mapped is not listed as not carried over.
    for key in [
        "lr",
        "epochs",
        "batch_size",
        "model_list.local_encoders_num",
    ] {
        assert!(
            !imported.not_carried.iter().any(|(k, _)| k == key),
            "{key}: {:?}",
            imported.not_carried
        );
    }
}

#[test]
fn out_files_are_written_atomically_and_never_clobbered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imported.toml");
    let first = imported("vanilla/2-slice/sst2_gpt_wo.json").toml;
    write_atomically(&path, &first, false).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
    RunConfig::load(&path, &[]).unwrap();

    let second = imported("with_mia_and_defense/2-slice/lambada_gpt_mid.json").toml;
    let err = format!("{:#}", write_atomically(&path, &second, false).unwrap_err());
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "left alone");

    write_atomically(&path, &second, true).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), second);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("imported.toml")]);
}
