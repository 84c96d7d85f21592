//! `splitlm check`: every shipped configuration passes and prints as TOML that reads back as
//! the same configuration, every default filled in; a broken one fails naming the problem.

use std::path::{Path, PathBuf};

use splitlm_bench::RunConfig;
use splitlm_cli::check::check;

fn configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 2,
        "configs/ holds the example configurations"
    );
    paths
}

#[test]
fn every_shipped_config_passes_and_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut broken = Vec::new();
    for path in configs() {
        let printed = match check(&path, &[]) {
            Ok(printed) => printed,
            Err(e) => {
                broken.push(format!("{}: {e:#}", path.display()));
                continue;
            }
        };
        let again = dir.path().join("resolved.toml");
        std::fs::write(&again, &printed).unwrap();
        let original = RunConfig::load(&path, &[]).unwrap();
        let resolved = RunConfig::load(&again, &[])
            .unwrap_or_else(|e| panic!("{}: {e}\n{printed}", path.display()));
        assert_eq!(resolved, original, "{}", path.display());
        // Every section is spelled out, defaults included.
        let table: toml::Table = printed.parse().unwrap();
        for section in [
            "name",
            "model",
            "split",
            "finetune",
            "optimizer",
            "task",
            "train",
            "defenses",
            "attacks",
            "attacker",
            "generate",
            "output",
        ] {
            assert!(
                table.contains_key(section),
                "{}: no {section} in\n{printed}",
                path.display()
            );
        }
        assert!(
            table["finetune"].get("lora").is_some(),
            "{}",
            path.display()
        );
        assert!(
            table["optimizer"].get("beta2").is_some(),
            "{}",
            path.display()
        );
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn attack_and_defense_parameters_are_spelled_out() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/grid-sentiment.toml");
    let config = RunConfig::load(&path, &[]).unwrap();
    let table: toml::Table = check(&path, &[]).unwrap().parse().unwrap();
    // The file names the attacks by kind only; the printed tables carry every parameter, with
    // the values that will run.
    let attacks = table["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), config.attacks.len());
    for (printed, attack) in attacks.iter().zip(&config.attacks) {
        let expected = serde_json::to_value(attack).unwrap();
        let expected = expected.as_object().unwrap();
        let printed = printed.as_table().unwrap();
        assert!(expected.len() > 1, "{expected:?}");
        for key in expected.keys() {
            assert!(printed.contains_key(key), "{key} missing from {printed:?}");
        }
    }
    let settings = table["grid"]["settings"].as_array().unwrap();
    let sparsify = settings
        .iter()
        .flat_map(|s| {
            s.get("defenses")
                .and_then(|d| d.as_array())
                .cloned()
                .unwrap_or_default()
        })
        .find(|d| d["kind"].as_str() == Some("sparsification"))
        .unwrap();
    // Written in the file: kind, rate, target; printed: its defaults too.
    assert!(sparsify.get("error_feedback").is_some(), "{sparsify:?}");
}

#[test]
fn overrides_are_applied_and_shown() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/sentiment.toml");
    let printed = check(&path, &["train.epochs=3".into()]).unwrap();
    assert!(printed.contains("# --set train.epochs=3"), "{printed}");
    let table: toml::Table = printed.parse().unwrap();
    assert_eq!(table["train"]["epochs"].as_integer(), Some(3));
}

#[test]
fn a_broken_config_fails_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let minimal = "[model]\nsource = \"minilm\"\n[task]\nkind = \"sentiment\"\n";
    check(&write("ok.toml", minimal), &[]).unwrap();

    let unknown = write("unknown.toml", &format!("{minimal}[train]\nepochz = 2\n"));
    let err = format!("{:#}", check(&unknown, &[]).unwrap_err());
    assert!(err.contains("epochz"), "{err}");

    let bad = write("bad.toml", &format!("{minimal}[train]\nbatch_size = 0\n"));
    let err = format!("{:#}", check(&bad, &[]).unwrap_err());
    assert!(err.contains("batch_size"), "{err}");

    let err = format!(
        "{:#}",
        check(&write("ok2.toml", minimal), &["optimizer.lr=-1".into()]).unwrap_err()
    );
    assert!(err.contains("optimizer") && err.contains("lr"), "{err}");

    let err = format!(
        "{:#}",
        check(&dir.path().join("absent.toml"), &[]).unwrap_err()
    );
    assert!(err.contains("no such file"), "{err}");
}
