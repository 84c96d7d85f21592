//! `splitlm import-vflair` on configurations shipped with the reference (VFLAIR-LLM at
//! ff18565, copied to fixtures/vflair/configs): each imports, passes `splitlm check`, and
//! carries the reference's numbers — read here from the JSON, not from the importer — while
//! what has no equivalent is refused by name.

use std::path::{Path, PathBuf};

use serde_json::Value;
use splitlm_bench::RunConfig;
use splitlm_cli::files::write_atomically;
use splitlm_cli::vflair::{ImportOptions, Imported, Refused, import_file, import_str};

/// The fixtures that import (with `--drop-unsupported` where they hold something splitlm
/// lacks).
const IMPORTABLE: &[&str] = &[
    "vanilla/2-slice/sst2_gpt_wo.json",
    "vanilla/3-slice/codealpaca_codellama.json",
    "with_mia_and_defense/2-slice/lambada_gpt_dp.json",
    "with_mia_and_defense/2-slice/lambada_gpt_mid.json",
    "with_lia_and_defense/3-slice/sst2_dp.json",
    "with_mia_and_lia_and_defense/sst2_gs.json",
];

/// A fixture whose defense (adversarial training) and one attack (BiSR) splitlm lacks.
const REFUSED: &str = "with_mia_and_defense/2-slice/sst2_at.json";

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
];

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
                // An attack splitlm does not have (BiSR): dropped, by name.
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
        // they attack are those the reference's first inversion attack names.
        if attacks
            .iter()
            .any(|a| a["kind"] == "vmi" || a["kind"] == "rwi")
        {
            let attacker = &ours(&imported)["attacker"];
            assert_eq!(attacker["head"], "fine_tuned", "{rel}");
            let first = list
                .values()
                .find(|a| {
                    matches!(
                        a["name"].as_str(),
                        Some("VanillaModelInversion_WhiteBox" | "WhiteBoxInversion")
                    )
                })
                .unwrap();
            if let Some(samples) = attacker.get("samples") {
                assert_eq!(samples, &first["parameters"]["attack_sample_num"], "{rel}");
                assert_eq!(
                    attacker["split"], first["parameters"]["target_data"],
                    "{rel}"
                );
                assert_eq!(
                    attacker["batch_size"], first["parameters"]["batch_size"],
                    "{rel}"
                );
            }
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

#[test]
fn what_has_no_equivalent_is_refused_by_name() {
    let err = import(REFUSED, false).unwrap_err();
    let refused = err.downcast_ref::<Refused>().expect("a Refused error");
    let message = err.to_string();
    for name in ["AdversarialTraining", "BiSR"] {
        assert!(
            refused.refusals.iter().any(|r| r.item.contains(name)),
            "{message}"
        );
        assert!(message.contains(name), "{message}");
    }
    assert!(message.contains("--drop-unsupported"), "{message}");

    // Dropping them imports the rest, saying what was dropped.
    let imported = imported(REFUSED);
    assert!(imported.config.defenses.is_empty());
    assert!(imported.toml.contains("AdversarialTraining"));
    assert!(imported.dropped.iter().any(|d| d.item.contains("BiSR")));
    let json = reference(REFUSED);
    assert_eq!(json["defense"]["name"], "AdversarialTraining");

    // A file whose only gap is BiSR is refused too, unless told to drop it.
    let message = import("with_mia_and_defense/2-slice/lambada_gpt_dp.json", false)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("attack 'BiSR' (attack_list.2)"),
        "{message}"
    );
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
