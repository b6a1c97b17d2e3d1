//! Unit tests of the GGUF reader and dequantizers on hand-built blocks: each expected value is
//! computed from the intended (scale, min, code) of that value, not by decoding the bytes again,
//! so a wrong nibble order, bit plane or scale index fails.

use super::affine::{pack_codes, to_affine};
use super::writer::{gguf_bytes, RawTensor};
use super::*;

fn h(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Deterministic xorshift bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    /// A finite half in roughly [2^-12, 2), random sign.
    fn half(&mut self) -> [u8; 2] {
        let exp = 3 + (self.next() % 12) as u16; // biased exponent 3..15
        let bits = ((self.next() & 1) as u16) << 15 | exp << 10 | (self.next() as u16 & 0x3FF);
        bits.to_le_bytes()
    }
}

#[test]
fn f32_f16_bf16() {
    let vals = [0.0f32, 1.5, -2.25, 65504.0];
    let f32b: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(dequantize(GgmlType::F32, &f32b, 4).unwrap(), vals);
    let f16b: Vec<u8> = vals.iter().flat_map(|v| h(*v)).collect();
    assert_eq!(dequantize(GgmlType::F16, &f16b, 4).unwrap(), vals);
    let bf: Vec<u8> = [1.0f32, -0.5]
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
        .collect();
    assert_eq!(dequantize(GgmlType::BF16, &bf, 2).unwrap(), [1.0, -0.5]);
}

#[test]
fn q8_0_block() {
    let mut b = h(0.5).to_vec();
    let q: Vec<i8> = (0..32).map(|i| (i * 8 - 128) as i8).collect();
    b.extend(q.iter().map(|&x| x as u8));
    let y = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
    let want: Vec<f32> = q.iter().map(|&x| x as f32 * 0.5).collect();
    assert_eq!(y, want);
    assert_eq!(y[0], -64.0);
}

#[test]
fn q4_0_and_q4_1_blocks() {
    // Value j < 16 has code j, value 16 + j has code 15 - j.
    let qs: Vec<u8> = (0..16u8).map(|j| j | ((15 - j) << 4)).collect();
    let code = |i: usize| if i < 16 { i as f32 } else { (31 - i) as f32 };
    let mut b = h(0.25).to_vec();
    b.extend(&qs);
    let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
    for (i, v) in y.iter().enumerate() {
        assert_eq!(*v, (code(i) - 8.0) * 0.25, "Q4_0 value {i}");
    }
    let mut b = h(0.5).to_vec();
    b.extend(h(-1.0));
    b.extend(&qs);
    let y = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
    for (i, v) in y.iter().enumerate() {
        assert_eq!(*v, code(i) * 0.5 - 1.0, "Q4_1 value {i}");
    }
}

#[test]
fn q5_0_and_q5_1_blocks() {
    // High bits: even values of the first half, odd values of the second half.
    let qh: u32 = 0xAAAA_5555;
    let qs: Vec<u8> = (0..16u8).map(|j| j | ((15 - j) << 4)).collect();
    let code = |i: usize| -> f32 {
        let (lo, hi) = if i < 16 {
            (i, i % 2 == 0)
        } else {
            (31 - i, (i - 16) % 2 == 1)
        };
        (lo + if hi { 16 } else { 0 }) as f32
    };
    let mut b = h(1.0).to_vec();
    b.extend(qh.to_le_bytes());
    b.extend(&qs);
    let y = dequantize(GgmlType::Q5_0, &b, 32).unwrap();
    for (i, v) in y.iter().enumerate() {
        assert_eq!(*v, code(i) - 16.0, "Q5_0 value {i}");
    }
    assert_eq!(y[0], 0.0); // code 0 | 16
    assert_eq!(y[16], -1.0); // code 15, no high bit
    let mut b = h(0.5).to_vec();
    b.extend(h(2.0));
    b.extend(qh.to_le_bytes());
    b.extend(&qs);
    let y = dequantize(GgmlType::Q5_1, &b, 32).unwrap();
    for (i, v) in y.iter().enumerate() {
        assert_eq!(*v, code(i) * 0.5 + 2.0, "Q5_1 value {i}");
    }
}

/// The 12 bytes holding eight 6-bit scales and mins of a Q4_K/Q5_K block.
fn pack_scale_mins(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
    }
    s
}

/// Intended codes of a K-quant super-block: value e gets `(e * 7 + 3) % levels`.
fn k_codes(levels: usize) -> Vec<u8> {
    (0..256).map(|e| ((e * 7 + 3) % levels) as u8).collect()
}

const SC: [u8; 8] = [1, 9, 17, 25, 33, 41, 49, 63];
const MN: [u8; 8] = [63, 50, 40, 31, 20, 17, 5, 0];

#[test]
fn q4_k_block() {
    let codes = k_codes(16);
    let mut b = h(0.5).to_vec();
    b.extend(h(0.25));
    b.extend(pack_scale_mins(&SC, &MN));
    // Chunk c (64 values): byte c*32+l holds value 64c+l (low nibble) and 64c+32+l (high).
    for c in 0..4 {
        for l in 0..32 {
            b.push(codes[64 * c + l] | (codes[64 * c + 32 + l] << 4));
        }
    }
    assert_eq!(b.len(), 144);
    let y = dequantize(GgmlType::Q4K, &b, 256).unwrap();
    for (e, v) in y.iter().enumerate() {
        let sub = e / 32;
        let want = 0.5 * SC[sub] as f32 * codes[e] as f32 - 0.25 * MN[sub] as f32;
        assert_eq!(*v, want, "Q4_K value {e}");
    }
}

#[test]
fn q5_k_block() {
    let codes = k_codes(32);
    let mut b = h(0.5).to_vec();
    b.extend(h(0.25));
    b.extend(pack_scale_mins(&SC, &MN));
    // qh[l]: bit 2c is the 5th bit of value 64c+l, bit 2c+1 that of value 64c+32+l.
    let mut qh = [0u8; 32];
    for c in 0..4 {
        for l in 0..32 {
            qh[l] |= (codes[64 * c + l] >> 4) << (2 * c);
            qh[l] |= (codes[64 * c + 32 + l] >> 4) << (2 * c + 1);
        }
    }
    b.extend(qh);
    for c in 0..4 {
        for l in 0..32 {
            b.push((codes[64 * c + l] & 15) | ((codes[64 * c + 32 + l] & 15) << 4));
        }
    }
    assert_eq!(b.len(), 176);
    let y = dequantize(GgmlType::Q5K, &b, 256).unwrap();
    for (e, v) in y.iter().enumerate() {
        let sub = e / 32;
        let want = 0.5 * SC[sub] as f32 * codes[e] as f32 - 0.25 * MN[sub] as f32;
        assert_eq!(*v, want, "Q5_K value {e}");
    }
}

#[test]
fn q6_k_block() {
    let codes = k_codes(64);
    let scales: Vec<i8> = (0..16).map(|i| (i as i8 - 8) * 9).collect();
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    // Half h, quarter k (32 values each), position l: the low nibble sits in byte l (k even) or
    // l+32 (k odd) of the half's 64 bytes, in the low (k < 2) or high nibble; the top two bits in
    // bits 2k..2k+2 of qh[l]; the scale is number 8h + 2k + l/16.
    for (e, &code) in codes.iter().enumerate() {
        let (hh, r) = (e / 128, e % 128);
        let (k, l) = (r / 32, r % 32);
        let byte = hh * 64 + l + if k % 2 == 1 { 32 } else { 0 };
        let lo = code & 15;
        ql[byte] |= if k < 2 { lo } else { lo << 4 };
        qh[hh * 32 + l] |= (code >> 4) << (2 * k);
    }
    let mut b = ql.to_vec();
    b.extend(qh);
    b.extend(scales.iter().map(|&s| s as u8));
    b.extend(h(0.125));
    assert_eq!(b.len(), 210);
    let y = dequantize(GgmlType::Q6K, &b, 256).unwrap();
    for (e, v) in y.iter().enumerate() {
        let (hh, r) = (e / 128, e % 128);
        let (k, l) = (r / 32, r % 32);
        let sc = scales[hh * 8 + 2 * k + l / 16] as f32;
        let want = 0.125 * sc * (codes[e] as i32 - 32) as f32;
        assert_eq!(*v, want, "Q6_K value {e}");
    }
}

#[test]
fn dequantize_rejects_wrong_sizes_and_unknown_types() {
    assert!(dequantize(GgmlType::Q8_0, &[0u8; 33], 32)
        .unwrap_err()
        .contains("need 34 bytes"));
    assert!(dequantize(GgmlType::Q4K, &[0u8; 144], 255)
        .unwrap_err()
        .contains("whole number"));
    assert!(dequantize(GgmlType::Q2K, &[0u8; 84], 256)
        .unwrap_err()
        .contains("Q2_K"));
    assert!(dequantize(GgmlType::Other(99), &[], 0)
        .unwrap_err()
        .contains("#99"));
}

/// Random blocks of `ty` with finite half scales at the right byte positions.
fn random_blocks(ty: GgmlType, n_blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let (_, bytes) = ty.block_geometry().unwrap();
    let halves: &[usize] = match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        _ => unreachable!(),
    };
    let mut out = vec![];
    for _ in 0..n_blocks {
        let mut b: Vec<u8> = (0..bytes).map(|_| rng.byte()).collect();
        for &i in halves {
            b[i..i + 2].copy_from_slice(&rng.half());
        }
        out.extend(b);
    }
    out
}

#[test]
fn affine_form_reproduces_ggml_dequantization_bit_for_bit() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
    ] {
        let (block, _) = ty.block_geometry().unwrap();
        let n = 8 * 256;
        let data = random_blocks(ty, n / block as usize, &mut rng);
        let want = dequantize(ty, &data, n).unwrap();
        let a = to_affine(ty, &data, n).unwrap();
        assert_eq!(a.scales.len(), n / 32);
        for (i, w) in want.iter().enumerate() {
            assert!(
                (a.codes[i] as u32) < (1u32 << a.bits),
                "{ty}: code {} has more than {} bits",
                a.codes[i],
                a.bits
            );
            let got = a.scales[i / 32] * a.codes[i] as f32 + a.biases[i / 32];
            // Equal as numbers; only the sign of a zero may differ ((8 - 8) * -d is -0 in ggml).
            assert!(
                got == *w && got.is_finite(),
                "{ty} value {i}: affine {got} vs ggml {w}"
            );
            if *w != 0.0 {
                assert_eq!(got.to_bits(), w.to_bits(), "{ty} value {i}");
            }
        }
    }
    assert!(to_affine(GgmlType::Q6K, &[0u8; 210], 256)
        .unwrap_err()
        .contains("no lossless"));
}

#[test]
fn packed_codes_dequantize_in_mlx() {
    use mlx_rs::Array;
    let mut rng = Rng(42);
    for bits in [2, 3, 4, 5, 6, 8] {
        let codes: Vec<u8> = (0..2 * 64)
            .map(|_| rng.byte() & ((1u16 << bits) - 1) as u8)
            .collect();
        let packed: Vec<u32> = codes
            .chunks(64)
            .flat_map(|row| pack_codes(row, bits))
            .collect();
        let w = Array::from_slice(&packed, &[2, 64 * bits / 32]);
        let scales = Array::from_slice(&[1.0f32, 2.0, 0.5, -1.0], &[2, 2]);
        let biases = Array::from_slice(&[0.0f32, 1.0, -3.0, 0.25], &[2, 2]);
        let y = mlx_rs::ops::dequantize(&w, &scales, &biases, 32, bits).unwrap();
        let s = [1.0f32, 2.0, 0.5, -1.0];
        let bi = [0.0f32, 1.0, -3.0, 0.25];
        let want: Vec<f32> = codes
            .iter()
            .enumerate()
            .map(|(i, &c)| s[i / 32] * c as f32 + bi[i / 32])
            .collect();
        assert_eq!(y.as_slice::<f32>(), &want[..], "{bits}-bit packing");
    }
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn sample_file() -> Vec<u8> {
    let mut q8 = h(0.5).to_vec();
    q8.extend((0..32).map(|i| i as u8));
    let mut q8b = q8.clone();
    q8b.extend(&q8);
    gguf_bytes(
        &[
            ("general.architecture", MetaValue::String("gemma3".into())),
            ("gemma3.block_count", MetaValue::U32(2)),
            ("gemma3.rope.freq_base", MetaValue::F32(1e6)),
            ("flag", MetaValue::Bool(true)),
            (
                "ids",
                MetaValue::Array(vec![MetaValue::I32(-1), MetaValue::I32(7)]),
            ),
            (
                "words",
                MetaValue::Array(vec![
                    MetaValue::String("a".into()),
                    MetaValue::String("bc".into()),
                ]),
            ),
        ],
        &[
            RawTensor::f32("norm.weight", &[3], &[1.0, 2.0, 3.0]),
            RawTensor::blocks("w", &[2, 32], GgmlType::Q8_0, q8b),
        ],
    )
}

#[test]
fn reads_metadata_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "m.gguf", &sample_file());
    let f = GgufFile::open(&p).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.get_str("general.architecture").unwrap(), Some("gemma3"));
    assert_eq!(f.get_int("gemma3.block_count").unwrap(), Some(2));
    assert_eq!(f.get_f64("gemma3.rope.freq_base").unwrap(), Some(1e6));
    assert_eq!(f.metadata["flag"], MetaValue::Bool(true));
    assert_eq!(f.metadata["ids"].as_array().unwrap()[0], MetaValue::I32(-1));
    assert_eq!(
        f.metadata["words"].as_array().unwrap()[1].as_str(),
        Some("bc")
    );
    assert_eq!(f.data_start % 32, 0);
    let n = f.tensor("norm.weight").unwrap();
    assert_eq!(f.dequantize(n).unwrap(), [1.0, 2.0, 3.0]);
    let w = f.tensor("w").unwrap();
    assert_eq!(w.dims, [32, 2]);
    assert_eq!(w.shape(), [2, 32]);
    let y = f.dequantize(w).unwrap();
    assert_eq!(y.len(), 64);
    assert_eq!((y[1], y[33]), (0.5, 0.5));
    // A present key of the wrong type is an error naming it; an absent key is None.
    let e = f.get_int("general.architecture").unwrap_err().to_string();
    assert!(
        e.contains("metadata `general.architecture`: expected an integer"),
        "{e}"
    );
    assert_eq!(f.get_int("missing").unwrap(), None);
}

fn open_err(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "bad.gguf", bytes);
    GgufFile::open(&p).unwrap_err().to_string()
}

#[test]
fn header_errors_name_the_file_and_what_is_wrong() {
    let good = sample_file();
    assert!(open_err(b"GGML\x03\0\0\0").contains("magic"));
    let mut v9 = good.clone();
    v9[4] = 9;
    assert!(open_err(&v9).contains("version 9 is not supported"));
    // Truncated inside the tensor data: the tensor is named.
    let e = open_err(&good[..good.len() - 10]);
    assert!(e.contains("bad.gguf: truncated: tensor `w`"), "{e}");
    // Truncated inside the header.
    let e = open_err(&good[..40]);
    assert!(
        e.contains("bad.gguf: truncated: the tensor directory needs bytes up to"),
        "{e}"
    );
    let e = open_err(&good[..100]);
    assert!(
        e.contains("bad.gguf: truncated: the metadata needs bytes up to"),
        "{e}"
    );
    let e = open_err(&good[..200]);
    assert!(
        e.contains("bad.gguf: truncated: metadata key #5 needs bytes up to 201"),
        "{e}"
    );
    // A huge array count is caught before allocating.
    let huge = gguf_bytes(&[("ids", MetaValue::Array(vec![MetaValue::U8(1)]))], &[]);
    let mut huge2 = huge.clone();
    let pos = huge
        .windows(8)
        .position(|w| w == 1u64.to_le_bytes())
        .unwrap();
    let pos = huge[pos + 8..]
        .windows(8)
        .position(|w| w == 1u64.to_le_bytes())
        .unwrap()
        + pos
        + 8;
    huge2[pos..pos + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let e = open_err(&huge2);
    assert!(e.contains("truncated: metadata `ids`"), "{e}");
}

#[test]
fn tensor_directory_errors() {
    // Row length not a multiple of the block size.
    let bad_row = gguf_bytes(
        &[],
        &[RawTensor {
            name: "x".into(),
            dims: vec![16, 2],
            ggml_type: 8,
            data: vec![0; 68],
        }],
    );
    let e = open_err(&bad_row);
    assert!(
        e.contains("tensor `x`: row length 16 is not a multiple of the Q8_0 block size 32"),
        "{e}"
    );
    // Duplicate names.
    let dup = gguf_bytes(
        &[],
        &[
            RawTensor::f32("a", &[1], &[1.0]),
            RawTensor::f32("a", &[1], &[1.0]),
        ],
    );
    assert!(open_err(&dup).contains("tensor `a` appears twice"));
    // Bad alignment value.
    let al = gguf_bytes(&[("general.alignment", MetaValue::U32(24))], &[]);
    assert!(open_err(&al).contains("general.alignment"));
    // Unknown types parse (a converter may skip them) but cannot be read.
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "u.gguf",
        &gguf_bytes(
            &[],
            &[RawTensor {
                name: "iq".into(),
                dims: vec![256],
                ggml_type: 99,
                data: vec![0; 64],
            }],
        ),
    );
    let f = GgufFile::open(&p).unwrap();
    let e = f
        .dequantize(f.tensor("iq").unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tensor `iq`: GGML type #99 is not supported"),
        "{e}"
    );
}
