//! Tensor frames: dtype, shape and raw little-endian bytes.

use half::{bf16, f16};

use crate::error::ProtocolError;

/// The largest rank a frame may have on the wire.
pub const MAX_RANK: usize = 8;

/// Element type of a [`TensorFrame`]; all multi-byte types are little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WireDType {
    /// IEEE 754 binary32.
    F32 = 0,
    /// IEEE 754 binary16.
    F16 = 1,
    /// bfloat16 (the top half of an f32).
    BF16 = 2,
    /// Signed 64-bit integer.
    I64 = 3,
    /// Signed 32-bit integer.
    I32 = 4,
    /// Unsigned byte (masks).
    U8 = 5,
}

impl WireDType {
    /// Every dtype, in tag order.
    pub const ALL: [WireDType; 6] = [
        WireDType::F32,
        WireDType::F16,
        WireDType::BF16,
        WireDType::I64,
        WireDType::I32,
        WireDType::U8,
    ];

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            WireDType::F32 | WireDType::I32 => 4,
            WireDType::F16 | WireDType::BF16 => 2,
            WireDType::I64 => 8,
            WireDType::U8 => 1,
        }
    }

    /// Whether this is a floating-point dtype.
    pub fn is_float(self) -> bool {
        matches!(self, WireDType::F32 | WireDType::F16 | WireDType::BF16)
    }

    /// The byte written on the wire.
    pub fn to_u8(self) -> u8 {
        self as u8
    }

    /// Parses a wire byte.
    pub fn from_u8(byte: u8) -> Result<Self, ProtocolError> {
        Self::ALL
            .get(usize::from(byte))
            .copied()
            .ok_or(ProtocolError::UnknownDType(byte))
    }
}

/// A tensor on the wire: dtype, shape, and `product(shape) * dtype.size()` little-endian bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorFrame {
    /// Element type.
    pub dtype: WireDType,
    /// Dimensions, outermost first; `[]` is a scalar.
    pub shape: Vec<usize>,
    /// Raw little-endian element bytes.
    pub data: Vec<u8>,
}

/// Number of elements of `shape`, or `None` on overflow.
pub(crate) fn checked_elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl TensorFrame {
    /// Builds a float frame from f32 values, converting to `dtype` (F32, F16 or BF16; round to nearest even).
    pub fn from_f32(
        shape: Vec<usize>,
        values: &[f32],
        dtype: WireDType,
    ) -> Result<Self, ProtocolError> {
        check_count(&shape, values.len(), dtype)?;
        let data = match dtype {
            WireDType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            WireDType::F16 => values
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                .collect(),
            WireDType::BF16 => values
                .iter()
                .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
                .collect(),
            _ => {
                return Err(ProtocolError::WrongDType {
                    expected: "a float dtype",
                    found: dtype,
                });
            }
        };
        Ok(Self { dtype, shape, data })
    }

    /// Builds an I64 frame.
    pub fn from_i64(shape: Vec<usize>, values: &[i64]) -> Result<Self, ProtocolError> {
        Self::from_ints(shape, values, WireDType::I64)
    }

    /// Builds an integer frame of `dtype` (I64, I32 or U8), failing if a value does not fit.
    pub fn from_ints(
        shape: Vec<usize>,
        values: &[i64],
        dtype: WireDType,
    ) -> Result<Self, ProtocolError> {
        check_count(&shape, values.len(), dtype)?;
        let mut data = Vec::with_capacity(values.len() * dtype.size());
        for &v in values {
            let out_of_range = || ProtocolError::IntOutOfRange { value: v, dtype };
            match dtype {
                WireDType::I64 => data.extend_from_slice(&v.to_le_bytes()),
                WireDType::I32 => data.extend_from_slice(
                    &i32::try_from(v).map_err(|_| out_of_range())?.to_le_bytes(),
                ),
                WireDType::U8 => data.push(u8::try_from(v).map_err(|_| out_of_range())?),
                _ => {
                    return Err(ProtocolError::WrongDType {
                        expected: "an integer dtype",
                        found: dtype,
                    });
                }
            }
        }
        Ok(Self { dtype, shape, data })
    }

    /// Number of elements the shape declares (1 for a scalar); saturates on overflow,
    /// which [`TensorFrame::validate`] reports.
    pub fn num_elements(&self) -> usize {
        checked_elements(&self.shape).unwrap_or(usize::MAX)
    }

    /// Checks rank ≤ [`MAX_RANK`] and `product(shape) * dtype.size() == data.len()` with checked arithmetic.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.shape.len() > MAX_RANK {
            return Err(ProtocolError::Oversized {
                what: "tensor rank",
                size: self.shape.len() as u64,
                limit: MAX_RANK as u64,
            });
        }
        let expected = checked_elements(&self.shape).and_then(|n| n.checked_mul(self.dtype.size()));
        if expected != Some(self.data.len()) {
            return Err(self.mismatch());
        }
        Ok(())
    }

    fn mismatch(&self) -> ProtocolError {
        ProtocolError::ShapeMismatch {
            shape: self.shape.clone(),
            dtype: self.dtype,
            data_len: self.data.len() as u64,
        }
    }

    /// Reads a float frame (F32, F16 or BF16) as f32 values.
    pub fn to_f32(&self) -> Result<Vec<f32>, ProtocolError> {
        self.validate()?;
        let out = match self.dtype {
            WireDType::F32 => self
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            WireDType::F16 => self
                .data
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            WireDType::BF16 => self
                .data
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            found => {
                return Err(ProtocolError::WrongDType {
                    expected: "f32",
                    found,
                });
            }
        };
        Ok(out)
    }

    /// Reads an integer frame (I64, I32 or U8) as i64 values.
    pub fn to_i64(&self) -> Result<Vec<i64>, ProtocolError> {
        self.validate()?;
        let out = match self.dtype {
            WireDType::I64 => self
                .data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            WireDType::I32 => self
                .data
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            WireDType::U8 => self.data.iter().map(|&b| i64::from(b)).collect(),
            found => {
                return Err(ProtocolError::WrongDType {
                    expected: "i64",
                    found,
                });
            }
        };
        Ok(out)
    }
}

fn check_count(shape: &[usize], count: usize, dtype: WireDType) -> Result<(), ProtocolError> {
    if shape.len() > MAX_RANK {
        return Err(ProtocolError::Oversized {
            what: "tensor rank",
            size: shape.len() as u64,
            limit: MAX_RANK as u64,
        });
    }
    if checked_elements(shape) != Some(count) {
        return Err(ProtocolError::ShapeMismatch {
            shape: shape.to_vec(),
            dtype,
            data_len: count.saturating_mul(dtype.size()) as u64,
        });
    }
    Ok(())
}
