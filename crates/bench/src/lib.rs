//! The experiment engine of the benchmark: a typed run configuration ([`RunConfig`]) in, a
//! trained model, the attacks mounted on what its model party observed, and typed
//! [`records`] out; from the records, the MP / AP / DCS [`report`] and its plot.
//!
//! One run's data flows: [`config`] → [`jobs::train`] (`splitlm-train`'s `fit` on the task of
//! `splitlm-tasks`, through a [`truth::TruthRecorder`]) → the model party's recording →
//! [`attack_stage`] (`splitlm-attacks`) → [`records`] → [`report`] with
//! [`defense_scores`]. The `splitlm` command line only parses arguments, shows progress and
//! prints what these functions return.

pub mod attack_stage;
pub mod config;
pub mod defense_scores;
pub mod jobs;
pub mod model;
pub mod records;
pub mod remote;
pub mod report;
pub mod resources;
pub mod summary;
pub mod truth;

pub use config::RunConfig;
pub use jobs::{Outcome, Progress, Quiet};
