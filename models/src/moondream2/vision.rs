//! Moondream2's vision side (reference `vision.py`): a SigLIP-shaped ViT without CLS token or
//! pooling head (patchify in `(C, p1, p2)` order, `patch_emb`, learned `pos_emb`, pre-LN blocks
//! with non-causal attention and a tanh-GELU MLP, `post_ln`), and `proj_mlp`, which maps the
//! global crop's features concatenated with the pooled local features to text embeddings.

use mlx_rs::ops::concatenate;
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{Array, Dtype};

use super::config::VisionConfig;
use super::crops::{GRID, PATCH};
use super::layers::{attention, BiasedLinear, LayerNorm, Mlp};
use crate::checkpoint::Checkpoint;
use crate::error::Result;

#[derive(Debug, Clone)]
struct Block {
    ln1: LayerNorm,
    qkv: BiasedLinear,
    proj: BiasedLinear,
    ln2: LayerNorm,
    mlp: Mlp,
}

#[derive(Debug, Clone)]
pub struct Vision {
    cfg: VisionConfig,
    patch_emb: BiasedLinear,
    pos_emb: Array,
    blocks: Vec<Block>,
    post_ln: LayerNorm,
    proj_mlp: Mlp,
}

impl Vision {
    pub fn load(
        ckpt: &Checkpoint,
        cfg: &VisionConfig,
        text_dim: i32,
        dtype: Dtype,
    ) -> Result<Self> {
        let p = "model.vision";
        let d = cfg.enc_dim;
        let patch_dim = cfg.enc_patch_size * cfg.enc_patch_size * cfg.in_channels;
        let n_patches = (cfg.crop_size / cfg.enc_patch_size).pow(2);
        let blocks = (0..cfg.enc_n_layers)
            .map(|i| {
                let b = format!("{p}.blocks.{i}");
                Ok(Block {
                    ln1: LayerNorm::load(ckpt, &format!("{b}.ln1"), d)?,
                    qkv: BiasedLinear::load(ckpt, &format!("{b}.attn.qkv"), d, 3 * d, dtype)?,
                    proj: BiasedLinear::load(ckpt, &format!("{b}.attn.proj"), d, d, dtype)?,
                    ln2: LayerNorm::load(ckpt, &format!("{b}.ln2"), d)?,
                    mlp: Mlp::load(ckpt, &format!("{b}.mlp"), d, cfg.enc_ff_dim, d, dtype)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Vision {
            cfg: cfg.clone(),
            patch_emb: BiasedLinear::load(ckpt, &format!("{p}.patch_emb"), patch_dim, d, dtype)?,
            pos_emb: ckpt.float_tensor(&format!("{p}.pos_emb"), &[1, n_patches, d], dtype)?,
            blocks,
            post_ln: LayerNorm::load(ckpt, &format!("{p}.post_ln"), d)?,
            proj_mlp: Mlp::load(
                ckpt,
                &format!("{p}.proj_mlp"),
                2 * d,
                cfg.proj_inner_dim,
                text_dim,
                dtype,
            )?,
        })
    }

    /// Normalized crops `[n, 378, 378, 3]` (NHWC) to encoder outputs `[n, 729, enc_dim]`.
    pub fn encode(&self, crops: &Array) -> Result<Array> {
        let n = crops.dim(0);
        let (g, p) = (GRID as i32, PATCH as i32);
        // `create_patches`: each patch vector is laid out (C, p1, p2).
        let x = crops
            .reshape(&[n, g, p, g, p, 3])?
            .transpose_axes(&[0, 1, 3, 5, 2, 4])?
            .reshape(&[n, g * g, 3 * p * p])?;
        let mut x = self.patch_emb.forward(&x)?.add(&self.pos_emb)?;
        for b in &self.blocks {
            x = x.add(self.attn(b, &b.ln1.forward(&x)?)?)?;
            x = x.add(b.mlp.forward(&b.ln2.forward(&x)?)?)?;
        }
        self.post_ln.forward(&x)
    }

    fn attn(&self, b: &Block, x: &Array) -> Result<Array> {
        let (n, l, d) = (x.dim(0), x.dim(1), x.dim(2));
        let h = self.cfg.enc_n_heads;
        let qkv = b.qkv.forward(x)?;
        let heads = |i: i32| -> Result<Array> {
            Ok(qkv
                .index((.., .., i * d..(i + 1) * d))
                .reshape(&[n, l, h, d / h])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let o = attention(&heads(0)?, &heads(1)?, &heads(2)?, None)?;
        b.proj
            .forward(&o.transpose_axes(&[0, 2, 1, 3])?.reshape(&[n, l, d])?)
    }

    /// `proj_mlp(cat([global, pooled], -1))`: `[729, enc_dim]` twice to `[729, text_dim]`.
    pub fn project(&self, global: &Array, pooled: &Array) -> Result<Array> {
        self.proj_mlp.forward(&concatenate(&[global, pooled], -1)?)
    }

    pub(crate) fn arrays(&self) -> Vec<&Array> {
        let mut v = self.patch_emb.arrays();
        v.push(&self.pos_emb);
        for b in &self.blocks {
            v.extend(b.ln1.arrays());
            v.extend(b.qkv.arrays());
            v.extend(b.proj.arrays());
            v.extend(b.ln2.arrays());
            v.extend(b.mlp.arrays());
        }
        v.extend(self.post_ln.arrays());
        v.extend(self.proj_mlp.arrays());
        v
    }
}
