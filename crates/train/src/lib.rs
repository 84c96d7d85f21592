//! Training a split (or whole) model: the [`Learner`] both kinds implement, the [`fit`] loop
//! with evaluation, early stopping and resumable [`checkpoint`]s, and the [`session`] that
//! builds a learner from its settings. Which task is trained and how it is scored lives in
//! `splitlm-tasks`; experiments (attacks, grids, records) in `splitlm-bench`.

pub mod checkpoint;
mod defense_env;
mod error;
mod fit;
mod learner;
pub mod session;

pub use defense_env::{DefenseData, TokenizerCodec, defense_env};
pub use error::TrainError;
pub use fit::{Evaluate, FitConfig, FitEvent, FitReport, fit};
pub use learner::{Learner, Split, Whole};
pub use session::{Run, Setup, SplitConfig};
