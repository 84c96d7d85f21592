//! Tasks: datasets in their public formats, batching through a tokenizer, metrics matching
//! their references, and the training loop that drives a split (or whole) model.

pub mod batching;
pub mod dataset;
pub mod error;
pub mod glue;
pub mod metrics;
pub mod sentiment;
pub mod train;

pub use batching::Encoder;
pub use dataset::{Example, Target};
pub use error::TaskError;
