//! Encoding GGML blocks: the lossless Q4_1 / Q5_1 form of MLX affine groups, and simple
//! quantizers from f32 to Q4_K, Q5_0, Q6_K and Q8_0 (for `--gguf-type q4_k_m`).
//!
//! The layouts are those [`super::dequant`] decodes (ggml's `block_q4_1`, `block_q4_K`, ...).
//! The K-quant encoders pick scales from each sub-block's minimum and maximum (Q4_K) or its
//! largest magnitude (Q6_K, Q5_0, Q8_0), then round every value to the nearest level of the
//! stored (half-precision, 6- or 8-bit) scales. That is ggml's starting point, not its
//! `make_qkx2_quants` / `make_qx_quants` search nor llama.cpp's importance-weighted quantizer:
//! the blocks are valid and decode as ggml decodes them, their error is somewhat larger.

use half::f16;

/// Values per K-quant super-block.
pub const QK_K: usize = 256;

/// `x` as IEEE half, and whether that half is exactly `x` (a NaN, an overflow to infinity or a
/// rounded value are not).
pub fn f16_exact(x: f32) -> (f16, bool) {
    let h = f16::from_f32(x);
    (h, h.to_f32() == x)
}

fn put_f16(out: &mut Vec<u8>, v: f16) {
    out.extend(v.to_bits().to_le_bytes());
}

/// One Q4_1 block (20 bytes): scale `d`, minimum `m`, 32 codes (0..16) with code `j` in the low
/// nibble of byte `j` and code `16 + j` in its high nibble; ggml decodes `q * d + m`.
pub fn q4_1_block(out: &mut Vec<u8>, d: f16, m: f16, codes: &[u8]) {
    debug_assert_eq!(codes.len(), 32);
    put_f16(out, d);
    put_f16(out, m);
    for j in 0..16 {
        out.push((codes[j] & 0x0F) | (codes[j + 16] << 4));
    }
}

/// One Q5_1 block (24 bytes): `d`, `m`, the fifth bits of the 32 codes in a u32 (bit `j` for
/// code `j`), then the low nibbles as Q4_1 stores them.
pub fn q5_1_block(out: &mut Vec<u8>, d: f16, m: f16, codes: &[u8]) {
    debug_assert_eq!(codes.len(), 32);
    put_f16(out, d);
    put_f16(out, m);
    let qh = codes
        .iter()
        .enumerate()
        .fold(0u32, |acc, (j, &c)| acc | (((c as u32 >> 4) & 1) << j));
    out.extend(qh.to_le_bytes());
    for j in 0..16 {
        out.push((codes[j] & 0x0F) | ((codes[j + 16] & 0x0F) << 4));
    }
}

fn nearest(x: f32) -> i32 {
    x.round() as i32
}

/// Q8_0 (34 bytes per 32 values): `d = max|x| / 127`, `q = round(x / d)`.
pub fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    assert_eq!(x.len() % 32, 0, "Q8_0 takes whole blocks of 32");
    for b in x.chunks_exact(32) {
        let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = f16::from_f32(amax / 127.0);
        let id = if d.to_f32() != 0.0 {
            1.0 / d.to_f32()
        } else {
            0.0
        };
        put_f16(out, d);
        for &v in b {
            out.push(nearest(v * id).clamp(-128, 127) as i8 as u8);
        }
    }
}

/// Q5_0 (22 bytes per 32 values), as ggml's reference does it: the value of largest magnitude
/// `max` sets `d = max / -16`, `q = round(x / d) + 16` in 0..32; decoded as `(q - 16) * d`.
pub fn quantize_q5_0(x: &[f32], out: &mut Vec<u8>) {
    assert_eq!(x.len() % 32, 0, "Q5_0 takes whole blocks of 32");
    for b in x.chunks_exact(32) {
        let max = b
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = f16::from_f32(max / -16.0);
        let id = if d.to_f32() != 0.0 {
            1.0 / d.to_f32()
        } else {
            0.0
        };
        let q: Vec<u8> = b
            .iter()
            .map(|&v| (nearest(v * id) + 16).clamp(0, 31) as u8)
            .collect();
        put_f16(out, d);
        let qh = q
            .iter()
            .enumerate()
            .fold(0u32, |acc, (j, &c)| acc | (((c as u32 >> 4) & 1) << j));
        out.extend(qh.to_le_bytes());
        for j in 0..16 {
            out.push((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        }
    }
}

/// Q4_K (144 bytes per 256 values): eight sub-blocks of 32, each `d * sc * q - dmin * m` with
/// 6-bit `sc`, `m` and 4-bit `q`. Each sub-block's range is `[min(0, lo), hi]`; its scale
/// `(hi - min) / 15` and offset `-min` are stored as 6-bit multiples of the super-block's `d`
/// and `dmin` (their largest value / 63).
pub fn quantize_q4_k(x: &[f32], out: &mut Vec<u8>) {
    assert_eq!(x.len() % QK_K, 0, "Q4_K takes whole super-blocks of 256");
    for b in x.chunks_exact(QK_K) {
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        for (s, sub) in b.chunks_exact(32).enumerate() {
            let lo = sub.iter().fold(f32::INFINITY, |a, &v| a.min(v)).min(0.0);
            let hi = sub.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            scales[s] = (hi - lo) / 15.0;
            mins[s] = -lo;
        }
        let max_scale = scales.iter().fold(0f32, |a, &v| a.max(v));
        let max_min = mins.iter().fold(0f32, |a, &v| a.max(v));
        let d = f16::from_f32(max_scale / 63.0);
        let dmin = f16::from_f32(max_min / 63.0);
        let (df, dminf) = (d.to_f32(), dmin.to_f32());
        let mut sc = [0u8; 8];
        let mut m = [0u8; 8];
        for s in 0..8 {
            if df > 0.0 {
                sc[s] = nearest(scales[s] / df).clamp(0, 63) as u8;
            }
            if dminf > 0.0 {
                m[s] = nearest(mins[s] / dminf).clamp(0, 63) as u8;
            }
        }
        let mut q = [0u8; QK_K];
        for s in 0..8 {
            let step = df * sc[s] as f32;
            let offset = dminf * m[s] as f32;
            if step == 0.0 {
                continue;
            }
            for l in 0..32 {
                let v = b[s * 32 + l];
                q[s * 32 + l] = nearest((v + offset) / step).clamp(0, 15) as u8;
            }
        }
        put_f16(out, d);
        put_f16(out, dmin);
        let mut packed = [0u8; 12];
        for j in 0..4 {
            packed[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
            packed[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
            packed[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
        }
        out.extend(packed);
        for chunk in 0..4 {
            for l in 0..32 {
                out.push(q[chunk * 64 + l] | (q[chunk * 64 + 32 + l] << 4));
            }
        }
    }
}

/// Q6_K (210 bytes per 256 values): sixteen sub-blocks of 16, each `d * sc * (q - 32)` with an
/// 8-bit signed `sc` and 6-bit `q`. A sub-block's value of largest magnitude maps to level -32;
/// the sub-block scales are stored as multiples of `d` (the largest of them / -128).
pub fn quantize_q6_k(x: &[f32], out: &mut Vec<u8>) {
    assert_eq!(x.len() % QK_K, 0, "Q6_K takes whole super-blocks of 256");
    for b in x.chunks_exact(QK_K) {
        let mut scales = [0f32; 16];
        for (s, sub) in b.chunks_exact(16).enumerate() {
            let max = sub
                .iter()
                .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            scales[s] = max / -32.0;
        }
        let max_scale = scales
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let mut sc = [0i8; 16];
        let mut d = f16::from_f32(0.0);
        if max_scale != 0.0 {
            let iscale = -128.0 / max_scale;
            d = f16::from_f32(1.0 / iscale);
            for s in 0..16 {
                sc[s] = nearest(iscale * scales[s]).clamp(-128, 127) as i8;
            }
        }
        let df = d.to_f32();
        let mut q = [32u8; QK_K];
        for s in 0..16 {
            let step = df * sc[s] as f32;
            if step == 0.0 {
                continue;
            }
            for l in 0..16 {
                let v = b[s * 16 + l];
                q[s * 16 + l] = (nearest(v / step).clamp(-32, 31) + 32) as u8;
            }
        }
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for half in 0..2 {
            let (j, ql, qh) = (
                half * 128,
                &mut ql[half * 64..half * 64 + 64],
                &mut qh[half * 32..half * 32 + 32],
            );
            for l in 0..32 {
                let (q1, q2, q3, q4) = (q[j + l], q[j + l + 32], q[j + l + 64], q[j + l + 96]);
                ql[l] = (q1 & 0x0F) | ((q3 & 0x0F) << 4);
                ql[l + 32] = (q2 & 0x0F) | ((q4 & 0x0F) << 4);
                qh[l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
            }
        }
        out.extend(ql);
        out.extend(qh);
        out.extend(sc.iter().map(|&s| s as u8));
        put_f16(out, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{dequantize, GgmlType};

    /// Deterministic values of varied scale: a smooth part, noise, and an offset per block.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let noise = (s % 20001) as f32 / 10000.0 - 1.0;
                let block = (i / 32) as f32;
                0.05 * noise + 0.01 * (block * 0.7).sin() + 0.002 * (i as f32 * 0.1).cos()
            })
            .collect()
    }

    fn max_err(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
    }

    fn range(x: &[f32]) -> f32 {
        let hi = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let lo = x.iter().fold(f32::INFINITY, |a, &v| a.min(v));
        hi - lo
    }

    #[test]
    fn q4_1_and_q5_1_blocks_decode_to_scale_times_code_plus_minimum() {
        let codes: Vec<u8> = (0..32).map(|i| (i * 7 % 16) as u8).collect();
        let (d, m) = (f16::from_f32(0.125), f16::from_f32(-0.75));
        let mut b = vec![];
        q4_1_block(&mut b, d, m, &codes);
        assert_eq!(b.len(), 20);
        let y = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        for (i, &c) in codes.iter().enumerate() {
            assert_eq!(y[i], c as f32 * 0.125 - 0.75, "value {i}");
        }
        let codes5: Vec<u8> = (0..32).map(|i| (i * 11 % 32) as u8).collect();
        let mut b = vec![];
        q5_1_block(&mut b, d, m, &codes5);
        assert_eq!(b.len(), 24);
        let y = dequantize(GgmlType::Q5_1, &b, 32).unwrap();
        for (i, &c) in codes5.iter().enumerate() {
            assert_eq!(y[i], c as f32 * 0.125 - 0.75, "value {i}");
        }
    }

    #[test]
    fn f16_exactness() {
        assert!(f16_exact(0.0).1);
        assert!(f16_exact(-(2f32.powi(-12))).1);
        assert!(f16_exact(65504.0).1);
        assert!(!f16_exact(65520.0).1, "overflows to infinity");
        assert!(!f16_exact(1e-9).1, "below the smallest subnormal");
        assert!(!f16_exact(1.0 + 1.0 / 2048.0).1, "needs 11 mantissa bits");
        assert!(!f16_exact(f32::NAN).1);
        // Every bf16 of an exponent in fp16's normal range converts exactly.
        assert!(f16_exact(half::bf16::from_f32(0.0123).to_f32()).1);
    }

    #[test]
    fn k_quants_and_fallbacks_decode_within_their_step() {
        let x = values(4 * QK_K, 7);
        for (ty, bytes_per_256, f) in [
            (
                GgmlType::Q4K,
                144,
                quantize_q4_k as fn(&[f32], &mut Vec<u8>),
            ),
            (GgmlType::Q6K, 210, quantize_q6_k),
            (GgmlType::Q8_0, 8 * 34, quantize_q8_0),
            (GgmlType::Q5_0, 8 * 22, quantize_q5_0),
        ] {
            let mut b = vec![];
            f(&x, &mut b);
            assert_eq!(b.len(), 4 * bytes_per_256, "{ty}");
            let y = dequantize(ty, &b, x.len()).unwrap();
            // Bound: a step of each format over the block's range, with room for 6-bit scales.
            let levels = match ty {
                GgmlType::Q4K => 15.0,
                GgmlType::Q5_0 => 15.0,
                GgmlType::Q6K => 31.0,
                _ => 127.0,
            };
            for (xb, yb) in x.chunks(QK_K).zip(y.chunks(QK_K)) {
                let err = max_err(xb, yb);
                assert!(
                    err <= range(xb) / levels,
                    "{ty}: error {err} over a range of {}",
                    range(xb)
                );
            }
        }
    }

    #[test]
    fn q4_k_and_q6_k_keep_all_zero_and_constant_blocks() {
        for x in [vec![0f32; QK_K], vec![0.25f32; QK_K], vec![-3.0f32; QK_K]] {
            for (ty, f) in [
                (GgmlType::Q4K, quantize_q4_k as fn(&[f32], &mut Vec<u8>)),
                (GgmlType::Q6K, quantize_q6_k),
            ] {
                let mut b = vec![];
                f(&x, &mut b);
                let y = dequantize(ty, &b, QK_K).unwrap();
                let err = max_err(&x, &y);
                assert!(err <= x[0].abs() / 15.0 + 1e-6, "{ty} of {}: {err}", x[0]);
            }
        }
    }
}
