//! The Gemma 4 vision tower and projector (mlx-vlm 0.7.10 `gemma4/vision.py` `VisionModel` and
//! `gemma4.py` `MultimodalEmbedder`): patchify, patch embedding `2(x-0.5) W^T` plus the 2-D
//! position table, bidirectional encoder layers with 2-D RoPE and optional clipped linears,
//! 3x3 average pooling by position, `sqrt(d)` scale, optional standardize, then
//! `RMSNormNoScale` + `embedding_projection` into the text model's width.
//!
//! Numerics follow mlx-vlm's operation sequence and dtypes, not just its formulas: q/k/v norms
//! are the float32 composed `VisionRMSNorm` (not `fast.rms_norm`), RoPE tables are built in
//! float32 and cast, attention pads the head dim to the fused SDPA sizes with an additive zero
//! mask, pooling is the same `einsum` over one-hot float32 weights, and same-size images are
//! encoded as one batch (different sizes one by one), as mlx-vlm does.

use mlx_rs::ops::indexing::{Ellipsis, IndexOp};
use mlx_rs::ops::{arange, clip, concatenate, cos, einsum, expand_dims, pad, power, sin, zeros};
use mlx_rs::{Array, Dtype};

use super::config::VisionConfig;
use super::processor::ProcessedImage;
use crate::attention::{sdpa, Mask};
use crate::checkpoint::Checkpoint;
use crate::error::{ModelError, Result};
use crate::kernels::PrefillPacer;
use crate::nn::{gelu_tanh, rms_norm_no_scale, scalar, RmsNorm};
use crate::quantized::Linear;
use crate::weights::Weights;

/// A linear layer that may clamp its input and output (`ClippableLinear`).
#[derive(Debug, Clone)]
struct ClippedLinear {
    linear: Linear,
    /// `(input_min, input_max, output_min, output_max)` when `use_clipped_linears`.
    bounds: Option<[Array; 4]>,
}

impl ClippedLinear {
    fn load(w: &Weights, in_dim: i32, out_dim: i32, clipped: bool) -> Result<Self> {
        let linear = w.linear("linear", in_dim, out_dim)?;
        let bounds = if clipped {
            let b = |n: &str| w.param(n, &[]);
            Some([
                b("input_min")?,
                b("input_max")?,
                b("output_min")?,
                b("output_max")?,
            ])
        } else {
            None
        };
        Ok(ClippedLinear { linear, bounds })
    }

    fn forward(&self, x: &Array) -> Result<Array> {
        match &self.bounds {
            None => self.linear.forward(x),
            Some([imin, imax, omin, omax]) => {
                let x = clip(x, (imin, imax))?;
                let y = self.linear.forward(&x)?;
                Ok(clip(&y, (omin, omax))?)
            }
        }
    }

    fn arrays(&self) -> Vec<&Array> {
        let mut v = self.linear.arrays();
        if let Some(b) = &self.bounds {
            v.extend(b.iter());
        }
        v
    }
}

/// `VisionRMSNorm` / `VisionRMSNormNoScale`: computed in float32 from composed ops, cast back.
fn vision_rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    let xf = x.as_dtype(Dtype::Float32)?;
    // `x_float**2` is MLX `power(x, 2)`, not `square`.
    let var = power(&xf, Array::from_f32(2.0))?.mean_axes(&[-1], true)?;
    let normed = xf.multiply(var.add(Array::from_f32(eps))?.rsqrt()?)?;
    let out = match weight {
        Some(w) => normed.multiply(w.as_dtype(Dtype::Float32)?)?,
        None => normed,
    };
    Ok(out.as_dtype(x.dtype())?)
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    q_proj: ClippedLinear,
    k_proj: ClippedLinear,
    v_proj: ClippedLinear,
    o_proj: ClippedLinear,
    q_norm: Array,
    k_norm: Array,
    gate_proj: ClippedLinear,
    up_proj: ClippedLinear,
    down_proj: ClippedLinear,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
}

/// The vision tower plus `embed_vision`.
#[derive(Debug, Clone)]
pub struct Gemma4Vision {
    cfg: VisionConfig,
    dtype: Dtype,
    input_proj: Linear,
    /// `[2, position_embedding_size, d]`: row 0 indexed by column, row 1 by row.
    position_table: Array,
    layers: Vec<EncoderLayer>,
    /// `(std_bias, std_scale)` when `standardize`.
    standardize: Option<(Array, Array)>,
    projection: Linear,
    eps: f32,
}

impl Gemma4Vision {
    /// Loads `vision_tower.*` and `embed_vision.*`, casting every floating tensor to `dtype`.
    /// `text_hidden` is the text model's `hidden_size` (the projector's output width).
    pub fn load(
        ckpt: &Checkpoint,
        cfg: &VisionConfig,
        text_hidden: i32,
        dtype: Dtype,
    ) -> Result<Self> {
        let path = ckpt.config_path().to_path_buf();
        let d = cfg.hidden_size;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        if hd % 4 != 0 {
            // The 2-D RoPE splits the head into two rotate-half parts.
            return Err(ModelError::config(
                &path,
                "vision_config.head_dim",
                format!("{hd} is not a multiple of 4"),
            ));
        }
        if nkv != nh {
            return Err(ModelError::config(
                &path,
                "vision_config.num_key_value_heads",
                format!("{nkv} != num_attention_heads {nh} (grouped attention is not used by Gemma 4 vision)"),
            ));
        }
        if cfg.pooling_kernel_size < 1 || cfg.patch_size < 1 {
            return Err(ModelError::config(
                &path,
                "vision_config.pooling_kernel_size",
                "must be positive",
            ));
        }
        let pre = ["vision_tower.", "model.vision_tower."]
            .into_iter()
            .find(|p| ckpt.contains(&format!("{p}patch_embedder.position_embedding_table")))
            .ok_or_else(|| ModelError::MissingTensor {
                dir: ckpt.dir().to_path_buf(),
                name: "vision_tower.patch_embedder.position_embedding_table".into(),
            })?;
        let proj_pre = if pre.starts_with("model.") {
            "model.embed_vision"
        } else {
            "embed_vision"
        };
        let eps = cfg.rms_norm_eps as f32;
        let clipped = cfg.use_clipped_linears;
        let w = Weights::new(ckpt, pre, dtype);
        let p = cfg.patch_size;
        let inter = cfg.intermediate_size;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers as usize);
        for i in 0..cfg.num_hidden_layers {
            let lw = w.pp(format_args!("encoder.layers.{i}"));
            let (attn, mlp) = (lw.pp("self_attn"), lw.pp("mlp"));
            let cl = |w: &Weights, name: &str, i_dim: i32, o_dim: i32| {
                ClippedLinear::load(&w.pp(name), i_dim, o_dim, clipped)
            };
            layers.push(EncoderLayer {
                q_proj: cl(&attn, "q_proj", d, nh * hd)?,
                k_proj: cl(&attn, "k_proj", d, nkv * hd)?,
                v_proj: cl(&attn, "v_proj", d, nkv * hd)?,
                o_proj: cl(&attn, "o_proj", nh * hd, d)?,
                q_norm: attn.param("q_norm.weight", &[hd])?,
                k_norm: attn.param("k_norm.weight", &[hd])?,
                gate_proj: cl(&mlp, "gate_proj", d, inter)?,
                up_proj: cl(&mlp, "up_proj", d, inter)?,
                down_proj: cl(&mlp, "down_proj", inter, d)?,
                input_layernorm: lw.rms_norm("input_layernorm", d, eps)?,
                post_attention_layernorm: lw.rms_norm("post_attention_layernorm", d, eps)?,
                pre_feedforward_layernorm: lw.rms_norm("pre_feedforward_layernorm", d, eps)?,
                post_feedforward_layernorm: lw.rms_norm("post_feedforward_layernorm", d, eps)?,
            });
        }
        let standardize = if cfg.standardize {
            Some((w.param("std_bias", &[d])?, w.param("std_scale", &[d])?))
        } else {
            None
        };
        let model = Gemma4Vision {
            cfg: cfg.clone(),
            dtype,
            input_proj: w.linear("patch_embedder.input_proj", 3 * p * p, d)?,
            position_table: w.param(
                "patch_embedder.position_embedding_table",
                &[2, cfg.position_embedding_size, d],
            )?,
            layers,
            standardize,
            projection: Linear::load(
                ckpt,
                &format!("{proj_pre}.embedding_projection"),
                d,
                text_hidden,
                dtype,
            )?,
            eps,
        };
        mlx_rs::transforms::eval(model.arrays())?;
        Ok(model)
    }

    fn arrays(&self) -> Vec<&Array> {
        let mut v = self.input_proj.arrays();
        v.push(&self.position_table);
        v.extend(self.projection.arrays());
        if let Some((b, s)) = &self.standardize {
            v.push(b);
            v.push(s);
        }
        for l in &self.layers {
            for c in [
                &l.q_proj,
                &l.k_proj,
                &l.v_proj,
                &l.o_proj,
                &l.gate_proj,
                &l.up_proj,
                &l.down_proj,
            ] {
                v.extend(c.arrays());
            }
            v.push(&l.q_norm);
            v.push(&l.k_norm);
            for n in [
                &l.input_layernorm,
                &l.post_attention_layernorm,
                &l.pre_feedforward_layernorm,
                &l.post_feedforward_layernorm,
            ] {
                v.push(&n.weight);
            }
        }
        v
    }

    pub fn config(&self) -> &VisionConfig {
        &self.cfg
    }

    /// Soft tokens for `images`, in order: `[1, sum(N_i), text_hidden]` in the compute dtype
    /// (mlx-vlm `Model.encode_image`). Same-size images go through the tower as one batch.
    pub fn encode(&self, images: &[ProcessedImage]) -> Result<Array> {
        if images.is_empty() {
            return Err(ModelError::Input("no images to encode".into()));
        }
        let p = self.cfg.patch_size as u32;
        let k = self.cfg.pooling_kernel_size as u32;
        for (i, img) in images.iter().enumerate() {
            let ok = img.pixel_values.len() == 3 * img.height as usize * img.width as usize;
            if !ok
                || img.height % (p * k) != 0
                || img.width % (p * k) != 0
                || img.height == 0
                || img.width == 0
            {
                return Err(ModelError::Input(format!(
                    "image {i}: {}x{} pixels ({} values) is not a multiple of {} on both sides",
                    img.width,
                    img.height,
                    img.pixel_values.len(),
                    p * k
                )));
            }
            let longest = (img.height.max(img.width) / p) as i32;
            if longest > self.cfg.position_embedding_size {
                return Err(ModelError::Input(format!(
                    "image {i}: {} patches on a side exceed the position table ({})",
                    longest, self.cfg.position_embedding_size
                )));
            }
        }
        let same = images
            .iter()
            .all(|im| (im.height, im.width) == (images[0].height, images[0].width));
        let pooled = if same {
            let (h, w) = (images[0].height as i32, images[0].width as i32);
            let mut data = Vec::with_capacity(images.len() * images[0].pixel_values.len());
            for im in images {
                data.extend_from_slice(&im.pixel_values);
            }
            let pv = Array::from_slice(&data, &[images.len() as i32, 3, h, w]);
            self.tower(&pv)?
        } else {
            let parts = images
                .iter()
                .map(|im| {
                    let pv = Array::from_slice(
                        &im.pixel_values,
                        &[1, 3, im.height as i32, im.width as i32],
                    );
                    self.tower(&pv)
                })
                .collect::<Result<Vec<_>>>()?;
            concatenate(&parts, 1)?
        };
        // embed_vision: RMSNormNoScale then the projection.
        let normed = rms_norm_no_scale(&pooled, self.eps)?;
        self.projection.forward(&normed)
    }

    /// `VisionModel.__call__` on a batch `[B, 3, H, W]` of float32 pixels: `[1, B*N, d]`
    /// (pooled, scaled and standardized; images concatenated in order).
    fn tower(&self, pixel_values: &Array) -> Result<Array> {
        let sh = pixel_values.shape();
        let (b, h, w) = (sh[0], sh[2], sh[3]);
        let p = self.cfg.patch_size;
        let (ph, pw) = (h / p, w / p);
        let n = ph * pw;
        let kk = self.cfg.pooling_kernel_size * self.cfg.pooling_kernel_size;
        let output_length = n / kk;

        // Patch positions (x = column, y = row), row-major over the grid, as [B, N, 2] int32.
        let mut pos = Vec::with_capacity((n * 2) as usize);
        for y in 0..ph {
            for x in 0..pw {
                pos.push(x);
                pos.push(y);
            }
        }
        let positions = Array::from_slice(&pos, &[1, n, 2]);
        let positions = mlx_rs::ops::broadcast_to(&positions, &[b, n, 2])?;

        let mut hs = self.embed_patches(pixel_values, &positions, b, ph, pw)?;
        // All patches are real (mlx-vlm's path without position ids has no padding): an additive
        // mask of zeros, kept because it is what the reference passes to SDPA.
        let mask = zeros::<f32>(&[b, 1, n, n])?.as_dtype(self.dtype)?;
        let (cos_t, sin_t) = self.rope_tables(&positions)?;
        let mut pacer = PrefillPacer::new(b * n)?;
        for layer in &self.layers {
            hs = self.layer_forward(layer, &hs, &cos_t, &sin_t, &mask)?;
            pacer.step(&hs)?;
        }

        let mut pooled = if n == output_length {
            hs
        } else {
            self.pool(&hs, &positions, n, output_length)?
        };
        pooled = pooled.multiply(scalar(
            (self.cfg.hidden_size as f64).sqrt(),
            pooled.dtype(),
        )?)?;
        // Per image, all pooled tokens are valid; concatenate the batch along the token axis.
        let d = self.cfg.hidden_size;
        let mut out = pooled.reshape(&[1, b * output_length, d])?;
        if let Some((bias, scale)) = &self.standardize {
            out = out.subtract(bias)?.multiply(scale)?;
        }
        Ok(out)
    }

    fn embed_patches(
        &self,
        pv: &Array,
        positions: &Array,
        b: i32,
        ph: i32,
        pw: i32,
    ) -> Result<Array> {
        let p = self.cfg.patch_size;
        let patches = pv
            .reshape(&[b, 3, ph, p, pw, p])?
            .transpose_axes(&[0, 2, 4, 3, 5, 1])?
            .reshape(&[b, ph * pw, 3 * p * p])?;
        let patches = patches
            .subtract(Array::from_f32(0.5))?
            .multiply(Array::from_f32(2.0))?;
        let hs = self.input_proj.forward(&patches.as_dtype(self.dtype)?)?;
        // mlx-vlm multiplies a one-hot matrix by the table; a one-hot product picks rows exactly,
        // so a gather gives the same values, and the two rows are then summed in the table dtype.
        let xs = positions.index((Ellipsis, 0));
        let ys = positions.index((Ellipsis, 1));
        let tx = self.position_table.index(0).take_axis(&xs, 0)?;
        let ty = self.position_table.index(1).take_axis(&ys, 0)?;
        Ok(hs.add(tx.add(&ty)?)?)
    }

    /// cos/sin tables `[B, N, 1, head_dim]` for the two halves of the head (x then y), each built
    /// as mlx-vlm's `apply_multidimensional_rope`: float32 angles `pos / theta^(2i/c)`, cast.
    fn rope_tables(&self, positions: &Array) -> Result<(Array, Array)> {
        let hd = self.cfg.head_dim;
        let channels = 2 * (hd / 4);
        let half = channels / 2;
        let exps = arange::<_, f32>(0, half, None)?
            .multiply(Array::from_f32((2.0 / channels as f64) as f32))?;
        let timescale = power(Array::from_f32(self.cfg.rope_theta() as f32), &exps)?;
        let mut cs = vec![];
        let mut ss = vec![];
        for d in 0..2 {
            let p = positions
                .index((Ellipsis, d..d + 1))
                .as_dtype(Dtype::Float32)?;
            let ang = p.divide(&timescale)?;
            let (c, s) = (cos(&ang)?, sin(&ang)?);
            let c = concatenate(&[c.clone(), c], -1)?.as_dtype(self.dtype)?;
            let s = concatenate(&[s.clone(), s], -1)?.as_dtype(self.dtype)?;
            cs.push(expand_dims(&c, 2)?);
            ss.push(expand_dims(&s, 2)?);
        }
        Ok((concatenate(&cs, -1)?, concatenate(&ss, -1)?))
    }

    /// `x * cos + rotate_half(x) * sin`, rotate-half within each spatial half of the head.
    fn rope(&self, x: &Array, cos_t: &Array, sin_t: &Array) -> Result<Array> {
        let channels = 2 * (self.cfg.head_dim / 4);
        let half = channels / 2;
        let mut parts = vec![];
        for d in 0..2 {
            let lo = d * channels;
            let xp = x.index((Ellipsis, lo..lo + channels));
            let c = cos_t.index((Ellipsis, lo..lo + channels));
            let s = sin_t.index((Ellipsis, lo..lo + channels));
            let x1 = xp.index((Ellipsis, ..half));
            let x2 = xp.index((Ellipsis, half..));
            let rot = concatenate(&[x2.negative()?, x1], -1)?;
            parts.push(xp.multiply(&c)?.add(rot.multiply(&s)?)?);
        }
        Ok(concatenate(&parts, -1)?)
    }

    fn layer_forward(
        &self,
        l: &EncoderLayer,
        x: &Array,
        cos_t: &Array,
        sin_t: &Array,
        mask: &Array,
    ) -> Result<Array> {
        let (b, n) = (x.dim(0), x.dim(1));
        let (nh, hd) = (self.cfg.num_attention_heads, self.cfg.head_dim);
        let h = l.input_layernorm.forward(x)?;
        let q = l.q_proj.forward(&h)?.reshape(&[b, n, nh, hd])?;
        let k = l.k_proj.forward(&h)?.reshape(&[b, n, nh, hd])?;
        let v = l.v_proj.forward(&h)?.reshape(&[b, n, nh, hd])?;
        let q = vision_rms_norm(&q, Some(&l.q_norm), self.eps)?;
        let k = vision_rms_norm(&k, Some(&l.k_norm), self.eps)?;
        let v = vision_rms_norm(&v, None, self.eps)?;
        let q = self.rope(&q, cos_t, sin_t)?.transpose_axes(&[0, 2, 1, 3])?;
        let k = self.rope(&k, cos_t, sin_t)?.transpose_axes(&[0, 2, 1, 3])?;
        let v = v.transpose_axes(&[0, 2, 1, 3])?;
        // mlx-vlm `ensure_fused_sdpa`: zero-pad the head dim up to 64, 80 or 128, then slice.
        let target = [64, 80, 128].into_iter().find(|&t| hd <= t).unwrap_or(hd);
        let o = if target != hd {
            let widths = [(0, 0), (0, 0), (0, 0), (0, target - hd)];
            let (q, k, v) = (
                pad(&q, &widths[..], None, None)?,
                pad(&k, &widths[..], None, None)?,
                pad(&v, &widths[..], None, None)?,
            );
            sdpa(&q, &k, &v, 1.0, &Mask::Array(mask.clone()))?.index((Ellipsis, ..hd))
        } else {
            sdpa(&q, &k, &v, 1.0, &Mask::Array(mask.clone()))?
        };
        let o = o.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, n, -1])?;
        let o = l.o_proj.forward(&o)?;
        let h = x.add(l.post_attention_layernorm.forward(&o)?)?;
        let m = l.pre_feedforward_layernorm.forward(&h)?;
        let m = gelu_tanh(&l.gate_proj.forward(&m)?)?.multiply(l.up_proj.forward(&m)?)?;
        let m = l.down_proj.forward(&m)?;
        Ok(h.add(l.post_feedforward_layernorm.forward(&m)?)?)
    }

    /// `VisionPooler._avg_pool_by_positions`: one-hot float32 weights `1/k^2` at pooled index
    /// `x//k + (pW//k)*(y//k)`, contracted with the same einsum, cast back.
    fn pool(&self, hs: &Array, positions: &Array, n: i32, length: i32) -> Result<Array> {
        let k = ((n / length) as f64).sqrt() as i32;
        let pos: Vec<i32> = positions.index(0).as_slice::<i32>().to_vec();
        let max_x = pos.chunks_exact(2).map(|p| p[0].max(0)).max().unwrap_or(0) + 1;
        let mut w = vec![0f32; (n * length) as usize];
        for (i, p) in pos.chunks_exact(2).enumerate() {
            let (x, y) = (p[0].max(0) / k, p[1].max(0) / k);
            let idx = x + (max_x / k) * y;
            if (0..length).contains(&idx) {
                // one_hot(...).astype(float32) / k_squared: 1.0 / 9 in float32.
                w[i * length as usize + idx as usize] = 1.0f32 / (k * k) as f32;
            }
        }
        let b = hs.dim(0);
        let weights = Array::from_slice(&w, &[1, n, length]);
        let weights = mlx_rs::ops::broadcast_to(&weights, &[b, n, length])?;
        Ok(einsum("bLl,bLd->bld", [&weights, hs])?.as_dtype(hs.dtype())?)
    }
}
