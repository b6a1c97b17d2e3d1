//! Exact dequantization of GGML blocks to f32, following ggml's reference `dequantize_row_*`
//! (same integer decoding, same float operations in the same order, so results are bit-identical).
//!
//! Block layouts (little-endian, `f16` = IEEE half):
//! * Q4_0 (32 values, 18 B): `d: f16, qs[16]`; low nibbles are values 0..16, high nibbles 16..32;
//!   `x = (q - 8) * d`.
//! * Q4_1 (32, 20 B): `d: f16, m: f16, qs[16]`; `x = q * d + m`.
//! * Q5_0 (32, 22 B): `d: f16, qh: u32, qs[16]`; bit j of `qh` is the 5th bit of value j;
//!   `x = (q - 16) * d`.
//! * Q5_1 (32, 24 B): `d, m: f16, qh: u32, qs[16]`; `x = q * d + m`.
//! * Q8_0 (32, 34 B): `d: f16, qs: [i8; 32]`; `x = q * d`.
//! * Q4_K (256, 144 B): `d, dmin: f16, scales[12], qs[128]`: eight sub-blocks of 32 with 6-bit
//!   scale `sc` and min `m` packed in `scales`; each 64-value chunk takes the low nibbles of 32
//!   bytes for its first sub-block and their high nibbles for the second; `x = d*sc * q - dmin*m`.
//! * Q5_K (256, 176 B): as Q4_K plus `qh[32]` holding the 5th bits (two bit planes per chunk).
//! * Q6_K (256, 210 B): `ql[128], qh[64], scales: [i8; 16], d: f16`: sixteen sub-blocks of 16;
//!   `x = d * sc * (q - 32)` with 6-bit `q` from a low nibble and two high bits.

use super::types::GgmlType;

/// IEEE half bits to f32 (exact).
pub fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Dequantize `data` (whole blocks of `ty`) into `n` f32 values. `Err` carries the reason when
/// the type is not supported or the byte count does not match `n`.
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let (block, bytes) = ty
        .block_geometry()
        .filter(|_| ty.can_dequantize())
        .ok_or_else(|| format!("no dequantizer for GGML type {ty}"))?;
    let (block, bytes) = (block as usize, bytes as usize);
    if n % block != 0 {
        return Err(format!(
            "{n} values are not a whole number of {ty} blocks of {block}"
        ));
    }
    let want = n / block * bytes;
    if data.len() != want {
        return Err(format!(
            "{n} values of {ty} need {want} bytes, got {}",
            data.len()
        ));
    }
    let mut out = vec![0f32; n];
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        _ => {
            let f: fn(&[u8], &mut [f32]) = match ty {
                GgmlType::Q4_0 => block_q4_0,
                GgmlType::Q4_1 => block_q4_1,
                GgmlType::Q5_0 => block_q5_0,
                GgmlType::Q5_1 => block_q5_1,
                GgmlType::Q8_0 => block_q8_0,
                GgmlType::Q4K => block_q4_k,
                GgmlType::Q5K => block_q5_k,
                GgmlType::Q6K => block_q6_k,
                _ => unreachable!("filtered by can_dequantize"),
            };
            for (o, b) in out.chunks_exact_mut(block).zip(data.chunks_exact(bytes)) {
                f(b, o);
            }
        }
    }
    Ok(out)
}

fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        let x0 = (qs[j] & 0x0F) as i32 - 8;
        let x1 = (qs[j] >> 4) as i32 - 8;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
}

fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// The 5-bit values of a Q5_0/Q5_1 block: nibbles of `qs` plus bit j of `qh` for value j.
fn q5_values(qh: u32, qs: &[u8]) -> [u8; 32] {
    let mut v = [0u8; 32];
    for j in 0..16 {
        let hi0 = (((qh >> j) & 1) << 4) as u8;
        let hi1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        v[j] = (qs[j] & 0x0F) | hi0;
        v[j + 16] = (qs[j] >> 4) | hi1;
    }
    v
}

fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let q = q5_values(qh, &b[6..22]);
    for j in 0..32 {
        y[j] = (q[j] as i32 - 16) as f32 * d;
    }
}

fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let q = q5_values(qh, &b[8..24]);
    for j in 0..32 {
        y[j] = q[j] as f32 * d + m;
    }
}

fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

/// Scale and min (6 bits each) of sub-block `j` (0..8) of a Q4_K/Q5_K block from its 12 packed
/// bytes: sub-blocks 0..4 keep them in the low 6 bits of bytes j and j+4; sub-blocks 4..8 split
/// them into a nibble of byte j+4 and the top two bits of bytes j-4 (scale) and j (min).
pub fn q4_k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (sc1, m1) = q4_k_scale_min(2 * chunk, scales);
        let (sc2, m2) = q4_k_scale_min(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let y = &mut y[chunk * 64..chunk * 64 + 64];
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for chunk in 0..4 {
        let ql = &qs[chunk * 32..chunk * 32 + 32];
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let (sc1, m1) = q4_k_scale_min(2 * chunk, scales);
        let (sc2, m2) = q4_k_scale_min(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let y = &mut y[chunk * 64..chunk * 64 + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
            y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
    }
}

fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = f16_at(b, 208);
    // Two halves of 128 values, each with 64 bytes of low nibbles, 32 bytes of high bits and
    // 8 scales (one per 16 values).
    for half in 0..2 {
        let ql = &ql_all[half * 64..half * 64 + 64];
        let qh = &qh_all[half * 32..half * 32 + 32];
        let sc = &sc_all[half * 8..half * 8 + 8];
        let y = &mut y[half * 128..half * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            // ggml: d * sc * q, left to right in f32.
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}
