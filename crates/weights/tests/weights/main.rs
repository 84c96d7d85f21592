//! Integration tests of the public API: GGUF files written here, safetensors files written with
//! the `safetensors` crate, and the real SmolLM2 GGUF when it is cached.

mod gguf;
mod gguf_tokenizer;
mod gguf_writer;
mod safetensors;
mod smollm2;

use splitlm_weights::CheckpointError;

/// The error's message, for `assert!(msg.contains(..))`.
fn message<T>(result: Result<T, CheckpointError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}
