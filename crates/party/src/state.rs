//! Saving and restoring a party's trainable state: the parameters that train (by global path,
//! with their ids) and the optimizer's state, so a run resumes exactly where it stopped.
//!
//! Files are written whole to a temporary name, flushed and renamed, so a crash leaves either
//! the previous file or the new one, never a torn one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::ParamId;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use splitlm_nn::TransformerSlice;
use splitlm_partition::{SavedParameter, named_parameters, restore_parameters};

use crate::{PartyError, PartySlice};

const STEPS_KEY: &str = "splitlm.steps_taken";
const IDS_KEY: &str = "splitlm.param_ids";

/// The two files of a slice's state: `<name>.safetensors` and `<name>.optimizer.bin`.
pub fn state_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.safetensors")),
        dir.join(format!("{name}.optimizer.bin")),
    )
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, flushed to disk, renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PartyError> {
    let fail = |e: std::io::Error| PartyError::state(path, e.to_string());
    let tmp = path.with_extension(format!(
        "{}.partial",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail)
}

impl PartySlice {
    /// Saves the trainable parameters and the optimizer state into `dir` as `name.*`.
    pub fn save_state(&self, dir: &Path, name: &str) -> Result<(), PartyError> {
        let (weights_path, optimizer_path) = state_files(dir, name);
        let params: Vec<_> = named_parameters(self.model(), self.model().spec())
            .into_iter()
            .filter(|p| p.trainable)
            .collect();
        let mut ids = BTreeMap::new();
        let mut bytes = Vec::with_capacity(params.len());
        for p in &params {
            ids.insert(p.path.clone(), p.id.val().to_string());
            let values = p
                .value
                .clone()
                .into_data()
                .try_into_vec_as::<f32>()
                .map_err(|e| PartyError::state(&weights_path, format!("{}: {e:?}", p.path)))?;
            bytes.push(
                values
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            );
        }
        let views = params
            .iter()
            .zip(&bytes)
            .map(|(p, b)| {
                TensorView::new(Dtype::F32, p.dims.clone(), b)
                    .map(|v| (p.path.clone(), v))
                    .map_err(|e| PartyError::state(&weights_path, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metadata = HashMap::from([
            (STEPS_KEY.to_string(), self.steps_taken().to_string()),
            (
                IDS_KEY.to_string(),
                serde_json::to_string(&ids).expect("a map of strings serialises"),
            ),
        ]);
        let encoded = safetensors::serialize(views, Some(metadata))
            .map_err(|e| PartyError::state(&weights_path, e.to_string()))?;
        write_atomic(&weights_path, &encoded)?;
        if let Some(optimizer) = self.optimizer() {
            let state = optimizer
                .into_bytes()
                .map_err(|e| PartyError::state(&optimizer_path, format!("{e:?}")))?;
            write_atomic(&optimizer_path, &state)?;
        }
        Ok(())
    }

    /// Restores what [`PartySlice::save_state`] saved into a slice built the same way (same
    /// checkpoint, slice, trainability and optimizer settings).
    pub fn restore_state(&mut self, dir: &Path, name: &str) -> Result<(), PartyError> {
        let (weights_path, optimizer_path) = state_files(dir, name);
        let fail = |detail: String| PartyError::state(&weights_path, detail);
        let bytes = std::fs::read(&weights_path).map_err(|e| fail(e.to_string()))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| fail(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let steps: usize = meta
            .get(STEPS_KEY)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail(format!("no {STEPS_KEY} in its metadata")))?;
        let ids: BTreeMap<String, String> = meta
            .get(IDS_KEY)
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| fail(format!("no {IDS_KEY} in its metadata")))?;
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| fail(e.to_string()))?;
        let mut saved = BTreeMap::new();
        for (path, view) in tensors.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(fail(format!("{path} is {:?}, expected F32", view.dtype())));
            }
            let id = ids
                .get(&path)
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| fail(format!("{path} has no parameter id")))?;
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            saved.insert(
                path,
                SavedParameter {
                    id: ParamId::from(id),
                    dims: view.shape().to_vec(),
                    values,
                },
            );
        }
        let trainable = named_parameters(self.model(), self.model().spec())
            .into_iter()
            .filter(|p| p.trainable)
            .count();
        if saved.len() != trainable {
            return Err(fail(format!(
                "it holds {} trainable parameters, this slice trains {trainable} \
                 (was it saved with other trainability settings?)",
                saved.len()
            )));
        }
        let spec = self.model().spec().clone();
        let model = restore_parameters(self.model().clone(), &spec, saved).map_err(fail)?;
        let optimizer = match self.optimizer() {
            Some(_) => {
                let state = std::fs::read(&optimizer_path)
                    .map_err(|e| PartyError::state(&optimizer_path, e.to_string()))?;
                Some(
                    self.config()
                        .build()
                        .from_bytes(burn::tensor::Bytes::from_bytes_vec(state))
                        .map_err(|e| PartyError::state(&optimizer_path, format!("{e:?}")))?,
                )
            }
            None => None,
        };
        self.replace_state(model, optimizer, steps);
        Ok(())
    }
}

/// Where a model party keeps one session's saved states: a directory per tag, each written
/// into `<tag>.partial/` and renamed when whole, so a crash at any moment leaves every earlier
/// state intact. The newest [`SessionStore::KEEP`] are kept.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
}

const SESSION_STATE: &str = "model-party";

impl SessionStore {
    /// States kept per session; more than the data party keeps, so the data party's newest
    /// checkpoint always has its counterpart here.
    pub const KEEP: usize = 4;

    /// A store rooted at `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves `slice`'s trainable state under `tag`; returns the steps it has taken.
    pub fn save(&self, slice: &PartySlice, tag: &str) -> Result<u64, PartyError> {
        check_tag(&self.dir, tag)?;
        let fail = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| PartyError::state(&path, e.to_string())
        };
        let target = self.dir.join(tag);
        let partial = self.dir.join(format!("{tag}.partial"));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(fail(&partial))?;
        }
        std::fs::create_dir_all(&partial).map_err(fail(&partial))?;
        slice.save_state(&partial, SESSION_STATE)?;
        if target.exists() {
            std::fs::remove_dir_all(&target).map_err(fail(&target))?;
        }
        std::fs::rename(&partial, &target).map_err(fail(&target))?;
        self.prune()?;
        Ok(slice.steps_taken() as u64)
    }

    /// Restores into `slice` the state saved under `tag`; returns the steps it had taken.
    pub fn restore(&self, slice: &mut PartySlice, tag: &str) -> Result<u64, PartyError> {
        check_tag(&self.dir, tag)?;
        let dir = self.dir.join(tag);
        if !dir.is_dir() {
            return Err(PartyError::state(
                &dir,
                format!("this model party holds no state saved as \"{tag}\""),
            ));
        }
        slice.restore_state(&dir, SESSION_STATE)?;
        Ok(slice.steps_taken() as u64)
    }

    /// Removes all but the newest [`SessionStore::KEEP`] complete states.
    fn prune(&self) -> Result<(), PartyError> {
        let fail = |e: std::io::Error| PartyError::state(&self.dir, e.to_string());
        let mut states = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.ends_with(".partial") {
                let modified = entry.metadata().and_then(|m| m.modified()).map_err(fail)?;
                states.push((modified, entry.path()));
            }
        }
        states.sort();
        let excess = states.len().saturating_sub(Self::KEEP);
        for (_, path) in states.into_iter().take(excess) {
            std::fs::remove_dir_all(&path).map_err(fail)?;
        }
        Ok(())
    }
}

/// A tag names a directory: ASCII letters, digits, `-`, `_` and `.`, not starting with `.`,
/// at most 128 bytes.
fn check_tag(dir: &Path, tag: &str) -> Result<(), PartyError> {
    let fine = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with('.')
        && !tag.ends_with(".partial")
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(())
    } else {
        Err(PartyError::state(
            dir,
            format!("\"{tag}\" is not a state tag (ASCII letters, digits, - _ . only)"),
        ))
    }
}
