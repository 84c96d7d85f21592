//! Tasks: datasets in their public formats, batching through a tokenizer, metrics matching
//! their references, and the training loop that drives a split (or whole) model.

pub mod batching;
pub mod chatterbot;
pub mod checkpoint;
pub mod dataset;
pub mod e2e;
pub mod error;
pub mod formats;
pub mod glue;
pub mod lm;
pub mod metrics;
pub mod prompt;
pub mod sentiment;
pub mod span_qa;
pub mod text_metrics;
pub mod train;

pub use batching::Encoder;
pub use dataset::{Example, Target};
pub use error::TaskError;
