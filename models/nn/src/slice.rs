//! Which part of a model a party holds.

use std::fmt;
use std::ops::Range;

use crate::ModelError;

/// A half-open range of transformer blocks `[start, end)`, in the model's own numbering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct LayerRange {
    /// First block held.
    pub start: usize,
    /// One past the last block held.
    pub end: usize,
}

impl LayerRange {
    /// The blocks `[start, end)`. Panics if `start > end`; use [`LayerRange::checked`] for input.
    pub fn new(start: usize, end: usize) -> Self {
        assert!(start <= end, "layer range {start}..{end} is reversed");
        Self { start, end }
    }

    /// Validates a range against a model with `num_layers` blocks.
    pub fn checked(start: usize, end: usize, num_layers: usize) -> Result<Self, ModelError> {
        if start > end || end > num_layers {
            return Err(ModelError::Slice(format!(
                "layer range {start}..{end} does not fit a model with {num_layers} blocks"
            )));
        }
        Ok(Self { start, end })
    }

    /// Every block of a model with `num_layers` blocks.
    pub fn all(num_layers: usize) -> Self {
        Self::new(0, num_layers)
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when the range holds no block.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The block ids as a `Range`.
    pub fn ids(&self) -> Range<usize> {
        self.start..self.end
    }
}

impl fmt::Display for LayerRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// The parts of a model one slice holds: embeddings, a range of blocks, the final norm and the
/// task head. A whole model is the slice that holds everything; a partition is a few slices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SliceSpec {
    /// Token (and position) embeddings.
    pub embeddings: bool,
    /// Transformer blocks held.
    pub blocks: LayerRange,
    /// The final normalisation (pre-LN decoders) and the task head on top of it.
    pub top: bool,
}

impl SliceSpec {
    /// The whole model.
    pub fn full(num_layers: usize) -> Self {
        Self {
            embeddings: true,
            blocks: LayerRange::all(num_layers),
            top: true,
        }
    }

    /// Embeddings and the first `n` blocks (a data party's head).
    pub fn bottom(n: usize) -> Self {
        Self {
            embeddings: true,
            blocks: LayerRange::new(0, n),
            top: false,
        }
    }

    /// Blocks `[start, end)` with neither embeddings nor top.
    pub fn middle(start: usize, end: usize) -> Self {
        Self {
            embeddings: false,
            blocks: LayerRange::new(start, end),
            top: false,
        }
    }

    /// Blocks `[start, num_layers)`, the final norm and the task head.
    pub fn top_from(start: usize, num_layers: usize) -> Self {
        Self {
            embeddings: false,
            blocks: LayerRange::new(start, num_layers),
            top: true,
        }
    }

    /// Checks the slice against a model with `num_layers` blocks.
    pub fn validate(&self, num_layers: usize) -> Result<(), ModelError> {
        LayerRange::checked(self.blocks.start, self.blocks.end, num_layers).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_validated_against_the_model() {
        assert!(LayerRange::checked(0, 6, 6).is_ok());
        assert!(LayerRange::checked(2, 2, 6).unwrap().is_empty());
        let err = LayerRange::checked(4, 8, 6).unwrap_err().to_string();
        assert!(err.contains("4..8") && err.contains("6 blocks"), "{err}");
        assert!(LayerRange::checked(3, 2, 6).is_err());
        assert!(SliceSpec::top_from(2, 6).validate(6).is_ok());
        assert!(SliceSpec::bottom(7).validate(6).is_err());
    }
}
