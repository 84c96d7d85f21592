//! The `splitlm` command line: it parses arguments, shows progress and prints; the work is
//! done by `splitlm-bench` (experiments, records, reports) and the crates below it.

pub mod app;
mod progress;

pub use progress::Terminal;
