//! The `splitlm` command line: it parses arguments, shows progress and prints; the work is
//! done by `splitlm-bench` (experiments, records, reports) and the crates below it.

pub mod app;
pub mod check;
pub mod files;
mod progress;
pub mod vflair;

pub use progress::Terminal;
