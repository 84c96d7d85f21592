//! Tasks: what to train a model on and how to score it. Task definitions ([`TaskConfig`]),
//! datasets in their public formats loaded into [`TaskData`], batching through a tokenizer,
//! prompt templates and stop tokens, and scoring ([`TaskScores`]) with metrics that match
//! their references. A task scores any [`Predictor`]: the learners of `splitlm-train` (split
//! or whole) are ones.

pub mod batching;
pub mod chatterbot;
pub mod config;
pub mod dataset;
pub mod e2e;
pub mod error;
pub mod formats;
pub mod glue;
pub mod lm;
pub mod predictor;
pub mod prompt;
pub mod sentiment;
pub mod span_qa;
pub mod task;
pub mod text_metrics;

pub use batching::Encoder;
pub use config::{InstructionFormat, MathFormat, TaskConfig};
pub use dataset::{Example, Target};
pub use error::TaskError;
pub use predictor::{Predictor, TrainingSet};
pub use splitlm_metrics::labels as metrics;
pub use task::{TaskData, TaskScores, TextMetric};
