//! GGUF reader tests on files written here, and on the real SmolLM2 file when it is cached.

use std::path::PathBuf;

use super::*;

/// A minimal GGUF v3 writer for tests.
struct Writer {
    metadata: Vec<u8>,
    kv_count: u64,
    infos: Vec<u8>,
    data: Vec<u8>,
    tensor_count: u64,
}

impl Writer {
    fn new() -> Self {
        Self { metadata: vec![], kv_count: 0, infos: vec![], data: vec![], tensor_count: 0 }
    }

    fn string(buf: &mut Vec<u8>, s: &str) {
        buf.extend((s.len() as u64).to_le_bytes());
        buf.extend(s.as_bytes());
    }

    fn kv_u32(mut self, key: &str, v: u32) -> Self {
        Self::string(&mut self.metadata, key);
        self.metadata.extend(4u32.to_le_bytes());
        self.metadata.extend(v.to_le_bytes());
        self.kv_count += 1;
        self
    }

    fn kv_str(mut self, key: &str, v: &str) -> Self {
        Self::string(&mut self.metadata, key);
        self.metadata.extend(8u32.to_le_bytes());
        Self::string(&mut self.metadata, v);
        self.kv_count += 1;
        self
    }

    fn kv_strs(mut self, key: &str, values: &[&str]) -> Self {
        Self::string(&mut self.metadata, key);
        self.metadata.extend(9u32.to_le_bytes());
        self.metadata.extend(8u32.to_le_bytes());
        self.metadata.extend((values.len() as u64).to_le_bytes());
        for v in values {
            Self::string(&mut self.metadata, v);
        }
        self.kv_count += 1;
        self
    }

    /// A tensor with ggml dims `ne` (innermost first) and raw block bytes.
    fn tensor(mut self, name: &str, ne: &[u64], kind: u32, bytes: &[u8]) -> Self {
        while self.data.len() % 32 != 0 {
            self.data.push(0);
        }
        Self::string(&mut self.infos, name);
        self.infos.extend((ne.len() as u32).to_le_bytes());
        for d in ne {
            self.infos.extend(d.to_le_bytes());
        }
        self.infos.extend(kind.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(bytes);
        self.tensor_count += 1;
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.tensor_count.to_le_bytes());
        out.extend(self.kv_count.to_le_bytes());
        out.extend(&self.metadata);
        out.extend(&self.infos);
        while out.len() % 32 != 0 {
            out.push(0);
        }
        out.extend(&self.data);
        out
    }

    fn write(&self, dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, self.bytes()).unwrap();
        path
    }
}

fn f16(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

fn sample() -> Writer {
    let f32s: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16s: Vec<u8> = [0.5f32, -1.5].iter().flat_map(|v| f16(*v)).collect();
    let mut q8 = f16(0.5).to_vec();
    q8.extend((0..32).map(|j: i32| j as i8 as u8));
    let mut q41 = f16(1.0).to_vec();
    q41.extend(f16(10.0));
    q41.extend((0..16u8).map(|j| j | (j << 4)));
    Writer::new()
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", 2)
        .tensor("m", &[3, 2], 0, &f32s)
        .tensor("h", &[2], 1, &f16s)
        .tensor("q8", &[32], 8, &q8)
        .tensor("q41", &[32], 3, &q41)
}

#[test]
fn reads_metadata_and_dequantises_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let file = GgufFile::open(&sample().write(&dir)).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(file.get_u32("llama.block_count").unwrap(), 2);
    let m = file.load("m").unwrap();
    assert_eq!(m.shape, vec![2, 3], "shape is ggml's ne reversed");
    assert_eq!(m.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(file.load("h").unwrap().data, vec![0.5, -1.5]);
    let q8 = file.load("q8").unwrap().data;
    assert_eq!((q8[0], q8[31]), (0.0, 15.5));
    let q41 = file.load("q41").unwrap().data;
    assert_eq!((q41[0], q41[15], q41[16 + 7]), (10.0, 25.0, 17.0));
    assert_eq!(file.info("q41").unwrap().dtype, "Q4_1");
    let err = file.get_u32("general.architecture").unwrap_err().to_string();
    assert!(err.contains("general.architecture"), "{err}");
    let err = file.get_str("missing.key").unwrap_err().to_string();
    assert!(err.contains("`missing.key` not found"), "{err}");
}

#[test]
fn malformed_files_give_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    let good = sample().bytes();

    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    std::fs::write(&path, &bad_magic).unwrap();
    let err = GgufFile::open(&path).err().unwrap().to_string();
    assert!(err.contains("bad magic"), "{err}");

    let mut bad_version = good.clone();
    bad_version[4..8].copy_from_slice(&99u32.to_le_bytes());
    std::fs::write(&path, &bad_version).unwrap();
    let err = GgufFile::open(&path).err().unwrap().to_string();
    assert!(err.contains("version 99"), "{err}");

    // Cut inside the header, the metadata, the tensor infos and the tensor data.
    for cut in [10, 40, 120, good.len() - 5] {
        std::fs::write(&path, &good[..cut]).unwrap();
        match GgufFile::open(&path) {
            Err(CheckpointError::Truncated { .. }) => {}
            other => panic!("cut at {cut}: expected a truncation error, got {:?}", other.err()),
        }
    }

    // An absurd count is refused before anything is allocated.
    let mut huge = good.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &huge).unwrap();
    assert!(matches!(GgufFile::open(&path), Err(CheckpointError::Truncated { .. })));
}

#[test]
fn unsupported_types_are_named_when_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = Writer::new().tensor("k", &[256], 12, &[0u8; 144]).write(&dir);
    let file = GgufFile::open(&path).unwrap();
    let err = file.load("k").unwrap_err().to_string();
    assert!(err.contains("Q4_K (type 12)") && err.contains("`k`"), "{err}");
}

#[test]
fn builds_a_byte_level_bpe_tokenizer_from_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = Writer::new()
        .kv_str("tokenizer.ggml.model", "gpt2")
        .kv_strs("tokenizer.ggml.tokens", &["<|end|>", "h", "i", "Ġ", "hi", "Ġhi"])
        .kv_strs("tokenizer.ggml.merges", &["h i", "Ġ hi"])
        .kv_u32("tokenizer.ggml.eos_token_id", 0)
        .write(&dir);
    let file = GgufFile::open(&path).unwrap();
    let tokenizer = tokenizer_from_gguf(&file).unwrap();
    let ids = tokenizer.encode("hi hi<|end|>", false).unwrap().get_ids().to_vec();
    assert_eq!(ids, vec![4, 5, 0]);
    assert_eq!(tokenizer.decode(&[4, 5], false).unwrap(), "hi hi");

    let path = Writer::new().kv_str("tokenizer.ggml.model", "llama").write(&dir);
    let err = tokenizer_from_gguf(&GgufFile::open(&path).unwrap()).unwrap_err().to_string();
    assert!(err.contains("`llama` is not supported"), "{err}");
}

fn smollm2() -> Option<PathBuf> {
    let root = std::env::var_os("SPLITLM_ASSETS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/splitlm/assets")))?;
    let path = root.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("SKIPPED: {} is absent (run `cargo xtask assets`)", path.display());
        None
    }
}

#[test]
fn opens_the_real_smollm2_file() {
    let Some(path) = smollm2() else { return };
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(file.info("token_embd.weight").unwrap().shape, vec![49152, 576]);
    assert!(file.contains("blk.29.ffn_down.weight"));
    let norm = file.load("output_norm.weight").unwrap();
    assert_eq!(norm.shape, vec![576]);
    let tokenizer = tokenizer_from_gguf(&file).unwrap();
    let text = "The capital of France is Paris.";
    let ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
    let start = tokenizer.encode("<|im_start|>user", false).unwrap().get_ids().to_vec();
    assert_eq!(start[0], 1);
}
