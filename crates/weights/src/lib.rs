//! Backend-free reading of model checkpoints: Hugging Face safetensors (single file or sharded)
//! and llama.cpp GGUF files (metadata, dequantisation, tokenizer).
//!
//! Every reader implements [`TensorSource`]: tensors are looked up by name and converted to host
//! `f32` one at a time from a memory map, so a party that holds a few layers of a model never
//! reads the rest of the file. Model crates turn [`HostTensor`]s into Burn tensors.
//!
//! ```no_run
//! use splitlm_weights::{GgufFile, TensorSource, tokenizer_from_gguf};
//!
//! let gguf = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! let layers = gguf.get_u32("llama.block_count")?;
//! let embedding = gguf.load_shaped("token_embd.weight", &[49152, 576])?;
//! let tokenizer = tokenizer_from_gguf(&gguf)?;
//! # Ok::<(), splitlm_weights::CheckpointError>(())
//! ```

#![warn(missing_docs)]

mod error;
pub mod gguf;
mod safetensors_source;
mod source;

pub use error::CheckpointError;
pub use gguf::{
    GgmlType, GgufFile, GgufSpecialTokens, GgufValue, special_token_id, tokenizer_from_gguf,
};
pub use safetensors_source::{SafetensorsCheckpoint, read_hf_config};
pub use source::{HostTensor, TensorInfo, TensorSource};
