//! Training checkpoints: every party's trainable state and the loop's progress, so that a run
//! can resume exactly. (Pretrained weights are read by `splitlm-weights`; these are ours.)
//!
//! Layout under the checkpoint root: `step-000120/` holds the parties' files and
//! `progress.json`; `latest` names the newest complete one. A checkpoint is written into
//! `step-000120.partial/`, renamed when whole, and only then named in `latest` (itself replaced
//! atomically), so a crash at any moment leaves the previous checkpoint intact and pointed to.
//! The two newest checkpoints are kept.

use std::path::{Path, PathBuf};

use splitlm_party::state::write_atomic;

use crate::error::TrainError;
use crate::learner::Learner;

const LATEST: &str = "latest";
const PROGRESS: &str = "progress.json";
const KEEP: usize = 2;

/// Where a training loop stands: enough to continue it exactly.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FitProgress {
    /// Optimizer steps taken.
    pub step: usize,
    /// Examples trained on.
    pub examples: usize,
    /// Tokens trained on.
    pub tokens: usize,
    /// Per epoch: sum of batch losses and number of batches.
    pub epoch_loss_sums: Vec<(f64, usize)>,
    /// `(step, metric)` of every evaluation.
    pub evaluations: Vec<(usize, f64)>,
    /// The best evaluation so far.
    pub best: Option<(usize, f64)>,
    /// Evaluations in a row that did not beat the best.
    pub bad_evaluations: usize,
}

impl FitProgress {
    pub(crate) fn record_step(&mut self, epoch: usize, examples: usize, tokens: usize, loss: f32) {
        self.step += 1;
        self.examples += examples;
        self.tokens += tokens;
        if self.epoch_loss_sums.len() <= epoch {
            self.epoch_loss_sums.resize(epoch + 1, (0.0, 0));
        }
        let (sum, n) = &mut self.epoch_loss_sums[epoch];
        *sum += loss as f64;
        *n += 1;
    }

    pub(crate) fn record_evaluation(&mut self, step: usize, metric: f64) {
        self.evaluations.push((step, metric));
        match self.best {
            Some((_, best)) if metric <= best => self.bad_evaluations += 1,
            _ => {
                self.best = Some((step, metric));
                self.bad_evaluations = 0;
            }
        }
    }

    /// Mean loss of each epoch begun.
    pub fn epoch_losses(&self) -> Vec<f32> {
        self.epoch_loss_sums
            .iter()
            .map(|&(sum, n)| (sum / n.max(1) as f64) as f32)
            .collect()
    }
}

fn step_dir(root: &Path, step: usize) -> PathBuf {
    root.join(format!("step-{step:06}"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::io(path, e)
}

/// Writes a checkpoint of `learner` at `progress` under `root`; returns its directory.
pub fn save(
    root: &Path,
    learner: &mut dyn Learner,
    progress: &FitProgress,
) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(root).map_err(io(root))?;
    let dir = step_dir(root, progress.step);
    let partial = dir.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    learner.save_state(&partial)?;
    let json = serde_json::to_vec_pretty(progress).expect("progress serialises");
    write_atomic(&partial.join(PROGRESS), &json)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&partial, &dir).map_err(io(&dir))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("step directories have UTF-8 names");
    write_atomic(&root.join(LATEST), name.as_bytes())?;
    prune(root)?;
    Ok(dir)
}

/// The newest complete checkpoint under `root` and its progress, if any.
pub fn latest(root: &Path) -> Result<Option<(PathBuf, FitProgress)>, TrainError> {
    let pointer = root.join(LATEST);
    let name = match std::fs::read_to_string(&pointer) {
        Ok(name) => name,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrainError::io(&pointer, e)),
    };
    let name = name.trim();
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(TrainError::Checkpoint {
            path: pointer,
            reason: format!("{name:?} is not a checkpoint name"),
        });
    }
    let dir = root.join(name);
    let path = dir.join(PROGRESS);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let progress = serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(Some((dir, progress)))
}

/// Removes all but the newest [`KEEP`] complete checkpoints and any stale partial one.
fn prune(root: &Path) -> Result<(), TrainError> {
    let mut steps = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io(root))? {
        let path = entry.map_err(io(root))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(step) = name.strip_prefix("step-") {
            if step.ends_with(".partial") {
                continue; // a crashed write; `save` clears it when it writes that step again
            }
            if let Ok(step) = step.parse::<usize>() {
                steps.push((step, path));
            }
        }
    }
    steps.sort();
    let drop = steps.len().saturating_sub(KEEP);
    for (_, path) in steps.into_iter().take(drop) {
        std::fs::remove_dir_all(&path).map_err(io(&path))?;
    }
    Ok(())
}
