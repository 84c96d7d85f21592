//! A bounds-checked little-endian cursor over the file: every read says what it was reading
//! when the file ends early, and no length taken from the file is trusted before it is checked
//! against the bytes that remain.

use std::path::Path;

use crate::CheckpointError;

pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], path: &'a Path) -> Self {
        Self { bytes, pos: 0, path }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CheckpointError> {
        if n > self.remaining() {
            return Err(CheckpointError::Truncated {
                path: self.path.to_path_buf(),
                detail: format!(
                    "{what} needs {n} bytes at offset {} but the file has {} left",
                    self.pos,
                    self.remaining()
                ),
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], CheckpointError> {
        Ok(self.take(N, what)?.try_into().expect("take returned N bytes"))
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, CheckpointError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16, CheckpointError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn f32(&mut self, what: &str) -> Result<f32, CheckpointError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }

    pub fn f64(&mut self, what: &str) -> Result<f64, CheckpointError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// A count that announces `count` items of at least `min_size` bytes each: rejected when
    /// the rest of the file cannot hold them, before anything is allocated for them.
    pub fn count(&mut self, min_size: usize, what: &str) -> Result<usize, CheckpointError> {
        let count = self.u64(what)?;
        let needed = count.saturating_mul(min_size as u64);
        if needed > self.remaining() as u64 {
            return Err(CheckpointError::Truncated {
                path: self.path.to_path_buf(),
                detail: format!(
                    "{what} announces {count} items but only {} bytes remain",
                    self.remaining()
                ),
            });
        }
        Ok(count as usize)
    }

    pub fn string(&mut self, what: &str) -> Result<String, CheckpointError> {
        let len = self.count(1, what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| CheckpointError::bad(self.path, format!("{what} is not UTF-8")))
    }
}
