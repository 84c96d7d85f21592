//! llama.cpp GGUF files (versions 2 and 3): metadata, tensor infos and dequantised tensors.

mod dequant;
mod reader;
mod tokenizer;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use dequant::{GgmlType, dequantize};
pub use tokenizer::tokenizer_from_gguf;

use crate::{CheckpointError, HostTensor, TensorInfo, TensorSource};
use reader::Reader;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Any unsigned integer type.
    Uint(u64),
    /// Any signed integer type.
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array of values (possibly nested).
    Array(Vec<GgufValue>),
}

/// Where one tensor's bytes are in the file.
#[derive(Debug, Clone)]
struct TensorEntry {
    /// Outermost dimension first (the reverse of ggml's `ne`).
    shape: Vec<usize>,
    kind: GgmlType,
    /// Offset from the start of the data section.
    offset: u64,
}

/// A memory-mapped GGUF file: metadata and tensor infos are parsed at open; tensor bytes are
/// read and dequantised one tensor at a time.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: BTreeMap<String, TensorEntry>,
    data_start: usize,
}

impl GgufFile {
    /// Opens and validates a GGUF file.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let file = File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        // SAFETY: read-only map; see SafetensorsCheckpoint.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| CheckpointError::io(path, e))?;
        let mut r = Reader::new(&mmap, path);
        if r.take(4, "the magic number")? != MAGIC {
            return Err(CheckpointError::bad(path, "not a GGUF file (bad magic number)"));
        }
        let version = r.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(CheckpointError::bad(
                path,
                format!("unsupported GGUF version {version} (supported: 2, 3)"),
            ));
        }
        let tensor_count = r.count(8 + 4 + 4 + 8, "the tensor count")?;
        let kv_count = r.count(8 + 4, "the metadata count")?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string("a metadata key")?;
            let kind = r.u32("a metadata type")?;
            let value = read_value(&mut r, kind, &key, path, 0)?;
            metadata.insert(key, value);
        }
        let mut infos = Vec::with_capacity(tensor_count);
        for _ in 0..tensor_count {
            let name = r.string("a tensor name")?;
            let dims = r.u32("a tensor rank")? as usize;
            if dims > 8 {
                return Err(CheckpointError::bad(path, format!("tensor `{name}` has {dims} dimensions")));
            }
            let mut ne = Vec::with_capacity(dims);
            for _ in 0..dims {
                ne.push(r.u64("a tensor dimension")?);
            }
            let kind = GgmlType(r.u32("a tensor type")?);
            let offset = r.u64("a tensor offset")?;
            let shape = ne.iter().rev().map(|&d| d as usize).collect();
            infos.push((name, TensorEntry { shape, kind, offset }));
        }
        let alignment = match metadata.get("general.alignment") {
            Some(GgufValue::Uint(a)) if *a > 0 => *a,
            _ => DEFAULT_ALIGNMENT,
        };
        let data_start = (r.pos() as u64).div_ceil(alignment) * alignment;
        let gguf = Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors: BTreeMap::new(),
            data_start: data_start as usize,
            mmap,
        };
        let mut tensors = BTreeMap::new();
        for (name, entry) in infos {
            gguf.check_extent(&name, &entry)?;
            tensors.insert(name, entry);
        }
        Ok(Self { tensors, ..gguf })
    }

    /// Checks that a tensor's bytes lie inside the file (for supported types).
    fn check_extent(&self, name: &str, entry: &TensorEntry) -> Result<(), CheckpointError> {
        let Some(len) = self.byte_len(name, entry)? else {
            return Ok(()); // unsupported types fail when loaded, naming the type
        };
        let start = (self.data_start as u64).checked_add(entry.offset);
        let end = start.and_then(|s| s.checked_add(len as u64));
        match end {
            Some(end) if end <= self.mmap.len() as u64 => Ok(()),
            _ => Err(CheckpointError::Truncated {
                path: self.path.clone(),
                detail: format!(
                    "tensor `{name}` ({len} bytes at data offset {}) extends past the end of the file",
                    entry.offset
                ),
            }),
        }
    }

    /// Byte length of a tensor of a supported type.
    fn byte_len(&self, name: &str, entry: &TensorEntry) -> Result<Option<usize>, CheckpointError> {
        let Some((per_block, block_bytes)) = entry.kind.block_layout() else {
            return Ok(None);
        };
        let count = entry
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| CheckpointError::bad(&self.path, format!("tensor `{name}` is too large")))?;
        let row = entry.shape.last().copied().unwrap_or(1);
        if row % per_block != 0 {
            return Err(CheckpointError::bad(
                &self.path,
                format!(
                    "tensor `{name}`: rows of {row} values are not whole {}-value blocks of {}",
                    per_block,
                    entry.kind.short_name()
                ),
            ));
        }
        Ok(Some(count / per_block * block_bytes))
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every metadata key and value.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    fn get(&self, key: &str) -> Result<&GgufValue, CheckpointError> {
        self.metadata.get(key).ok_or_else(|| CheckpointError::MissingMetadata {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    fn wrong_type(&self, key: &str, wanted: &str) -> CheckpointError {
        CheckpointError::bad(&self.path, format!("metadata `{key}` is not {wanted}"))
    }

    /// An integer metadata value that fits a `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, CheckpointError> {
        match self.get(key)? {
            GgufValue::Uint(v) => u32::try_from(*v).ok(),
            GgufValue::Int(v) => u32::try_from(*v).ok(),
            _ => None,
        }
        .ok_or_else(|| self.wrong_type(key, "an unsigned 32-bit integer"))
    }

    /// A float (or integer) metadata value.
    pub fn get_f32(&self, key: &str) -> Result<f32, CheckpointError> {
        match self.get(key)? {
            GgufValue::Float(v) => Ok(*v as f32),
            GgufValue::Uint(v) => Ok(*v as f32),
            GgufValue::Int(v) => Ok(*v as f32),
            _ => Err(self.wrong_type(key, "a number")),
        }
    }

    /// A boolean metadata value.
    pub fn get_bool(&self, key: &str) -> Result<bool, CheckpointError> {
        match self.get(key)? {
            GgufValue::Bool(v) => Ok(*v),
            _ => Err(self.wrong_type(key, "a boolean")),
        }
    }

    /// A string metadata value.
    pub fn get_str(&self, key: &str) -> Result<&str, CheckpointError> {
        match self.get(key)? {
            GgufValue::String(v) => Ok(v),
            _ => Err(self.wrong_type(key, "a string")),
        }
    }

    /// An array metadata value.
    pub fn get_array(&self, key: &str) -> Result<&[GgufValue], CheckpointError> {
        match self.get(key)? {
            GgufValue::Array(v) => Ok(v),
            _ => Err(self.wrong_type(key, "an array")),
        }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads one metadata value of GGUF type `kind`.
fn read_value(
    r: &mut Reader,
    kind: u32,
    key: &str,
    path: &Path,
    depth: usize,
) -> Result<GgufValue, CheckpointError> {
    let what = format!("metadata `{key}`");
    Ok(match kind {
        0 => GgufValue::Uint(r.u8(&what)? as u64),
        1 => GgufValue::Int(r.u8(&what)? as i8 as i64),
        2 => GgufValue::Uint(r.u16(&what)? as u64),
        3 => GgufValue::Int(r.u16(&what)? as i16 as i64),
        4 => GgufValue::Uint(r.u32(&what)? as u64),
        5 => GgufValue::Int(r.u32(&what)? as i32 as i64),
        6 => GgufValue::Float(r.f32(&what)? as f64),
        7 => GgufValue::Bool(r.u8(&what)? != 0),
        8 => GgufValue::String(r.string(&what)?),
        9 => {
            if depth > 4 {
                return Err(CheckpointError::bad(path, format!("{what}: arrays nested too deeply")));
            }
            let item = r.u32(&what)?;
            let len = r.count(1, &what)?;
            let mut items = Vec::with_capacity(len.min(1 << 20));
            for _ in 0..len {
                items.push(read_value(r, item, key, path, depth + 1)?);
            }
            GgufValue::Array(items)
        }
        10 => GgufValue::Uint(r.u64(&what)?),
        11 => GgufValue::Int(r.u64(&what)? as i64),
        12 => GgufValue::Float(r.f64(&what)?),
        other => {
            return Err(CheckpointError::bad(path, format!("{what} has unknown value type {other}")));
        }
    })
}

impl TensorSource for GgufFile {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn info(&self, name: &str) -> Option<TensorInfo> {
        self.tensors.get(name).map(|entry| TensorInfo {
            name: name.to_string(),
            shape: entry.shape.clone(),
            dtype: entry.kind.short_name(),
        })
    }

    fn load(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        let entry = self.tensors.get(name).ok_or_else(|| CheckpointError::MissingTensor {
            source_desc: self.describe(),
            name: name.to_string(),
        })?;
        let unsupported = || CheckpointError::UnsupportedDType {
            path: self.path.clone(),
            tensor: name.to_string(),
            dtype: entry.kind.name(),
        };
        let len = self.byte_len(name, entry)?.ok_or_else(unsupported)?;
        let start = self.data_start + entry.offset as usize;
        let data = dequantize(entry.kind, &self.mmap[start..start + len]).ok_or_else(unsupported)?;
        Ok(HostTensor {
            shape: entry.shape.clone(),
            data,
        })
    }
}

#[cfg(test)]
mod tests;
