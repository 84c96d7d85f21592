//! Tokenizers rebuilt from GGUF metadata. The expected ids are those Hugging Face transformers
//! 5.x gives for the same files (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`).

use splitlm_weights::{
    CheckpointError, GgufFile, GgufSpecialTokens, GgufValue, special_token_id, tokenizer_from_gguf,
};

use super::gguf_writer::GgufWriter;
use super::message;

/// A tiny byte-level vocabulary: normal tokens, a normal BOS, a control EOS, a user-defined
/// token, a token with a raw space (respelled `aĠb`), a control token outside the byte alphabet
/// (respelled, not special) and a raw `日` (respelled `æĹ¥`).
fn vocabulary(add_bos: bool) -> GgufWriter {
    let types = [1, 1, 1, 1, 1, 1, 3, 4, 1, 3, 1, 1, 1];
    GgufWriter::new()
        .kv_str("tokenizer.ggml.model", "gpt2")
        .kv_strs(
            "tokenizer.ggml.tokens",
            &[
                "h",
                "i",
                "Ġ",
                "hi",
                "Ġhi",
                "<s>",
                "</s>",
                "<think>",
                "a b",
                "<|ctl日|>",
                "a",
                "b",
                "日",
            ],
        )
        .kv(
            "tokenizer.ggml.token_type",
            GgufValue::Array(types.iter().map(|&t| GgufValue::I32(t)).collect()),
        )
        .kv_strs("tokenizer.ggml.merges", &["h i", "Ġ hi"])
        .kv("tokenizer.ggml.bos_token_id", GgufValue::U32(5))
        .kv("tokenizer.ggml.eos_token_id", GgufValue::U32(6))
        .kv("tokenizer.ggml.add_bos_token", GgufValue::Bool(add_bos))
}

fn ids(tokenizer: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
    tokenizer.encode(text, true).unwrap().get_ids().to_vec()
}

#[test]
fn matches_transformers_without_bos() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(vocabulary(false).write(dir.path(), "t.gguf")).unwrap();
    let tokenizer = tokenizer_from_gguf(&file).unwrap();
    assert_eq!(ids(&tokenizer, "hi hi<think></s><s>"), [3, 4, 7, 6, 5]);
    assert_eq!(ids(&tokenizer, "a b 日"), [10, 2, 11, 2]);
    assert_eq!(ids(&tokenizer, "hi"), [3]);
    let pair = tokenizer.encode(("hi", "hi"), true).unwrap();
    assert_eq!(
        (pair.get_ids(), pair.get_type_ids()),
        (&[3, 3][..], &[0, 1][..])
    );

    assert_eq!(tokenizer.token_to_id("aĠb"), Some(8));
    assert_eq!(tokenizer.token_to_id("<|ctlæĹ¥|>"), Some(9));
    assert_ne!(ids(&tokenizer, "<|ctl日|>"), [9], "not a special token");
    let decoded = tokenizer.decode(&[3, 4, 7, 6, 5], false).unwrap();
    assert_eq!(decoded, "hi hi<think></s><s>");
    let decoded = tokenizer.decode(&[3, 4, 7, 6, 5], true).unwrap();
    assert_eq!(
        decoded, "hi hi<think>",
        "control and BOS tokens are special, <think> is not"
    );
}

#[test]
fn matches_transformers_with_bos() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(vocabulary(true).write(dir.path(), "t.gguf")).unwrap();
    let tokenizer = tokenizer_from_gguf(&file).unwrap();
    assert_eq!(ids(&tokenizer, "hi hi<think></s><s>"), [5, 3, 4, 7, 6, 5]);
    assert_eq!(ids(&tokenizer, "a b 日"), [5, 10, 2, 11, 2]);
    let plain = tokenizer.encode("hi", false).unwrap();
    assert_eq!(plain.get_ids(), [3], "no BOS without special tokens");
    let pair = tokenizer.encode(("hi", "hi"), true).unwrap();
    assert_eq!(pair.get_ids(), [5, 3, 5, 3]);
    assert_eq!(pair.get_type_ids(), [0, 0, 1, 1]);

    let specials = GgufSpecialTokens::read(&file).unwrap();
    let expected = GgufSpecialTokens {
        bos: Some(5),
        eos: Some(6),
        add_bos: true,
        ..Default::default()
    };
    assert_eq!(specials, expected);
    assert_eq!(special_token_id(&file, "eos").unwrap(), Some(6));
    assert_eq!(
        special_token_id(&file, "tokenizer.ggml.bos_token_id").unwrap(),
        Some(5)
    );
    assert_eq!(special_token_id(&file, "padding").unwrap(), None);
}

#[test]
fn splits_with_the_regex_of_tokenizer_ggml_pre() {
    let dir = tempfile::tempdir().unwrap();
    let digits = |pre: Option<&str>| {
        let mut writer = GgufWriter::new()
            .kv_str("tokenizer.ggml.model", "gpt2")
            .kv_strs("tokenizer.ggml.tokens", &["1", "2", "12"])
            .kv_strs("tokenizer.ggml.merges", &["1 2"]);
        if let Some(pre) = pre {
            writer = writer.kv_str("tokenizer.ggml.pre", pre);
        }
        let file = GgufFile::open(writer.write(dir.path(), "d.gguf")).unwrap();
        ids(&tokenizer_from_gguf(&file).unwrap(), "1112")
    };
    // GPT-2's regex keeps a run of digits together; Llama 3's cuts it every three digits.
    assert_eq!(digits(None), [0, 0, 2]);
    assert_eq!(digits(Some("smollm")), [0, 0, 2]);
    assert_eq!(digits(Some("llama-bpe")), [0, 0, 0, 1]);
    // Qwen2's splits every digit.
    assert_eq!(digits(Some("qwen2")), [0, 0, 0, 1]);
}

#[test]
fn other_tokenizer_models_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = GgufWriter::new()
        .kv_str("tokenizer.ggml.model", "llama")
        .write(dir.path(), "spm.gguf");
    let err = tokenizer_from_gguf(&GgufFile::open(path).unwrap()).unwrap_err();
    assert!(matches!(err, CheckpointError::Tokenizer { .. }));
    assert!(
        err.to_string()
            .contains("tokenizer model `llama` is not supported"),
        "{err}"
    );

    let path = GgufWriter::new().write(dir.path(), "none.gguf");
    let err = tokenizer_from_gguf(&GgufFile::open(path).unwrap()).unwrap_err();
    assert!(
        matches!(err, CheckpointError::MissingMetadata { ref key, .. } if key == "tokenizer.ggml.model")
    );

    let path = GgufWriter::new()
        .kv_str("tokenizer.ggml.model", "gpt2")
        .kv_strs("tokenizer.ggml.tokens", &["a"])
        .kv_strs("tokenizer.ggml.merges", &["a b"])
        .write(dir.path(), "merge.gguf");
    let msg = message(tokenizer_from_gguf(&GgufFile::open(path).unwrap()));
    assert!(msg.contains("merge.gguf: tokenizer:"), "{msg}");
}
