//! The `splitlm` command line as a library: a typed [`config::RunConfig`] read from TOML, the
//! [`session`] it builds (the parties of a split model, or the whole model), the [`task`] data
//! and scores, and the [`jobs`] (train, eval, generate) that print a table and append a JSON
//! record per run ([`records`]).

pub mod app;
pub mod attack;
pub mod config;
pub mod jobs;
pub mod records;
pub mod report;
pub mod scores;
pub mod session;
pub mod task;

pub use config::RunConfig;
