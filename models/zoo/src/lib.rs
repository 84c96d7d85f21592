//! One type for every model family, chosen at run time from the checkpoint.
//!
//! [`Checkpoint::open`] recognises a Hugging Face directory (by `config.json`'s `model_type`)
//! or a GGUF file, and [`Checkpoint::load`] builds any [`SliceSpec`] of it as an
//! [`AnyModel`], which parties, optimizers and trainability rules handle without knowing the
//! family.

mod any;
mod checkpoint;

pub use any::{AnyModel, FamilyMap};
pub use checkpoint::{Checkpoint, Family};
