//! Parsing of the GGUF header: magic, version, metadata and tensor infos.
//!
//! Layout (little-endian): `"GGUF"`, u32 version, u64 tensor count, u64 metadata count, the
//! metadata (string key, u32 value type, value), the tensor infos (string name, u32 rank, rank ×
//! u64 `ne`, u32 ggml type, u64 offset into the data section), padding to the alignment, data.
//! A string is a u64 byte length and the bytes; an array is a u32 item type, a u64 count and the
//! items.
//!
//! Every read is bounds-checked, and every count taken from the file is checked against the bytes
//! that remain before anything is allocated for it.

use std::collections::BTreeMap;
use std::path::Path;

use super::{GgmlType, GgufValue};
use crate::CheckpointError;

const MAGIC: &[u8; 4] = b"GGUF";
/// llama.cpp's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused.
const MAX_NESTING: usize = 8;

/// A tensor info as stored.
pub(super) struct RawTensorInfo {
    pub name: String,
    /// ggml dimensions, innermost (fastest) first.
    pub ne: Vec<u64>,
    pub kind: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

/// Everything before the data section.
pub(super) struct Header {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<RawTensorInfo>,
    /// Position just after the tensor infos (before alignment padding).
    pub end: usize,
}

pub(super) fn parse_header(bytes: &[u8], path: &Path) -> Result<Header, CheckpointError> {
    let mut r = Reader {
        bytes,
        pos: 0,
        path,
    };
    let magic = r.take(4, "the magic number")?;
    if magic != MAGIC {
        return Err(CheckpointError::bad(
            path,
            format!("not a GGUF file (bad magic number {magic:02x?}, expected \"GGUF\")"),
        ));
    }
    let version = r.u32("the version")?;
    if !(2..=3).contains(&version) {
        if (2..=3).contains(&version.swap_bytes()) {
            return Err(CheckpointError::bad(
                path,
                "big-endian GGUF files are not supported",
            ));
        }
        return Err(CheckpointError::UnsupportedVersion {
            path: path.to_path_buf(),
            format: "GGUF",
            version: version.into(),
            supported: "2, 3",
        });
    }
    // Smallest possible tensor info: empty name (8), rank (4), type (4), offset (8).
    let tensor_count = r.count(24, "the tensor count")?;
    // Smallest possible metadata entry: empty key (8), type (4), one-byte value.
    let kv_count = r.count(13, "the metadata count")?;

    let mut metadata = BTreeMap::new();
    for i in 0..kv_count {
        let key = r.string(&format!("metadata key #{i}"))?;
        let kind = r.u32(&format!("the type of metadata `{key}`"))?;
        let value = r.value(kind, &key, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(CheckpointError::bad(
                path,
                format!("metadata key `{key}` appears twice"),
            ));
        }
    }

    let mut tensors = Vec::with_capacity(tensor_count);
    for i in 0..tensor_count {
        let name = r.string(&format!("the name of tensor #{i}"))?;
        let what = format!("the info of tensor `{name}`");
        let rank = r.u32(&what)?;
        if rank > MAX_DIMS {
            return Err(CheckpointError::bad(
                path,
                format!("tensor `{name}` has {rank} dimensions (at most {MAX_DIMS})"),
            ));
        }
        let ne = (0..rank).map(|_| r.u64(&what)).collect::<Result<_, _>>()?;
        let kind = GgmlType(r.u32(&what)?);
        let offset = r.u64(&what)?;
        tensors.push(RawTensorInfo {
            name,
            ne,
            kind,
            offset,
        });
    }
    Ok(Header {
        version,
        metadata,
        tensors,
        end: r.pos,
    })
}

/// A bounds-checked little-endian cursor; `what` in each read names the field for errors.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CheckpointError> {
        if n > self.remaining() {
            return Err(CheckpointError::truncated(
                self.path,
                format!(
                    "{what} needs {n} bytes at offset {} but the file has {} left",
                    self.pos,
                    self.remaining()
                ),
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], CheckpointError> {
        Ok(self
            .take(N, what)?
            .try_into()
            .expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, CheckpointError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, CheckpointError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A u64 count of items of at least `min_size` bytes each, refused when the rest of the file
    /// cannot hold them.
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize, CheckpointError> {
        let count = self.u64(what)?;
        let needed = count.saturating_mul(min_size as u64);
        if needed > self.remaining() as u64 {
            return Err(CheckpointError::truncated(
                self.path,
                format!(
                    "{what} announces {count} items (at least {needed} bytes) at offset {} but \
                     the file has {} bytes left",
                    self.pos - 8,
                    self.remaining()
                ),
            ));
        }
        Ok(count as usize)
    }

    /// A string that must be valid UTF-8 (keys and names).
    fn string(&mut self, what: &str) -> Result<String, CheckpointError> {
        let len = self.count(1, what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| CheckpointError::bad(self.path, format!("{what} is not valid UTF-8")))
    }

    /// One metadata value of GGUF value type `kind`.
    fn value(&mut self, kind: u32, key: &str, depth: usize) -> Result<GgufValue, CheckpointError> {
        let what = format!("the value of metadata `{key}`");
        Ok(match kind {
            0 => GgufValue::U8(u8::from_le_bytes(self.array(&what)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array(&what)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(&what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(&what)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(&what)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(&what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(&what)?)),
            7 => GgufValue::Bool(u8::from_le_bytes(self.array(&what)?) != 0),
            8 => {
                let len = self.count(1, &what)?;
                let bytes = self.take(len, &what)?;
                GgufValue::String(match String::from_utf8_lossy(bytes) {
                    std::borrow::Cow::Borrowed(s) => s.to_string(),
                    std::borrow::Cow::Owned(s) => {
                        log::warn!(
                            "{}: metadata `{key}` holds invalid UTF-8; replaced",
                            self.path.display()
                        );
                        s
                    }
                })
            }
            9 => {
                if depth >= MAX_NESTING {
                    return Err(CheckpointError::bad(
                        self.path,
                        format!("metadata `{key}`: arrays nested more than {MAX_NESTING} deep"),
                    ));
                }
                let item = self.u32(&what)?;
                let Some(min_size) = value_min_size(item) else {
                    return Err(self.unknown_type(key, item));
                };
                let len = self.count(min_size, &what)?;
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.value(item, key, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.array(&what)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(&what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(&what)?)),
            other => return Err(self.unknown_type(key, other)),
        })
    }

    fn unknown_type(&self, key: &str, kind: u32) -> CheckpointError {
        CheckpointError::bad(
            self.path,
            format!("metadata `{key}` has unknown value type {kind}"),
        )
    }
}

/// The fewest bytes a value of GGUF value type `kind` takes; `None` for unknown types.
fn value_min_size(kind: u32) -> Option<usize> {
    Some(match kind {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}
