//! `cargo xtask bench`'s side-by-side section: each workload run by splitlm and by the
//! PyTorch peer (`xtask/peers/peer.py`: torch + transformers + peft) on the same shapes, with
//! the same number of threads, alternating, `rounds` times; the best round of each is compared.
//! Every comparison is printed and appended as one JSON line to `side_by_side.jsonl`.
//!
//! Both sides end a workload with one JSON line (`workload`, `impl`, `value`, `unit`,
//! `peak_rss_mib`, `threads`, extras); each run is a process of its own, so a peak memory
//! reading belongs to that workload alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// How to run the side-by-side section.
pub struct Settings {
    /// The Python with torch, transformers and peft; `None` skips the peer.
    pub peer_python: Option<PathBuf>,
    /// Threads for both sides.
    pub threads: usize,
    /// Rounds of (splitlm, peer) per workload.
    pub rounds: usize,
    /// Timed steps per training-step workload (and generations per decoding one).
    pub steps: usize,
    /// splitlm's device.
    pub device: String,
    /// Where splitlm's built examples and binary are (`target/debug` or `target/release`).
    pub binaries: PathBuf,
    /// Workloads to run (all when empty).
    pub only: Vec<String>,
}

/// One workload: how splitlm runs it, and whether higher values are better.
struct Workload {
    name: &'static str,
    ours: Ours,
    unit: &'static str,
}

enum Ours {
    /// An example of the root package, with arguments (`--workload NAME` is added).
    Example(&'static str, Vec<&'static str>),
    /// The main job through the `splitlm` binary; the line is made from its record.
    MainJob,
}

fn workloads() -> Vec<Workload> {
    let step = |model: &'static str, finetune: &'static str, batch: &'static str, seq| {
        let args = vec![
            "--model",
            model,
            "--finetune",
            finetune,
            "--batch",
            batch,
            "--seq",
            seq,
            "--cuts",
            "hbt",
        ];
        Ours::Example("split_step", args)
    };
    vec![
        Workload {
            name: "minilm_step_16x64_full",
            ours: step("minilm", "full", "16", "64"),
            unit: "ms/step",
        },
        Workload {
            name: "minilm_step_16x64_lora",
            ours: step("minilm", "lora", "16", "64"),
            unit: "ms/step",
        },
        Workload {
            name: "minilm_step_32x128_full",
            ours: step("minilm", "full", "32", "128"),
            unit: "ms/step",
        },
        Workload {
            name: "minilm_step_32x128_lora",
            ours: step("minilm", "lora", "32", "128"),
            unit: "ms/step",
        },
        Workload {
            name: "smollm2_step_8x128_lora",
            ours: step("smollm2", "lora", "8", "128"),
            unit: "ms/step",
        },
        Workload {
            name: "smollm2_decode_32+64",
            ours: Ours::Example(
                "decode",
                vec!["--model", "smollm2", "--prompt", "32", "--new", "64"],
            ),
            unit: "tokens/s",
        },
        Workload {
            name: "main_job",
            ours: Ours::MainJob,
            unit: "s",
        },
    ]
}

/// Whether a larger value of `unit` is better (rates, scores) or worse (times).
fn higher_is_better(unit: &str) -> bool {
    !matches!(unit, "ms/step" | "s")
}

/// How many times faster (or better) splitlm is: > 1 means ahead of the peer.
fn ratio(unit: &str, ours: f64, peer: f64) -> f64 {
    if higher_is_better(unit) {
        ours / peer
    } else {
        peer / ours
    }
}

/// Runs the section; returns the comparison lines it appended to `out`.
pub fn run(settings: &Settings, out: &Path) -> Result<Vec<Value>> {
    let selected: Vec<Workload> = workloads()
        .into_iter()
        .filter(|w| settings.only.is_empty() || settings.only.iter().any(|o| o == w.name))
        .collect();
    if let Some(unknown) = settings
        .only
        .iter()
        .find(|o| !workloads().iter().any(|w| w.name == o.as_str()))
    {
        let names: Vec<_> = workloads().iter().map(|w| w.name).collect();
        bail!(
            "unknown workload `{unknown}`: expected one of {}",
            names.join(", ")
        );
    }
    if let Some(python) = &settings.peer_python {
        check_peer(python)?;
    } else {
        println!(
            "PyTorch peer: skipped (give --peer-python PATH, a Python with torch, transformers and \
             peft; see xtask/peers/README.md); splitlm's side runs alone"
        );
    }
    let mut lines = Vec::new();
    for workload in &selected {
        let mut ours_runs = Vec::new();
        let mut peer_runs = Vec::new();
        for round in 0..settings.rounds {
            println!(
                "side by side: {} round {}/{}",
                workload.name,
                round + 1,
                settings.rounds
            );
            ours_runs.push(run_ours(settings, workload)?);
            if let Some(python) = &settings.peer_python {
                peer_runs.push(run_peer(settings, python, workload.name)?);
            }
        }
        let ours = best(&ours_runs, workload.unit)?;
        let peer = if peer_runs.is_empty() {
            None
        } else {
            Some(best(&peer_runs, workload.unit)?)
        };
        for line in compare(settings, workload, &ours, peer.as_ref()) {
            append(out, &line)?;
            lines.push(line);
        }
    }
    print_table(&lines);
    Ok(lines)
}

fn check_peer(python: &Path) -> Result<()> {
    let status = Command::new(python)
        .args(["-c", "import torch, transformers, peft, gguf"])
        .status()
        .with_context(|| format!("running the peer Python {}", python.display()))?;
    if !status.success() {
        bail!(
            "{} cannot import torch, transformers, peft and gguf: install xtask/peers/requirements.txt \
             into it (see xtask/peers/README.md)",
            python.display()
        );
    }
    Ok(())
}

fn run_ours(settings: &Settings, workload: &Workload) -> Result<Value> {
    match &workload.ours {
        Ours::Example(example, args) => {
            let mut command = Command::new(settings.binaries.join("examples").join(example));
            command
                .args(["--device", &settings.device, "--workload", workload.name])
                .args(args);
            let repeats = settings.steps.to_string();
            command.args([
                if *example == "decode" {
                    "--repeats"
                } else {
                    "--steps"
                },
                &repeats,
            ]);
            last_json_line(threads(&mut command, settings.threads))
        }
        Ours::MainJob => main_job(settings),
    }
}

/// The main job as the README runs it, its numbers read from the record it appends.
fn main_job(settings: &Settings) -> Result<Value> {
    let records =
        std::env::temp_dir().join(format!("splitlm-main-job-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&records);
    let mut command = Command::new(settings.binaries.join("splitlm"));
    command
        .current_dir(crate::bench::workspace_root())
        .args(["train", "configs/sentiment.toml", "--quiet"])
        .arg("--set")
        .arg(format!("output.records={}", records.display()))
        .arg("--set")
        .arg(format!("split.data_device={}", settings.device));
    let status = threads(&mut command, settings.threads)
        .status()
        .context("running splitlm train")?;
    if !status.success() {
        bail!("the main job failed ({status})");
    }
    let text = std::fs::read_to_string(&records)
        .with_context(|| format!("reading {}", records.display()))?;
    let _ = std::fs::remove_file(&records);
    let record: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r.get("train_seconds").is_some())
        .context("the main job wrote no training record")?;
    let after = &record["after"]["scores"];
    Ok(json!({
        "workload": "main_job", "impl": "splitlm",
        "value": record["train_seconds"], "unit": "s",
        "peak_rss_mib": record["peak_rss_mib"], "threads": settings.threads,
        "accuracy": after["accuracy"], "f1": after["f1"],
        "eval_s": record["eval_seconds"], "wall_s": record["wall_seconds"],
        "device": settings.device,
    }))
}

/// Caps splitlm's threads: rayon's pool (both CPU backends) and matrixmultiply's (ndarray).
fn threads(command: &mut Command, threads: usize) -> &mut Command {
    command
        .env("RAYON_NUM_THREADS", threads.to_string())
        .env("MATMUL_NUM_THREADS", threads.to_string())
}

fn run_peer(settings: &Settings, python: &Path, workload: &str) -> Result<Value> {
    let mut command = Command::new(python);
    command.current_dir(crate::bench::workspace_root());
    command.arg("xtask/peers/peer.py").args([
        "--workload",
        workload,
        "--threads",
        &settings.threads.to_string(),
        "--steps",
        &settings.steps.to_string(),
    ]);
    last_json_line(&mut command)
}

/// Runs `command` (stderr shown) and parses the last line of its stdout as JSON.
fn last_json_line(command: &mut Command) -> Result<Value> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("{command:?} failed ({}):\n{stdout}", output.status);
    }
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("{command:?} printed nothing"))?;
    serde_json::from_str(last).with_context(|| format!("{command:?} ended with {last:?}, not JSON"))
}

/// The round with the best value (lowest time, highest rate).
fn best(runs: &[Value], unit: &str) -> Result<Value> {
    let value = |r: &Value| r["value"].as_f64();
    let mut scored: Vec<(f64, &Value)> = runs
        .iter()
        .map(|r| {
            value(r)
                .map(|v| (v, r))
                .context("a run without a numeric `value`")
        })
        .collect::<Result<_>>()?;
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pick = if higher_is_better(unit) {
        scored.last()
    } else {
        scored.first()
    };
    Ok(pick.context("no runs")?.1.clone())
}

/// The comparison lines of one workload: the whole model, then splitlm's split (against the
/// peer's whole model), then the main job's accuracy.
fn compare(
    settings: &Settings,
    workload: &Workload,
    ours: &Value,
    peer: Option<&Value>,
) -> Vec<Value> {
    let line = |name: String, unit: &str, ours_value: f64, peer_value: Option<f64>| {
        let mut line = json!({
            "workload": name, "unit": unit, "ours": ours_value, "peer": peer_value,
            "ratio": peer_value.map(|p| ratio(unit, ours_value, p)),
            "threads": settings.threads, "rounds": settings.rounds, "device": settings.device,
            "ours_peak_rss_mib": ours["peak_rss_mib"],
            "peer_peak_rss_mib": peer.map_or(Value::Null, |p| p["peak_rss_mib"].clone()),
            "peer_versions": peer.map_or(Value::Null, |p| p["versions"].clone()),
        });
        if let (Some(o), Some(p)) = (
            ours["peak_rss_mib"].as_f64(),
            peer.and_then(|p| p["peak_rss_mib"].as_f64()),
        ) {
            line["memory_ratio"] = json!(o / p);
        }
        line
    };
    let value = |v: &Value| v["value"].as_f64().unwrap_or(f64::NAN);
    let peer_value = peer.map(value);
    let mut lines = vec![line(
        workload.name.to_string(),
        workload.unit,
        value(ours),
        peer_value,
    )];
    let split = &ours["split"];
    let split_value = split["ms"].as_f64().or(split["tokens_per_s"].as_f64());
    if let Some(split_value) = split_value {
        let mut split_line = line(
            format!(
                "{} split {}",
                workload.name,
                split["partition"].as_str().unwrap_or("")
            ),
            workload.unit,
            split_value,
            peer_value,
        );
        split_line["split_overhead_percent"] = split["overhead_percent"].clone();
        split_line["bytes_per_step"] = json!({
            "sent": split.get("bytes_sent").or(split.get("bytes_sent_per_step")),
            "received": split.get("bytes_received").or(split.get("bytes_received_per_step")),
        });
        lines.push(split_line);
    }
    if let Some(accuracy) = ours["accuracy"].as_f64() {
        let peer_accuracy = peer.and_then(|p| p["accuracy"].as_f64());
        lines.push(line(
            format!("{} accuracy", workload.name),
            "accuracy",
            accuracy,
            peer_accuracy,
        ));
    }
    lines
}

fn append(path: &Path, line: &Value) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{line}").with_context(|| format!("appending to {}", path.display()))
}

fn print_table(lines: &[Value]) {
    println!(
        "\n{:<40} {:>11} {:>11} {:<9} {:>6} {:>16}",
        "workload", "splitlm", "PyTorch", "unit", "ratio", "peak MiB (ours/peer)"
    );
    let number = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    for line in lines {
        let unit = line["unit"].as_str().unwrap_or("");
        let value = |v: &Value| match unit {
            "accuracy" => v.as_f64().map_or("-".into(), |x| format!("{x:.3}")),
            _ => number(v),
        };
        println!(
            "{:<40} {:>11} {:>11} {:<9} {:>6} {:>8}/{}",
            line["workload"].as_str().unwrap_or(""),
            value(&line["ours"]),
            value(&line["peer"]),
            unit,
            line["ratio"]
                .as_f64()
                .map_or("-".into(), |r| format!("{r:.2}")),
            number(&line["ours_peak_rss_mib"]),
            number(&line["peer_peak_rss_mib"]),
        );
    }
    println!("ratio: how many times faster (or better) splitlm is than the peer; > 1 = ahead");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_above_one_means_splitlm_is_ahead() {
        assert_eq!(ratio("ms/step", 500.0, 1000.0), 2.0);
        assert_eq!(ratio("tokens/s", 30.0, 15.0), 2.0);
        assert_eq!(ratio("s", 200.0, 100.0), 0.5);
        assert_eq!(ratio("accuracy", 0.8, 0.8), 1.0);
    }

    #[test]
    fn the_best_round_is_the_fastest() {
        let runs = [
            json!({"value": 30.0}),
            json!({"value": 20.0}),
            json!({"value": 25.0}),
        ];
        assert_eq!(best(&runs, "ms/step").unwrap()["value"], 20.0);
        assert_eq!(best(&runs, "tokens/s").unwrap()["value"], 30.0);
        assert!(best(&[json!({"value": "fast"})], "s").is_err());
    }

    #[test]
    fn a_split_and_an_accuracy_get_lines_of_their_own() {
        let settings = Settings {
            peer_python: None,
            threads: 2,
            rounds: 1,
            steps: 1,
            device: "cpu".into(),
            binaries: PathBuf::new(),
            only: vec![],
        };
        let workload = Workload {
            name: "w",
            ours: Ours::MainJob,
            unit: "ms/step",
        };
        let ours = json!({"value": 100.0, "peak_rss_mib": 300.0,
            "split": {"partition": "HBT(2,2)", "ms": 104.0, "overhead_percent": 4.0}});
        let peer = json!({"value": 120.0, "peak_rss_mib": 600.0});
        let lines = compare(&settings, &workload, &ours, Some(&peer));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["ratio"], 1.2);
        assert_eq!(lines[0]["memory_ratio"], 0.5);
        assert_eq!(lines[1]["workload"], "w split HBT(2,2)");
        assert!((lines[1]["ratio"].as_f64().unwrap() - 120.0 / 104.0).abs() < 1e-12);
        let alone = compare(&settings, &workload, &json!({"value": 1.0}), None);
        assert_eq!(alone[0]["ratio"], Value::Null);
    }
}
