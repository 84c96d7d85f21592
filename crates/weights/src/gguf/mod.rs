//! llama.cpp GGUF files (versions 2 and 3, little-endian): metadata, tensor infos, dequantised
//! tensors and the tokenizer stored in the metadata.
//!
//! Tensor names are GGUF's (`blk.0.attn_q.weight`). Shapes are reported outermost-first, the
//! reverse of ggml's `ne`: a matrix with `ne = [in, out]` has shape `[out, in]`, the same as the
//! Hugging Face weight it was converted from.

mod dequant;
mod parse;
mod tokenizer;
mod types;
mod value;

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

pub use dequant::dequantize;
pub use tokenizer::{GgufSpecialTokens, special_token_id, tokenizer_from_gguf};
pub use types::GgmlType;
pub use value::GgufValue;

use crate::{CheckpointError, HostTensor, TensorInfo, TensorSource};

/// The alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Where one tensor's bytes are in the file.
#[derive(Debug, Clone)]
struct TensorEntry {
    /// ggml dimensions, innermost first.
    ne: Vec<u64>,
    /// Outermost dimension first (`ne` reversed).
    shape: Vec<usize>,
    kind: GgmlType,
    /// Absolute byte range, for types whose block layout is known.
    bytes: Option<Range<usize>>,
}

/// A memory-mapped GGUF file. The header (metadata and tensor infos) is parsed and checked when
/// the file is opened; tensor bytes are read and dequantised one tensor at a time.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    alignment: u64,
    data_start: usize,
    metadata: BTreeMap<String, GgufValue>,
    tensors: BTreeMap<String, TensorEntry>,
}

impl GgufFile {
    /// Opens and checks a GGUF file: its header must be complete and consistent, and every tensor
    /// of a known type must lie inside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        if path.is_dir() {
            return Err(CheckpointError::bad(
                path,
                "is a directory, expected a .gguf file",
            ));
        }
        let file = File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        // SAFETY: read-only map; a file modified while mapped is outside what any memory-mapped
        // reader can defend against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| CheckpointError::io(path, e))?;
        let header = parse::parse_header(&mmap, path)?;

        let alignment = match header.metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(value) => match value.as_u64() {
                Some(a) if a.is_power_of_two() && a <= 1 << 30 => a,
                _ => {
                    return Err(CheckpointError::bad(
                        path,
                        format!("general.alignment = {value:?} is not a power of two"),
                    ));
                }
            },
        };
        let data_start = (header.end as u64).next_multiple_of(alignment);

        let mut tensors = BTreeMap::new();
        for raw in header.tensors {
            let entry = locate(path, &raw, data_start, alignment, mmap.len())?;
            if tensors.insert(raw.name.clone(), entry).is_some() {
                return Err(CheckpointError::bad(
                    path,
                    format!("tensor `{}` appears twice", raw.name),
                ));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
            version: header.version,
            alignment,
            data_start: data_start as usize,
            metadata: header.metadata,
            tensors,
        })
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of the tensor data (`general.alignment`, 32 by default).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts in the file; tensor offsets count from here.
    pub fn data_offset(&self) -> usize {
        self.data_start
    }

    /// Every metadata key and value.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// A metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub fn architecture(&self) -> Result<&str, CheckpointError> {
        self.get_str("general.architecture")
    }

    /// The value under `key`, converted by `convert`; [`CheckpointError::MissingMetadata`] when
    /// absent, [`CheckpointError::BadFormat`] naming the key when `convert` refuses it.
    fn typed<'a, T>(
        &'a self,
        key: &str,
        wanted: &str,
        convert: impl FnOnce(&'a GgufValue) -> Option<T>,
    ) -> Result<T, CheckpointError> {
        let value = self
            .metadata
            .get(key)
            .ok_or_else(|| CheckpointError::MissingMetadata {
                path: self.path.clone(),
                key: key.to_string(),
            })?;
        convert(value).ok_or_else(|| {
            CheckpointError::bad(
                &self.path,
                format!("metadata `{key}` is {}, expected {wanted}", summary(value)),
            )
        })
    }

    /// An integer value (of any integer type) that fits a `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, CheckpointError> {
        self.typed(key, "an integer that fits a u32", |v| {
            v.as_u64().and_then(|v| u32::try_from(v).ok())
        })
    }

    /// An integer value (of any integer type) that fits a `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, CheckpointError> {
        self.typed(key, "an integer that fits a u64", GgufValue::as_u64)
    }

    /// An integer value (of any integer type) that fits a `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize, CheckpointError> {
        self.typed(key, "an integer that fits a usize", |v| {
            v.as_u64().and_then(|v| usize::try_from(v).ok())
        })
    }

    /// An integer value (of any integer type) that fits an `i64`.
    pub fn get_i64(&self, key: &str) -> Result<i64, CheckpointError> {
        self.typed(key, "an integer that fits an i64", GgufValue::as_i64)
    }

    /// A float value, or an integer one converted.
    pub fn get_f32(&self, key: &str) -> Result<f32, CheckpointError> {
        self.typed(key, "a number", |v| v.as_f64().map(|v| v as f32))
    }

    /// A float value, or an integer one converted.
    pub fn get_f64(&self, key: &str) -> Result<f64, CheckpointError> {
        self.typed(key, "a number", GgufValue::as_f64)
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<bool, CheckpointError> {
        self.typed(key, "a bool", GgufValue::as_bool)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, CheckpointError> {
        self.typed(key, "a string", GgufValue::as_str)
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<&[GgufValue], CheckpointError> {
        self.typed(key, "an array", GgufValue::as_array)
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>, CheckpointError> {
        self.typed(key, "an array of strings", |v| {
            v.as_array()?.iter().map(GgufValue::as_str).collect()
        })
    }

    /// An array of integers (of any integer type) that fit an `i64`.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>, CheckpointError> {
        self.typed(key, "an array of integers", |v| {
            v.as_array()?.iter().map(GgufValue::as_i64).collect()
        })
    }

    /// An array of numbers as `f32`.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, CheckpointError> {
        self.typed(key, "an array of numbers", |v| {
            v.as_array()?
                .iter()
                .map(|v| v.as_f64().map(|v| v as f32))
                .collect()
        })
    }

    /// The ggml type of a tensor.
    pub fn ggml_type(&self, name: &str) -> Option<GgmlType> {
        self.tensors.get(name).map(|t| t.kind)
    }

    /// The ggml dimensions of a tensor, innermost (`ne[0]`) first.
    pub fn ggml_dims(&self, name: &str) -> Option<&[u64]> {
        self.tensors.get(name).map(|t| t.ne.as_slice())
    }

    /// A tensor's stored bytes (blocks of its ggml type), e.g. to dequantise elsewhere.
    pub fn raw_bytes(&self, name: &str) -> Result<(GgmlType, &[u8]), CheckpointError> {
        let entry = self.entry(name)?;
        let range = entry
            .bytes
            .clone()
            .ok_or_else(|| self.unsupported(name, entry))?;
        Ok((entry.kind, &self.mmap[range]))
    }

    fn entry(&self, name: &str) -> Result<&TensorEntry, CheckpointError> {
        self.tensors
            .get(name)
            .ok_or_else(|| CheckpointError::MissingTensor {
                source_desc: self.describe(),
                name: name.to_string(),
            })
    }

    fn unsupported(&self, name: &str, entry: &TensorEntry) -> CheckpointError {
        CheckpointError::UnsupportedDType {
            path: self.path.clone(),
            tensor: name.to_string(),
            dtype: entry.kind.describe(),
        }
    }
}

/// A short description of a value for error messages.
fn summary(value: &GgufValue) -> String {
    match value {
        GgufValue::Array(items) => match items.first() {
            Some(first) => format!("an array of {} {} values", items.len(), first.type_name()),
            None => "an empty array".to_string(),
        },
        GgufValue::String(s) if s.len() > 40 => format!("a string ({} bytes)", s.len()),
        other => format!("{other:?} ({})", other.type_name()),
    }
}

/// Checks a tensor info against the file and finds its bytes.
fn locate(
    path: &Path,
    raw: &parse::RawTensorInfo,
    data_start: u64,
    alignment: u64,
    file_len: usize,
) -> Result<TensorEntry, CheckpointError> {
    let name = &raw.name;
    let shape = raw
        .ne
        .iter()
        .rev()
        .map(|&d| usize::try_from(d).ok())
        .collect::<Option<Vec<usize>>>();
    let numel = shape
        .as_ref()
        .and_then(|s| s.iter().try_fold(1usize, |n, &d| n.checked_mul(d)));
    let (Some(shape), Some(numel)) = (shape, numel) else {
        return Err(CheckpointError::bad(
            path,
            format!("tensor `{name}` has dimensions {:?}, too large", raw.ne),
        ));
    };
    if !raw.offset.is_multiple_of(alignment) {
        return Err(CheckpointError::bad(
            path,
            format!(
                "tensor `{name}` starts at data offset {}, not a multiple of the alignment {alignment}",
                raw.offset
            ),
        ));
    }
    let Some((per_block, block_bytes)) = raw.kind.block_layout() else {
        // Unknown or retired type: its size is unknown, so it fails when loaded, naming the type.
        return Ok(TensorEntry {
            ne: raw.ne.clone(),
            shape,
            kind: raw.kind,
            bytes: None,
        });
    };
    let row = raw.ne.first().copied().unwrap_or(1);
    if !row.is_multiple_of(per_block as u64) {
        return Err(CheckpointError::bad(
            path,
            format!(
                "tensor `{name}` of type {}: rows of {row} values are not a whole number of \
                 {per_block}-value blocks",
                raw.kind.describe()
            ),
        ));
    }
    let len = ((numel / per_block) as u64).checked_mul(block_bytes as u64);
    let start = data_start.checked_add(raw.offset);
    let end = start.zip(len).and_then(|(s, len)| s.checked_add(len));
    let len = len.unwrap_or(u64::MAX);
    match (start, end) {
        (Some(start), Some(end)) if end <= file_len as u64 => Ok(TensorEntry {
            ne: raw.ne.clone(),
            shape,
            kind: raw.kind,
            bytes: Some(start as usize..end as usize),
        }),
        _ => Err(CheckpointError::truncated(
            path,
            format!(
                "tensor `{name}` ({len} bytes at data offset {}, file offset {}) extends past the \
                 end of the file ({file_len} bytes)",
                raw.offset,
                data_start.saturating_add(raw.offset)
            ),
        )),
    }
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
            dtype: entry.kind.name(),
        })
    }

    fn load(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        let entry = self.entry(name)?;
        let range = entry
            .bytes
            .clone()
            .ok_or_else(|| self.unsupported(name, entry))?;
        let data = dequantize(entry.kind, &self.mmap[range])
            .ok_or_else(|| self.unsupported(name, entry))?;
        debug_assert_eq!(data.len(), entry.shape.iter().product::<usize>());
        Ok(HostTensor {
            shape: entry.shape.clone(),
            data,
        })
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}
