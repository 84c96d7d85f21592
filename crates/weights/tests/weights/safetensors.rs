//! Safetensors checkpoints written with the `safetensors` crate.

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use splitlm_weights::{CheckpointError, SafetensorsCheckpoint, TensorSource, read_hf_config};

use super::message;

fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn bytes<T: Copy, const N: usize>(values: &[T], to_le: fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|v| to_le(*v)).collect()
}

fn f32s(values: &[f32]) -> Vec<u8> {
    bytes(values, f32::to_le_bytes)
}

#[test]
fn reads_a_single_file_and_converts_float_types() {
    let dir = tempfile::tempdir().unwrap();
    let f16 = bytes(&[1.5f32, -2.0], |v| half::f16::from_f32(v).to_le_bytes());
    let bf16 = bytes(&[0.5f32, 4.0, -3.0], |v| {
        half::bf16::from_f32(v).to_le_bytes()
    });
    write(
        &dir.path().join("model.safetensors"),
        &[
            ("a", Dtype::F32, vec![2, 2], f32s(&[1.0, 2.0, 3.0, 4.0])),
            ("h", Dtype::F16, vec![2], f16),
            ("b", Dtype::BF16, vec![3, 1], bf16),
            (
                "d",
                Dtype::F64,
                vec![1],
                bytes(&[0.25f64], f64::to_le_bytes),
            ),
            (
                "ids",
                Dtype::I64,
                vec![1, 2],
                bytes(&[7i64, -9], i64::to_le_bytes),
            ),
            (
                "ids32",
                Dtype::I32,
                vec![2],
                bytes(&[3i32, 4], i32::to_le_bytes),
            ),
            ("flags", Dtype::U8, vec![2], vec![1, 0]),
        ],
    );
    // The directory and the file itself both work.
    for path in [
        dir.path().to_path_buf(),
        dir.path().join("model.safetensors"),
    ] {
        let ckpt = SafetensorsCheckpoint::open(&path).unwrap();
        let a = ckpt.load_shaped("a", &[2, 2]).unwrap();
        assert_eq!(a.data, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(ckpt.load("h").unwrap().data, vec![1.5, -2.0]);
        let b = ckpt.load("b").unwrap();
        assert_eq!((b.shape, b.data), (vec![3, 1], vec![0.5, 4.0, -3.0]));
        assert_eq!(ckpt.load("d").unwrap().data, vec![0.25]);
        assert_eq!(ckpt.load_i64("ids").unwrap(), (vec![1, 2], vec![7, -9]));
        assert_eq!(ckpt.load_i64("ids32").unwrap(), (vec![2], vec![3, 4]));
        assert_eq!(ckpt.info("b").unwrap().dtype, "BF16");
        assert_eq!(ckpt.names(), ["a", "b", "d", "flags", "h", "ids", "ids32"]);
    }
    let ckpt = SafetensorsCheckpoint::open(dir.path()).unwrap();

    let err = ckpt.load("flags").unwrap_err();
    assert!(matches!(err, CheckpointError::UnsupportedDType { .. }));
    assert!(
        err.to_string().contains("`flags`") && err.to_string().contains("U8"),
        "{err}"
    );
    let msg = message(ckpt.load_i64("a"));
    assert!(msg.contains("`a`") && msg.contains("F32"), "{msg}");

    let err = ckpt.load_shaped("a", &[4]).unwrap_err();
    assert!(matches!(err, CheckpointError::ShapeMismatch { .. }));
    assert!(
        err.to_string().contains("[2, 2]") && err.to_string().contains("[4]"),
        "{err}"
    );

    let name = "encoder.layer.3.attention.self.query.weight";
    let err = ckpt.load(name).unwrap_err();
    assert!(matches!(err, CheckpointError::MissingTensor { .. }));
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!("{}: tensor `{name}` not found", dir.path().display())
    );
    assert!(!ckpt.contains(name) && ckpt.contains("a"));
}

#[test]
fn reads_sharded_checkpoints_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let shard1 = "model-00001-of-00002.safetensors";
    let shard2 = "model-00002-of-00002.safetensors";
    write(
        &dir.path().join(shard1),
        &[
            ("x", Dtype::F32, vec![1], f32s(&[1.0])),
            ("z", Dtype::F32, vec![2], f32s(&[5.0, 6.0])),
        ],
    );
    write(
        &dir.path().join(shard2),
        &[("y", Dtype::F32, vec![1], f32s(&[2.0]))],
    );
    let index = format!(
        r#"{{"metadata": {{"total_size": 16}},
            "weight_map": {{"x": "{shard1}", "z": "{shard1}", "y": "{shard2}", "w": "{shard2}"}}}}"#
    );
    std::fs::write(dir.path().join("model.safetensors.index.json"), index).unwrap();

    let ckpt = SafetensorsCheckpoint::open(dir.path()).unwrap();
    assert_eq!(ckpt.files().len(), 2);
    assert_eq!(ckpt.names(), ["w", "x", "y", "z"]);
    assert_eq!(ckpt.load("y").unwrap().data, vec![2.0]);
    assert_eq!(ckpt.load("z").unwrap().data, vec![5.0, 6.0]);
    assert_eq!(ckpt.info("x").unwrap().shape, vec![1]);
    // The index lists `w`, but its shard lacks it.
    let msg = message(ckpt.load("w"));
    assert!(msg.contains(shard2) && msg.contains("`w`"), "{msg}");
    let msg = message(ckpt.load("v"));
    assert!(msg.contains("tensor `v` not found"), "{msg}");

    // A shard listed by the index must exist.
    std::fs::remove_file(dir.path().join(shard2)).unwrap();
    let msg = message(SafetensorsCheckpoint::open(dir.path()));
    assert!(
        msg.contains(shard2) && msg.contains("does not exist"),
        "{msg}"
    );
}

#[test]
fn directories_without_a_clear_checkpoint_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let msg = message(SafetensorsCheckpoint::open(dir.path()));
    assert!(
        msg.contains("no .safetensors file") || msg.contains("no model.safetensors"),
        "{msg}"
    );

    write(
        &dir.path().join("only.safetensors"),
        &[("x", Dtype::F32, vec![1], f32s(&[1.0]))],
    );
    let ckpt = SafetensorsCheckpoint::open(dir.path()).unwrap();
    assert_eq!(ckpt.load("x").unwrap().data, vec![1.0]);

    write(
        &dir.path().join("other.safetensors"),
        &[("y", Dtype::F32, vec![1], f32s(&[1.0]))],
    );
    let msg = message(SafetensorsCheckpoint::open(dir.path()));
    assert!(msg.contains("2 .safetensors files"), "{msg}");
}

#[test]
fn truncated_and_corrupt_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write(
        &path,
        &[("a", Dtype::F32, vec![4], f32s(&[1.0, 2.0, 3.0, 4.0]))],
    );
    let good = std::fs::read(&path).unwrap();
    for cut in [0, 4, 20, good.len() - 16, good.len() - 3] {
        std::fs::write(&path, &good[..cut]).unwrap();
        match SafetensorsCheckpoint::open(&path) {
            Err(CheckpointError::Truncated { path: p, detail }) => {
                assert!(p.ends_with("model.safetensors"), "{}", p.display());
                assert!(!detail.is_empty());
            }
            other => panic!("cut at {cut}: expected Truncated, got {:?}", other.err()),
        }
    }
    let msg = message(SafetensorsCheckpoint::open(&path));
    assert!(msg.contains("model.safetensors: truncated file"), "{msg}");

    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x5A;
        std::fs::write(&path, &bad).unwrap();
        if let Ok(ckpt) = SafetensorsCheckpoint::open(&path) {
            for name in ckpt.names() {
                let _ = ckpt.load(&name);
            }
        }
    }

    let absent = dir.path().join("absent.safetensors");
    let err = SafetensorsCheckpoint::open(&absent).err().unwrap();
    assert!(matches!(err, CheckpointError::Io { .. }));
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
}

#[test]
fn reads_hf_configs() {
    let dir = tempfile::tempdir().unwrap();
    let msg = message(read_hf_config(dir.path()));
    assert!(
        msg.contains("config.json") && msg.contains("not found"),
        "{msg}"
    );
    std::fs::write(dir.path().join("config.json"), "{\"hidden_size\": 384,").unwrap();
    let msg = message(read_hf_config(dir.path()));
    assert!(msg.contains("config.json: invalid JSON"), "{msg}");
    std::fs::write(dir.path().join("config.json"), r#"{"hidden_size": 384}"#).unwrap();
    assert_eq!(read_hf_config(dir.path()).unwrap()["hidden_size"], 384);
    let file = dir.path().join("config.json");
    assert_eq!(read_hf_config(&file).unwrap()["hidden_size"], 384);
}
