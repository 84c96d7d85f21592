use std::path::Path;

use burn::tensor::Device;
use splitlm_llama::GgufLlamaSource;
use splitlm_nn::{FamilyConfig, ModelError, SliceSpec, TaskHead};
use splitlm_weights::SafetensorsCheckpoint;

use crate::{AnyConfig, AnyModel, Family};

/// An opened pretrained model: its configuration read and a reader of its weights files open,
/// no tensor read yet (each slice reads only its own).
pub enum Pretrained {
    /// A Hugging Face directory (`config.json` + safetensors) of any registered family.
    HuggingFace(AnyConfig, SafetensorsCheckpoint),
    /// A llama.cpp GGUF file of a Llama-style model.
    LlamaGguf(GgufLlamaSource),
}

#[derive(serde::Deserialize)]
struct ModelType {
    model_type: String,
}

impl Pretrained {
    /// Opens a Hugging Face model directory (`config.json` + safetensors) or a `.gguf` file.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let origin = path.display().to_string();
        if path.is_file() {
            return Ok(Pretrained::LlamaGguf(GgufLlamaSource::open(path)?));
        }
        if !path.is_dir() {
            return Err(ModelError::config(
                origin,
                "no such model directory or GGUF file",
            ));
        }
        let config_path = path.join("config.json");
        let ModelType { model_type } = splitlm_nn::hf_config::read_config(&config_path)?;
        let Some(family) = Family::from_model_type(&model_type) else {
            return Err(ModelError::config(
                config_path.display().to_string(),
                format!(
                    "model_type \"{model_type}\" is not supported ({} are)",
                    Family::all_model_types().join(", ")
                ),
            ));
        };
        let weights = SafetensorsCheckpoint::open(path)?;
        Ok(Pretrained::HuggingFace(
            AnyConfig::from_dir(family, path)?,
            weights,
        ))
    }

    /// The model's family.
    pub fn family(&self) -> Family {
        match self {
            Pretrained::HuggingFace(c, _) => c.family(),
            Pretrained::LlamaGguf(_) => Family::Llama,
        }
    }

    /// Number of transformer blocks.
    pub fn num_layers(&self) -> usize {
        self.config().num_layers()
    }

    /// Width of the hidden states (what crosses a cut per token).
    pub fn hidden_size(&self) -> usize {
        self.config().hidden_size()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.config().vocab_size()
    }

    fn config(&self) -> &dyn FamilyConfig {
        match self {
            Pretrained::HuggingFace(c, _) => each_config!(c, c => c as &dyn FamilyConfig),
            Pretrained::LlamaGguf(g) => g.config(),
        }
    }

    /// The checkpoint's tokenizer (`tokenizer.json` beside the weights, or the one stored in a
    /// GGUF file's metadata), with padding and truncation turned off: batching decides those.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer, ModelError> {
        let mut tokenizer = match self {
            Pretrained::LlamaGguf(g) => splitlm_weights::tokenizer_from_gguf(g.file())?,
            Pretrained::HuggingFace(_, w) => {
                let dir = w
                    .files()
                    .first()
                    .and_then(|f| f.parent())
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                let path = dir.join("tokenizer.json");
                tokenizers::Tokenizer::from_file(&path).map_err(|e| {
                    splitlm_weights::CheckpointError::Tokenizer {
                        path: path.clone(),
                        detail: e.to_string(),
                    }
                })?
            }
        };
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| ModelError::Input(format!("turning truncation off: {e}")))?;
        Ok(tokenizer)
    }

    /// Builds the slice `spec` with the head of `task` on `device`, reading only its tensors.
    pub fn load(
        &self,
        spec: &SliceSpec,
        task: TaskHead,
        device: &Device,
    ) -> Result<AnyModel, ModelError> {
        Ok(match self {
            Pretrained::HuggingFace(c, w) => c.load(w, spec, task, device)?,
            Pretrained::LlamaGguf(g) => g.load_model(Some(spec), task, device)?.into(),
        })
    }
}
