use std::fmt;
use std::path::Path;

use burn::tensor::Device;
use splitlm_bert::{BertConfig, BertModel};
use splitlm_checkpoint::SafetensorsCheckpoint;
use splitlm_gpt2::{Gpt2Config, Gpt2Model};
use splitlm_llama::{GgufLlamaSource, LlamaConfig, LlamaModel};
use splitlm_nn::{ModelError, SliceSpec, TaskHead};

use crate::AnyModel;

/// The architecture families splitlm implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// BERT-style encoders.
    Bert,
    /// GPT-2.
    Gpt2,
    /// Llama-style decoders.
    Llama,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Bert => "bert",
            Family::Gpt2 => "gpt2",
            Family::Llama => "llama",
        })
    }
}

/// An opened checkpoint: configuration read, tensors not yet (slices read only their own).
pub enum Checkpoint {
    /// A Hugging Face BERT-style directory.
    Bert(BertConfig, SafetensorsCheckpoint),
    /// A Hugging Face GPT-2 directory.
    Gpt2(Gpt2Config, SafetensorsCheckpoint),
    /// A Hugging Face Llama-style directory.
    Llama(LlamaConfig, SafetensorsCheckpoint),
    /// A llama.cpp GGUF file of a Llama-style model.
    LlamaGguf(GgufLlamaSource),
}

#[derive(serde::Deserialize)]
struct ModelType {
    model_type: String,
}

impl Checkpoint {
    /// Opens a Hugging Face model directory (`config.json` + safetensors) or a `.gguf` file.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let origin = path.display().to_string();
        if path.is_file() {
            return Ok(Checkpoint::LlamaGguf(GgufLlamaSource::open(path)?));
        }
        if !path.is_dir() {
            return Err(ModelError::config(
                origin,
                "no such model directory or GGUF file",
            ));
        }
        let config_path = path.join("config.json");
        let ModelType { model_type } = splitlm_nn::hf_config::read_config(&config_path)?;
        let family = match model_type.as_str() {
            "bert" | "roberta" | "xlm-roberta" | "camembert" => Family::Bert,
            "gpt2" => Family::Gpt2,
            "llama" | "mistral" | "qwen2" => Family::Llama,
            other => {
                return Err(ModelError::config(
                    config_path.display().to_string(),
                    format!(
                        "model_type \"{other}\" is not supported (bert, roberta, gpt2, llama, \
                         mistral, qwen2 are)"
                    ),
                ));
            }
        };
        let weights = SafetensorsCheckpoint::open(path)?;
        Ok(match family {
            Family::Bert => Checkpoint::Bert(BertConfig::from_dir(path)?, weights),
            Family::Gpt2 => Checkpoint::Gpt2(Gpt2Config::from_dir(path)?, weights),
            Family::Llama => Checkpoint::Llama(LlamaConfig::from_dir(path)?, weights),
        })
    }

    /// The model's family.
    pub fn family(&self) -> Family {
        match self {
            Checkpoint::Bert(..) => Family::Bert,
            Checkpoint::Gpt2(..) => Family::Gpt2,
            Checkpoint::Llama(..) | Checkpoint::LlamaGguf(_) => Family::Llama,
        }
    }

    /// Number of transformer blocks.
    pub fn num_layers(&self) -> usize {
        match self {
            Checkpoint::Bert(c, _) => c.num_hidden_layers,
            Checkpoint::Gpt2(c, _) => c.n_layer,
            Checkpoint::Llama(c, _) => c.num_hidden_layers,
            Checkpoint::LlamaGguf(g) => g.config().num_hidden_layers,
        }
    }

    /// Width of the hidden states (what crosses a cut per token).
    pub fn hidden_size(&self) -> usize {
        match self {
            Checkpoint::Bert(c, _) => c.hidden_size,
            Checkpoint::Gpt2(c, _) => c.n_embd,
            Checkpoint::Llama(c, _) => c.hidden_size,
            Checkpoint::LlamaGguf(g) => g.config().hidden_size,
        }
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            Checkpoint::Bert(c, _) => c.vocab_size,
            Checkpoint::Gpt2(c, _) => c.vocab_size,
            Checkpoint::Llama(c, _) => c.vocab_size,
            Checkpoint::LlamaGguf(g) => g.config().vocab_size,
        }
    }

    /// The checkpoint's tokenizer (`tokenizer.json` beside the weights, or the one stored in a
    /// GGUF file's metadata), with padding and truncation turned off: batching decides those.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer, ModelError> {
        let mut tokenizer = match self {
            Checkpoint::LlamaGguf(g) => splitlm_checkpoint::tokenizer_from_gguf(g.file())?,
            Checkpoint::Bert(_, w) | Checkpoint::Gpt2(_, w) | Checkpoint::Llama(_, w) => {
                let dir = w
                    .files()
                    .first()
                    .and_then(|f| f.parent())
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                let path = dir.join("tokenizer.json");
                tokenizers::Tokenizer::from_file(&path).map_err(|e| {
                    splitlm_checkpoint::CheckpointError::Tokenizer {
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
            Checkpoint::Bert(c, w) => BertModel::load(w, c, spec, task, device)?.into(),
            Checkpoint::Gpt2(c, w) => Gpt2Model::load(w, c, spec, task, device)?.into(),
            Checkpoint::Llama(c, w) => LlamaModel::load(w, c, spec, task, device)?.into(),
            Checkpoint::LlamaGguf(g) => g.load_model(Some(spec), task, device)?.into(),
        })
    }
}
