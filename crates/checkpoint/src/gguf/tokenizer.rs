//! Rebuilding a Hugging Face tokenizer from the vocabulary stored in GGUF metadata.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::{GgufFile, GgufValue};
use crate::CheckpointError;

/// `tokenizer.ggml.token_type` values that mark special tokens (control, user-defined).
const SPECIAL_TOKEN_TYPES: [u64; 2] = [3, 4];

/// Builds the tokenizer of a GGUF file whose `tokenizer.ggml.model` is `gpt2` (byte-level BPE,
/// as in SmolLM2, Llama 3 and Qwen2), the way Hugging Face transformers converts it: the stored
/// vocabulary and merges, GPT-2 byte-level pre-tokenisation without a prefix space, control
/// tokens as special added tokens, and BOS prepended only if `tokenizer.ggml.add_bos_token`.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer, CheckpointError> {
    let error = |detail: String| CheckpointError::Tokenizer {
        path: file.path().to_path_buf(),
        detail,
    };
    let model = file.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(error(format!(
            "tokenizer model `{model}` is not supported (supported: gpt2 byte-level BPE)"
        )));
    }
    let tokens = strings(file, "tokenizer.ggml.tokens")?;
    let merges = strings(file, "tokenizer.ggml.merges")?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), id as u32))
        .collect();
    let merges: Merges = merges
        .iter()
        .map(|merge| {
            merge
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| error(format!("merge `{merge}` is not two space-separated tokens")))
        })
        .collect::<Result<_, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| error(e.to_string()))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let specials = special_tokens(file, &tokens)?;
    tokenizer.add_special_tokens(
        &specials
            .iter()
            .map(|t| AddedToken::from(t.clone(), true))
            .collect::<Vec<_>>(),
    );
    let add_bos = file.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(false);
    match file.get_u32("tokenizer.ggml.bos_token_id") {
        Ok(bos) if add_bos => {
            let bos_token = tokens
                .get(bos as usize)
                .ok_or_else(|| error(format!("bos_token_id {bos} is outside the vocabulary")))?
                .clone();
            let template = TemplateProcessing::builder()
                .try_single(format!("{bos_token} $A"))
                .and_then(|b| b.try_pair(format!("{bos_token} $A {bos_token} $B")))
                .map_err(|e| error(e.to_string()))?
                .special_tokens(vec![(bos_token, bos)])
                .build()
                .map_err(|e| error(e.to_string()))?;
            tokenizer.with_post_processor(Some(template));
        }
        _ => {
            tokenizer.with_post_processor(Some(ByteLevel::default().trim_offsets(false)));
        }
    }
    Ok(tokenizer)
}

fn strings(file: &GgufFile, key: &str) -> Result<Vec<String>, CheckpointError> {
    file.get_array(key)?
        .iter()
        .map(|v| match v {
            GgufValue::String(s) => Ok(s.clone()),
            _ => Err(CheckpointError::Tokenizer {
                path: file.path().to_path_buf(),
                detail: format!("`{key}` holds a non-string"),
            }),
        })
        .collect()
}

/// Control and user-defined tokens, plus the declared BOS/EOS/UNK/PAD tokens.
fn special_tokens(file: &GgufFile, tokens: &[String]) -> Result<Vec<String>, CheckpointError> {
    let mut ids: Vec<usize> = match file.get_array("tokenizer.ggml.token_type") {
        Ok(types) => types
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t, GgufValue::Uint(v) if SPECIAL_TOKEN_TYPES.contains(v))
                || matches!(t, GgufValue::Int(v) if SPECIAL_TOKEN_TYPES.contains(&(*v as u64))))
            .map(|(id, _)| id)
            .collect(),
        Err(_) => Vec::new(),
    };
    for key in ["bos", "eos", "unknown", "padding"] {
        if let Ok(id) = file.get_u32(&format!("tokenizer.ggml.{key}_token_id")) {
            ids.push(id as usize);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids
        .into_iter()
        .filter_map(|id| tokens.get(id).cloned())
        .collect())
}
