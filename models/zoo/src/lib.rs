//! One type for every model family, chosen at run time from the checkpoint.
//!
//! [`Pretrained::open`] recognises a Hugging Face directory (by `config.json`'s `model_type`)
//! or a GGUF file, and [`Pretrained::load`] builds any [`SliceSpec`] of it as an
//! [`AnyModel`], which parties, optimizers and trainability rules handle without knowing the
//! family.
//!
//! # Adding a family
//!
//! A family is a crate whose slice type implements [`splitlm_nn::ModelFamily`] (its name,
//! accepted `model_type`s, LoRA defaults, configuration and loader). Registering it is one
//! line in the list below (plus the crate as a dependency of this one); [`Family`],
//! [`AnyModel`], [`AnyConfig`] and [`Pretrained`] then handle it.
//!
//! [`SliceSpec`]: splitlm_nn::SliceSpec

#[macro_use]
mod registry;

register_families! {
    /// BERT, RoBERTa, MiniLM.
    Bert(splitlm_bert::BertModel),
    /// GPT-2.
    Gpt2(splitlm_gpt2::Gpt2Model),
    /// Llama, Mistral, Qwen2, SmolLM.
    Llama(splitlm_llama::LlamaModel),
}

mod any;
mod family;
mod pretrained;

pub use any::FamilyMap;
pub use pretrained::Pretrained;
