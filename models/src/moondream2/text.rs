//! Moondream2's text model (reference `text.py`, `rope.py`): Phi-1.5-style parallel blocks
//! `x + attn(LN x) + mlp(LN x)` with one LayerNorm, a fused biased qkv, partial rotary
//! embeddings on the first 32 of 64 head channels, then `post_ln` and a biased `lm_head`
//! (not tied to `wte`).
//!
//! Rotary numerics follow the reference: the frequency table is float32
//! (`1 / 10000^(arange(0, 32, 2) / 32)`, angles `pos * freq`, cos/sin in float32), the bf16
//! halves are rotated in float32 and written back *interleaved* (`[r0, i0, r1, i1, ..]`) before
//! the cast to bf16. Keys get the same permutation as queries, so attention scores are those of
//! a rotate-half RoPE, but the cached keys are bit-identical to the reference's.

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{concatenate, stack};
use mlx_rs::{Array, Dtype};

use super::config::TextConfig;
use super::layers::{attention, BiasedLinear, LayerNorm, Mlp};
use crate::cache::KvCache;
use crate::checkpoint::Checkpoint;
use crate::error::{ModelError, Result};
use crate::quantized::Embedding;

/// Channels of each head that rotate.
const ROT_DIM: i32 = 32;

#[derive(Debug, Clone)]
struct Block {
    ln: LayerNorm,
    qkv: BiasedLinear,
    proj: BiasedLinear,
    mlp: Mlp,
}

#[derive(Debug, Clone)]
pub struct TextModel {
    cfg: TextConfig,
    wte: Embedding,
    blocks: Vec<Block>,
    post_ln: LayerNorm,
    lm_head: BiasedLinear,
    /// `[max_context, 16]` float32 cos and sin tables.
    cos: Array,
    sin: Array,
}

impl TextModel {
    pub fn load(ckpt: &Checkpoint, cfg: &TextConfig, dtype: Dtype) -> Result<Self> {
        let p = "model.text";
        let d = cfg.dim;
        let head_dim = d / cfg.n_heads;
        let qkv_dim = d + 2 * cfg.n_kv_heads * head_dim;
        let blocks = (0..cfg.n_layers)
            .map(|i| {
                let b = format!("{p}.blocks.{i}");
                Ok(Block {
                    ln: LayerNorm::load(ckpt, &format!("{b}.ln"), d)?,
                    qkv: BiasedLinear::load(ckpt, &format!("{b}.attn.qkv"), d, qkv_dim, dtype)?,
                    proj: BiasedLinear::load(ckpt, &format!("{b}.attn.proj"), d, d, dtype)?,
                    mlp: Mlp::load(ckpt, &format!("{b}.mlp"), d, cfg.ff_dim, d, dtype)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // `wte` is a raw parameter (no `.weight` suffix) in the published file; a quantized
        // variant stores `wte.weight/.scales/.biases` instead.
        let wte = if ckpt.contains(&format!("{p}.wte")) {
            Embedding::Dense {
                weight: ckpt.float_tensor(&format!("{p}.wte"), &[cfg.vocab_size, d], dtype)?,
            }
        } else {
            Embedding::load(ckpt, &format!("{p}.wte"), cfg.vocab_size, d, dtype)?
        };
        let (cos, sin) = rope_tables(cfg.max_context)?;
        Ok(TextModel {
            cfg: cfg.clone(),
            wte,
            blocks,
            post_ln: LayerNorm::load(ckpt, &format!("{p}.post_ln"), d)?,
            lm_head: BiasedLinear::load(ckpt, &format!("{p}.lm_head"), d, cfg.vocab_size, dtype)?,
            cos,
            sin,
        })
    }

    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }

    /// `F.embedding(ids, wte)`: `[1, L, dim]`.
    pub fn embed(&self, ids: &[u32]) -> Result<Array> {
        if let Some(&bad) = ids.iter().find(|&&i| i as i32 >= self.cfg.vocab_size) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary ({})",
                self.cfg.vocab_size
            )));
        }
        let ids = Array::from_slice(
            &ids.iter().map(|&i| i as i32).collect::<Vec<_>>(),
            &[1, ids.len() as i32],
        );
        self.wte.lookup(&ids)
    }

    /// The decoder stack over `x: [1, L, dim]` at the caches' offset. `mask: [L, S]` (true =
    /// attend) or none (every query sees every key: the bidirectional image prefix, or one
    /// decode step). Returns the hidden states before `post_ln`.
    pub fn forward(
        &self,
        x: &Array,
        caches: &mut [KvCache],
        mask: Option<&Array>,
    ) -> Result<Array> {
        if caches.len() != self.blocks.len() {
            return Err(ModelError::Input(format!(
                "{} caches for {} layers",
                caches.len(),
                self.blocks.len()
            )));
        }
        let offset = caches[0].offset();
        let l = x.dim(1);
        if offset + l > self.cfg.max_context {
            return Err(ModelError::Input(format!(
                "context of {} positions exceeds max_context {}",
                offset + l,
                self.cfg.max_context
            )));
        }
        let mut x = x.clone();
        for (b, cache) in self.blocks.iter().zip(caches.iter_mut()) {
            let h = b.ln.forward(&x)?;
            let a = self.attn(b, &h, cache, offset, mask)?;
            let m = b.mlp.forward(&h)?;
            x = x.add(&a)?.add(&m)?;
        }
        Ok(x)
    }

    fn attn(
        &self,
        b: &Block,
        x: &Array,
        cache: &mut KvCache,
        offset: i32,
        mask: Option<&Array>,
    ) -> Result<Array> {
        let (l, d) = (x.dim(1), x.dim(2));
        let (nh, nkv) = (self.cfg.n_heads, self.cfg.n_kv_heads);
        let hd = d / nh;
        let qkv = b.qkv.forward(x)?;
        let split = |from: i32, heads: i32| -> Result<Array> {
            Ok(qkv
                .index((.., .., from..from + heads * hd))
                .reshape(&[1, l, heads, hd])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let q = self.rope(&split(0, nh)?, offset)?;
        let k = self.rope(&split(nh * hd, nkv)?, offset)?;
        let v = split(nh * hd + nkv * hd, nkv)?;
        let (k, v) = cache.update_and_fetch(&k, &v)?;
        let (k, v) = if nh != nkv {
            let rep = nh / nkv;
            (repeat_heads(&k, rep)?, repeat_heads(&v, rep)?)
        } else {
            (k, v)
        };
        let o = attention(&q, &k, &v, mask)?;
        b.proj
            .forward(&o.transpose_axes(&[0, 2, 1, 3])?.reshape(&[1, l, d])?)
    }

    /// `apply_rotary_emb(x, freqs_cis, positions offset.., rot_dim=32, interleave=False)`.
    fn rope(&self, x: &Array, offset: i32) -> Result<Array> {
        let l = x.dim(2);
        let half = ROT_DIM / 2;
        let xr = x.index((.., .., .., 0..half)).as_dtype(Dtype::Float32)?;
        let xi = x
            .index((.., .., .., half..ROT_DIM))
            .as_dtype(Dtype::Float32)?;
        let cos = self.cos.index(offset..offset + l);
        let sin = self.sin.index(offset..offset + l);
        let out_r = xr.multiply(&cos)?.subtract(xi.multiply(&sin)?)?;
        let out_i = xr.multiply(&sin)?.add(xi.multiply(&cos)?)?;
        let shape = x.shape();
        let rotated = stack(&[out_r, out_i], -1)?
            .reshape(&[shape[0], shape[1], l, ROT_DIM])?
            .as_dtype(x.dtype())?;
        Ok(concatenate(
            &[rotated, x.index((.., .., .., ROT_DIM..))],
            -1,
        )?)
    }

    /// `lm_head(post_ln(hidden[:, -1]))`: `[1, vocab]` logits in the compute dtype.
    pub fn logits(&self, hidden: &Array) -> Result<Array> {
        let last = hidden.index((.., -1, ..));
        self.lm_head.forward(&self.post_ln.forward(&last)?)
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        let mut v: Vec<&Array> = self.wte.arrays();
        for b in &self.blocks {
            v.extend(b.ln.arrays());
            v.extend(b.qkv.arrays());
            v.extend(b.proj.arrays());
            v.extend(b.mlp.arrays());
        }
        v.extend(self.post_ln.arrays());
        v.extend(self.lm_head.arrays());
        v
    }
}

/// `[B, H, S, D]` with each head repeated `rep` times (grouped-query attention).
fn repeat_heads(x: &Array, rep: i32) -> Result<Array> {
    let s = x.shape();
    Ok(mlx_rs::ops::broadcast_to(
        mlx_rs::ops::expand_dims(x, 2)?,
        &[s[0], s[1], rep, s[2], s[3]],
    )?
    .reshape(&[s[0], s[1] * rep, s[2], s[3]])?)
}

/// `precompute_freqs_cis(32, max_context)` in float32: `[max_context, 16]` cos and sin.
fn rope_tables(max_context: i32) -> Result<(Array, Array)> {
    let half = (ROT_DIM / 2) as usize;
    let freqs: Vec<f32> = (0..half)
        .map(|i| 1.0f32 / 10000f32.powf((2 * i) as f32 / ROT_DIM as f32))
        .collect();
    let mut cos = Vec::with_capacity(max_context as usize * half);
    let mut sin = Vec::with_capacity(max_context as usize * half);
    for t in 0..max_context {
        for f in &freqs {
            let a = t as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let shape = [max_context, half as i32];
    Ok((
        Array::from_slice(&cos, &shape),
        Array::from_slice(&sin, &shape),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_table_starts_at_identity_and_has_the_reference_frequencies() {
        let (cos, sin) = rope_tables(4).unwrap();
        let c = cos.as_slice::<f32>();
        let s = sin.as_slice::<f32>();
        assert!(c[..16].iter().all(|&v| v == 1.0));
        assert!(s[..16].iter().all(|&v| v == 0.0));
        // Position 1, pair 0: angle 1 rad; pair 15: 10000^(-30/32).
        assert!((c[16] - 1f32.cos()).abs() < 1e-7);
        assert!((s[31] - 10000f32.powf(-30.0 / 32.0).sin()).abs() < 1e-7);
    }
}
