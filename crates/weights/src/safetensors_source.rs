//! Hugging Face safetensors checkpoints: one file, or shards listed by
//! `model.safetensors.index.json`.
//!
//! The format is an 8-byte little-endian header length, a JSON header mapping each tensor name to
//! its dtype, shape and byte range, then the data. The header is parsed here (rather than by the
//! `safetensors` crate) so that every inconsistency gets an error naming the file and the tensor.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use memmap2::Mmap;

use crate::{CheckpointError, HostTensor, TensorInfo, TensorSource};

/// The name of the shard index in a checkpoint directory.
const INDEX_FILE: &str = "model.safetensors.index.json";
/// A header larger than this is not a real checkpoint's.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Where one tensor is in its file.
#[derive(Debug, Clone)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: usize,
    end: usize,
}

/// One memory-mapped `.safetensors` file with its parsed header.
struct MappedFile {
    path: PathBuf,
    mmap: Mmap,
    tensors: HashMap<String, Entry>,
}

impl MappedFile {
    fn open(path: &Path) -> Result<Self, CheckpointError> {
        let file = File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        // SAFETY: the map is read-only; a checkpoint modified while mapped is outside what any
        // reader can defend against, as with every memory-mapped weight loader.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| CheckpointError::io(path, e))?;
        let tensors = parse_header(path, &mmap)?;
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            tensors,
        })
    }

    fn bytes(&self, entry: &Entry) -> &[u8] {
        &self.mmap[entry.start..entry.end]
    }
}

/// The header's description of one tensor.
#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// Parses and checks the header of a safetensors file held in `bytes`.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<HashMap<String, Entry>, CheckpointError> {
    let Some(prefix) = bytes.get(..8) else {
        return Err(CheckpointError::truncated(
            path,
            format!(
                "{} bytes, too short for the 8-byte header length",
                bytes.len()
            ),
        ));
    };
    let header_len = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
    let available = (bytes.len() - 8) as u64;
    if header_len > MAX_HEADER_BYTES {
        return Err(CheckpointError::bad(
            path,
            format!("not a safetensors file: its header length {header_len} is implausibly large"),
        ));
    }
    if header_len > available {
        return Err(CheckpointError::truncated(
            path,
            format!("the header claims {header_len} bytes but only {available} follow its length"),
        ));
    }
    let data_start = 8 + header_len as usize;
    let data_len = bytes.len() - data_start;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| CheckpointError::bad(path, format!("invalid safetensors header: {e}")))?;

    let mut tensors = HashMap::with_capacity(header.len());
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let raw: RawEntry = serde_json::from_value(value)
            .map_err(|e| CheckpointError::bad(path, format!("tensor `{name}`: {e}")))?;
        let (begin, end) = raw.data_offsets;
        if begin > end {
            return Err(CheckpointError::bad(
                path,
                format!("tensor `{name}` has data offsets {begin}..{end}"),
            ));
        }
        let numel = raw.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if let (Some(size), Some(numel)) = (dtype_size(&raw.dtype), numel)
            && numel.checked_mul(size) != Some(end - begin)
        {
            return Err(CheckpointError::bad(
                path,
                format!(
                    "tensor `{name}` of shape {:?} and type {} should take {} bytes, but its \
                     data offsets {begin}..{end} span {}",
                    raw.shape,
                    raw.dtype,
                    numel.saturating_mul(size),
                    end - begin
                ),
            ));
        }
        if end > data_len {
            return Err(CheckpointError::truncated(
                path,
                format!(
                    "tensor `{name}` needs bytes {begin}..{end} of the data section, which holds \
                     only {data_len} bytes"
                ),
            ));
        }
        let entry = Entry {
            dtype: raw.dtype,
            shape: raw.shape,
            start: data_start + begin,
            end: data_start + end,
        };
        tensors.insert(name, entry);
    }
    Ok(tensors)
}

/// Bytes per element of a safetensors dtype, for the dtypes whose size is known here.
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// Little-endian storage of `dtype` → `f32`; `None` for dtypes that are not floats.
fn to_f32(bytes: &[u8], dtype: &str) -> Option<Vec<f32>> {
    Some(match dtype {
        "F32" => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
        "F16" => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "BF16" => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "F64" => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        _ => return None,
    })
}

/// Little-endian storage of an integer `dtype` → `i64`; `None` for other dtypes.
fn to_i64(bytes: &[u8], dtype: &str) -> Option<Vec<i64>> {
    Some(match dtype {
        "I64" => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        "I32" => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
            .collect(),
        _ => return None,
    })
}

/// A file of the checkpoint, mapped on first use.
struct Shard {
    path: PathBuf,
    mapped: Mutex<Option<Arc<MappedFile>>>,
}

impl Shard {
    fn lazy(path: PathBuf) -> Self {
        Self {
            path,
            mapped: Mutex::new(None),
        }
    }

    fn get(&self) -> Result<Arc<MappedFile>, CheckpointError> {
        let mut slot = self.mapped.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = slot.as_ref() {
            return Ok(file.clone());
        }
        let file = Arc::new(MappedFile::open(&self.path)?);
        *slot = Some(file.clone());
        Ok(file)
    }
}

/// A safetensors checkpoint: a single file; or a directory holding `model.safetensors.index.json`
/// and the shards it lists, or `model.safetensors`, or exactly one `*.safetensors` file.
///
/// Files are memory-mapped (shards only when one of their tensors is first asked for), and a
/// tensor's bytes are read only when it is loaded.
pub struct SafetensorsCheckpoint {
    origin: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name → index in `shards`.
    index: BTreeMap<String, usize>,
}

impl SafetensorsCheckpoint {
    /// Opens a `.safetensors` file or a checkpoint directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        let index_file = path.join(INDEX_FILE);
        if path.is_dir() && index_file.is_file() {
            return Self::open_sharded(path, &index_file);
        }
        let file = if path.is_dir() {
            single_file_in(path)?
        } else {
            path.to_path_buf()
        };
        let mapped = MappedFile::open(&file)?;
        let index = mapped.tensors.keys().map(|n| (n.clone(), 0)).collect();
        let shard = Shard {
            path: file,
            mapped: Mutex::new(Some(Arc::new(mapped))),
        };
        Ok(Self {
            origin: path.to_path_buf(),
            shards: vec![shard],
            index,
        })
    }

    fn open_sharded(dir: &Path, index_file: &Path) -> Result<Self, CheckpointError> {
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let text =
            std::fs::read_to_string(index_file).map_err(|e| CheckpointError::io(index_file, e))?;
        let parsed: Index = serde_json::from_str(&text)
            .map_err(|e| CheckpointError::bad(index_file, format!("invalid shard index: {e}")))?;
        let mut shard_of_file: BTreeMap<String, usize> = BTreeMap::new();
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for (tensor, file) in parsed.weight_map {
            let next = shard_of_file.len();
            let shard = *shard_of_file.entry(file.clone()).or_insert_with(|| {
                shards.push(Shard::lazy(dir.join(&file)));
                next
            });
            index.insert(tensor, shard);
        }
        for shard in &shards {
            if !shard.path.is_file() {
                return Err(CheckpointError::bad(
                    index_file,
                    format!("lists shard {}, which does not exist", shard.path.display()),
                ));
            }
        }
        Ok(Self {
            origin: dir.to_path_buf(),
            shards,
            index,
        })
    }

    /// The files of the checkpoint (one, or the shards in name order).
    pub fn files(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// Reads an integer tensor (`I64` or `I32`) as `i64`, e.g. token ids in a test fixture.
    /// Returns the shape (outermost first) and the values.
    pub fn load_i64(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>), CheckpointError> {
        self.with_tensor(name, |file, entry| {
            let values = to_i64(file.bytes(entry), &entry.dtype)
                .ok_or_else(|| unsupported(&file.path, name, &entry.dtype))?;
            Ok((entry.shape.clone(), values))
        })
    }

    /// Runs `f` on the mapped file holding `name` and the tensor's entry in it.
    fn with_tensor<R>(
        &self,
        name: &str,
        f: impl FnOnce(&MappedFile, &Entry) -> Result<R, CheckpointError>,
    ) -> Result<R, CheckpointError> {
        let missing = || CheckpointError::MissingTensor {
            source_desc: self.describe(),
            name: name.to_string(),
        };
        let shard = &self.shards[*self.index.get(name).ok_or_else(missing)?];
        let file = shard.get()?;
        let entry = file.tensors.get(name).ok_or_else(|| {
            CheckpointError::bad(
                &file.path,
                format!("{INDEX_FILE} places tensor `{name}` in this shard, but it is not there"),
            )
        })?;
        f(&file, entry)
    }
}

fn unsupported(path: &Path, tensor: &str, dtype: &str) -> CheckpointError {
    CheckpointError::UnsupportedDType {
        path: path.to_path_buf(),
        tensor: tensor.to_string(),
        dtype: dtype.to_string(),
    }
}

/// The single-file checkpoint of a directory without an index.
fn single_file_in(dir: &Path) -> Result<PathBuf, CheckpointError> {
    let default = dir.join("model.safetensors");
    if default.is_file() {
        return Ok(default);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CheckpointError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CheckpointError::bad(
            dir,
            format!("no {INDEX_FILE}, no model.safetensors and no other .safetensors file"),
        )),
        n => Err(CheckpointError::bad(
            dir,
            format!(
                "{n} .safetensors files but no {INDEX_FILE} to say which tensors each holds: {}",
                found
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

impl TensorSource for SafetensorsCheckpoint {
    fn describe(&self) -> String {
        self.origin.display().to_string()
    }

    fn names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    fn info(&self, name: &str) -> Option<TensorInfo> {
        self.with_tensor(name, |_, entry| {
            Ok(TensorInfo {
                name: name.to_string(),
                shape: entry.shape.clone(),
                dtype: entry.dtype.clone(),
            })
        })
        .ok()
    }

    fn load(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        self.with_tensor(name, |file, entry| {
            let data = to_f32(file.bytes(entry), &entry.dtype)
                .ok_or_else(|| unsupported(&file.path, name, &entry.dtype))?;
            Ok(HostTensor {
                shape: entry.shape.clone(),
                data,
            })
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}

/// Reads a Hugging Face `config.json`: `path` is the checkpoint directory or the file itself.
pub fn read_hf_config(path: impl AsRef<Path>) -> Result<serde_json::Value, CheckpointError> {
    let path = path.as_ref();
    let file = if path.is_dir() {
        path.join("config.json")
    } else {
        path.to_path_buf()
    };
    if !file.exists() {
        return Err(CheckpointError::bad(
            &file,
            "config.json not found (a Hugging Face checkpoint directory holds one)",
        ));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| CheckpointError::io(&file, e))?;
    serde_json::from_str(&text)
        .map_err(|e| CheckpointError::bad(&file, format!("invalid JSON: {e}")))
}
