//! Backend-free reading of model checkpoints: Hugging Face safetensors (single or sharded) and
//! llama.cpp GGUF files (metadata, dequantisation, tokenizer).
//!
//! Every reader implements [`TensorSource`]: tensors are looked up by name and converted to
//! host `f32` one at a time from a memory map, so a party that holds a few layers of a model
//! never reads the rest of the file. Model crates turn [`HostTensor`]s into Burn tensors.

mod error;
pub mod gguf;
mod safetensors_source;
mod source;

pub use error::CheckpointError;
pub use gguf::{GgufFile, GgufValue, tokenizer_from_gguf};
pub use safetensors_source::{SafetensorsCheckpoint, read_hf_config};
pub use source::{HostTensor, TensorInfo, TensorSource};
