//! A job's progress on the terminal: news lines, and a bar with the recent mean loss while it
//! trains.

use indicatif::{ProgressBar, ProgressStyle};
use splitlm_bench::Progress;
use splitlm_train::FitEvent;

/// How many recent losses the bar's mean covers.
const LOSS_WINDOW: usize = 20;

/// Prints to the terminal (or nothing but the final table, when quiet).
pub struct Terminal {
    quiet: bool,
    bar: Option<ProgressBar>,
    metric: String,
    recent: Vec<f32>,
}

impl Terminal {
    /// A terminal printer; `quiet` shows no bar and no news.
    pub fn new(quiet: bool) -> Self {
        Self {
            quiet,
            bar: None,
            metric: String::new(),
            recent: Vec::new(),
        }
    }
}

impl Progress for Terminal {
    fn note(&mut self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    fn training_started(&mut self, total: usize, metric: &str) {
        if self.quiet {
            return;
        }
        self.metric = metric.to_string();
        self.recent.clear();
        self.bar = Some(
            ProgressBar::new(total as u64).with_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} steps  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("a valid template"),
            ),
        );
    }

    fn training(&mut self, event: &FitEvent) {
        let Some(bar) = &self.bar else {
            return;
        };
        match event {
            FitEvent::Step { loss, .. } => {
                self.recent.push(*loss);
                if self.recent.len() > LOSS_WINDOW {
                    self.recent.remove(0);
                }
                let mean = self.recent.iter().sum::<f32>() / self.recent.len() as f32;
                bar.set_message(format!("loss {mean:.3}"));
                bar.inc(1);
            }
            FitEvent::Evaluated { step, metric } => {
                bar.println(format!("step {step}: {} {metric:.4}", self.metric));
            }
            FitEvent::Checkpointed { step, dir } => {
                bar.println(format!("step {step}: checkpoint {}", dir.display()));
            }
            FitEvent::Resumed { step } => {
                bar.set_position(*step as u64);
                bar.println(format!("resumed after step {step}"));
            }
            FitEvent::Reconnected { step } => {
                bar.set_position(*step as u64);
                bar.println(format!(
                    "reconnected to the model party; going on from the checkpoint of step {step}"
                ));
            }
        }
    }

    fn training_ended(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
