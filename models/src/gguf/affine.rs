//! GGML blocks re-expressed, without loss, as MLX affine quantization with group size 32.
//!
//! MLX affine dequantization is `scale * code + bias` per group of `group_size` values with
//! unsigned `bits`-bit codes. Every 32-value (sub-)block of these GGML types has one scale and one
//! offset, so it is such a group:
//!
//! | type | bits | code | scale | bias |
//! |------|------|------|-------|------|
//! | Q4_0 | 4 | q | d | -8 d |
//! | Q4_1 | 4 | q | d | m |
//! | Q5_0 | 5 | q | d | -16 d |
//! | Q5_1 | 5 | q | d | m |
//! | Q8_0 | 8 | q + 128 | d | -128 d |
//! | Q4_K | 4 | q | d sc_j | -(dmin m_j) |
//! | Q5_K | 5 | q | d sc_j | -(dmin m_j) |
//!
//! Scales and biases are exact in f32 (a half times a 6-bit integer), and each `scale * code`
//! product is exact, so `scale * code + bias` rounds exactly as ggml's formula does: the MLX
//! tensors dequantize to the same f32 values (tested against [`super::dequantize`]; only the sign
//! of a zero can differ, as ggml's `(8 - 8) * d` is `-0` for a negative `d`).
//! Q6_K (16-value sub-blocks with separate scales) has no group-32 affine form.

use super::dequant::{f16_to_f32, q4_k_scale_min};
use super::types::GgmlType;

/// Values in MLX affine form: `value[i] = scales[i / 32] * codes[i] + biases[i / 32]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AffineGroups {
    pub bits: i32,
    pub codes: Vec<u8>,
    pub scales: Vec<f32>,
    pub biases: Vec<f32>,
}

/// The group size of every lossless import.
pub const AFFINE_GROUP: usize = 32;

/// MLX bit width of `ty`'s lossless affine form, or `None` when it has none.
pub fn affine_bits(ty: GgmlType) -> Option<i32> {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4K => Some(4),
        GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q5K => Some(5),
        GgmlType::Q8_0 => Some(8),
        _ => None,
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Decode `n` values of `ty` (whole blocks) into affine groups. `Err` gives the reason when the
/// type has no affine form or the byte count is wrong.
pub fn to_affine(ty: GgmlType, data: &[u8], n: usize) -> Result<AffineGroups, String> {
    let bits =
        affine_bits(ty).ok_or_else(|| format!("GGML type {ty} has no lossless MLX affine form"))?;
    let (block, bytes) = ty.block_geometry().expect("affine types have a geometry");
    let (block, bytes) = (block as usize, bytes as usize);
    if n % block != 0 || data.len() != n / block * bytes {
        return Err(format!(
            "{n} values of {ty} need {} bytes, got {}",
            n / block * bytes,
            data.len()
        ));
    }
    let groups = n / AFFINE_GROUP;
    let mut out = AffineGroups {
        bits,
        codes: vec![0; n],
        scales: Vec::with_capacity(groups),
        biases: Vec::with_capacity(groups),
    };
    for (bi, b) in data.chunks_exact(bytes).enumerate() {
        let codes = &mut out.codes[bi * block..(bi + 1) * block];
        match ty {
            GgmlType::Q4_0 | GgmlType::Q4_1 => {
                let d = f16_at(b, 0);
                let (bias, qs) = if ty == GgmlType::Q4_0 {
                    (-8.0 * d, &b[2..18])
                } else {
                    (f16_at(b, 2), &b[4..20])
                };
                for j in 0..16 {
                    codes[j] = qs[j] & 0x0F;
                    codes[j + 16] = qs[j] >> 4;
                }
                out.scales.push(d);
                out.biases.push(bias);
            }
            GgmlType::Q5_0 | GgmlType::Q5_1 => {
                let d = f16_at(b, 0);
                let (bias, h) = if ty == GgmlType::Q5_0 {
                    (-16.0 * d, 2)
                } else {
                    (f16_at(b, 2), 4)
                };
                let qh = u32::from_le_bytes([b[h], b[h + 1], b[h + 2], b[h + 3]]);
                let qs = &b[h + 4..h + 20];
                for j in 0..16 {
                    codes[j] = (qs[j] & 0x0F) | ((((qh >> j) & 1) << 4) as u8);
                    codes[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) << 4) as u8);
                }
                out.scales.push(d);
                out.biases.push(bias);
            }
            GgmlType::Q8_0 => {
                let d = f16_at(b, 0);
                for j in 0..32 {
                    codes[j] = ((b[2 + j] as i8) as i16 + 128) as u8;
                }
                out.scales.push(d);
                out.biases.push(-128.0 * d);
            }
            GgmlType::Q4K | GgmlType::Q5K => {
                let d = f16_at(b, 0);
                let dmin = f16_at(b, 2);
                let scales = &b[4..16];
                let (qh, qs) = if ty == GgmlType::Q5K {
                    (Some(&b[16..48]), &b[48..176])
                } else {
                    (None, &b[16..144])
                };
                for chunk in 0..4 {
                    let q = &qs[chunk * 32..chunk * 32 + 32];
                    for l in 0..32 {
                        let (mut lo, mut hi) = (q[l] & 0x0F, q[l] >> 4);
                        if let Some(qh) = qh {
                            lo |= ((qh[l] >> (2 * chunk)) & 1) << 4;
                            hi |= ((qh[l] >> (2 * chunk + 1)) & 1) << 4;
                        }
                        codes[chunk * 64 + l] = lo;
                        codes[chunk * 64 + 32 + l] = hi;
                    }
                    for sub in [2 * chunk, 2 * chunk + 1] {
                        let (sc, m) = q4_k_scale_min(sub, scales);
                        out.scales.push(d * sc as f32);
                        out.biases.push(-(dmin * m as f32));
                    }
                }
            }
            _ => unreachable!("affine_bits filtered the type"),
        }
    }
    Ok(out)
}

/// Pack `bits`-bit codes (one row of a matrix, length a multiple of 32) into MLX's uint32 layout:
/// a little-endian bit stream, value `i` at bits `i*bits .. (i+1)*bits`.
pub fn pack_codes(codes: &[u8], bits: i32) -> Vec<u32> {
    let bits = bits as usize;
    let mut out = vec![0u32; codes.len() * bits / 32];
    for (i, &c) in codes.iter().enumerate() {
        let pos = i * bits;
        let (w, s) = (pos / 32, pos % 32);
        out[w] |= (c as u32) << s;
        if s + bits > 32 {
            out[w + 1] |= (c as u32) >> (32 - s);
        }
    }
    out
}
