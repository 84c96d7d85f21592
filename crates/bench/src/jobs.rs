//! The jobs of an experiment: train (then attack), evaluate, generate, and a grid of defense
//! settings. Each returns its typed record (also appended to the configured records file) and
//! a summary table; what happens meanwhile is told to a [`Progress`].

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use splitlm_nn::TaskHead;
use splitlm_nn::generate::Sampling;
use splitlm_party::ObservationLimits;
use splitlm_protocol::Traffic;
use splitlm_tasks::prompt::{Template, chatml_prompt, stop_ids};
use splitlm_tasks::{TaskData, TaskError, TaskScores};
use splitlm_train::session::{self, Run};
use splitlm_train::{DefenseData, FitEvent, FitReport, Learner, TokenizerCodec, fit};

use crate::attack_stage;
use crate::config::RunConfig;
use crate::model::OpenedModel;
use crate::records::{
    self, AnswerRecord, EvalRecord, GenerateRecord, Record, ScoresRecord, Setting, TrainRecord,
};
use crate::report::{self, Report};
use crate::summary::{Table, mib};
use crate::truth::TruthRecorder;

/// What a job tells whoever runs it while it goes (the command line draws a progress bar).
pub trait Progress {
    /// A line worth showing.
    fn note(&mut self, _line: &str) {}
    /// Training of `total` steps starts; evaluations report `metric`.
    fn training_started(&mut self, _total: usize, _metric: &str) {}
    /// Something happened in training.
    fn training(&mut self, _event: &FitEvent) {}
    /// Training ended.
    fn training_ended(&mut self) {}
}

/// Tells nobody anything.
pub struct Quiet;

impl Progress for Quiet {}

/// What a job produced: its record (also appended to the records file) and its summary.
pub struct Outcome<R> {
    /// The record.
    pub record: R,
    /// The human-readable summary.
    pub table: Table,
}

/// The setting fields every record of `config`'s runs carries.
fn setting(config: &RunConfig, model: &OpenedModel, cut: &str) -> Setting {
    Setting {
        name: config.run_name(),
        defense_setting: defense_label(&config.defenses),
        model: model.name.clone(),
        setting: cut.to_string(),
        partition: config.split.partition,
        model_party: config.network.connect.clone(),
        data_device: config.split.data_device.clone(),
        model_device: config
            .split
            .model_device
            .clone()
            .unwrap_or_else(|| config.split.data_device.clone()),
        data_party: Some(config.split.data_party.clone()),
        task: Some(config.task.clone()),
        finetune: Some(config.finetune.clone()),
        optimizer: Some(config.optimizer.clone()),
        train: Some(config.train.clone()),
        seed: config.train.seed,
        defenses: config.defenses.clone(),
    }
}

/// The bytes moved between two readings of a learner's traffic (0 for unsplit learners).
fn traffic_delta(before: Option<Traffic>, after: Option<Traffic>) -> (u64, u64) {
    match (before, after) {
        (Some(a), Some(b)) => {
            let moved = b.since(&a);
            (moved.bytes_sent, moved.bytes_received)
        }
        _ => (0, 0),
    }
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

/// The run's learner: both parties here, or the data party connected to the model party at
/// `network.connect`.
fn build(
    config: &RunConfig,
    model: &OpenedModel,
    data: Option<&TaskData>,
    task: TaskHead,
    total_steps: usize,
) -> Result<(Run, String)> {
    let defense_data = defense_data(config, data)?;
    let mut setup = config.setup();
    setup.defense_data = defense_data.as_ref();
    if config.network.connect.is_some() {
        return crate::remote::build_remote(config, &setup, model, task, total_steps);
    }
    Ok(session::build(
        &setup,
        &model.checkpoint,
        task,
        total_steps,
    )?)
}

/// The tokenizer and training inputs, when the configured defenses need them.
fn defense_data(config: &RunConfig, data: Option<&TaskData>) -> Result<Option<DefenseData>> {
    let needs = splitlm_defenses::DefenseConfig::needs_of(&config.defenses);
    if !(needs.text || needs.training_inputs) {
        return Ok(None);
    }
    let data = data.context(
        "the configured defenses need the task's tokenizer and training inputs, which this \
         command does not load",
    )?;
    let (tokenizer, pad_id, side) = data.text_encoding();
    Ok(Some(DefenseData {
        text: Arc::new(TokenizerCodec::new(tokenizer.clone(), pad_id, side)),
        training_inputs: Arc::new(if needs.training_inputs {
            data.training_inputs(&config.split.data_device()?.probe()?)?
        } else {
            Vec::new()
        }),
    }))
}

/// Fine-tunes the configured model on the configured task, evaluating before and after; then
/// mounts the configured attacks on what the model party observed.
pub fn train(config: &RunConfig, progress: &mut dyn Progress) -> Result<Outcome<TrainRecord>> {
    train_labelled(config, progress, None)
}

/// [`train`], recording `defense_setting` (a grid setting's name) as the defenses' label.
pub fn train_labelled(
    config: &RunConfig,
    progress: &mut dyn Progress,
    defense_setting: Option<&str>,
) -> Result<Outcome<TrainRecord>> {
    let started = Instant::now();
    let run_id = new_run_id();
    let model = OpenedModel::open(&config.model.source)?;
    let data = TaskData::load(&config.task, &model.tokenizer()?, config.train.seed)?;
    let (n_train, n_eval) = data.sizes();
    let total_steps = config.train.steps_for(n_train);
    let (mut run, cut) = build(config, &model, Some(&data), data.head(), total_steps)?;
    progress.note(&format!(
        "{} · {} · {} · {n_train} training / {n_eval} held-out examples · {total_steps} steps of {}",
        model.name,
        cut,
        config.task.name(),
        config.train.batch_size
    ));
    let before = data.evaluate(run.predictor(), &config.generate)?;
    progress.note(&format!(
        "before fine-tuning: {} {:.4}",
        before.metric, before.value
    ));

    let last_scores: RefCell<Option<TaskScores>> = RefCell::new(None);
    // Evaluation traffic is counted apart from training traffic.
    let eval_bytes = RefCell::new((0u64, 0u64));
    let mut evaluate = |learner: &mut dyn Learner| -> Result<f64, TaskError> {
        let before = learner.traffic();
        let scores = data.evaluate(learner, &config.generate)?;
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
            steps: 0,
            max_samples: 0,
            ..ObservationLimits::default()
        }
    } else {
        let limits = attack_stage::limits(config);
        attack_stage::model_party(run.split_mut().context("attacks need a split run")?)?
            .observe(limits);
        limits
    };
    let traffic_before = run.learner().traffic();
    let training_set = data.training_set();
    let mut recorder = TruthRecorder::new(run.learner(), observed);
    progress.training_started(total_steps, before.metric);
    let report = fit(
        &mut recorder,
        training_set.as_ref(),
        &config.train,
        Some(&mut evaluate),
        |event| progress.training(&event),
    )?;
    progress.training_ended();
    let recorded = recorder.into_recorded();
    let (sent, received) = traffic_delta(traffic_before, run.learner().traffic());
    let (eval_sent, eval_received) = eval_bytes.into_inner();
    let (sent, received) = (sent - eval_sent, received - eval_received);
    let after = match last_scores.into_inner() {
        Some(scores) => scores,
        None => data.evaluate(run.predictor(), &config.generate)?,
    };
    let attacked = match run.split_mut() {
        Some(split) if !config.attacks.is_empty() => {
            progress.note("attacking what the model party observed…");
            Some(attack_stage::mount(config, &model, split, &data, recorded)?)
        }
        _ => None,
    };
    run.finish()?;
    let wall = started.elapsed().as_secs_f64();

    let tokens_per_second = report.tokens_this_run as f64 / report.seconds.max(1e-9);
    let mut run_setting = setting(config, &model, &cut);
    if let Some(label) = defense_setting {
        run_setting.defense_setting = label.to_string();
    }
    let record = TrainRecord {
        setting: run_setting.clone(),
        run_id: run_id.clone(),
        train_examples: n_train,
        eval_examples: n_eval,
        before: ScoresRecord::from(&before),
        after: ScoresRecord::from(&after),
        mp: after.value,
        steps: report.steps,
        epoch_losses: report.epoch_losses.clone(),
        evaluations: report.evaluations.clone(),
        best: report.best,
        stopped_early: report.stopped_early,
        resumed_from: report.resumed_from,
        train_seconds: report.seconds,
        eval_seconds: report.eval_seconds,
        train_tokens: report.tokens_this_run,
        train_tokens_per_second: tokens_per_second,
        bytes_sent: sent,
        bytes_received: received,
        eval_bytes_sent: eval_sent,
        eval_bytes_received: eval_received,
        wall_seconds: wall,
        peak_rss_mib: crate::resources::peak_rss_mib(),
    };
    records::append(&config.output.records, &Record::Train(record.clone()))?;
    let mut attack_rows = Vec::new();
    if let Some((prior, outcomes)) = &attacked {
        for outcome in outcomes {
            let line = outcome.record(run_setting.clone(), &run_id, prior, after.value);
            records::append(&config.output.records, &Record::Attack(line))?;
            attack_rows.push(outcome.table_row());
        }
    }

    let table = train_summary(config, &record, &report, &after, attack_rows);
    Ok(Outcome { record, table })
}

/// The summary table of a training run.
fn train_summary(
    config: &RunConfig,
    record: &TrainRecord,
    report: &FitReport,
    after: &TaskScores,
    attack_rows: Vec<(String, String)>,
) -> Table {
    let mut table = Table::new(format!("splitlm train · {}", config.run_name()));
    table
        .row(
            "model · setting",
            format!("{} · {}", record.setting.model, record.setting.setting),
        )
        .row("task", config.task.name())
        .row("defenses", defense_label(&config.defenses))
        .row(
            format!("{} (before → after)", after.metric),
            format!("{:.4} → {:.4}", record.before.value, after.value),
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
            format!(
                "{:.1} s ({:.0} tokens/s)",
                report.seconds, record.train_tokens_per_second
            ),
        );
    let (sent, received) = (record.bytes_sent, record.bytes_received);
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
        .row("wall time", format!("{:.1} s", record.wall_seconds))
        .row("record", config.output.records.display().to_string());
    table
}

/// What `splitlm grid` produced.
pub struct GridOutcome {
    /// The experiment's report over every setting.
    pub report: Report,
    /// Where the MP–AP plot was written.
    pub plot: PathBuf,
}

/// Trains and attacks `config` once per `[[grid.settings]]` entry (its defenses replacing the
/// top-level ones), all records in the configured file, then writes the report's plot.
pub fn grid(config: &RunConfig, progress: &mut dyn Progress) -> Result<GridOutcome> {
    let grid = config
        .grid
        .as_ref()
        .context("the configuration has no [grid] (add [[grid.settings]] tables)")?;
    for (i, setting) in grid.settings.iter().enumerate() {
        progress.note(&format!(
            "\n── grid setting {}/{}: {} ──",
            i + 1,
            grid.settings.len(),
            setting.name
        ));
        let mut one = config.clone();
        one.defenses = setting.defenses.clone();
        one.grid = None;
        let outcome = train_labelled(&one, progress, Some(&setting.name))
            .with_context(|| format!("grid setting \"{}\"", setting.name))?;
        progress.note(&outcome.table.render());
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
pub fn evaluate(config: &RunConfig, checkpoint: Option<&Path>) -> Result<Outcome<EvalRecord>> {
    let started = Instant::now();
    let model = OpenedModel::open(&config.model.source)?;
    let data = TaskData::load(&config.task, &model.tokenizer()?, config.train.seed)?;
    let (mut run, cut) = build(config, &model, Some(&data), data.head(), 1)?;
    if let Some(dir) = checkpoint {
        let dir = resolve_checkpoint(dir)?;
        run.learner()
            .restore_state(&dir)
            .with_context(|| format!("restoring {}", dir.display()))?;
    }
    let traffic_before = run.learner().traffic();
    let scores = data.evaluate(run.predictor(), &config.generate)?;
    let (sent, received) = traffic_delta(traffic_before, run.learner().traffic());
    run.finish()?;
    let record = EvalRecord {
        setting: setting(config, &model, &cut),
        checkpoint: checkpoint.map(Path::to_path_buf),
        scores: ScoresRecord::from(&scores),
        mp: scores.value,
        bytes_sent: sent,
        bytes_received: received,
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    records::append(&config.output.records, &Record::Eval(record.clone()))?;
    let mut table = Table::new(format!("splitlm eval · {}", config.run_name()));
    table.row("model · setting", format!("{} · {cut}", model.name));
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
fn resolve_checkpoint(dir: &Path) -> Result<PathBuf> {
    match splitlm_train::checkpoint::latest(dir)? {
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
) -> Result<Outcome<GenerateRecord>> {
    anyhow::ensure!(!prompts.is_empty(), "give at least one prompt");
    let model = OpenedModel::open(&config.model.source)?;
    let tokenizer = model.tokenizer()?;
    let chat = !raw && Template::of(&tokenizer) == Template::ChatMl;
    let mut sampling: Sampling = config.generate.clone();
    sampling.stop.extend(stop_ids(&tokenizer));
    let (mut run, cut) = build(config, &model, None, TaskHead::CausalLm, 1)?;
    if let Some(dir) = checkpoint {
        run.learner().restore_state(&resolve_checkpoint(dir)?)?;
    }
    let mut whole = if compare {
        let mut whole_config = config.clone();
        whole_config.split.partition = None;
        let (mut whole, _) = build(&whole_config, &model, None, TaskHead::CausalLm, 1)?;
        if let Some(dir) = checkpoint.filter(|_| config.split.partition.is_none()) {
            whole.learner().restore_state(&resolve_checkpoint(dir)?)?;
        }
        Some(whole)
    } else {
        None
    };
    let mut table = Table::new(format!("splitlm generate · {} · {cut}", model.name));
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
        let split = run.learner().generate_traced(&ids, &sampling)?;
        step_bytes.extend(split.step_bytes.iter().copied());
        let generation = split.generation;
        let answer = tokenizer
            .decode(&generation.tokens, true)
            .map_err(|e| anyhow::anyhow!("decoding: {e}"))?;
        decode_tokens += generation.tokens.len().saturating_sub(1);
        decode_seconds += generation.decode.as_secs_f64();
        let same = match &mut whole {
            Some(whole) => Some(
                whole
                    .learner()
                    .generate_traced(&ids, &sampling)?
                    .generation
                    .tokens
                    == generation.tokens,
            ),
            None => None,
        };
        table.row(format!("{prompt:?}"), answer.trim().to_string());
        if same == Some(false) {
            table.row("", "differs from the whole model's answer");
        }
        answers.push(AnswerRecord {
            prompt: prompt.clone(),
            answer,
            tokens: generation.tokens.len(),
            prefill_seconds: generation.prefill.as_secs_f64(),
            decode_seconds: generation.decode.as_secs_f64(),
            same_as_unsplit: same,
        });
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
    let record = GenerateRecord {
        setting: setting(config, &model, &cut),
        sampling,
        answers,
        decode_tokens_per_second: rate,
        bytes_sent: sent,
        bytes_received: received,
        bytes_per_generated_token: per_token,
    };
    records::append(&config.output.records, &Record::Generate(record.clone()))?;
    Ok(Outcome { record, table })
}
