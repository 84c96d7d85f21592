//! Llama-style decoders — Llama, Mistral, Qwen2, SmolLM — as one core whose blocks are
//! addressed by layer range.
//!
//! RMSNorm, rotary position embeddings with configurable θ, SwiGLU, grouped-query attention,
//! optional tied embeddings and Qwen2's attention biases. Loads Hugging Face checkpoints and
//! llama.cpp GGUF files (quantised blocks dequantised at load).

mod block;
mod config;
mod gguf;
mod model;
mod rope;

pub use block::LlamaBlock;
pub use config::{LlamaConfig, RopeParameters};
pub use gguf::GgufLlamaSource;
pub use model::LlamaModel;
pub use rope::Rope;
