//! ggml tensor types: names and block layouts.

/// A ggml tensor type id, as stored in a GGUF tensor info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

/// `(name, values per block, bytes per block)` by type id; a layout of `(0, 0)` marks ids that
/// llama.cpp has retired and no longer gives a size.
const TYPES: [(&str, usize, usize); 42] = [
    ("F32", 1, 4),
    ("F16", 1, 2),
    ("Q4_0", 32, 18),
    ("Q4_1", 32, 20),
    ("Q4_2", 0, 0),
    ("Q4_3", 0, 0),
    ("Q5_0", 32, 22),
    ("Q5_1", 32, 24),
    ("Q8_0", 32, 34),
    ("Q8_1", 32, 40),
    ("Q2_K", 256, 84),
    ("Q3_K", 256, 110),
    ("Q4_K", 256, 144),
    ("Q5_K", 256, 176),
    ("Q6_K", 256, 210),
    ("Q8_K", 256, 292),
    ("IQ2_XXS", 256, 66),
    ("IQ2_XS", 256, 74),
    ("IQ3_XXS", 256, 98),
    ("IQ1_S", 256, 50),
    ("IQ4_NL", 32, 18),
    ("IQ3_S", 256, 110),
    ("IQ2_S", 256, 82),
    ("IQ4_XS", 256, 136),
    ("I8", 1, 1),
    ("I16", 1, 2),
    ("I32", 1, 4),
    ("I64", 1, 8),
    ("F64", 1, 8),
    ("IQ1_M", 256, 56),
    ("BF16", 1, 2),
    ("Q4_0_4_4", 0, 0),
    ("Q4_0_4_8", 0, 0),
    ("Q4_0_8_8", 0, 0),
    ("TQ1_0", 256, 54),
    ("TQ2_0", 256, 66),
    ("IQ4_NL_4_4", 0, 0),
    ("IQ4_NL_4_8", 0, 0),
    ("IQ4_NL_8_8", 0, 0),
    ("MXFP4", 32, 17),
    ("NVFP4", 64, 36),
    ("Q1_0", 128, 18),
];

impl GgmlType {
    /// 32-bit float.
    pub const F32: Self = Self(0);
    /// IEEE half.
    pub const F16: Self = Self(1);
    /// 4-bit blocks of 32 with an f16 scale.
    pub const Q4_0: Self = Self(2);
    /// 4-bit blocks of 32 with an f16 scale and an f16 minimum.
    pub const Q4_1: Self = Self(3);
    /// 8-bit blocks of 32 with an f16 scale.
    pub const Q8_0: Self = Self(8);
    /// bfloat16.
    pub const BF16: Self = Self(30);

    /// The name llama.cpp uses (`Q4_1`), or `None` for an id it does not define.
    pub fn known_name(self) -> Option<&'static str> {
        TYPES.get(self.0 as usize).map(|t| t.0)
    }

    /// The name llama.cpp uses (`Q4_1`), or `type 99` for an unknown id.
    pub fn name(self) -> String {
        match self.known_name() {
            Some(name) => name.to_string(),
            None => format!("type {}", self.0),
        }
    }

    /// Name and id for error messages: `Q5_K (type 13)`, or `unknown (type 99)`.
    pub fn describe(self) -> String {
        format!(
            "{} (type {})",
            self.known_name().unwrap_or("unknown"),
            self.0
        )
    }

    /// `(values per block, bytes per block)`, for every type whose layout is known (whether or not
    /// this crate can dequantise it).
    pub fn block_layout(self) -> Option<(usize, usize)> {
        match TYPES.get(self.0 as usize) {
            Some(&(_, values, bytes)) if values > 0 => Some((values, bytes)),
            _ => None,
        }
    }

    /// Whether [`super::dequantize`] converts this type to `f32`.
    pub fn can_dequantize(self) -> bool {
        matches!(
            self,
            Self::F32 | Self::F16 | Self::BF16 | Self::Q4_0 | Self::Q4_1 | Self::Q8_0
        )
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_layouts() {
        assert_eq!(GgmlType(13).describe(), "Q5_K (type 13)");
        assert_eq!(GgmlType(12).name(), "Q4_K");
        assert_eq!(GgmlType(99).describe(), "unknown (type 99)");
        assert_eq!(GgmlType(99).name(), "type 99");
        assert_eq!(GgmlType::Q4_1.block_layout(), Some((32, 20)));
        assert_eq!(GgmlType(12).block_layout(), Some((256, 144)));
        assert_eq!(GgmlType(4).block_layout(), None);
        assert_eq!(GgmlType(30).known_name(), Some("BF16"));
        assert!(GgmlType::Q8_0.can_dequantize() && !GgmlType(12).can_dequantize());
    }
}
