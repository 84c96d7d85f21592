//! Which task to run and on what data: the `[task]` table of a run configuration.

use std::path::PathBuf;

use crate::error::TaskError;
use crate::glue::GlueTask;

/// The task and its dataset.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskConfig {
    /// Binary sentiment of movie-review sentences (the `sentiment` asset).
    Sentiment {
        /// Longest input in tokens.
        #[serde(default = "defaults::max_len_classification")]
        max_len: usize,
        /// Training sentences used (0: all 9,511).
        #[serde(default)]
        train_examples: usize,
        /// Held-out sentences evaluated (0: all 1,057).
        #[serde(default)]
        eval_examples: usize,
    },
    /// A GLUE task from its TSV files.
    Glue {
        /// Which task.
        task: GlueTask,
        /// The training TSV.
        train: PathBuf,
        /// The evaluation TSV (the public dev set).
        dev: PathBuf,
        /// Longest input in tokens.
        #[serde(default = "defaults::max_len_classification")]
        max_len: usize,
        /// Training examples used (0: all).
        #[serde(default)]
        train_examples: usize,
        /// Evaluation examples used (0: all).
        #[serde(default)]
        eval_examples: usize,
    },
    /// Extractive span QA on SQuAD v1.1 JSON (by default the `squad-dev` asset, split by
    /// article into training and held-out questions).
    Squad {
        /// A SQuAD v1.1 JSON file (default: the SQuAD dev set asset).
        #[serde(default)]
        path: Option<PathBuf>,
        /// Tokens per window (question + context part).
        #[serde(default = "defaults::max_len_qa")]
        max_len: usize,
        /// Overlap of consecutive context windows, in tokens.
        #[serde(default = "defaults::doc_stride")]
        doc_stride: usize,
        /// Fraction of the articles held out.
        #[serde(default = "defaults::held_out_fraction")]
        held_out_fraction: f64,
        /// Training questions used (0: all).
        #[serde(default)]
        train_examples: usize,
        /// Held-out questions evaluated (0: all).
        #[serde(default = "defaults::eval_examples_generation")]
        eval_examples: usize,
    },
    /// Chat answers from the chatterbot corpus (the `chatterbot` asset): question → answer.
    Chatterbot {
        /// Longest prompt + response in tokens.
        #[serde(default = "defaults::max_len_generation")]
        max_len: usize,
        /// Pairs held out for evaluation (generated and scored with ROUGE).
        #[serde(default = "defaults::eval_examples_generation")]
        eval_examples: usize,
        /// Training pairs used (0: all the others).
        #[serde(default)]
        train_examples: usize,
    },
    /// Instruction following from Alpaca / CodeAlpaca JSON or Dolly JSONL, scored with ROUGE
    /// (ROUGE-2 recall is the reference's Alpaca/Dolly metric).
    Instruction {
        /// The file's format.
        format: InstructionFormat,
        /// The file.
        path: PathBuf,
        /// Longest prompt + response in tokens.
        #[serde(default = "defaults::max_len_instruction")]
        max_len: usize,
        /// Records held out for evaluation.
        #[serde(default = "defaults::eval_examples_generation")]
        eval_examples: usize,
        /// Training records used (0: all the others).
        #[serde(default)]
        train_examples: usize,
    },
    /// Math word problems (GSM8K JSONL or a MATH directory), scored by final-answer accuracy.
    Math {
        /// The dataset's format.
        format: MathFormat,
        /// The JSONL file (GSM8K) or directory of problem files (MATH).
        path: PathBuf,
        /// Longest prompt + response in tokens.
        #[serde(default = "defaults::max_len_instruction")]
        max_len: usize,
        /// Problems held out for evaluation.
        #[serde(default = "defaults::eval_examples_generation")]
        eval_examples: usize,
        /// Training problems used (0: all the others).
        #[serde(default)]
        train_examples: usize,
    },
    /// Next-word prediction on Lambada passages (plain text, one per line), scored by the
    /// accuracy of the first generated word.
    Lambada {
        /// The text file.
        path: PathBuf,
        /// Longest passage in tokens.
        #[serde(default = "defaults::max_len_instruction")]
        max_len: usize,
        /// Passages held out for evaluation.
        #[serde(default = "defaults::eval_examples_generation")]
        eval_examples: usize,
        /// Training passages used (0: all the others).
        #[serde(default)]
        train_examples: usize,
    },
    /// Data-to-text (E2E NLG, the `e2e-nlg` asset): meaning representation → description.
    E2e {
        /// Longest prompt + response in tokens.
        #[serde(default = "defaults::max_len_generation")]
        max_len: usize,
        /// Records held out for evaluation.
        #[serde(default = "defaults::eval_examples_generation")]
        eval_examples: usize,
        /// Training records used (0: all the others).
        #[serde(default)]
        train_examples: usize,
    },
}

/// Instruction file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstructionFormat {
    /// Stanford Alpaca JSON.
    Alpaca,
    /// CodeAlpaca JSON (Alpaca's layout).
    CodeAlpaca,
    /// Databricks Dolly JSONL.
    Dolly,
}

/// Math dataset formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MathFormat {
    /// GSM8K JSONL.
    Gsm8k,
    /// Hendrycks MATH directory.
    Math,
}

mod defaults {
    pub fn max_len_instruction() -> usize {
        256
    }
    pub fn max_len_classification() -> usize {
        64
    }
    pub fn max_len_generation() -> usize {
        96
    }
    pub fn eval_examples_generation() -> usize {
        20
    }
    pub fn max_len_qa() -> usize {
        192
    }
    pub fn doc_stride() -> usize {
        64
    }
    pub fn held_out_fraction() -> f64 {
        0.2
    }
}

impl TaskConfig {
    /// The task's name in records.
    pub fn name(&self) -> String {
        match self {
            TaskConfig::Sentiment { .. } => "sentiment".into(),
            TaskConfig::Glue { task, .. } => format!(
                "glue-{}",
                serde_json::to_value(task)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
            TaskConfig::Squad { .. } => "squad".into(),
            TaskConfig::Instruction { format, .. } => format!("{format:?}").to_lowercase(),
            TaskConfig::Math { format, .. } => format!("{format:?}").to_lowercase(),
            TaskConfig::Lambada { .. } => "lambada".into(),
            TaskConfig::Chatterbot { .. } => "chatterbot".into(),
            TaskConfig::E2e { .. } => "e2e".into(),
        }
    }

    /// The task head the model needs (what [`crate::TaskData::head`] gives once loaded).
    pub fn head(&self) -> splitlm_nn::TaskHead {
        match self {
            TaskConfig::Sentiment { .. } => {
                splitlm_nn::TaskHead::SequenceClassification { num_labels: 2 }
            }
            TaskConfig::Glue { task, .. } => splitlm_nn::TaskHead::SequenceClassification {
                num_labels: task.num_labels(),
            },
            TaskConfig::Squad { .. } => splitlm_nn::TaskHead::SpanQa,
            _ => splitlm_nn::TaskHead::CausalLm,
        }
    }

    /// Whether the task generates text (a causal LM is needed).
    pub fn is_generation(&self) -> bool {
        matches!(
            self,
            TaskConfig::Chatterbot { .. }
                | TaskConfig::E2e { .. }
                | TaskConfig::Instruction { .. }
                | TaskConfig::Math { .. }
                | TaskConfig::Lambada { .. }
        )
    }

    /// The longest input (or prompt + response) in tokens.
    pub fn max_len(&self) -> usize {
        match self {
            TaskConfig::Sentiment { max_len, .. }
            | TaskConfig::Glue { max_len, .. }
            | TaskConfig::Squad { max_len, .. }
            | TaskConfig::Instruction { max_len, .. }
            | TaskConfig::Math { max_len, .. }
            | TaskConfig::Lambada { max_len, .. }
            | TaskConfig::Chatterbot { max_len, .. }
            | TaskConfig::E2e { max_len, .. } => *max_len,
        }
    }

    /// Checks the values serde's types do not already constrain.
    pub fn validate(&self) -> Result<(), TaskError> {
        if self.max_len() < 8 {
            return Err(TaskError::Setting {
                key: "task.max_len",
                detail: format!("{} is too short (at least 8)", self.max_len()),
            });
        }
        if let TaskConfig::Squad {
            held_out_fraction, ..
        } = self
            && !(*held_out_fraction > 0.0 && *held_out_fraction < 1.0)
        {
            return Err(TaskError::Setting {
                key: "task.held_out_fraction",
                detail: format!("{held_out_fraction} is not in (0, 1)"),
            });
        }
        Ok(())
    }
}
