//! Scores of predictions against the truth, each as its public reference computes it, with no
//! knowledge of models, tasks or attacks: [`labels`] for classifiers and regressors
//! (scikit-learn, SciPy) and [`rouge`] for texts (Google's `rouge-score`). Task metrics
//! (`splitlm-tasks`) and attack scores (`splitlm-attacks`) are both built on them.

pub mod labels;
pub mod rouge;
