//! Conversion of ggml storage to `f32`.
//!
//! Block layouts (little-endian), as in ggml's `block_q*` structs:
//! - `Q8_0`: f16 scale `d`, 32 × i8 `q`; value `j` = `d · q[j]`.
//! - `Q4_0`: f16 scale `d`, 16 bytes; value `j < 16` = `((q[j] & 0xF) − 8) · d`, value `j ≥ 16` =
//!   `((q[j − 16] >> 4) − 8) · d` (low nibbles hold the first half of the block).
//! - `Q4_1`: f16 scale `d`, f16 minimum `m`, 16 bytes; as `Q4_0` without the offset of 8, plus `m`.

use half::{bf16, f16};

use super::GgmlType;

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Converts `bytes`, a whole number of blocks of `kind`, to `f32` values in storage order.
/// Returns `None` for types that cannot be dequantised (see [`GgmlType::can_dequantize`]); a
/// trailing partial block is ignored.
pub fn dequantize(kind: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    if !kind.can_dequantize() {
        return None;
    }
    let (per_block, block_bytes) = kind.block_layout()?;
    let blocks = bytes.chunks_exact(block_bytes);
    let mut out = Vec::with_capacity(blocks.len() * per_block);
    match kind {
        GgmlType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgmlType::F16 => out.extend(blocks.map(|b| f16_at(b, 0))),
        GgmlType::BF16 => out.extend(blocks.map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        GgmlType::Q8_0 => {
            for block in blocks {
                let d = f16_at(block, 0);
                out.extend(block[2..34].iter().map(|&q| f32::from(q as i8) * d));
            }
        }
        GgmlType::Q4_0 => {
            for block in blocks {
                let d = f16_at(block, 0);
                let q = &block[2..18];
                out.extend(q.iter().map(|&b| f32::from((b & 0x0F) as i8 - 8) * d));
                out.extend(q.iter().map(|&b| f32::from((b >> 4) as i8 - 8) * d));
            }
        }
        GgmlType::Q4_1 => {
            for block in blocks {
                let d = f16_at(block, 0);
                let m = f16_at(block, 2);
                let q = &block[4..20];
                out.extend(q.iter().map(|&b| f32::from(b & 0x0F) * d + m));
                out.extend(q.iter().map(|&b| f32::from(b >> 4) * d + m));
            }
        }
        _ => unreachable!("can_dequantize lists exactly these types"),
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
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let values = dequantize(GgmlType::Q4_0, &block).unwrap();
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
        let values = dequantize(GgmlType::Q4_1, &block).unwrap();
        assert_eq!(values[3], 3.0 * 0.25 - 1.0);
        assert_eq!(values[16 + 5], 5.0 * 0.25 - 1.0);
    }

    #[test]
    fn q8_0_scales_signed_bytes() {
        let mut block = f16_bytes(2.0).to_vec();
        block.extend((0..32).map(|j: i32| (j - 16) as i8 as u8));
        let values = dequantize(GgmlType::Q8_0, &block).unwrap();
        assert_eq!(values[0], -32.0);
        assert_eq!(values[31], 30.0);
    }

    #[test]
    fn plain_float_types() {
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(dequantize(GgmlType::F32, &bytes).unwrap(), [1.5, -2.0]);
        let bytes = bf16::from_f32(-0.75).to_le_bytes();
        assert_eq!(dequantize(GgmlType::BF16, &bytes).unwrap(), [-0.75]);
        assert!(dequantize(GgmlType(12), &[0; 144]).is_none());
    }
}
