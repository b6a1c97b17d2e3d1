//! A tiny random Gemma 3 GGUF, laid out as llama.cpp writes one (names, GGML dims, `1 + w` norms,
//! tokenizer metadata), with every weight type the converter handles: Q8_0 embedding, Q5_0 / Q4_1 /
//! Q5_1 / Q8_0 / Q4_K / Q5_K / Q4_0 / Q6_K / F16 projections, F32 norms. With the tiny tokenizer,
//! it exercises the converter and the Gemma 3 model end to end without a download.
//!
//! Block contents are seeded random bytes whose half-precision scales are set small, so
//! activations stay finite through the layers.

use std::path::{Path, PathBuf};

use super::types::GgmlType;
use super::value::MetaValue;
use super::writer::{gguf_bytes, RawTensor};
use crate::tiny_tokenizer::{tiny_vocab, write_tiny_tokenizer};

pub const TINY_VOCAB: usize = 384;
pub const TINY_HIDDEN: u64 = 256;
pub const TINY_LAYERS: u64 = 7;
pub const TINY_HEADS: u64 = 4;
pub const TINY_KV_HEADS: u64 = 2;
pub const TINY_HEAD_DIM: u64 = 64;
pub const TINY_FFN: u64 = 512;
pub const TINY_WINDOW: u64 = 8;
/// The GGUF piece spelled with a space where the tokenizer has '▁' (as in real Gemma GGUFs).
pub const TINY_SPACE_PIECE_ID: usize = 375;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn half(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// Random blocks of `ty` for `n` values with scales chosen so values are about `mag` in size.
fn blocks(ty: GgmlType, n: usize, mag: f32, rng: &mut Rng) -> Vec<u8> {
    let (block, bytes) = ty.block_geometry().expect("known type");
    let (block, bytes) = (block as usize, bytes as usize);
    let mut out = Vec::with_capacity(n / block * bytes);
    for _ in 0..n / block {
        let mut b: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
        let sign = if rng.next() & 1 == 0 { 1.0 } else { -1.0 };
        let r = 0.5 + rng.unit();
        match ty {
            GgmlType::Q8_0 => b[0..2].copy_from_slice(&half(sign * mag * r / 64.0)),
            GgmlType::Q4_0 => b[0..2].copy_from_slice(&half(sign * mag * r / 4.0)),
            GgmlType::Q5_0 => b[0..2].copy_from_slice(&half(sign * mag * r / 8.0)),
            // Offsets centre the values on zero (a constant offset in every row would make all
            // outputs point one way and the random model repeat one token).
            GgmlType::Q4_1 | GgmlType::Q5_1 => {
                let (d, mid) = if ty == GgmlType::Q4_1 {
                    (mag * r / 8.0, 7.5)
                } else {
                    (mag * r / 16.0, 15.5)
                };
                b[0..2].copy_from_slice(&half(d));
                b[2..4].copy_from_slice(&half(-d * mid));
            }
            GgmlType::Q4K | GgmlType::Q5K => {
                // Random 6-bit scales and mins average 31.5 each: dmin = d * mid centres q * d * sc - dmin * m.
                let (d, mid) = (
                    mag * r / 256.0,
                    if ty == GgmlType::Q4K { 7.5 } else { 15.5 },
                );
                b[0..2].copy_from_slice(&half(d));
                b[2..4].copy_from_slice(&half(d * mid));
            }
            GgmlType::Q6K => b[208..210].copy_from_slice(&half(mag * r / 64.0 / 32.0)),
            GgmlType::F16 => {
                b.clear();
                for _ in 0..block {
                    b.extend(half(mag * (2.0 * rng.unit() - 1.0)));
                }
            }
            other => panic!("tiny_gemma3: no generator for {other}"),
        }
        out.extend(b);
    }
    out
}

/// Write `tiny-gemma3.gguf` and the tiny tokenizer (`tokenizer.json`, `tokenizer_config.json`)
/// into `dir`; returns the GGUF's path. The same seed gives the same bytes.
pub fn write_tiny_gemma3(dir: &Path, seed: u64) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    write_tiny_tokenizer(dir, TINY_VOCAB).map_err(std::io::Error::other)?;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (h, hd, ffn) = (TINY_HIDDEN, TINY_HEAD_DIM, TINY_FFN);
    let mut tensors = vec![RawTensor::blocks(
        "token_embd.weight",
        &[TINY_VOCAB as u64, h],
        GgmlType::Q8_0,
        blocks(GgmlType::Q8_0, TINY_VOCAB * h as usize, 0.02, &mut rng),
    )];
    // llama.cpp stores Gemma norms as 1 + w; w is drawn around 0 and made bf16-exact like a real checkpoint.
    let norm = |name: String, len: u64, rng: &mut Rng| {
        let v: Vec<f32> = (0..len)
            .map(|_| 1.0 + half::bf16::from_f32(0.5 * (2.0 * rng.unit() - 1.0)).to_f32())
            .collect();
        RawTensor::f32(&name, &[len], &v)
    };
    tensors.push(norm("output_norm.weight".into(), h, &mut rng));
    let alt = |l: u64, a: GgmlType, b: GgmlType| if l % 2 == 0 { a } else { b };
    for l in 0..TINY_LAYERS {
        let p = |leaf: &str| format!("blk.{l}.{leaf}.weight");
        let lin = |leaf: &str, out: u64, inp: u64, ty: GgmlType, rng: &mut Rng| {
            let mag = 1.0 / (inp as f32).sqrt();
            RawTensor::blocks(
                &p(leaf),
                &[out, inp],
                ty,
                blocks(ty, (out * inp) as usize, mag, rng),
            )
        };
        use GgmlType::*;
        // (leaf, rows, inputs, type on even layers, type on odd ones): every block type once.
        let linears = [
            ("attn_q", TINY_HEADS * hd, h, Q5_0, Q4_0),
            ("attn_k", TINY_KV_HEADS * hd, h, Q4_1, Q5_1),
            ("attn_v", TINY_KV_HEADS * hd, h, Q8_0, Q6K),
            ("attn_output", h, TINY_HEADS * hd, Q4K, Q4K),
            ("ffn_gate", ffn, h, Q5K, F16),
            ("ffn_up", ffn, h, Q5_0, Q5_0),
            ("ffn_down", h, ffn, Q6K, Q4K),
        ];
        for (leaf, out, inp, even, odd) in linears {
            tensors.push(lin(leaf, out, inp, alt(l, even, odd), &mut rng));
        }
        tensors.push(norm(p("attn_q_norm"), hd, &mut rng));
        tensors.push(norm(p("attn_k_norm"), hd, &mut rng));
        for n in [
            "attn_norm",
            "post_attention_norm",
            "ffn_norm",
            "post_ffw_norm",
        ] {
            tensors.push(norm(p(n), h, &mut rng));
        }
    }
    let mut pieces = tiny_vocab(TINY_VOCAB).map_err(std::io::Error::other)?;
    pieces[TINY_SPACE_PIECE_ID] = pieces[TINY_SPACE_PIECE_ID].replace('\u{2581}', " ");
    let meta = tiny_metadata(pieces);
    let path = dir.join("tiny-gemma3.gguf");
    std::fs::write(&path, gguf_bytes(&meta, &tensors))?;
    Ok(path)
}

/// The GGUF metadata of the tiny Gemma 3: its shapes and the tokenizer's `pieces`.
fn tiny_metadata(pieces: Vec<String>) -> Vec<(&'static str, MetaValue)> {
    let (h, hd, ffn) = (TINY_HIDDEN, TINY_HEAD_DIM, TINY_FFN);
    let s = |v: &str| MetaValue::String(v.into());
    let u = MetaValue::U32;
    vec![
        ("general.architecture", s("gemma3")),
        ("general.name", s("tiny gemma3")),
        ("gemma3.context_length", u(1024)),
        ("gemma3.embedding_length", u(h as u32)),
        ("gemma3.block_count", u(TINY_LAYERS as u32)),
        ("gemma3.feed_forward_length", u(ffn as u32)),
        ("gemma3.attention.head_count", u(TINY_HEADS as u32)),
        ("gemma3.attention.head_count_kv", u(TINY_KV_HEADS as u32)),
        ("gemma3.attention.key_length", u(hd as u32)),
        ("gemma3.attention.value_length", u(hd as u32)),
        (
            "gemma3.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-6),
        ),
        ("gemma3.attention.sliding_window", u(TINY_WINDOW as u32)),
        ("gemma3.rope.freq_base", MetaValue::F32(1e6)),
        ("tokenizer.ggml.model", s("llama")),
        (
            "tokenizer.ggml.tokens",
            MetaValue::Array(pieces.into_iter().map(MetaValue::String).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", u(2)),
        ("tokenizer.ggml.eos_token_id", u(1)),
        ("tokenizer.ggml.unknown_token_id", u(3)),
        ("tokenizer.ggml.padding_token_id", u(0)),
        ("tokenizer.ggml.add_bos_token", MetaValue::Bool(true)),
    ]
}
