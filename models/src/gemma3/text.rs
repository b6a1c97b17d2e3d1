//! The Gemma 3 text decoder as mlx-lm 0.32 runs it (`models/gemma3_text.py`, `generate_step`):
//! five sliding-window layers (local RoPE base, rotating cache) per global layer (global RoPE base
//! with optional linear scaling, growing cache), Q/K RMSNorm, `1 + w` RMSNorms, four norms per
//! block, GeGLU MLP, the embedding scaled by `sqrt(hidden)` rounded to bfloat16, and the tied
//! (possibly quantized) LM head.
//!
//! Numerics follow mlx-lm's operation order and dtypes: every floating parameter is cast to the
//! compute dtype at load time, and masks, cache updates and prompt chunking are mlx-lm's, so that
//! both produce the same logits from the same checkpoint.

use mlx_rs::ops::{clip, indexing::IndexOp};
use mlx_rs::{Array, Dtype};

use super::config::{Config, TextConfig};
use crate::attention::{causal_mask, sdpa, Mask};
use crate::cache::{eval_caches, KvCache, LayerCache, RotatingKvCache};
use crate::checkpoint::Checkpoint;
use crate::error::{ModelError, Result};
use crate::kernels::fused::{geglu, softcap};
use crate::nn::{scalar, RmsNorm, Rope};
use crate::quantized::{Embedding, Linear};
use crate::weights::Weights;

/// Which positions get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Logits {
    Last,
    All,
}

/// mlx-lm's `prefill_step_size` default.
pub const DEFAULT_PREFILL_STEP_SIZE: i32 = 2048;

#[derive(Debug, Clone)]
pub(super) struct Attention {
    pub(super) q_proj: Linear,
    pub(super) k_proj: Linear,
    pub(super) v_proj: Linear,
    pub(super) o_proj: Linear,
    pub(super) q_norm: RmsNorm,
    pub(super) k_norm: RmsNorm,
    pub(super) rope: Rope,
    pub(super) n_heads: i32,
    pub(super) n_kv_heads: i32,
    pub(super) head_dim: i32,
    pub(super) scale: f32,
}

#[derive(Debug, Clone)]
pub(super) struct Mlp {
    pub(super) gate_proj: Linear,
    pub(super) up_proj: Linear,
    pub(super) down_proj: Linear,
}

#[derive(Debug, Clone)]
pub(super) struct Block {
    pub(super) attn: Attention,
    pub(super) mlp: Mlp,
    pub(super) input_layernorm: RmsNorm,
    pub(super) post_attention_layernorm: RmsNorm,
    pub(super) pre_feedforward_layernorm: RmsNorm,
    pub(super) post_feedforward_layernorm: RmsNorm,
    pub(super) global: bool,
}

/// The Gemma 3 language model (decoder + LM head).
#[derive(Debug, Clone)]
pub struct Gemma3Text {
    pub(super) cfg: TextConfig,
    pub(super) dtype: Dtype,
    pub(super) embed_tokens: Embedding,
    pub(super) layers: Vec<Block>,
    pub(super) norm: RmsNorm,
    /// `None`: the head is the embedding (`tie_word_embeddings`, no `lm_head.weight`).
    pub(super) lm_head: Option<Linear>,
    pub(super) embed_scale: Array,
}

/// The tensor prefix of the text model: bare `gemma3_text` (`model.`) or inside `gemma3`.
fn weight_prefix(ckpt: &Checkpoint) -> Result<(&'static str, &'static str)> {
    for (model, head) in [
        ("model.", "lm_head"),
        ("language_model.model.", "language_model.lm_head"),
        ("model.language_model.", "lm_head"),
    ] {
        if ckpt.contains(&format!("{model}embed_tokens.weight")) {
            return Ok((model, head));
        }
    }
    Err(ModelError::MissingTensor {
        dir: ckpt.dir().to_path_buf(),
        name: "model.embed_tokens.weight".into(),
    })
}

/// Gemma 3's norms scale by `1 + weight`.
fn norm(w: &Weights, name: &str, dim: i32, eps: f32) -> Result<RmsNorm> {
    RmsNorm::one_plus(&w.param(&format!("{name}.weight"), &[dim])?, eps)
}

impl Attention {
    /// Layer `i`'s attention from its `self_attn` weights.
    fn load(w: &Weights, cfg: &TextConfig, i: usize) -> Result<Self> {
        let (h, hd, eps) = (cfg.hidden_size, cfg.head_dim, cfg.rms_norm_eps as f32);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let rope = if cfg.is_global(i) {
            let scale = match &cfg.rope_scaling {
                Some(r) if r.rope_type == "linear" => 1.0 / r.factor,
                _ => 1.0,
            };
            Rope::base(hd, cfg.rope_theta, scale, false)
        } else {
            Rope::base(hd, cfg.rope_local_base_freq, 1.0, false)
        };
        Ok(Attention {
            q_proj: w.linear("q_proj", h, nh * hd)?,
            k_proj: w.linear("k_proj", h, nkv * hd)?,
            v_proj: w.linear("v_proj", h, nkv * hd)?,
            o_proj: w.linear("o_proj", nh * hd, h)?,
            q_norm: norm(w, "q_norm", hd, eps)?,
            k_norm: norm(w, "k_norm", hd, eps)?,
            rope,
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            scale: cfg.query_pre_attn_scalar.powf(-0.5) as f32,
        })
    }
}

impl Block {
    /// Layer `i` from its weights (`layers.{i}`).
    fn load(w: &Weights, cfg: &TextConfig, i: usize) -> Result<Self> {
        let (h, inter, eps) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.rms_norm_eps as f32,
        );
        let mlp = w.pp("mlp");
        Ok(Block {
            attn: Attention::load(&w.pp("self_attn"), cfg, i)?,
            mlp: Mlp {
                gate_proj: mlp.linear("gate_proj", h, inter)?,
                up_proj: mlp.linear("up_proj", h, inter)?,
                down_proj: mlp.linear("down_proj", inter, h)?,
            },
            input_layernorm: norm(w, "input_layernorm", h, eps)?,
            post_attention_layernorm: norm(w, "post_attention_layernorm", h, eps)?,
            pre_feedforward_layernorm: norm(w, "pre_feedforward_layernorm", h, eps)?,
            post_feedforward_layernorm: norm(w, "post_feedforward_layernorm", h, eps)?,
            global: cfg.is_global(i),
        })
    }
}

impl Gemma3Text {
    /// Load the text model of a `gemma3_text` or `gemma3` checkpoint, casting every floating
    /// tensor (incl. quantization scales/biases) to `dtype` (float32, bfloat16 or float16).
    pub fn load(ckpt: &Checkpoint, dtype: Dtype) -> Result<Self> {
        let config = Config::from_checkpoint(ckpt)?;
        Self::load_with_config(ckpt, &config, dtype)
    }

    pub fn load_with_config(ckpt: &Checkpoint, config: &Config, dtype: Dtype) -> Result<Self> {
        crate::error::check_compute_dtype(dtype)?;
        let cfg = config.text.clone();
        let (pre, head) = weight_prefix(ckpt)?;
        let w = Weights::new(ckpt, pre, dtype);
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps as f32);
        let embed_tokens = w.embedding("embed_tokens", cfg.vocab_size, h)?;
        let layers = (0..cfg.num_hidden_layers as usize)
            .map(|i| Block::load(&w.pp(format_args!("layers.{i}")), &cfg, i))
            .collect::<Result<Vec<_>>>()?;
        let norm = norm(&w, "norm", h, eps)?;
        // mlx-lm's sanitize: an `lm_head.weight` in the checkpoint means an untied head.
        let lm_head = if ckpt.contains(&format!("{head}.weight")) {
            Some(Linear::load(ckpt, head, h, cfg.vocab_size, dtype)?)
        } else {
            None
        };
        // `mx.array(hidden ** 0.5, mx.bfloat16).astype(h.dtype)`: rounded to bf16 in every dtype.
        let embed_scale = scalar((h as f64).sqrt(), Dtype::Bfloat16)?.as_dtype(dtype)?;
        let model = Gemma3Text {
            cfg,
            dtype,
            embed_tokens,
            layers,
            norm,
            lm_head,
            embed_scale,
        };
        mlx_rs::transforms::eval(model.arrays())?;
        Ok(model)
    }

    fn arrays(&self) -> Vec<&Array> {
        let mut v = self.embed_tokens.arrays();
        v.push(&self.norm.weight);
        v.push(&self.embed_scale);
        if let Some(hd) = &self.lm_head {
            v.extend(hd.arrays());
        }
        for l in &self.layers {
            for lin in [
                &l.attn.q_proj,
                &l.attn.k_proj,
                &l.attn.v_proj,
                &l.attn.o_proj,
                &l.mlp.gate_proj,
                &l.mlp.up_proj,
                &l.mlp.down_proj,
            ] {
                v.extend(lin.arrays());
            }
            for n in [
                &l.attn.q_norm,
                &l.attn.k_norm,
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

    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// One cache per layer: rotating (window `sliding_window`) for sliding layers, growing for
    /// global ones (mlx-lm `make_cache`).
    pub fn make_cache(&self) -> Vec<LayerCache> {
        self.layers
            .iter()
            .map(|l| {
                if l.global {
                    LayerCache::Full(KvCache::new())
                } else {
                    LayerCache::Sliding(RotatingKvCache::new(self.cfg.sliding_window))
                }
            })
            .collect()
    }

    /// Scaled token embeddings `embed_tokens[ids] * bf16(sqrt(H))`.
    pub fn embed(&self, ids: &Array) -> Result<Array> {
        let e = self.embed_tokens.lookup(ids)?;
        Ok(e.multiply(&self.embed_scale)?)
    }

    /// The masks of one call, made before any cache update as mlx-lm does: the global mask from
    /// the first global layer's cache, the sliding mask from the first layer's rotating cache.
    fn masks(&self, l: i32, cache: &[LayerCache]) -> Result<(Mask, Mask)> {
        if l == 1 {
            // One query attends to every cached key (the rotating cache holds exactly the window).
            return Ok((Mask::None, Mask::None));
        }
        let sliding = match cache.iter().find_map(|c| match c {
            LayerCache::Sliding(r) => Some(r),
            LayerCache::Full(_) => None,
        }) {
            Some(r) => {
                let window = self.cfg.sliding_window;
                let offset = (r.max_size() - 1).min(r.offset());
                if offset + l > window {
                    Mask::Array(causal_mask(l, offset, Some(window))?)
                } else {
                    Mask::Causal
                }
            }
            None => Mask::Causal, // no sliding layer: never used
        };
        Ok((Mask::Causal, sliding))
    }

    /// Runs `ids [B, L]` through the layers, updating `cache`; returns logits `[B, V]` of the last
    /// position (`Logits::Last`), `[B, L, V]` of every position (`Logits::All`), or nothing.
    fn run(
        &self,
        ids: &Array,
        cache: &mut [LayerCache],
        logits: Option<Logits>,
    ) -> Result<Option<Array>> {
        if cache.len() != self.layers.len() {
            return Err(ModelError::Input(format!(
                "cache has {} entries, the model needs {} (use make_cache)",
                cache.len(),
                self.layers.len()
            )));
        }
        let l = ids.dim(1);
        let mut h = self.embed(ids)?;
        let (global, sliding) = self.masks(l, cache)?;
        for (layer, c) in self.layers.iter().zip(cache.iter_mut()) {
            h = layer.forward(&h, if layer.global { &global } else { &sliding }, c)?;
        }
        let Some(which) = logits else {
            return Ok(None);
        };
        let h = match which {
            Logits::Last => h.index((.., -1.., ..)),
            Logits::All => h,
        };
        let h = self.norm.forward(&h)?;
        let mut out = match &self.lm_head {
            Some(head) => head.forward(&h)?,
            None => self.embed_tokens.as_linear(&h)?,
        };
        if let Some(c) = self.cfg.final_logit_softcapping {
            out = softcap(&out, c)?;
        }
        Ok(Some(match which {
            Logits::Last => out.index((.., -1, ..)),
            Logits::All => out,
        }))
    }

    /// Logits `[B, L, V]` of every position of `ids` in one pass from empty caches (scoring text).
    pub fn forward_all(&self, ids: &Array) -> Result<Array> {
        self.check_ids(ids)?;
        let mut cache = self.make_cache();
        Ok(self
            .run(ids, &mut cache, Some(Logits::All))?
            .expect("logits requested"))
    }

    /// Prompt processing as mlx-lm's `generate_step`: all but the last token in chunks of at most
    /// `prefill_step_size` (`None`: one chunk), evaluating the caches after each, then the last
    /// token alone. Returns the logits `[B, V]` of the last prompt position.
    pub fn prefill(
        &self,
        ids: &Array,
        cache: &mut [LayerCache],
        prefill_step_size: Option<i32>,
    ) -> Result<Array> {
        self.check_ids(ids)?;
        let t = ids.dim(1);
        let step = prefill_step_size.unwrap_or(t.max(1));
        if step <= 0 {
            return Err(ModelError::Input(format!(
                "prefill_step_size must be positive, got {step}"
            )));
        }
        let mut start = 0;
        while t - start > 1 {
            let n = step.min(t - start - 1);
            self.run(&ids.index((.., start..start + n)), cache, None)?;
            eval_caches(cache)?;
            start += n;
        }
        Ok(self
            .run(&ids.index((.., start..)), cache, Some(Logits::Last))?
            .expect("logits requested"))
    }

    /// One decode step on `token [B, 1]` (a sampled id, possibly not yet evaluated: it is not read
    /// on the host); returns logits `[B, V]`.
    pub fn decode_step(&self, token: &Array, cache: &mut [LayerCache]) -> Result<Array> {
        Ok(self
            .run(token, cache, Some(Logits::Last))?
            .expect("logits requested"))
    }

    /// `ids` must be `[B, L]` integers within the vocabulary (read on the host: an out-of-range
    /// id would index outside the embedding table).
    fn check_ids(&self, ids: &Array) -> Result<()> {
        if ids.ndim() != 2 || ids.dim(1) == 0 {
            return Err(ModelError::Input(format!(
                "ids must be [B, L] with L > 0, got {:?}",
                ids.shape()
            )));
        }
        if ids.dtype().is_float() || ids.dtype() == Dtype::Bool {
            return Err(ModelError::Input(format!(
                "ids must be integers, got {:?}",
                ids.dtype()
            )));
        }
        let host = ids.as_dtype(Dtype::Int64)?;
        let limit = self.cfg.vocab_size as i64;
        if let Some(bad) = host
            .as_slice::<i64>()
            .iter()
            .find(|&&x| x < 0 || x >= limit)
        {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary [0, {limit})"
            )));
        }
        Ok(())
    }
}

/// `x + y`, computed in float32 and clipped to the float16 range when the model runs in float16
/// (mlx-lm `clip_residual`).
fn residual(x: &Array, y: &Array) -> Result<Array> {
    if x.dtype() != Dtype::Float16 {
        return Ok(x.add(y)?);
    }
    let bound = Array::from_f32(65504.0);
    let s = x
        .as_dtype(Dtype::Float32)?
        .add(y.as_dtype(Dtype::Float32)?)?;
    Ok(clip(&s, (&bound.negative()?, &bound))?.as_dtype(Dtype::Float16)?)
}

impl Attention {
    fn forward(&self, x: &Array, mask: &Mask, cache: &mut LayerCache) -> Result<Array> {
        let (b, l) = (x.dim(0), x.dim(1));
        let heads = |y: Array, n: i32| -> Result<Array> {
            Ok(y.reshape(&[b, l, n, self.head_dim])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let q = heads(self.q_proj.forward(x)?, self.n_heads)?;
        let k = heads(self.k_proj.forward(x)?, self.n_kv_heads)?;
        let v = heads(self.v_proj.forward(x)?, self.n_kv_heads)?;
        let q = self.q_norm.forward(&q)?;
        let k = self.k_norm.forward(&k)?;
        let offset = cache.offset();
        let q = self.rope.apply(&q, offset)?;
        let k = self.rope.apply(&k, offset)?;
        let (k, v) = cache.update_and_fetch(&k, &v)?;
        let o = sdpa(&q, &k, &v, self.scale, mask)?;
        let o = o.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        self.o_proj.forward(&o)
    }
}

impl Block {
    fn forward(&self, x: &Array, mask: &Mask, cache: &mut LayerCache) -> Result<Array> {
        let r = self
            .attn
            .forward(&self.input_layernorm.forward(x)?, mask, cache)?;
        let h = residual(x, &self.post_attention_layernorm.forward(&r)?)?;
        let m = &self.mlp;
        let y = self.pre_feedforward_layernorm.forward(&h)?;
        let r = m
            .down_proj
            .forward(&geglu(&m.gate_proj.forward(&y)?, &m.up_proj.forward(&y)?)?)?;
        residual(&h, &self.post_feedforward_layernorm.forward(&r)?)
    }
}
