//! splitlm: split learning for large language models, on Burn.
//!
//! A data party (little compute, private text and labels) and a model party (a GPU server
//! owning most of the model) share one model cut by layer ranges. This crate re-exports the
//! workspace's building blocks for apps that embed them:
//!
//! - [`device`]: a party's backend chosen at run time (`cpu`, `wgpu`, `cuda:N`).
//! - [`weights`]: readers of Hugging Face safetensors and llama.cpp GGUF weights, GGUF tokenizers.
//! - [`nn`]: what every model core shares: slices, weight loading, attention, KV caches.
//! - [`bert`], [`gpt2`], [`llama`]: the model families, each one core addressed by layer range.
//! - [`partition`]: Head–Tail and Head–Body–Tail cuts into the slices each party holds, and
//!   which parameters of each slice train (full, frozen, per block, LoRA).
//! - [`zoo`]: every family behind one type, opened from a checkpoint directory or GGUF file.
//! - [`protocol`]: messages and tensor frames between parties, codec, transports.
//! - [`party`]: the data party and the model party, optimizers and schedules.
//! - [`metrics`]: scores of predictions against the truth (accuracy, F1, MCC, ROUGE).
//! - [`tasks`]: task definitions, datasets, batching, prompt templates and task scores.
//! - [`train`]: the learner (split or whole), the training loop and training checkpoints.
//! - [`assets`]: the real demo models, fetched from package registries into a local cache.
//! - [`attacks`]: what a curious model party infers from what it observed (inversion, labels).
//! - [`defenses`]: what the data party applies where its tensors cross (DP noise, sparsification).
//! - [`bench`](mod@bench): the experiment engine: run configurations, train-then-attack jobs, typed
//!   records, MP / AP / DCS reports and plots, usable from other programs.
//! - [`cli`]: the `splitlm` command line over [`bench`](mod@bench).

pub use splitlm_assets as assets;
pub use splitlm_attacks as attacks;
pub use splitlm_bench as bench;
pub use splitlm_bert as bert;
pub use splitlm_cli as cli;
pub use splitlm_defenses as defenses;
pub use splitlm_device as device;
pub use splitlm_gpt2 as gpt2;
pub use splitlm_llama as llama;
pub use splitlm_metrics as metrics;
pub use splitlm_net as net;
pub use splitlm_nn as nn;
pub use splitlm_partition as partition;
pub use splitlm_party as party;
pub use splitlm_protocol as protocol;
pub use splitlm_tasks as tasks;
pub use splitlm_train as train;
pub use splitlm_weights as weights;
pub use splitlm_zoo as zoo;
