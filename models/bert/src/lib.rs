//! BERT-style encoders — BERT, RoBERTa, MiniLM — as one core whose blocks are addressed by
//! layer range.
//!
//! Post-LN blocks; embeddings with learned positions and token types; a pooler; heads for
//! sequence classification/regression and span QA. Weights load from Hugging Face checkpoints
//! by their usual names (with or without the `bert.` / `roberta.` prefix).

mod block;
mod config;
mod embeddings;
mod head;
mod model;

pub use block::BertLayer;
pub use config::{BertConfig, SentencePooling};
pub use embeddings::BertEmbeddings;
pub use head::BertHead;
pub use model::BertModel;
