use crate::CheckpointError;

/// A tensor in host memory, converted to `f32`, row-major with the outermost dimension first
/// (PyTorch / Hugging Face order).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

/// What a checkpoint says about a tensor without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name in this source.
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Storage type as the file names it (`F32`, `BF16`, `Q4_1`, ...).
    pub dtype: String,
}

/// Named tensors read on demand.
pub trait TensorSource: Send + Sync {
    /// Where the tensors come from, for error messages (a file or directory path).
    fn describe(&self) -> String;

    /// Every tensor name.
    fn names(&self) -> Vec<String>;

    /// Shape and type of `name`, without reading its data.
    fn info(&self, name: &str) -> Option<TensorInfo>;

    /// Reads and converts one tensor; only its bytes are touched.
    fn load(&self, name: &str) -> Result<HostTensor, CheckpointError>;

    /// Reads one tensor and checks its shape.
    fn load_shaped(&self, name: &str, expected: &[usize]) -> Result<HostTensor, CheckpointError> {
        let info = self.info(name).ok_or_else(|| CheckpointError::MissingTensor {
            source_desc: self.describe(),
            name: name.to_string(),
        })?;
        if info.shape != expected {
            return Err(CheckpointError::ShapeMismatch {
                source_desc: self.describe(),
                name: name.to_string(),
                expected: expected.to_vec(),
                found: info.shape,
            });
        }
        self.load(name)
    }

    /// Whether the source has `name`.
    fn contains(&self, name: &str) -> bool {
        self.info(name).is_some()
    }
}

impl<T: TensorSource + ?Sized> TensorSource for std::sync::Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn names(&self) -> Vec<String> {
        (**self).names()
    }
    fn info(&self, name: &str) -> Option<TensorInfo> {
        (**self).info(name)
    }
    fn load(&self, name: &str) -> Result<HostTensor, CheckpointError> {
        (**self).load(name)
    }
}
