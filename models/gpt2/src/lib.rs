//! GPT-2 as one core whose blocks are addressed by layer range.
//!
//! Learned positions, pre-LN blocks with `Conv1D` projections, final LayerNorm, a tied LM head,
//! sequence classification on the last real token and span QA; KV cache for decoding.

mod block;
mod config;
mod model;

pub use block::Gpt2Block;
pub use config::Gpt2Config;
pub use model::{Gpt2Embeddings, Gpt2Model};
