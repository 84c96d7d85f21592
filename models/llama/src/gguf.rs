//! Reading a llama.cpp GGUF file as a Llama checkpoint with Hugging Face tensor names.

use std::path::Path;

use splitlm_nn::{ModelError, ModelFamily};
use splitlm_weights::{CheckpointError, GgufFile, HostTensor, TensorInfo, TensorSource};

use crate::{LlamaConfig, LlamaModel};

/// A GGUF file seen through Hugging Face Llama names (`model.layers.3.self_attn.q_proj.weight`).
///
/// llama.cpp's converter permutes the rows of Q and K (for the `llama` architecture) so that
/// RoPE rotates interleaved pairs; this source undoes it, so the half-rotation RoPE of the core
/// applies unchanged. Quantised blocks are dequantised to f32 one tensor at a time.
pub struct GgufLlamaSource {
    file: GgufFile,
    config: LlamaConfig,
    permuted_qk: bool,
}

impl GgufLlamaSource {
    /// Opens a GGUF file and reads its Llama hyper-parameters from metadata.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let file = GgufFile::open(path)?;
        Self::from_file(file)
    }

    /// Wraps an already opened GGUF file.
    pub fn from_file(file: GgufFile) -> Result<Self, ModelError> {
        let origin = file.describe();
        let arch = file.get_str("general.architecture")?.to_string();
        // llama.cpp names these architectures as Hugging Face's `model_type` does.
        if !LlamaModel::MODEL_TYPES.contains(&arch.as_str()) {
            return Err(ModelError::config(
                &origin,
                format!(
                    "unsupported GGUF architecture `{arch}` (accepted: {})",
                    LlamaModel::MODEL_TYPES.join(", ")
                ),
            ));
        }
        let model_type = arch.clone();
        let key = |name: &str| format!("{arch}.{name}");
        let hidden_size = file.get_u32(&key("embedding_length"))? as usize;
        let heads = file.get_u32(&key("attention.head_count"))? as usize;
        let kv_heads = file
            .get_u32(&key("attention.head_count_kv"))
            .map(|v| v as usize)
            .unwrap_or(heads);
        let head_dim = file
            .get_u32(&key("rope.dimension_count"))
            .map(|v| v as usize)
            .unwrap_or(hidden_size / heads.max(1));
        let vocab_size = file
            .info("token_embd.weight")
            .map(|info| info.shape[0])
            .ok_or_else(|| CheckpointError::MissingTensor {
                source_desc: origin.clone(),
                name: "token_embd.weight".into(),
            })?;
        let config = LlamaConfig {
            model_type,
            vocab_size,
            hidden_size,
            intermediate_size: file.get_u32(&key("feed_forward_length"))? as usize,
            num_hidden_layers: file.get_u32(&key("block_count"))? as usize,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv_heads),
            head_dim: Some(head_dim),
            rope_theta: Some(
                file.get_f32(&key("rope.freq_base"))
                    .map(f64::from)
                    .unwrap_or(10_000.0),
            ),
            rope_parameters: None,
            rms_norm_eps: file
                .get_f32(&key("attention.layer_norm_rms_epsilon"))
                .map(f64::from)
                .unwrap_or(1e-5),
            tie_word_embeddings: !file.contains("output.weight"),
            attention_bias: file.contains("blk.0.attn_q.bias") && arch != "qwen2",
            hidden_act: "silu".into(),
            rope_scaling: None,
        };
        config.validate(&origin)?;
        Ok(Self {
            permuted_qk: arch == "llama",
            file,
            config,
        })
    }

    /// Loads a slice of the model in this file (`spec`; `None` for the whole model).
    pub fn load_model(
        &self,
        spec: Option<&splitlm_nn::SliceSpec>,
        task: splitlm_nn::TaskHead,
        device: &burn::tensor::Device,
    ) -> Result<crate::LlamaModel, ModelError> {
        let whole = splitlm_nn::SliceSpec::full(self.config.num_hidden_layers);
        crate::LlamaModel::load(self, &self.config, spec.unwrap_or(&whole), task, device)
    }

    /// The hyper-parameters read from metadata.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The underlying file (metadata, tokenizer).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// The GGUF name of an HF tensor name, and the head count whose Q/K permutation to undo.
    fn map_name(&self, hf: &str) -> Option<(String, Option<usize>)> {
        match hf {
            "model.embed_tokens.weight" => return Some(("token_embd.weight".into(), None)),
            "model.norm.weight" => return Some(("output_norm.weight".into(), None)),
            "lm_head.weight" => return Some(("output.weight".into(), None)),
            _ => {}
        }
        let rest = hf.strip_prefix("model.layers.")?;
        let (block, leaf) = rest.split_once('.')?;
        let (module, kind) = leaf.rsplit_once('.')?;
        let heads = self.config.num_attention_heads;
        let kv_heads = self.config.kv_heads();
        let (gguf, permute) = match module {
            "input_layernorm" => ("attn_norm", None),
            "self_attn.q_proj" => ("attn_q", Some(heads)),
            "self_attn.k_proj" => ("attn_k", Some(kv_heads)),
            "self_attn.v_proj" => ("attn_v", None),
            "self_attn.o_proj" => ("attn_output", None),
            "post_attention_layernorm" => ("ffn_norm", None),
            "mlp.gate_proj" => ("ffn_gate", None),
            "mlp.up_proj" => ("ffn_up", None),
            "mlp.down_proj" => ("ffn_down", None),
            _ => return None,
        };
        let permute = permute.filter(|_| self.permuted_qk);
        Some((format!("blk.{block}.{gguf}.{kind}"), permute))
    }
}

/// Undoes llama.cpp's row permutation of a Q or K projection (weight `[heads·hd, in]` or bias
/// `[heads·hd]`): GGUF row `h·hd + 2i + j` holds HF row `h·hd + j·hd/2 + i`.
pub fn unpermute_rows(tensor: HostTensor, heads: usize) -> HostTensor {
    let rows = tensor.shape[0];
    let width = tensor.data.len() / rows.max(1);
    let hd = rows / heads;
    let half = hd / 2;
    let mut data = vec![0.0; tensor.data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let from = h * hd + 2 * i + j;
                let to = h * hd + j * half + i;
                data[to * width..(to + 1) * width]
                    .copy_from_slice(&tensor.data[from * width..(from + 1) * width]);
            }
        }
    }
    HostTensor {
        shape: tensor.shape,
        data,
    }
}

impl TensorSource for GgufLlamaSource {
    fn describe(&self) -> String {
        self.file.describe()
    }

    fn names(&self) -> Vec<String> {
        let mut names = vec![
            "model.embed_tokens.weight".to_string(),
            "model.norm.weight".to_string(),
        ];
        if self.file.contains("output.weight") {
            names.push("lm_head.weight".into());
        }
        for block in 0..self.config.num_hidden_layers {
            for module in [
                "input_layernorm",
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.o_proj",
                "post_attention_layernorm",
                "mlp.gate_proj",
                "mlp.up_proj",
                "mlp.down_proj",
            ] {
                for kind in ["weight", "bias"] {
                    let name = format!("model.layers.{block}.{module}.{kind}");
                    if self.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names
    }

    fn info(&self, name: &str) -> Option<TensorInfo> {
        let (gguf, _) = self.map_name(name)?;
        self.file.info(&gguf).map(|info| TensorInfo {
            name: name.to_string(),
            ..info
        })
    }

    fn load(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        let (gguf, permute) =
            self.map_name(name)
                .ok_or_else(|| CheckpointError::MissingTensor {
                    source_desc: self.describe(),
                    name: name.to_string(),
                })?;
        let tensor = self.file.load(&gguf)?;
        Ok(match permute {
            Some(heads) => unpermute_rows(tensor, heads),
            None => tensor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // One head of width 4 over 1 input: HF rows [a0, a1, b0, b1] (first half, second half)
        // are stored by llama.cpp interleaved as [a0, b0, a1, b1].
        let gguf = HostTensor {
            shape: vec![4, 1],
            data: vec![10.0, 20.0, 11.0, 21.0],
        };
        assert_eq!(unpermute_rows(gguf, 1).data, vec![10.0, 11.0, 20.0, 21.0]);
    }
}
