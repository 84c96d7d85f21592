//! Rebuilding a Hugging Face tokenizer from the vocabulary stored in GGUF metadata.
//!
//! The result matches what Hugging Face transformers (5.x, `AutoTokenizer.from_pretrained(dir,
//! gguf_file=...)`) builds from the same file for `tokenizer.ggml.model == "gpt2"`:
//! - a BPE model over `tokenizer.ggml.tokens` (id = index) and `tokenizer.ggml.merges`; a token
//!   that is not written in the GPT-2 byte alphabet is respelled byte by byte into it;
//! - no normalizer; a byte-level pre-tokenizer without prefix space, preceded by the split
//!   regex of `tokenizer.ggml.pre` when transformers knows one (Llama 3, Qwen2, ...), else with
//!   GPT-2's own regex; a byte-level decoder;
//! - control tokens (`token_type` 3) and the declared BOS/EOS/UNK/PAD tokens as special added
//!   tokens, user-defined tokens (`token_type` 4) as non-special added tokens, all matched whole
//!   and unnormalised;
//! - a post-processor that adds BOS / EOS only when `tokenizer.ggml.add_bos_token` /
//!   `tokenizer.ggml.add_eos_token` say so.
//!
//! One transformers quirk is left out: when a file's vocabulary has no `<|endoftext|>`,
//! transformers appends one (GPT-2's default unknown token) as an extra special token past the
//! model's vocabulary; here the vocabulary stays the file's.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::GgufFile;
use crate::CheckpointError;

/// `tokenizer.ggml.token_type` of control tokens (`<|endoftext|>`).
const CONTROL: i64 = 3;
/// `tokenizer.ggml.token_type` of user-defined tokens (`<think>`).
const USER_DEFINED: i64 = 4;

/// The special token ids and flags a GGUF file declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GgufSpecialTokens {
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unknown: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub padding: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (false when absent).
    pub add_bos: bool,
    /// `tokenizer.ggml.add_eos_token` (false when absent).
    pub add_eos: bool,
}

impl GgufSpecialTokens {
    /// Reads the ids and flags; absent keys give `None` / `false`, keys of the wrong type errors.
    pub fn read(file: &GgufFile) -> Result<Self, CheckpointError> {
        let flag = |key: &str| match file.get(key) {
            None => Ok(false),
            Some(_) => file.get_bool(key),
        };
        Ok(Self {
            bos: special_token_id(file, "bos")?,
            eos: special_token_id(file, "eos")?,
            unknown: special_token_id(file, "unknown")?,
            padding: special_token_id(file, "padding")?,
            add_bos: flag("tokenizer.ggml.add_bos_token")?,
            add_eos: flag("tokenizer.ggml.add_eos_token")?,
        })
    }
}

/// The id under `tokenizer.ggml.<kind>_token_id` (`kind` is `bos`, `eos`, `unknown` or
/// `padding`; a full key is accepted too); `Ok(None)` when absent.
pub fn special_token_id(file: &GgufFile, kind: &str) -> Result<Option<u32>, CheckpointError> {
    let key = if kind.starts_with("tokenizer.") {
        kind.to_string()
    } else {
        format!("tokenizer.ggml.{kind}_token_id")
    };
    match file.get(&key) {
        None => Ok(None),
        Some(_) => file.get_u32(&key).map(Some),
    }
}

/// Builds the tokenizer of a GGUF file whose `tokenizer.ggml.model` is `gpt2` (byte-level BPE,
/// as in SmolLM2, Llama 3 and Qwen2 files), the way Hugging Face transformers does (see the
/// module documentation). Other tokenizer models are refused with an error naming the model.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer, CheckpointError> {
    let error = |detail: String| CheckpointError::Tokenizer {
        path: file.path().to_path_buf(),
        detail,
    };
    let model = file.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(error(format!(
            "tokenizer model `{model}` is not supported (supported: `gpt2`, byte-level BPE)"
        )));
    }
    let tokens = file.get_str_array("tokenizer.ggml.tokens")?;
    let token_types = match file.get("tokenizer.ggml.token_type") {
        None => Vec::new(),
        Some(_) => file.get_i64_array("tokenizer.ggml.token_type")?,
    };
    let specials = GgufSpecialTokens::read(file)?;
    let alphabet = ByteAlphabet::new();

    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (alphabet.respell(token), id as u32))
        .collect();
    let merges = file
        .get_str_array("tokenizer.ggml.merges")?
        .into_iter()
        .map(|merge| match merge.split(' ').collect::<Vec<_>>()[..] {
            [a, b] => Ok((a.to_string(), b.to_string())),
            _ => Err(error(format!(
                "merge `{merge}` is not two tokens separated by one space"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| error(format!("invalid vocabulary or merges: {e}")))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(file).map_err(error)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    let token_type = |id: usize| token_types.get(id).copied();
    // Control tokens spelled outside the byte alphabet are llama.cpp mislabels; transformers
    // skips them.
    let mut special: Vec<usize> = (0..tokens.len())
        .filter(|&id| token_type(id) == Some(CONTROL) && alphabet.spells(tokens[id]))
        .collect();
    // transformers also registers the declared BOS/EOS/UNK/PAD tokens as special.
    for id in [
        specials.bos,
        specials.eos,
        specials.unknown,
        specials.padding,
    ]
    .into_iter()
    .flatten()
    {
        let id = id as usize;
        match tokens.get(id) {
            Some(token) if alphabet.spells(token) => special.push(id),
            Some(token) => log::warn!(
                "{}: special token {id} `{token}` is not in the byte alphabet; not added",
                file.path().display()
            ),
            None => {
                return Err(error(format!(
                    "special token id {id} is outside the vocabulary of {} tokens",
                    tokens.len()
                )));
            }
        }
    }
    special.sort_unstable();
    special.dedup();
    let special_tokens: Vec<AddedToken> = special
        .iter()
        .map(|&id| AddedToken::from(tokens[id], true).normalized(false))
        .collect();
    tokenizer.add_special_tokens(&special_tokens);
    let user_defined: Vec<AddedToken> = (0..tokens.len())
        .filter(|&id| token_type(id) == Some(USER_DEFINED) && alphabet.spells(tokens[id]))
        .filter(|id| special.binary_search(id).is_err())
        .map(|id| AddedToken::from(tokens[id], false).normalized(false))
        .collect();
    tokenizer.add_tokens(&user_defined);

    tokenizer.with_post_processor(Some(post_processor(&specials, &tokens).map_err(error)?));
    Ok(tokenizer)
}

/// transformers' pre-tokenizer split regex for a `tokenizer.ggml.pre` value.
fn split_regex(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = concat!(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    const QWEN2: &str = concat!(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}",
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    const QWEN35: &str = concat!(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}",
        r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    const TEKKEN: &str = concat!(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+",
        r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*",
        r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    const GPT4O: &str = concat!(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*",
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2,
        "qwen35" => QWEN35,
        "tekken" => TEKKEN,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O,
        _ => return None,
    })
}

/// The pre-tokenizer for the file's `tokenizer.ggml.pre` (GPT-2's byte-level one by default,
/// as for SmolLM2's `smollm`).
fn pre_tokenizer(file: &GgufFile) -> Result<PreTokenizerWrapper, String> {
    let pre = file.get_str("tokenizer.ggml.pre").unwrap_or("default");
    let Some(regex) = split_regex(pre) else {
        return Ok(ByteLevel::new(false, true, true).into());
    };
    let split = Split::new(
        SplitPattern::Regex(regex.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| format!("pre-tokenizer regex for `{pre}`: {e}"))?;
    Ok(Sequence::new(vec![
        split.into(),
        ByteLevel::new(false, true, false).into(),
    ])
    .into())
}

/// `[BOS] $A [EOS]` for one sequence, `... [BOS] $B [EOS]` (type 1) for pairs, with BOS / EOS
/// only where the file asks for them.
fn post_processor(
    specials: &GgufSpecialTokens,
    tokens: &[&str],
) -> Result<TemplateProcessing, String> {
    let token =
        |id: Option<u32>, wanted: bool, what: &str| -> Result<Option<(String, u32)>, String> {
            match (wanted, id) {
                (false, _) => Ok(None),
                (true, None) => {
                    log::warn!("add_{what}_token is set but no {what}_token_id; not added");
                    Ok(None)
                }
                (true, Some(id)) => tokens
                    .get(id as usize)
                    .map(|t| Some((t.to_string(), id)))
                    .ok_or_else(|| format!("{what}_token_id {id} is outside the vocabulary")),
            }
        };
    let bos = token(specials.bos, specials.add_bos, "bos")?;
    let eos = token(specials.eos, specials.add_eos, "eos")?;
    let sequence = |seq: &str, type_id: u32| {
        let mut parts = Vec::new();
        if let Some((t, _)) = &bos {
            parts.push(format!("{t}:{type_id}"));
        }
        parts.push(format!("${seq}:{type_id}"));
        if let Some((t, _)) = &eos {
            parts.push(format!("{t}:{type_id}"));
        }
        parts.join(" ")
    };
    let single = sequence("A", 0);
    let pair = format!("{single} {}", sequence("B", 1));
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| format!("post-processor template: {e}"))?
        .special_tokens(bos.into_iter().chain(eos).collect::<Vec<_>>())
        .build()
        .map_err(|e| format!("post-processor: {e}"))
}

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes stand for
/// themselves, the other 68 map in order to U+0100 onwards.
struct ByteAlphabet {
    chars: [char; 256],
}

impl ByteAlphabet {
    fn new() -> Self {
        let mut chars = ['\0'; 256];
        let mut next = 256u32;
        for (byte, slot) in chars.iter_mut().enumerate() {
            let printable = matches!(byte, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
            let code = if printable {
                byte as u32
            } else {
                next += 1;
                next - 1
            };
            *slot = char::from_u32(code).expect("below U+0144");
        }
        Self { chars }
    }

    /// Whether every character of `token` is in the alphabet.
    fn spells(&self, token: &str) -> bool {
        token.chars().all(|c| {
            let code = c as u32;
            (code < 256 && self.chars[code as usize] == c) || (256..256 + 68).contains(&code)
        })
    }

    /// `token` itself when written in the alphabet, else its UTF-8 bytes spelled in it.
    fn respell(&self, token: &str) -> String {
        if self.spells(token) {
            token.to_string()
        } else {
            token.bytes().map(|b| self.chars[b as usize]).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let a = ByteAlphabet::new();
        assert_eq!(a.chars[b' ' as usize], 'Ġ');
        assert_eq!(a.chars[b'\n' as usize], 'Ċ');
        assert_eq!(a.chars[b'A' as usize], 'A');
        assert_eq!(a.chars[0xAD], 'Ń');
        assert!(a.spells("Ġhello") && !a.spells("a b") && !a.spells("日"));
        assert_eq!(a.respell("a b"), "aĠb");
        assert_eq!(a.respell("日"), "æĹ¥");
    }

    #[test]
    fn split_regexes_compile() {
        for pre in ["llama-bpe", "qwen2", "qwen35", "tekken", "gpt-4o"] {
            let regex = split_regex(pre).unwrap();
            Split::new(
                SplitPattern::Regex(regex.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .unwrap_or_else(|e| panic!("{pre}: {e}"));
        }
        assert!(split_regex("smollm").is_none());
    }
}
