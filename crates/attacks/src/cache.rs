//! A directory of what attacks train once and may reuse (BiSR's inverter), each entry named
//! by the SHA-256 of everything it depends on, so that an entry is reused only for exactly the
//! inputs it was trained from and never goes stale (docs/ARCHITECTURE.md, "Attack cache").
//!
//! Writes go to a temporary file renamed into place, so a crash leaves no half-written entry; an
//! entry that cannot be read back (truncated, wrong shapes, not finite) is reported and
//! rebuilt, never trusted.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor};
use sha2::{Digest, Sha256};
use splitlm_nn::{TokenBatch, TransformerSlice};
use splitlm_partition::named_parameters;
use splitlm_zoo::AnyModel;

/// Where attacks keep what they trained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `key` among the `kind` entries (`<dir>/<kind>/<key>.safetensors`).
    pub fn path(&self, kind: &str, key: &CacheKey) -> PathBuf {
        self.dir.join(kind).join(format!("{}.safetensors", key.0))
    }

    /// The bytes stored under `key`, if any; a file that exists but cannot be read is reported
    /// and counts as absent.
    pub(crate) fn read(&self, kind: &str, key: &CacheKey) -> Option<Vec<u8>> {
        let path = self.path(kind, key);
        match fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!("cannot read the cached {kind} {}: {e}", path.display());
                None
            }
        }
    }

    /// Stores `bytes` under `key`, atomically: a reader sees the old entry or the whole new one.
    pub(crate) fn write(&self, kind: &str, key: &CacheKey, bytes: &[u8]) -> io::Result<PathBuf> {
        let path = self.path(kind, key);
        let dir = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(dir)?;
        let staging = dir.join(format!(".{}.{}.partial", key.0, std::process::id()));
        let written = fs::File::create(&staging).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| fs::rename(&staging, &path)) {
            let _ = fs::remove_file(&staging);
            return Err(e);
        }
        Ok(path)
    }
}

/// The SHA-256 of an entry's inputs, in hex: its name in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CacheKey(String);

impl CacheKey {
    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Builds a [`CacheKey`] from labelled parts; each part is length-prefixed, so no two
/// different sequences of parts hash alike.
pub(crate) struct KeyBuilder(Sha256);

impl KeyBuilder {
    /// A key for entries of `kind`, written by this version of splitlm in `format`: a change
    /// of either (what is trained, or how) names different entries.
    pub fn new(kind: &str, format: u32) -> Self {
        let mut builder = Self(Sha256::new());
        builder.text("kind", kind);
        builder.text("splitlm", env!("CARGO_PKG_VERSION"));
        builder.text("format", &format.to_string());
        builder
    }

    fn part(&mut self, label: &str, bytes: &[u8]) {
        for piece in [label.as_bytes(), bytes] {
            self.0.update((piece.len() as u64).to_le_bytes());
            self.0.update(piece);
        }
    }

    /// A text part.
    pub fn text(&mut self, label: &str, text: &str) {
        self.part(label, text.as_bytes());
    }

    /// Every parameter of `model` (paths, shapes and values) with its family and the layer
    /// range it holds: the model, the cut and the fine-tuning state at once.
    pub fn model(&mut self, label: &str, model: &AnyModel) {
        self.text(label, model.family_name());
        self.text("slice", &format!("{:?}", model.spec()));
        for p in named_parameters(model, model.spec()) {
            let values: Vec<f32> = p.value.into_data().try_into_vec_as().unwrap_or_default();
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.part(&format!("{}{:?}", p.path, p.dims), &bytes);
        }
    }

    /// The token ids, attention mask and segment ids of `batch`.
    pub fn batch(&mut self, label: &str, batch: &TokenBatch) {
        self.text(label, "batch");
        self.ints("input_ids", &batch.input_ids);
        self.ints("attention_mask", &batch.attention_mask);
        if let Some(types) = &batch.token_type_ids {
            self.ints("token_type_ids", types);
        }
    }

    fn ints(&mut self, label: &str, t: &Tensor<2, Int>) {
        let dims = format!("{:?}", t.dims());
        let values: Vec<i64> = t.clone().into_data().try_into_vec_as().unwrap_or_default();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.text(label, &dims);
        self.part(label, &bytes);
    }

    /// The key.
    pub fn finish(self) -> CacheKey {
        CacheKey(
            self.0
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_delimited_and_labels_count() {
        let key = |parts: &[(&str, &str)]| {
            let mut k = KeyBuilder::new("test", 1);
            for (label, text) in parts {
                k.text(label, text);
            }
            k.finish()
        };
        assert_eq!(key(&[("a", "xy")]), key(&[("a", "xy")]));
        assert_ne!(key(&[("a", "xy")]), key(&[("a", "x"), ("", "y")]));
        assert_ne!(key(&[("a", "xy")]), key(&[("b", "xy")]));
        assert_eq!(key(&[]).as_str().len(), 64);
        let mut other_format = KeyBuilder::new("test", 2);
        other_format.text("a", "xy");
        assert_ne!(other_format.finish(), key(&[("a", "xy")]));
    }

    #[test]
    fn writes_replace_whole_entries_and_leave_no_staging_file() {
        let dir = std::env::temp_dir().join(format!("splitlm-cache-test-{}", std::process::id()));
        let cache = ArtifactCache::new(&dir);
        let key = KeyBuilder::new("test", 1).finish();
        assert_eq!(cache.read("inverter", &key), None);
        let path = cache.write("inverter", &key, b"first").unwrap();
        cache.write("inverter", &key, b"second").unwrap();
        assert_eq!(
            cache.read("inverter", &key).as_deref(),
            Some(&b"second"[..])
        );
        let files: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec![path.file_name().unwrap().to_owned()]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
