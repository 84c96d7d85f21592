//! The jobs behind the `splitlm` subcommands: train, evaluate, generate. Each prints a summary
//! table and appends one JSON record with the full setting to the configured records file.

use std::cell::RefCell;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use splitlm_nn::TaskHead;
use splitlm_nn::generate::Sampling;
use splitlm_party::ObservationLimits;
use splitlm_protocol::Traffic;
use splitlm_tasks::prompt::chatml_prompt;
use splitlm_tasks::train::{FitEvent, Learner, fit};

use crate::attack::{self, TruthRecorder};
use crate::config::RunConfig;
use crate::records::{self, Table, mib};
use crate::report::{self, Report};
use crate::session::{self, Model};
use crate::task::{Scores, TaskData};

/// What a job reports: its record (also appended to the records file) and its table.
pub struct Outcome {
    /// The JSON record.
    pub record: serde_json::Value,
    /// The human-readable summary.
    pub table: Table,
}

fn setting_record(config: &RunConfig, model: &Model, setting: &str) -> serde_json::Value {
    json!({
        "name": config.run_name(),
        "defense_setting": defense_label(&config.defenses),
        "model": model.name,
        "setting": setting,
        "partition": config.split.partition,
        "data_device": config.split.data_device,
        "model_device": config.split.model_device.as_deref().unwrap_or(&config.split.data_device),
        "wire_dtype": config.split.data_party,
        "task": config.task,
        "finetune": config.finetune,
        "optimizer": config.optimizer,
        "train": config.train,
        "seed": config.train.seed,
        "defenses": config.defenses,
        "attack": null,
    })
}

fn scores_json(scores: &Scores) -> serde_json::Value {
    let all: serde_json::Map<String, serde_json::Value> = scores
        .all
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({ "metric": scores.metric, "value": scores.value, "scores": all, "examples": scores.examples })
}

fn traffic_delta(before: Option<Traffic>, after: Option<Traffic>) -> (u64, u64) {
    match (before, after) {
        (Some(a), Some(b)) => (
            b.bytes_sent - a.bytes_sent,
            b.bytes_received - a.bytes_received,
        ),
        _ => (0, 0),
    }
}

fn progress_bar(len: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    ProgressBar::new(len as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}")
            .expect("a valid template"),
    )
}

/// A short label for a list of defenses ("none" without any).
pub fn defense_label(defenses: &[splitlm_defenses::DefenseConfig]) -> String {
    if defenses.is_empty() {
        return "none".into();
    }
    serde_json::to_string(defenses).unwrap_or_default()
}

/// An id tying a training record to the records of the attacks on it.
fn new_run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", now.as_millis(), std::process::id())
}

/// Fine-tunes the configured model on the configured task, evaluating before and after; then
/// mounts the configured attacks on what the model party observed.
pub fn train(config: &RunConfig, quiet: bool) -> Result<Outcome> {
    train_labelled(config, quiet, None)
}

/// [`train`], recording `defense_setting` (a grid setting's name) as the defenses' label.
pub fn train_labelled(
    config: &RunConfig,
    quiet: bool,
    defense_setting: Option<&str>,
) -> Result<Outcome> {
    let started = Instant::now();
    let run_id = new_run_id();
    let model = session::open_model(&config.model.source)?;
    let data = TaskData::load(&config.task, &model, config.train.seed)?;
    let (n_train, n_eval) = data.sizes();
    let total_steps = config.train.steps_for(n_train);
    let (mut run, setting) = session::build(config, &model, data.head(), total_steps)?;
    if !quiet {
        println!(
            "{} · {} · {} · {n_train} training / {n_eval} held-out examples · {total_steps} steps of {}",
            model.name,
            setting,
            config.task.name(),
            config.train.batch_size
        );
    }
    let before = data.evaluate(run.learner(), &config.generate)?;
    if !quiet {
        println!("before fine-tuning: {} {:.4}", before.metric, before.value);
    }

    let bar = progress_bar(total_steps, quiet);
    let last_scores: RefCell<Option<Scores>> = RefCell::new(None);
    // Evaluation traffic is counted apart from training traffic.
    let eval_bytes = RefCell::new((0u64, 0u64));
    let mut evaluate = |learner: &mut dyn Learner| -> Result<f64, splitlm_tasks::TaskError> {
        let before = learner.traffic();
        let scores = data
            .evaluate(learner, &config.generate)
            .map_err(|e| splitlm_tasks::TaskError::Config(format!("evaluation: {e:#}")))?;
        let (sent, received) = traffic_delta(before, learner.traffic());
        let mut total = eval_bytes.borrow_mut();
        total.0 += sent;
        total.1 += received;
        let value = scores.value;
        *last_scores.borrow_mut() = Some(scores);
        Ok(value)
    };
    let observed = if config.attacks.is_empty() {
        ObservationLimits {
            from_step: 0,
            steps: 0,
            max_samples: 0,
            weight_gradients: false,
            slices: false,
        }
    } else {
        let limits = attack::limits(config);
        run.split_mut()
            .context("attacks need a split run")?
            .model()
            .observe(limits);
        limits
    };
    let traffic_before = run.learner().traffic();
    let mut recent: Vec<f32> = Vec::new();
    let training_set = data.training_set();
    let mut recorder = TruthRecorder::new(run.learner(), observed);
    let report = fit(
        &mut recorder,
        training_set.as_ref(),
        &config.train,
        Some(&mut evaluate),
        |event| match event {
            FitEvent::Step { loss, .. } => {
                recent.push(loss);
                if recent.len() > 20 {
                    recent.remove(0);
                }
                let mean = recent.iter().sum::<f32>() / recent.len() as f32;
                bar.set_message(format!("loss {mean:.3}"));
                bar.inc(1);
            }
            FitEvent::Evaluated { step, metric } => {
                bar.println(format!("step {step}: {} {metric:.4}", before.metric));
            }
            FitEvent::Checkpointed { step, dir } => {
                bar.println(format!("step {step}: checkpoint {}", dir.display()));
            }
            FitEvent::Resumed { step } => {
                bar.set_position(step as u64);
                bar.println(format!("resumed after step {step}"));
            }
        },
    )?;
    bar.finish_and_clear();
    let truth = recorder.into_truth();
    let (sent, received) = traffic_delta(traffic_before, run.learner().traffic());
    let (eval_sent, eval_received) = eval_bytes.into_inner();
    let (sent, received) = (sent - eval_sent, received - eval_received);
    let after = match last_scores.into_inner() {
        Some(scores) => scores,
        None => data.evaluate(run.learner(), &config.generate)?,
    };
    let attacked = match run.split_mut() {
        Some(split) if !config.attacks.is_empty() => {
            if !quiet {
                println!("attacking what the model party observed…");
            }
            Some(attack::mount(config, &model, split, data.head(), &truth)?)
        }
        _ => None,
    };
    run.finish()?;
    let wall = started.elapsed().as_secs_f64();

    let tokens_per_second = report.tokens_this_run as f64 / report.seconds.max(1e-9);
    let mut record = setting_record(config, &model, &setting);
    if let Some(label) = defense_setting {
        record["defense_setting"] = json!(label);
    }
    record["run_id"] = json!(run_id);
    let fields = json!({
        "job": "train",
        "train_examples": n_train,
        "eval_examples": n_eval,
        "before": scores_json(&before),
        "after": scores_json(&after),
        "mp": after.value,
        "steps": report.steps,
        "epoch_losses": report.epoch_losses,
        "evaluations": report.evaluations,
        "best": report.best,
        "stopped_early": report.stopped_early,
        "resumed_from": report.resumed_from,
        "train_seconds": report.seconds,
        "eval_seconds": report.eval_seconds,
        "train_tokens": report.tokens_this_run,
        "train_tokens_per_second": tokens_per_second,
        "bytes_sent": sent,
        "bytes_received": received,
        "eval_bytes_sent": eval_sent,
        "eval_bytes_received": eval_received,
        "wall_seconds": wall,
    });
    merge(&mut record, fields);
    records::append(&config.output.records, &record)?;
    let mut attack_rows = Vec::new();
    if let Some((prior, outcomes)) = &attacked {
        for outcome in outcomes {
            let mut line = setting_record(config, &model, &setting);
            line["defense_setting"] = record["defense_setting"].clone();
            merge(&mut line, outcome.record(&run_id, prior, after.value));
            records::append(&config.output.records, &line)?;
            attack_rows.push(outcome.table_row());
        }
    }

    let mut table = Table::new(format!("splitlm train · {}", config.run_name()));
    table
        .row("model · setting", format!("{} · {setting}", model.name))
        .row("task", config.task.name())
        .row(
            "defenses",
            if config.defenses.is_empty() {
                "none".to_string()
            } else {
                serde_json::to_string(&config.defenses).unwrap_or_default()
            },
        )
        .row(
            format!("{} (before → after)", after.metric),
            format!("{:.4} → {:.4}", before.value, after.value),
        );
    for (name, value) in &after.all {
        table.row(format!("  {name}"), format!("{value:.4}"));
    }
    table
        .row(
            "trained",
            format!(
                "{} steps, {} examples, {} tokens{}",
                report.steps,
                report.examples,
                report.tokens,
                if report.stopped_early {
                    " (stopped early)"
                } else {
                    ""
                }
            ),
        )
        .row(
            "training time",
            format!("{:.1} s ({tokens_per_second:.0} tokens/s)", report.seconds),
        );
    if sent > 0 {
        table.row(
            "training traffic (data party)",
            format!(
                "{} sent, {} received ({} / {} per step)",
                mib(sent),
                mib(received),
                mib(sent / report.steps.max(1) as u64),
                mib(received / report.steps.max(1) as u64)
            ),
        );
    }
    for (reference, generated) in &after.samples {
        table.row("sample", format!("{generated:?} (reference {reference:?})"));
    }
    for (label, value) in attack_rows {
        table.row(label, value);
    }
    table
        .row("wall time", format!("{wall:.1} s"))
        .row("record", config.output.records.display().to_string());
    Ok(Outcome { record, table })
}

/// What `splitlm grid` produced.
pub struct GridOutcome {
    /// The experiment's report over every setting.
    pub report: Report,
    /// Where the MP–AP plot was written.
    pub plot: std::path::PathBuf,
}

/// Trains and attacks `config` once per `[[grid.settings]]` entry (its defenses replacing the
/// top-level ones), all records in the configured file, then writes the report's plot.
pub fn grid(config: &RunConfig, quiet: bool) -> Result<GridOutcome> {
    let grid = config
        .grid
        .as_ref()
        .context("the configuration has no [grid] (add [[grid.settings]] tables)")?;
    for (i, setting) in grid.settings.iter().enumerate() {
        if !quiet {
            println!(
                "\n── grid setting {}/{}: {} ──",
                i + 1,
                grid.settings.len(),
                setting.name
            );
        }
        let mut one = config.clone();
        one.defenses = setting.defenses.clone();
        one.grid = None;
        let outcome = train_labelled(&one, quiet, Some(&setting.name))
            .with_context(|| format!("grid setting \"{}\"", setting.name))?;
        if !quiet {
            print!("{}", outcome.table.render());
        }
    }
    let records = records::read(&config.output.records)?;
    let report = report::build(&records, Some(&config.run_name()))?;
    let plot = grid
        .plot
        .clone()
        .unwrap_or_else(|| config.output.records.with_extension("svg"));
    report.plot(&plot)?;
    Ok(GridOutcome { report, plot })
}

/// Scores the configured model (optionally the state saved in a checkpoint directory) on the
/// task's held-out set.
pub fn evaluate(config: &RunConfig, checkpoint: Option<&Path>) -> Result<Outcome> {
    let started = Instant::now();
    let model = session::open_model(&config.model.source)?;
    let data = TaskData::load(&config.task, &model, config.train.seed)?;
    let (mut run, setting) = session::build(config, &model, data.head(), 1)?;
    if let Some(dir) = checkpoint {
        let dir = resolve_checkpoint(dir)?;
        run.learner()
            .restore_state(&dir)
            .with_context(|| format!("restoring {}", dir.display()))?;
    }
    let traffic_before = run.learner().traffic();
    let scores = data.evaluate(run.learner(), &config.generate)?;
    let (sent, received) = traffic_delta(traffic_before, run.learner().traffic());
    run.finish()?;
    let mut record = setting_record(config, &model, &setting);
    merge(
        &mut record,
        json!({
            "job": "eval",
            "checkpoint": checkpoint,
            "scores": scores_json(&scores),
            "mp": scores.value,
            "bytes_sent": sent,
            "bytes_received": received,
            "wall_seconds": started.elapsed().as_secs_f64(),
        }),
    );
    records::append(&config.output.records, &record)?;
    let mut table = Table::new(format!("splitlm eval · {}", config.run_name()));
    table.row("model · setting", format!("{} · {setting}", model.name));
    for (name, value) in &scores.all {
        table.row(*name, format!("{value:.4}"));
    }
    table.row("examples", scores.examples.to_string());
    for (reference, generated) in &scores.samples {
        table.row("sample", format!("{generated:?} (reference {reference:?})"));
    }
    Ok(Outcome { record, table })
}

/// A checkpoint directory, or the latest checkpoint under a checkpoint root.
fn resolve_checkpoint(dir: &Path) -> Result<std::path::PathBuf> {
    match splitlm_tasks::checkpoint::latest(dir)? {
        Some((latest, _)) => Ok(latest),
        None if dir.is_dir() => Ok(dir.to_path_buf()),
        None => anyhow::bail!("{}: no such checkpoint", dir.display()),
    }
}

/// Generates answers to `prompts` through the configured (split) model; with `compare`, also
/// through the whole model, and checks the tokens agree.
pub fn generate(
    config: &RunConfig,
    prompts: &[String],
    raw: bool,
    compare: bool,
    checkpoint: Option<&Path>,
) -> Result<Outcome> {
    anyhow::ensure!(!prompts.is_empty(), "give at least one prompt");
    let model = session::open_model(&config.model.source)?;
    let tokenizer = model.checkpoint.tokenizer()?;
    let chat = !raw && tokenizer.token_to_id("<|im_start|>").is_some();
    let mut sampling: Sampling = config.generate.clone();
    sampling.stop.extend(
        ["<|im_end|>", "<|endoftext|>"]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t)),
    );
    let (mut run, setting) = session::build(config, &model, TaskHead::CausalLm, 1)?;
    if let Some(dir) = checkpoint {
        run.learner().restore_state(&resolve_checkpoint(dir)?)?;
    }
    let mut whole = if compare {
        let mut whole_config = config.clone();
        whole_config.split.partition = None;
        let (mut whole, _) = session::build(&whole_config, &model, TaskHead::CausalLm, 1)?;
        if let Some(dir) = checkpoint.filter(|_| config.split.partition.is_none()) {
            whole.learner().restore_state(&resolve_checkpoint(dir)?)?;
        }
        Some(whole)
    } else {
        None
    };
    let mut table = Table::new(format!("splitlm generate · {} · {setting}", model.name));
    let mut answers = Vec::new();
    let (mut decode_tokens, mut decode_seconds) = (0usize, 0f64);
    let mut step_bytes = Vec::new();
    let traffic_before = run.learner().traffic();
    for prompt in prompts {
        let text = if chat {
            chatml_prompt(None, prompt)
        } else {
            prompt.clone()
        };
        let ids = tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?
            .get_ids()
            .to_vec();
        let split = run.learner().generate(&ids, &sampling)?;
        step_bytes.extend(split.step_bytes.iter().copied());
        let generation = split.generation;
        let answer = tokenizer
            .decode(&generation.tokens, true)
            .map_err(|e| anyhow::anyhow!("decoding: {e}"))?;
        decode_tokens += generation.tokens.len().saturating_sub(1);
        decode_seconds += generation.decode.as_secs_f64();
        let same = match &mut whole {
            Some(whole) => Some(
                whole.learner().generate(&ids, &sampling)?.generation.tokens == generation.tokens,
            ),
            None => None,
        };
        table.row(format!("{prompt:?}"), answer.trim().to_string());
        if same == Some(false) {
            table.row("", "differs from the whole model's answer");
        }
        answers.push(json!({
            "prompt": prompt, "answer": answer, "tokens": generation.tokens.len(),
            "prefill_seconds": generation.prefill.as_secs_f64(),
            "decode_seconds": generation.decode.as_secs_f64(),
            "same_as_unsplit": same,
        }));
    }
    let (sent, received) = traffic_delta(traffic_before, run.learner().traffic());
    run.finish()?;
    if let Some(whole) = whole {
        whole.finish()?;
    }
    let rate = decode_tokens as f64 / decode_seconds.max(1e-9);
    table.row("decoding", format!("{rate:.1} tokens/s after the prompt"));
    let per_token = (!step_bytes.is_empty()).then(|| {
        let n = step_bytes.len() as u64;
        let sent: u64 = step_bytes.iter().map(|b| b.sent).sum();
        let received: u64 = step_bytes.iter().map(|b| b.received).sum();
        (sent / n, received / n)
    });
    if let Some((sent, received)) = per_token {
        table.row(
            "bytes per generated token",
            format!("{sent} sent, {received} received (data party, after the prompt)"),
        );
    }
    if sent > 0 {
        table.row(
            "traffic (data party)",
            format!("{} sent, {} received", mib(sent), mib(received)),
        );
    }
    let mut record = setting_record(config, &model, &setting);
    merge(
        &mut record,
        json!({
            "job": "generate", "sampling": sampling, "answers": answers,
            "decode_tokens_per_second": rate, "bytes_sent": sent, "bytes_received": received,
            "bytes_per_generated_token": per_token,
        }),
    );
    records::append(&config.output.records, &record)?;
    Ok(Outcome { record, table })
}

fn merge(record: &mut serde_json::Value, fields: serde_json::Value) {
    if let (Some(record), serde_json::Value::Object(fields)) = (record.as_object_mut(), fields) {
        record.extend(fields);
    }
}
