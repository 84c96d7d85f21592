//! Building blocks shared by splitlm's transformer cores.
//!
//! Every model family (BERT, GPT-2, Llama-style) is one core whose blocks are addressed by
//! a [`LayerRange`]; a [`SliceSpec`] says which parts of the model one party holds, and the
//! [`Weights`] loader reads only the tensors of those parts.

pub mod activation;
pub mod attention;
pub mod batch;
pub mod cache;
pub mod decoder;
pub mod error;
pub mod family;
pub mod generate;
pub mod head;
pub mod hf_config;
pub mod loss;
pub mod random;
pub mod seeded;
pub mod slice;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transformer;
pub mod weights;

pub use activation::Activation;
pub use attention::{AttentionMask, attend};
pub use batch::{Hidden, TokenBatch};
pub use cache::KvCache;
pub use error::ModelError;
pub use family::{FamilyConfig, ModelFamily};
pub use head::{HeadOutput, TaskHead};
pub use loss::{Labels, loss};
pub use random::RandomWeights;
pub use slice::{LayerRange, SliceSpec};
pub use transformer::TransformerSlice;
pub use weights::Weights;
