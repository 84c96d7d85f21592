//! GGUF reading on files written by the test writer.

use splitlm_weights::{CheckpointError, GgmlType, GgufFile, GgufValue, TensorSource};

use super::gguf_writer::*;
use super::message;

/// Values exactly representable by each quantisation (so a round trip is exact): per block,
/// `Q8_0` multiples of 0.5 reaching ±63.5, `Q4_0` multiples of 0.25 in [-2, 1.75] reaching -2,
/// `Q4_1` `-1 + k/2` for k in 0..=15 reaching both ends.
fn exact_values(kind: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let k = (i * 7 + i / 32) % 256;
            match kind {
                Q8_0 if i % 32 == 0 => 63.5,
                Q8_0 => ((k % 255) as f32 - 127.0) * 0.5,
                Q4_0 if i % 32 == 5 => -2.0,
                Q4_0 => (k % 16) as f32 * 0.25 - 2.0,
                Q4_1 if i % 32 == 0 => -1.0,
                Q4_1 if i % 32 == 31 => 6.5,
                Q4_1 => -1.0 + (k % 16) as f32 * 0.5,
                _ => unreachable!(),
            }
        })
        .collect()
}

fn sample() -> GgufWriter {
    let f32s: Vec<f32> = (0..24).map(|i| i as f32 - 3.5).collect();
    GgufWriter::new()
        .kv_str("general.architecture", "llama")
        .kv("llama.block_count", GgufValue::U32(2))
        .tensor("cube", &[4, 3, 2], F32, f32_bytes(&f32s))
        .tensor("half", &[3], F16, f16_bytes(&[0.5, -1.5, 65504.0]))
        .tensor(
            "q8",
            &[64, 3],
            Q8_0,
            quantize_q8_0(&exact_values(Q8_0, 192)),
        )
        .tensor(
            "q40",
            &[32, 2],
            Q4_0,
            quantize_q4_0(&exact_values(Q4_0, 64)),
        )
        .tensor("q41", &[96], Q4_1, quantize_q4_1(&exact_values(Q4_1, 96)))
}

#[test]
fn dequantises_every_supported_type_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(sample().write(dir.path(), "model.gguf")).unwrap();
    assert_eq!(file.version(), 3);

    let cube = file.load("cube").unwrap();
    assert_eq!(cube.shape, vec![2, 3, 4], "shape is ggml's ne reversed");
    assert_eq!(
        cube.data,
        (0..24).map(|i| i as f32 - 3.5).collect::<Vec<_>>()
    );
    assert_eq!(file.ggml_dims("cube").unwrap(), &[4, 3, 2]);
    assert_eq!(file.load("half").unwrap().data, vec![0.5, -1.5, 65504.0]);

    let q8 = file.load("q8").unwrap();
    assert_eq!(q8.shape, vec![3, 64]);
    assert_eq!(q8.data, exact_values(Q8_0, 192));
    let q40 = file.load("q40").unwrap();
    assert_eq!(q40.shape, vec![2, 32]);
    assert_eq!(q40.data, exact_values(Q4_0, 64));
    let q41 = file.load_shaped("q41", &[96]).unwrap();
    assert_eq!(q41.data, exact_values(Q4_1, 96));

    let info = file.info("q41").unwrap();
    assert_eq!((info.name.as_str(), info.dtype.as_str()), ("q41", "Q4_1"));
    assert_eq!(file.info("q8").unwrap().dtype, "Q8_0");
    assert_eq!(file.ggml_type("q40"), Some(GgmlType::Q4_0));
    assert_eq!(file.names(), ["cube", "half", "q40", "q41", "q8"]);
    assert!(file.contains("q8") && !file.contains("q9"));
    let (kind, raw) = file.raw_bytes("q41").unwrap();
    assert_eq!((kind, raw.len()), (GgmlType::Q4_1, 3 * 20));
}

#[test]
fn quantised_values_stay_within_half_a_step() {
    let values: Vec<f32> = (0..256)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.3)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = GgufWriter::new()
        .tensor("q8", &[256], Q8_0, quantize_q8_0(&values))
        .tensor("q40", &[256], Q4_0, quantize_q4_0(&values))
        .tensor("q41", &[256], Q4_1, quantize_q4_1(&values))
        .write(dir.path(), "q.gguf");
    let file = GgufFile::open(path).unwrap();
    // Worst error per block, as a fraction of the block's largest magnitude: half a step of
    // 1/127 for Q8_0 and 2/15 for Q4_1; a whole step of 1/8 for Q4_0, whose positive side stops
    // at 7/8 of a negative maximum.
    for (name, fraction) in [("q8", 0.5 / 127.0), ("q40", 1.0 / 8.0), ("q41", 1.0 / 15.0)] {
        let loaded = file.load(name).unwrap().data;
        for (block, expected) in loaded.chunks(32).zip(values.chunks(32)) {
            let amax = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
            let tolerance = amax * fraction * 1.01 + 1e-3;
            for (got, want) in block.iter().zip(expected) {
                assert!((got - want).abs() <= tolerance, "{name}: {got} vs {want}");
            }
        }
    }
}

#[test]
fn reads_every_metadata_type_and_converts_integers() {
    let nested = GgufValue::Array(vec![
        GgufValue::Array(vec![GgufValue::I16(-1), GgufValue::I16(2)]),
        GgufValue::Array(vec![]),
    ]);
    let values = [
        ("t.u8", GgufValue::U8(200)),
        ("t.i8", GgufValue::I8(-5)),
        ("t.u16", GgufValue::U16(60000)),
        ("t.i16", GgufValue::I16(-300)),
        ("t.u32", GgufValue::U32(4_000_000_000)),
        ("t.i32", GgufValue::I32(-7)),
        ("t.f32", GgufValue::F32(1.5)),
        ("t.bool", GgufValue::Bool(true)),
        ("t.str", GgufValue::String("héllo".into())),
        ("t.u64", GgufValue::U64(u64::MAX)),
        ("t.i64", GgufValue::I64(42)),
        ("t.f64", GgufValue::F64(-2.25)),
        ("t.nested", nested.clone()),
        (
            "t.strs",
            GgufValue::Array(vec![
                GgufValue::String("a".into()),
                GgufValue::String("".into()),
            ]),
        ),
    ];
    let mut writer = GgufWriter::new().version(2);
    for (key, value) in &values {
        writer = writer.kv(key, value.clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(writer.write(dir.path(), "meta.gguf")).unwrap();
    assert_eq!(file.version(), 2);
    for (key, value) in &values {
        assert_eq!(file.get(key), Some(value), "{key}");
    }
    assert_eq!(file.metadata().len(), values.len());

    assert_eq!(file.get_u32("t.u8").unwrap(), 200);
    assert_eq!(file.get_u32("t.i64").unwrap(), 42);
    assert_eq!(file.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(file.get_i64("t.i8").unwrap(), -5);
    assert_eq!(file.get_usize("t.u16").unwrap(), 60000);
    assert_eq!(file.get_f32("t.f64").unwrap(), -2.25);
    assert_eq!(file.get_f32("t.i32").unwrap(), -7.0);
    assert!(file.get_bool("t.bool").unwrap());
    assert_eq!(file.get_str("t.str").unwrap(), "héllo");
    assert_eq!(file.get_str_array("t.strs").unwrap(), ["a", ""]);
    assert_eq!(file.get_array("t.nested").unwrap().len(), 2);

    for (key, wrong) in [
        ("t.i32", file.get_u32("t.i32").err()),
        ("t.u64", file.get_i64("t.u64").err()),
        ("t.u32", file.get_str("t.u32").err()),
        ("t.str", file.get_u32("t.str").err()),
        ("t.nested", file.get_str_array("t.nested").err()),
    ] {
        match wrong {
            Some(CheckpointError::BadFormat { detail, .. }) => {
                assert!(detail.contains(key), "{detail}")
            }
            other => panic!("{key}: expected BadFormat, got {other:?}"),
        }
    }
    let err = file.get_u32("no.such.key").unwrap_err();
    assert!(
        matches!(err, CheckpointError::MissingMetadata { ref key, .. } if key == "no.such.key")
    );
    assert!(
        err.to_string()
            .contains("meta.gguf: metadata key `no.such.key` not found")
    );
}

#[test]
fn honours_a_custom_alignment() {
    let dir = tempfile::tempdir().unwrap();
    let path = GgufWriter::new()
        .kv("general.alignment", GgufValue::U32(64))
        .tensor("a", &[3], F32, f32_bytes(&[1.0, 2.0, 3.0]))
        .tensor("b", &[2], F32, f32_bytes(&[4.0, 5.0]))
        .write(dir.path(), "aligned.gguf");
    let file = GgufFile::open(path).unwrap();
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_offset() % 64, 0);
    assert_eq!(file.load("b").unwrap().data, vec![4.0, 5.0]);
}

#[test]
fn missing_tensors_and_wrong_shapes_name_the_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(sample().write(dir.path(), "model.gguf")).unwrap();
    let msg = message(file.load("blk.3.attn_q.weight"));
    assert!(
        msg.contains("model.gguf: tensor `blk.3.attn_q.weight` not found"),
        "{msg}"
    );
    let err = file.load_shaped("q8", &[64, 3]).unwrap_err();
    assert!(matches!(err, CheckpointError::ShapeMismatch { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("`q8`") && msg.contains("[3, 64]") && msg.contains("[64, 3]"),
        "{msg}"
    );
}

/// Opens `bytes` written to a file.
fn open_bytes(bytes: &[u8]) -> Result<GgufFile, CheckpointError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    GgufFile::open(&path)
}

#[test]
fn malformed_headers_give_the_right_errors() {
    let (good, layout) = sample().to_bytes_with_layout();

    let mut bad = good.clone();
    bad[..4].copy_from_slice(b"GGML");
    let err = open_bytes(&bad).err().unwrap();
    assert!(matches!(err, CheckpointError::BadFormat { .. }), "{err}");
    assert!(err.to_string().contains("bad magic"), "{err}");

    let mut bad = good.clone();
    bad[4..8].copy_from_slice(&99u32.to_le_bytes());
    let err = open_bytes(&bad).err().unwrap();
    assert!(
        matches!(err, CheckpointError::UnsupportedVersion { version: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("GGUF version 99"), "{err}");

    // Cut in the header, the metadata, the tensor infos and the tensor data.
    for cut in [
        6,
        20,
        layout.metadata + 30,
        layout.tensor_infos + 10,
        layout.data + 8,
        good.len() - 1,
    ] {
        match open_bytes(&good[..cut]) {
            Err(CheckpointError::Truncated { detail, .. }) => assert!(!detail.is_empty()),
            other => panic!("cut at {cut}: expected Truncated, got {:?}", other.err()),
        }
    }

    // Counts and lengths far past the end of the file are refused before allocating.
    for at in [8, 16, layout.metadata] {
        let mut bad = good.clone();
        bad[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        assert!(
            matches!(open_bytes(&bad), Err(CheckpointError::Truncated { .. })),
            "huge count at {at}"
        );
    }
}

#[test]
fn malformed_tensor_infos_give_the_right_errors() {
    let dir = tempfile::tempdir().unwrap();
    let open = |writer: GgufWriter| GgufFile::open(writer.write(dir.path(), "t.gguf"));

    // A Q4_0 row of 48 values is not whole blocks.
    let err = open(GgufWriter::new().tensor("w", &[48], Q4_0, vec![0; 36]))
        .err()
        .unwrap();
    assert!(matches!(err, CheckpointError::BadFormat { .. }), "{err}");
    assert!(
        err.to_string().contains("`w`") && err.to_string().contains("Q4_0"),
        "{err}"
    );

    // Data announced past the end of the file.
    let err = open(GgufWriter::new().tensor("w", &[64, 64], F32, vec![0; 64]))
        .err()
        .unwrap();
    assert!(matches!(err, CheckpointError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("`w`"), "{err}");

    let err = open(GgufWriter::new().tensor("w", &[1, 1, 1, 1, 1], F32, vec![0; 4]))
        .err()
        .unwrap();
    assert!(err.to_string().contains("5 dimensions"), "{err}");

    let err = open(GgufWriter::new().tensor("w", &[1], F32, vec![0; 4]).tensor(
        "w",
        &[1],
        F32,
        vec![0; 4],
    ))
    .err()
    .unwrap();
    assert!(err.to_string().contains("`w` appears twice"), "{err}");

    let (mut bytes, layout) = GgufWriter::new()
        .tensor("w", &[1], F32, vec![0; 4])
        .to_bytes_with_layout();
    // name (8 + 1), rank (4), ne (8), type (4), then the offset.
    let offset_at = layout.tensor_infos + 8 + 1 + 4 + 8 + 4;
    bytes[offset_at..offset_at + 8].copy_from_slice(&4u64.to_le_bytes());
    let err = open_bytes(&bytes).err().unwrap();
    assert!(
        err.to_string().contains("not a multiple of the alignment"),
        "{err}"
    );

    let err = open(GgufWriter::new().kv("general.alignment", GgufValue::U32(48)))
        .err()
        .unwrap();
    assert!(err.to_string().contains("general.alignment"), "{err}");
}

#[test]
fn unsupported_types_are_named_when_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = GgufWriter::new()
        .tensor("k", &[256], Q4_K, vec![0; 144])
        .tensor("odd", &[8], 99, vec![0; 8])
        .write(dir.path(), "k.gguf");
    let file = GgufFile::open(path).unwrap();
    assert_eq!(file.info("k").unwrap().dtype, "Q4_K");
    let err = file.load("k").unwrap_err();
    assert!(matches!(err, CheckpointError::UnsupportedDType { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("Q4_K (type 12)") && msg.contains("`k`"),
        "{msg}"
    );
    let msg = message(file.load("odd"));
    assert!(msg.contains("unknown (type 99)"), "{msg}");
}

#[test]
fn no_cut_or_corruption_panics() {
    let (good, layout) = sample()
        .kv_strs("tokenizer.ggml.tokens", &["a", "b"])
        .to_bytes_with_layout();
    for cut in 0..good.len() {
        let _ = open_bytes(&good[..cut]);
    }
    for at in 0..layout.data {
        for byte in [0x00, 0x7F, 0xFF] {
            let mut bad = good.clone();
            bad[at] = byte;
            if let Ok(file) = open_bytes(&bad) {
                for name in file.names() {
                    let _ = file.load(&name);
                }
            }
        }
    }
}

#[test]
fn a_directory_is_not_a_gguf_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = splitlm_weights::GgufFile::open(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("is a directory"), "{err}");
}
