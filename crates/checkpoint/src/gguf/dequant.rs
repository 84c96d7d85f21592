//! ggml storage types and their conversion to `f32`.

use half::f16;

/// A ggml tensor type: its id, its name and, for the types splitlm reads, the block layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// The name llama.cpp uses (`Q4_1`), or `type N` for ids it does not know.
    pub fn name(self) -> String {
        const NAMES: [&str; 40] = [
            "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
            "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
            "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
            "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4",
            "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
        ];
        match NAMES.get(self.0 as usize) {
            Some(name) => format!("{name} (type {})", self.0),
            None => format!("unknown (type {})", self.0),
        }
    }

    /// `(values per block, bytes per block)` for the types that can be dequantised.
    pub fn block_layout(self) -> Option<(usize, usize)> {
        match self.0 {
            0 => Some((1, 4)),   // F32
            1 => Some((1, 2)),   // F16
            30 => Some((1, 2)),  // BF16
            2 => Some((32, 18)), // Q4_0: f16 scale, 16 bytes of nibbles
            3 => Some((32, 20)), // Q4_1: f16 scale, f16 min, 16 bytes of nibbles
            8 => Some((32, 34)), // Q8_0: f16 scale, 32 signed bytes
            _ => None,
        }
    }

    /// The short name of a supported type (`Q4_1`), used as a tensor's dtype.
    pub fn short_name(self) -> String {
        let full = self.name();
        full.split(' ').next().unwrap_or(&full).to_string()
    }
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Converts `bytes` (a whole number of blocks of `kind`) to `f32`; `None` for unsupported types.
pub fn dequantize(kind: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    let (per_block, block_bytes) = kind.block_layout()?;
    let mut out = Vec::with_capacity(bytes.len() / block_bytes * per_block);
    for block in bytes.chunks_exact(block_bytes) {
        match kind.0 {
            0 => out.push(f32::from_le_bytes(block.try_into().expect("4 bytes"))),
            1 => out.push(f16_at(block, 0)),
            30 => out.push(half::bf16::from_le_bytes([block[0], block[1]]).to_f32()),
            2 => {
                let d = f16_at(block, 0);
                let q = &block[2..18];
                out.extend(q.iter().map(|b| ((b & 0x0F) as i32 - 8) as f32 * d));
                out.extend(q.iter().map(|b| ((b >> 4) as i32 - 8) as f32 * d));
            }
            3 => {
                let d = f16_at(block, 0);
                let m = f16_at(block, 2);
                let q = &block[4..20];
                out.extend(q.iter().map(|b| (b & 0x0F) as f32 * d + m));
                out.extend(q.iter().map(|b| (b >> 4) as f32 * d + m));
            }
            8 => {
                let d = f16_at(block, 0);
                out.extend(block[2..34].iter().map(|&b| b as i8 as f32 * d));
            }
            _ => unreachable!("block_layout covers exactly these types"),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    #[test]
    fn q4_0_uses_low_nibbles_first_and_an_offset_of_8() {
        let mut block = f16_bytes(0.5).to_vec();
        block.extend((0..16u8).map(|j| j | (15 - j) << 4));
        let values = dequantize(GgmlType(2), &block).unwrap();
        assert_eq!(values.len(), 32);
        assert_eq!(values[0], -4.0); // (0 - 8) * 0.5
        assert_eq!(values[15], 3.5); // (15 - 8) * 0.5
        assert_eq!(values[16], 3.5); // high nibble of byte 0 = 15
        assert_eq!(values[31], -4.0);
    }

    #[test]
    fn q4_1_adds_the_block_minimum() {
        let mut block = f16_bytes(0.25).to_vec();
        block.extend(f16_bytes(-1.0));
        block.extend((0..16u8).map(|j| j | (j << 4)));
        let values = dequantize(GgmlType(3), &block).unwrap();
        assert_eq!(values[3], 3.0 * 0.25 - 1.0);
        assert_eq!(values[16 + 5], 5.0 * 0.25 - 1.0);
    }

    #[test]
    fn q8_0_scales_signed_bytes() {
        let mut block = f16_bytes(2.0).to_vec();
        block.extend((0..32).map(|j: i32| (j - 16) as i8 as u8));
        let values = dequantize(GgmlType(8), &block).unwrap();
        assert_eq!(values[0], -32.0);
        assert_eq!(values[31], 30.0);
    }

    #[test]
    fn names_unsupported_types() {
        assert_eq!(GgmlType(13).name(), "Q5_K (type 13)");
        assert!(dequantize(GgmlType(13), &[0; 176]).is_none());
        assert_eq!(GgmlType(99).name(), "unknown (type 99)");
    }
}
