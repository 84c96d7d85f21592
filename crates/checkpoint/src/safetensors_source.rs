//! Hugging Face safetensors checkpoints: one file, or shards listed by an index.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;

use crate::{CheckpointError, HostTensor, TensorInfo, TensorSource};

/// One memory-mapped `.safetensors` file with its parsed header.
struct Shard {
    path: PathBuf,
    mmap: Mmap,
    header_len: usize,
    metadata: Metadata,
}

impl Shard {
    fn open(path: &Path) -> Result<Self, CheckpointError> {
        let file = File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        // SAFETY: the map is read-only; a checkpoint modified while mapped is outside what
        // any reader can defend against, as with every memory-mapped weight loader.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| CheckpointError::io(path, e))?;
        let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| {
            let detail = format!("invalid safetensors header or data layout: {e}");
            match e {
                safetensors::SafeTensorError::MetadataIncompleteBuffer
                | safetensors::SafeTensorError::HeaderTooSmall
                | safetensors::SafeTensorError::InvalidHeaderLength => CheckpointError::Truncated {
                    path: path.to_path_buf(),
                    detail,
                },
                _ => CheckpointError::bad(path, detail),
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            header_len,
            metadata,
        })
    }

    fn bytes(&self, name: &str) -> Option<(&safetensors::tensor::TensorInfo, &[u8])> {
        let info = self.metadata.info(name)?;
        let start = 8 + self.header_len + info.data_offsets.0;
        let end = 8 + self.header_len + info.data_offsets.1;
        Some((info, &self.mmap[start..end]))
    }
}

/// A safetensors checkpoint: a single file, or a directory with `model.safetensors`, or with
/// `model.safetensors.index.json` and its shards. Files are memory-mapped; a tensor's bytes are
/// read only when it is loaded.
pub struct SafetensorsCheckpoint {
    origin: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name → shard index.
    index: HashMap<String, usize>,
}

impl SafetensorsCheckpoint {
    /// Opens a `.safetensors` file or a checkpoint directory.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let files = if path.is_dir() {
            shard_files(path)?
        } else {
            vec![path.to_path_buf()]
        };
        let shards = files
            .iter()
            .map(|f| Shard::open(f))
            .collect::<Result<Vec<_>, _>>()?;
        let mut index = HashMap::new();
        for (i, shard) in shards.iter().enumerate() {
            for name in shard.metadata.tensors().keys() {
                index.insert(name.clone(), i);
            }
        }
        Ok(Self {
            origin: path.to_path_buf(),
            shards,
            index,
        })
    }

    /// Reads an integer tensor (I64, I32) as `i64`, e.g. token ids in a test fixture.
    pub fn load_i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>), CheckpointError> {
        let (shard, info, bytes) = self.locate(name)?;
        let values = match info.dtype {
            Dtype::I64 => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            Dtype::I32 => bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                .collect(),
            other => return Err(unsupported(&shard.path, name, other)),
        };
        Ok((info.shape.clone(), values))
    }

    fn locate(
        &self,
        name: &str,
    ) -> Result<(&Shard, &safetensors::tensor::TensorInfo, &[u8]), CheckpointError> {
        let shard = self
            .index
            .get(name)
            .map(|&i| &self.shards[i])
            .ok_or_else(|| CheckpointError::MissingTensor {
                source_desc: self.describe(),
                name: name.to_string(),
            })?;
        let (info, bytes) = shard.bytes(name).expect("indexed names exist in their shard");
        Ok((shard, info, bytes))
    }
}

/// The safetensors files of a checkpoint directory.
fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| CheckpointError::io(&index, e))?;
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let parsed: Index = serde_json::from_str(&text)
            .map_err(|e| CheckpointError::bad(&index, format!("invalid index: {e}")))?;
        let mut files: Vec<PathBuf> = parsed.weight_map.values().map(|f| dir.join(f)).collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CheckpointError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    match found.len() {
        1 => Ok(vec![found.remove(0)]),
        0 => Err(CheckpointError::bad(dir, "no .safetensors file in this directory")),
        n => Err(CheckpointError::bad(
            dir,
            format!("{n} .safetensors files but no model.safetensors.index.json to order them"),
        )),
    }
}

fn unsupported(path: &Path, tensor: &str, dtype: Dtype) -> CheckpointError {
    CheckpointError::UnsupportedDType {
        path: path.to_path_buf(),
        tensor: tensor.to_string(),
        dtype: format!("{dtype:?}"),
    }
}

/// Little-endian storage of `dtype` → `f32`.
fn to_f32(bytes: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        _ => return None,
    })
}

impl TensorSource for SafetensorsCheckpoint {
    fn describe(&self) -> String {
        self.origin.display().to_string()
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.index.keys().cloned().collect();
        names.sort();
        names
    }

    fn info(&self, name: &str) -> Option<TensorInfo> {
        let (_, info, _) = self.locate(name).ok()?;
        Some(TensorInfo {
            name: name.to_string(),
            shape: info.shape.clone(),
            dtype: format!("{:?}", info.dtype),
        })
    }

    fn load(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        let (shard, info, bytes) = self.locate(name)?;
        let data = to_f32(bytes, info.dtype).ok_or_else(|| unsupported(&shard.path, name, info.dtype))?;
        Ok(HostTensor {
            shape: info.shape.clone(),
            data,
        })
    }
}

/// Reads `<dir>/config.json` (or the given file) as JSON.
pub fn read_hf_config(path: &Path) -> Result<serde_json::Value, CheckpointError> {
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| CheckpointError::io(&file, e))?;
    serde_json::from_str(&text).map_err(|e| CheckpointError::bad(&file, format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn reads_single_files_and_converts_half_types() {
        let dir = tempfile::tempdir().unwrap();
        let f16: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = [0.5f32, 4.0]
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        write(
            &dir.path().join("model.safetensors"),
            &[
                ("a", Dtype::F32, vec![2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
                ("h", Dtype::F16, vec![2], f16),
                ("b", Dtype::BF16, vec![2], bf16),
                ("ids", Dtype::I64, vec![2], [7i64, 9].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ],
        );
        let ckpt = SafetensorsCheckpoint::open(dir.path()).unwrap();
        assert_eq!(ckpt.load("a").unwrap().data, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(ckpt.load("h").unwrap().data, vec![1.5, -2.0]);
        assert_eq!(ckpt.load("b").unwrap().data, vec![0.5, 4.0]);
        assert_eq!(ckpt.load_i64("ids").unwrap(), (vec![2], vec![7, 9]));
        let err = ckpt.load("ids").unwrap_err().to_string();
        assert!(err.contains("`ids`") && err.contains("I64"), "{err}");
        let err = ckpt.load_shaped("a", &[4]).unwrap_err().to_string();
        assert!(err.contains("[2, 2]") && err.contains("[4]"), "{err}");
        let err = ckpt.load("nope").unwrap_err().to_string();
        assert!(err.contains("tensor `nope` not found") && err.contains(&ckpt.describe()), "{err}");
    }

    #[test]
    fn reads_sharded_checkpoints_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("part-1.safetensors"), &[("x", Dtype::F32, vec![1], f32_bytes(&[1.0]))]);
        write(&dir.path().join("part-2.safetensors"), &[("y", Dtype::F32, vec![1], f32_bytes(&[2.0]))]);
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"metadata": {}, "weight_map": {"x": "part-1.safetensors", "y": "part-2.safetensors"}}"#,
        )
        .unwrap();
        let ckpt = SafetensorsCheckpoint::open(dir.path()).unwrap();
        assert_eq!(ckpt.names(), vec!["x", "y"]);
        assert_eq!(ckpt.load("y").unwrap().data, vec![2.0]);
    }

    #[test]
    fn truncated_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        write(&path, &[("a", Dtype::F32, vec![4], f32_bytes(&[1.0, 2.0, 3.0, 4.0]))]);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [4, 20, bytes.len() - 3] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = SafetensorsCheckpoint::open(&path).err().expect("truncated").to_string();
            assert!(err.contains("model.safetensors"), "{err}");
        }
        let err = SafetensorsCheckpoint::open(&dir.path().join("absent.safetensors"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("absent.safetensors"), "{err}");
    }
}
