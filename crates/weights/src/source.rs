//! The format-independent view of a checkpoint: named tensors converted to host `f32`.

use crate::CheckpointError;

/// A tensor in host memory, converted to `f32`, row-major with the outermost dimension first
/// (PyTorch / Hugging Face order).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, the last dimension varying fastest.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor from its shape and values.
    ///
    /// # Panics
    /// If `data.len()` is not the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?} does not hold {} values",
            data.len()
        );
        Self { shape, data }
    }

    /// The number of values.
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// What a checkpoint says about a tensor without reading its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name in this source.
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Storage type as the file names it (`F32`, `BF16`, `Q4_1`, ...).
    pub dtype: String,
}

/// Named tensors, read and converted on demand.
pub trait TensorSource: Send + Sync {
    /// Where the tensors come from, for error messages (a file or directory path).
    fn describe(&self) -> String;

    /// Every tensor name, sorted.
    fn names(&self) -> Vec<String>;

    /// Shape and storage type of `name`, without reading its data; `None` if absent.
    fn info(&self, name: &str) -> Option<TensorInfo>;

    /// Reads and converts one tensor; only its bytes are touched.
    fn load(&self, name: &str) -> Result<HostTensor, CheckpointError>;

    /// Reads one tensor and checks that its shape is `expected`
    /// ([`CheckpointError::ShapeMismatch`] otherwise).
    fn load_shaped(&self, name: &str, expected: &[usize]) -> Result<HostTensor, CheckpointError> {
        let mismatch = |found: Vec<usize>| CheckpointError::ShapeMismatch {
            source_desc: self.describe(),
            name: name.to_string(),
            expected: expected.to_vec(),
            found,
        };
        // Refuse before converting when the header already tells.
        if let Some(info) = self.info(name)
            && info.shape != expected
        {
            return Err(mismatch(info.shape));
        }
        let tensor = self.load(name)?;
        if tensor.shape != expected {
            return Err(mismatch(tensor.shape));
        }
        Ok(tensor)
    }

    /// Whether the source has a tensor called `name`.
    fn contains(&self, name: &str) -> bool {
        self.info(name).is_some()
    }
}

macro_rules! forward_tensor_source {
    ($($ty:ty),*) => {$(
        impl<T: TensorSource + ?Sized> TensorSource for $ty {
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
            fn load_shaped(
                &self,
                name: &str,
                expected: &[usize],
            ) -> Result<HostTensor, CheckpointError> {
                (**self).load_shaped(name, expected)
            }
            fn contains(&self, name: &str) -> bool {
                (**self).contains(name)
            }
        }
    )*};
}

forward_tensor_source!(std::sync::Arc<T>, Box<T>, &T);
