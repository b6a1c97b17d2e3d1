//! The Gemma 4 text decoder (mlx-vlm 0.7.10 `gemma4/language.py`), for every variant flag-set:
//! sliding/full attention with a separate global head dim, `attention_k_eq_v` (V from the raw K
//! projection), proportional partial RoPE, the MoE block, per-layer embeddings (PLE), KV sharing,
//! double-wide MLPs, `layer_scalar`, final logit soft-capping and the tied (quantized) LM head.
//!
//! Numerics follow mlx-vlm's operation order and dtypes: every floating parameter is cast to the
//! compute dtype at load time, scalar factors are rounded to that dtype before use (the embedding
//! scale `sqrt(H)` in bf16 is 73.5 for H=5376), and the attention masks, cache layout and prompt
//! chunking are those of `mlx_vlm.generate`.

use mlx_rs::ops::indexing::{Ellipsis, IndexOp};
use mlx_rs::ops::{
    concatenate, cumsum, expand_dims, logical_and, logical_not, logical_or, select, zeros_like,
};
use mlx_rs::{Array, Dtype};

use std::sync::Arc;

use super::config::{AttentionShape, Config, LayerType, TextConfig};
use super::moe::{Experts, Router};
use super::tensor_parallel::TensorParallel;
use crate::attention::{causal_mask, sdpa, Mask};
use crate::cache::{eval_caches, KvCache, LayerCache, RotatingKvCache};
use crate::checkpoint::Checkpoint;
use crate::distributed::Group;
use crate::error::{ModelError, Result};
use crate::kernels::fused::{geglu, softcap};
use crate::kernels::PrefillPacer;
use crate::nn::{rms_norm_no_scale, scalar, RmsNorm, Rope};
use crate::quantized::{Embedding, Linear};
use crate::weights::Weights;

/// mlx-vlm's `prefill_step_size` default.
pub const DEFAULT_PREFILL_STEP_SIZE: i32 = 2048;

/// Which positions to compute logits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position (`logits_to_keep=1`): `[B, 1, V]`.
    Last,
    /// Every position: `[B, L, V]`.
    All,
}

/// Everything a forward pass can take. `ids` or `embeds` must be given.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextInput<'a> {
    /// Token ids `[B, L]` (int32).
    pub ids: Option<&'a Array>,
    /// Input embeddings `[B, L, H]` (already scaled, image features merged); default `embed(ids)`.
    pub embeds: Option<&'a Array>,
    /// Token part of the per-layer inputs `[B, L', NL, P]` (PLE models). When `L' > L` the slice
    /// starting at the cache offset is used. Default: computed from `ids` without masking.
    pub per_layer_inputs: Option<&'a Array>,
    /// `mm_token_type_ids [B, L]` (0 text, 1 image, 2 video, 3 audio) for the bidirectional overlay.
    pub mm_token_type_ids: Option<&'a Array>,
}

#[derive(Debug, Clone)]
pub(super) struct Attention {
    pub(super) shape: AttentionShape,
    pub(super) q_proj: Linear,
    pub(super) k_proj: Option<Linear>,
    pub(super) v_proj: Option<Linear>,
    pub(super) o_proj: Linear,
    pub(super) q_norm: RmsNorm,
    pub(super) k_norm: Option<RmsNorm>,
    pub(super) rope: Rope,
    pub(super) eps: f32,
}

#[derive(Debug, Clone)]
pub(super) struct Mlp {
    pub(super) gate_proj: Linear,
    pub(super) up_proj: Linear,
    pub(super) down_proj: Linear,
}

impl Mlp {
    fn load(w: &Weights, hidden: i32, inter: i32, tp: Option<&TensorParallel>) -> Result<Self> {
        let gate_proj = w.linear("gate_proj", hidden, inter)?;
        let up_proj = w.linear("up_proj", hidden, inter)?;
        let down_proj = w.linear("down_proj", inter, hidden)?;
        Ok(match tp {
            None => Mlp {
                gate_proj,
                up_proj,
                down_proj,
            },
            Some(tp) => Mlp {
                gate_proj: tp.mlp_in(&gate_proj, &w.path("gate_proj"), inter)?,
                up_proj: tp.mlp_in(&up_proj, &w.path("up_proj"), inter)?,
                down_proj: tp.mlp_out(&down_proj, &w.path("down_proj"), inter)?,
            },
        })
    }

    /// Each product is a pacer step: with dequantized weights a whole feed-forward block in
    /// flight holds three weight matrices at 16 bits (0.7 GB at the 31B widths).
    fn forward(&self, x: &Array, pacer: &mut PrefillPacer) -> Result<Array> {
        let g = self.gate_proj.forward(x)?;
        pacer.step(&g)?;
        let u = self.up_proj.forward(x)?;
        pacer.step(&u)?;
        self.down_proj.forward(&geglu(&g, &u)?)
    }

    fn arrays(&self) -> Vec<&Array> {
        let mut v = self.gate_proj.arrays();
        v.extend(self.up_proj.arrays());
        v.extend(self.down_proj.arrays());
        v
    }
}

#[derive(Debug, Clone)]
pub(super) struct MoeBlock {
    pub(super) router: Router,
    pub(super) experts: Experts,
    pub(super) pre_feedforward_layernorm_2: RmsNorm,
    pub(super) post_feedforward_layernorm_1: RmsNorm,
    pub(super) post_feedforward_layernorm_2: RmsNorm,
}

#[derive(Debug, Clone)]
pub(super) struct LayerPle {
    pub(super) per_layer_input_gate: Linear,
    pub(super) per_layer_projection: Linear,
    pub(super) post_per_layer_input_norm: RmsNorm,
}

#[derive(Debug, Clone)]
pub(super) struct DecoderLayer {
    pub(super) attn: Attention,
    pub(super) mlp: Mlp,
    pub(super) input_layernorm: RmsNorm,
    pub(super) post_attention_layernorm: RmsNorm,
    pub(super) pre_feedforward_layernorm: RmsNorm,
    pub(super) post_feedforward_layernorm: RmsNorm,
    pub(super) moe: Option<MoeBlock>,
    pub(super) ple: Option<LayerPle>,
    pub(super) layer_scalar: Array,
    /// Tensor-parallel group: the attention and MLP outputs are partial sums to add up.
    pub(super) tp: Option<Arc<Group>>,
}

#[derive(Debug, Clone)]
pub(super) struct ModelPle {
    pub(super) embed_tokens_per_layer: Embedding,
    pub(super) per_layer_model_projection: Linear,
    pub(super) per_layer_projection_norm: RmsNorm,
    pub(super) width: i32,
}

impl Attention {
    /// Layer `i`'s attention from its `self_attn` weights (this rank's heads under `tp`).
    fn load(w: &Weights, cfg: &TextConfig, i: usize, tp: Option<&TensorParallel>) -> Result<Self> {
        let a = cfg.attention_shape(i);
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps as f32);
        let kv = |name: &str| -> Result<Linear> {
            let full = w.linear(name, h, a.n_kv_heads * a.head_dim)?;
            match tp {
                Some(tp) => tp.kv_proj(&full, &w.path(name), &a),
                None => Ok(full),
            }
        };
        let (k_proj, v_proj, k_norm) = if cfg.is_kv_shared(i) {
            (None, None, None)
        } else {
            let v_proj = if a.k_eq_v { None } else { Some(kv("v_proj")?) };
            let k_norm = w.rms_norm("k_norm", a.head_dim, eps)?;
            (Some(kv("k_proj")?), v_proj, Some(k_norm))
        };
        let q_proj = w.linear("q_proj", h, a.n_heads * a.head_dim)?;
        let o_proj = w.linear("o_proj", a.n_heads * a.head_dim, h)?;
        let (shape, q_proj, o_proj) = match tp {
            Some(tp) => (
                tp.local_shape(a),
                tp.q_proj(&q_proj, &w.path("q_proj"), &a)?,
                tp.o_proj(&o_proj, &w.path("o_proj"), &a)?,
            ),
            None => (a, q_proj, o_proj),
        };
        Ok(Attention {
            shape,
            q_proj,
            k_proj,
            v_proj,
            o_proj,
            q_norm: w.rms_norm("q_norm", a.head_dim, eps)?,
            k_norm,
            rope: rope(cfg, &a)?,
            eps,
        })
    }
}

/// The rotation of a layer of `a`'s type, as its `rope_parameters` entry says.
fn rope(cfg: &TextConfig, a: &AttentionShape) -> Result<Rope> {
    let rp = cfg.rope_for(a.layer_type);
    Ok(match rp.rope_type.as_str() {
        "proportional" => Rope::proportional(
            a.head_dim,
            rp.rope_theta,
            rp.partial_rotary_factor,
            rp.factor,
            cfg.rope_traditional,
        )?,
        "linear" => Rope::base(
            a.head_dim,
            rp.rope_theta,
            1.0 / rp.factor,
            cfg.rope_traditional,
        ),
        _ => Rope::base(a.head_dim, rp.rope_theta, 1.0, cfg.rope_traditional),
    })
}

impl MoeBlock {
    /// From a layer's weights: its router, experts (this rank's share under `tp`) and the
    /// MoE branch's norms.
    fn load(w: &Weights, cfg: &TextConfig, tp: Option<&TensorParallel>) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps as f32);
        let ne = cfg.num_experts.unwrap_or(0);
        let top_k = cfg.top_k_experts.unwrap_or(0);
        let inter = cfg.moe_intermediate_size.unwrap_or(0);
        let experts = Experts::load(&w.pp("experts"), h, inter, ne)?;
        Ok(MoeBlock {
            router: Router::load(&w.pp("router"), h, ne, top_k, eps)?,
            experts: match tp {
                Some(tp) => experts.sharded(tp, &w.path("experts"), ne)?,
                None => experts,
            },
            pre_feedforward_layernorm_2: w.rms_norm("pre_feedforward_layernorm_2", h, eps)?,
            post_feedforward_layernorm_1: w.rms_norm("post_feedforward_layernorm_1", h, eps)?,
            post_feedforward_layernorm_2: w.rms_norm("post_feedforward_layernorm_2", h, eps)?,
        })
    }
}

impl DecoderLayer {
    /// Layer `i` from its weights (`layers.{i}`).
    fn load(w: &Weights, cfg: &TextConfig, i: usize, tp: Option<&TensorParallel>) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps as f32);
        let pw = cfg.hidden_size_per_layer_input;
        let ple = if pw > 0 {
            Some(LayerPle {
                per_layer_input_gate: w.linear("per_layer_input_gate", h, pw)?,
                per_layer_projection: w.linear("per_layer_projection", pw, h)?,
                post_per_layer_input_norm: w.rms_norm("post_per_layer_input_norm", h, eps)?,
            })
        } else {
            None
        };
        Ok(DecoderLayer {
            attn: Attention::load(&w.pp("self_attn"), cfg, i, tp)?,
            mlp: Mlp::load(&w.pp("mlp"), h, cfg.mlp_width(i), tp)?,
            input_layernorm: w.rms_norm("input_layernorm", h, eps)?,
            post_attention_layernorm: w.rms_norm("post_attention_layernorm", h, eps)?,
            pre_feedforward_layernorm: w.rms_norm("pre_feedforward_layernorm", h, eps)?,
            post_feedforward_layernorm: w.rms_norm("post_feedforward_layernorm", h, eps)?,
            moe: cfg
                .enable_moe_block
                .then(|| MoeBlock::load(w, cfg, tp))
                .transpose()?,
            ple,
            layer_scalar: w.param("layer_scalar", &[1])?,
            tp: tp.map(|t| t.group().clone()),
        })
    }
}

impl ModelPle {
    /// The model-level per-layer-input weights of `layers` layers.
    fn load(w: &Weights, cfg: &TextConfig, layers: usize) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps as f32);
        let pw = cfg.hidden_size_per_layer_input;
        let all = layers as i32 * pw;
        Ok(ModelPle {
            embed_tokens_per_layer: w.embedding(
                "embed_tokens_per_layer",
                cfg.vocab_size_per_layer_input,
                all,
            )?,
            per_layer_model_projection: w.linear("per_layer_model_projection", h, all)?,
            per_layer_projection_norm: w.rms_norm("per_layer_projection_norm", pw, eps)?,
            width: pw,
        })
    }
}

/// The Gemma 4 language model (decoder + tied LM head).
#[derive(Debug, Clone)]
pub struct Gemma4Text {
    pub(super) cfg: TextConfig,
    pub(super) dtype: Dtype,
    pub(super) layer_types: Vec<LayerType>,
    pub(super) kv_source: Vec<usize>,
    pub(super) first_kv_shared: usize,
    pub(super) embed_tokens: Embedding,
    pub(super) layers: Vec<DecoderLayer>,
    pub(super) norm: RmsNorm,
    pub(super) ple: Option<ModelPle>,
    /// Token ids replaced by the pad id (0) in the PLE lookup of a prompt: image, audio, video.
    pub(super) multimodal_ids: Vec<i32>,
    /// The tensor-parallel group this rank's shard belongs to (`None`: the whole model).
    pub(super) group: Option<Arc<Group>>,
}

fn weight_prefix(ckpt: &Checkpoint) -> Result<&'static str> {
    for p in ["language_model.model.", "model.language_model.", "model."] {
        if ckpt.contains(&format!("{p}embed_tokens.weight")) {
            return Ok(p);
        }
    }
    Err(ModelError::MissingTensor {
        dir: ckpt.dir().to_path_buf(),
        name: "language_model.model.embed_tokens.weight".into(),
    })
}

impl Gemma4Text {
    /// Load the text decoder of a `gemma4` or `gemma4_text` checkpoint, casting every floating
    /// tensor (incl. quantization scales/biases) to `dtype` (float32, bfloat16 or float16).
    pub fn load(ckpt: &Checkpoint, dtype: Dtype) -> Result<Self> {
        let config = Config::from_checkpoint(ckpt)?;
        Self::load_with_config(ckpt, &config, dtype)
    }

    /// As [`Gemma4Text::load`] with an already parsed config.
    pub fn load_with_config(ckpt: &Checkpoint, config: &Config, dtype: Dtype) -> Result<Self> {
        Self::load_impl(ckpt, config, dtype, None)
    }

    /// This rank's shard for tensor parallelism over `group` (see [`super::tensor_parallel`]):
    /// its attention heads and MLP units, read straight from the checkpoint, plus the replicated
    /// parts. Every rank of the group must load the same checkpoint and run the same calls.
    pub fn load_tensor_parallel(
        ckpt: &Checkpoint,
        config: &Config,
        dtype: Dtype,
        group: Arc<Group>,
    ) -> Result<Self> {
        let tp = TensorParallel::new(ckpt, group, dtype);
        tp.check(&config.text, ckpt.config_path())?;
        Self::load_impl(ckpt, config, dtype, Some(&tp))
    }

    /// The tensor-parallel group this model is a shard of, if any.
    pub fn group(&self) -> Option<&Arc<Group>> {
        self.group.as_ref()
    }

    fn load_impl(
        ckpt: &Checkpoint,
        config: &Config,
        dtype: Dtype,
        tp: Option<&TensorParallel>,
    ) -> Result<Self> {
        crate::error::check_compute_dtype(dtype)?;
        let cfg = config.text.clone();
        let w = Weights::new(ckpt, weight_prefix(ckpt)?, dtype);
        let eps = cfg.rms_norm_eps as f32;
        let layer_types = cfg.layer_types();
        let n = layer_types.len();
        let layers = (0..n)
            .map(|i| DecoderLayer::load(&w.pp(format_args!("layers.{i}")), &cfg, i, tp))
            .collect::<Result<Vec<_>>>()?;
        let ple = (cfg.hidden_size_per_layer_input > 0)
            .then(|| ModelPle::load(&w, &cfg, n))
            .transpose()?;
        let embed_tokens = w.embedding("embed_tokens", cfg.vocab_size, cfg.hidden_size)?;
        let norm = w.rms_norm("norm", cfg.hidden_size, eps)?;
        let mut multimodal_ids = vec![];
        if let Some(t) = &config.tokens {
            multimodal_ids.push(t.image_token_id);
            multimodal_ids.push(t.audio_token_id);
            if let Some(v) = t.video_token_id {
                multimodal_ids.push(v);
            }
        }
        let model = Gemma4Text {
            kv_source: cfg.kv_source_layers(),
            first_kv_shared: cfg.first_kv_shared_layer().clamp(0, n as i32) as usize,
            cfg,
            dtype,
            layer_types,
            embed_tokens,
            layers,
            norm,
            ple,
            multimodal_ids,
            group: tp.map(|t| t.group().clone()),
        };
        mlx_rs::transforms::eval(model.arrays())?;
        Ok(model)
    }

    fn arrays(&self) -> Vec<&Array> {
        let mut v = self.embed_tokens.arrays();
        v.push(&self.norm.weight);
        if let Some(p) = &self.ple {
            v.extend(p.embed_tokens_per_layer.arrays());
            v.extend(p.per_layer_model_projection.arrays());
            v.push(&p.per_layer_projection_norm.weight);
        }
        for l in &self.layers {
            let a = &l.attn;
            v.extend(a.q_proj.arrays());
            v.extend(a.o_proj.arrays());
            for x in [&a.k_proj, &a.v_proj].into_iter().flatten() {
                v.extend(x.arrays());
            }
            v.push(&a.q_norm.weight);
            if let Some(k) = &a.k_norm {
                v.push(&k.weight);
            }
            if let Rope::Freqs { freqs, .. } = &a.rope {
                v.push(freqs);
            }
            v.extend(l.mlp.arrays());
            for nrm in [
                &l.input_layernorm,
                &l.post_attention_layernorm,
                &l.pre_feedforward_layernorm,
                &l.post_feedforward_layernorm,
            ] {
                v.push(&nrm.weight);
            }
            if let Some(m) = &l.moe {
                v.extend(m.router.arrays());
                v.extend(m.experts.arrays());
                v.push(&m.pre_feedforward_layernorm_2.weight);
                v.push(&m.post_feedforward_layernorm_1.weight);
                v.push(&m.post_feedforward_layernorm_2.weight);
            }
            if let Some(p) = &l.ple {
                v.extend(p.per_layer_input_gate.arrays());
                v.extend(p.per_layer_projection.arrays());
                v.push(&p.post_per_layer_input_norm.weight);
            }
            v.push(&l.layer_scalar);
        }
        v
    }

    /// Bytes of every weight this process holds (a tensor-parallel rank: its shard plus the
    /// replicated parts).
    pub fn weight_bytes(&self) -> usize {
        self.arrays().iter().map(|a| a.nbytes()).sum()
    }

    /// The text config.
    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// The compute dtype.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// One cache per non-shared layer: rotating (window `sliding_window`) for sliding layers,
    /// growing for full layers.
    pub fn make_cache(&self) -> Vec<LayerCache> {
        self.layer_types[..self.first_kv_shared]
            .iter()
            .map(|lt| match lt {
                LayerType::Full => LayerCache::Full(KvCache::new()),
                LayerType::Sliding => {
                    LayerCache::Sliding(RotatingKvCache::new(self.cfg.sliding_window))
                }
            })
            .collect()
    }

    /// Scaled token embeddings `embed_tokens[ids] * sqrt(H)` (the scale rounded to the compute dtype).
    pub fn embed(&self, ids: &Array) -> Result<Array> {
        let e = self.embed_tokens.lookup(ids)?;
        Ok(e.multiply(scalar((self.cfg.hidden_size as f64).sqrt(), self.dtype)?)?)
    }

    /// PLE models: the token part of the per-layer inputs for a prompt, with image/audio/video
    /// token ids replaced by the pad id 0 (mlx-vlm `get_input_embeddings`). `None` otherwise.
    pub fn prompt_per_layer_inputs(&self, ids: &Array) -> Result<Option<Array>> {
        if self.ple.is_none() {
            return Ok(None);
        }
        let mut text_mask: Option<Array> = None;
        for &t in &self.multimodal_ids {
            let m = ids.eq(Array::from_int(t))?;
            text_mask = Some(match text_mask {
                None => m,
                Some(prev) => logical_or(&prev, &m)?,
            });
        }
        let masked = match text_mask {
            Some(mm) => select(logical_not(&mm)?, ids, zeros_like(ids)?)?,
            None => ids.clone(),
        };
        self.per_layer_inputs(&masked).map(Some)
    }

    /// `embed_tokens_per_layer[ids] * sqrt(P)` reshaped to `[B, L, NL, P]` (no multimodal masking).
    fn per_layer_inputs(&self, ids: &Array) -> Result<Array> {
        let p = self.ple.as_ref().expect("PLE model");
        let e = p.embed_tokens_per_layer.lookup(ids)?;
        let e = e.multiply(scalar((p.width as f64).sqrt(), self.dtype)?)?;
        let mut shape = ids.shape().to_vec();
        shape.push(self.layers.len() as i32);
        shape.push(p.width);
        Ok(e.reshape(&shape)?)
    }

    fn project_per_layer_inputs(&self, h: &Array, tokens: Option<&Array>) -> Result<Array> {
        let p = self.ple.as_ref().expect("PLE model");
        let proj = p.per_layer_model_projection.forward(h)?;
        let proj = proj.multiply(scalar(
            (self.cfg.hidden_size as f64).powf(-0.5),
            self.dtype,
        )?)?;
        let mut shape = h.shape()[..h.ndim() - 1].to_vec();
        shape.push(self.layers.len() as i32);
        shape.push(p.width);
        let proj = p
            .per_layer_projection_norm
            .forward(&proj.reshape(&shape)?)?;
        match tokens {
            None => Ok(proj),
            Some(t) => Ok(proj
                .add(t)?
                .multiply(scalar(2f64.powf(-0.5), self.dtype)?)?),
        }
    }

    /// A prompt forward as `mlx_vlm`'s model call does it: embeddings from `ids` unless `embeds`
    /// is given, PLE token inputs from `ids` with multimodal ids masked, one pass, no chunking.
    pub fn forward(
        &self,
        ids: &Array,
        embeds: Option<&Array>,
        mm_token_type_ids: Option<&Array>,
        cache: &mut [LayerCache],
        logits: Logits,
    ) -> Result<Array> {
        let pli = self.prompt_per_layer_inputs(ids)?;
        let input = TextInput {
            ids: Some(ids),
            embeds,
            per_layer_inputs: pli.as_ref(),
            mm_token_type_ids,
        };
        Ok(self
            .run(input, cache, Some(logits))?
            .expect("logits requested"))
    }

    /// The general forward pass (mlx-vlm `LanguageModel.__call__`).
    pub fn forward_input(
        &self,
        input: TextInput<'_>,
        cache: &mut [LayerCache],
        logits: Logits,
    ) -> Result<Array> {
        Ok(self
            .run(input, cache, Some(logits))?
            .expect("logits requested"))
    }

    /// One decode step on `token [B, 1]` (mlx-vlm's decode loop: PLE from the raw id, no mask).
    pub fn decode_step(&self, token: &Array, cache: &mut [LayerCache]) -> Result<Array> {
        let input = TextInput {
            ids: Some(token),
            ..Default::default()
        };
        let l = self
            .run(input, cache, Some(Logits::Last))?
            .expect("logits requested");
        Ok(l.index((.., -1, ..)))
    }

    /// Prompt processing as `mlx_vlm.generate` does it; returns the logits `[B, V]` of the last
    /// prompt position (the first sampling step).
    ///
    /// With `prefill_step_size = Some(n)` and chunking allowed, all but the last prompt token go
    /// through the model in chunks of at most `n` (only the caches are evaluated), then the last
    /// token is run alone. Chunking is disabled (one pass over the whole prompt) when `None`, or
    /// when the model uses the bidirectional vision overlay and the prompt has image/video tokens
    /// but no audio tokens (mlx-vlm `chunked_prefill_policy`).
    pub fn prefill(
        &self,
        ids: &Array,
        embeds: Option<&Array>,
        mm_token_type_ids: Option<&Array>,
        cache: &mut [LayerCache],
        prefill_step_size: Option<i32>,
    ) -> Result<Array> {
        self.check_prompt(ids, embeds, mm_token_type_ids)?;
        let embeds = match embeds {
            Some(e) => e.clone(),
            None => self.embed(ids)?,
        };
        let pli = self.prompt_per_layer_inputs(ids)?;
        let t = ids.dim(1);
        let mut chunk = prefill_step_size;
        if let (Some(mm), true) = (
            mm_token_type_ids,
            self.cfg.use_bidirectional_attention.as_deref() == Some("vision"),
        ) {
            let types: Vec<i32> = mm.as_dtype(Dtype::Int32)?.as_slice::<i32>().to_vec();
            let visual = types.iter().any(|&x| x == 1 || x == 2);
            let audio = types.contains(&3);
            if visual && !audio {
                chunk = None;
            }
        }
        let mut start = 0;
        if let Some(step) = chunk {
            if step <= 0 {
                return Err(ModelError::Input(format!(
                    "prefill_step_size must be positive, got {step}"
                )));
            }
            while t - start > 1 {
                let n = step.min(t - start - 1);
                let ids_c = ids.index((.., start..start + n));
                let emb_c = embeds.index((.., start..start + n, ..));
                let pli_c = pli.as_ref().map(|p| p.index((.., start..start + n)));
                let input = TextInput {
                    ids: Some(&ids_c),
                    embeds: Some(&emb_c),
                    per_layer_inputs: pli_c.as_ref(),
                    mm_token_type_ids,
                };
                self.run(input, cache, None)?;
                eval_caches(cache)?;
                start += n;
            }
        }
        let ids_r = ids.index((.., start..));
        let emb_r = embeds.index((.., start.., ..));
        let pli_r = pli.as_ref().map(|p| p.index((.., start..)));
        let input = TextInput {
            ids: Some(&ids_r),
            embeds: Some(&emb_r),
            per_layer_inputs: pli_r.as_ref(),
            mm_token_type_ids,
        };
        let l = self
            .run(input, cache, Some(Logits::Last))?
            .expect("logits requested");
        Ok(l.index((.., -1, ..)))
    }

    /// Prompt arguments: `ids [B, L]` integer ids within the vocabulary (read on the host: an
    /// out-of-range id would index outside the embedding tables), `embeds [B, L, H]`,
    /// `mm_token_type_ids [B, L]`.
    fn check_prompt(&self, ids: &Array, embeds: Option<&Array>, mm: Option<&Array>) -> Result<()> {
        if ids.ndim() != 2 || ids.dim(1) == 0 {
            return Err(ModelError::Input(format!(
                "ids must be [B, L] with L > 0, got {:?}",
                ids.shape()
            )));
        }
        if !matches!(
            ids.dtype(),
            Dtype::Int32
                | Dtype::Int64
                | Dtype::Uint32
                | Dtype::Int16
                | Dtype::Uint16
                | Dtype::Int8
                | Dtype::Uint8
        ) {
            return Err(ModelError::Input(format!(
                "ids must be integers, got {:?}",
                ids.dtype()
            )));
        }
        let mut limit = self.cfg.vocab_size;
        if self.ple.is_some() {
            limit = limit.min(self.cfg.vocab_size_per_layer_input);
        }
        let host = ids.as_dtype(Dtype::Int64)?;
        if let Some(bad) = host
            .as_slice::<i64>()
            .iter()
            .find(|&&x| x < 0 || x >= limit as i64)
        {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary [0, {limit})"
            )));
        }
        if let Some(e) = embeds {
            if e.ndim() != 3
                || e.shape()[..2] != ids.shape()[..]
                || e.dim(2) != self.cfg.hidden_size
            {
                return Err(ModelError::Input(format!(
                    "embeddings {:?} do not match ids {:?} and hidden size {}",
                    e.shape(),
                    ids.shape(),
                    self.cfg.hidden_size
                )));
            }
        }
        if let Some(m) = mm {
            if m.shape() != ids.shape() {
                return Err(ModelError::Input(format!(
                    "mm_token_type_ids {:?} do not match ids {:?}",
                    m.shape(),
                    ids.shape()
                )));
            }
        }
        Ok(())
    }

    fn run(
        &self,
        input: TextInput<'_>,
        cache: &mut [LayerCache],
        logits: Option<Logits>,
    ) -> Result<Option<Array>> {
        if cache.len() != self.first_kv_shared {
            return Err(ModelError::Input(format!(
                "cache has {} entries, the model needs {} (use make_cache)",
                cache.len(),
                self.first_kv_shared
            )));
        }
        let mut h = match (input.embeds, input.ids) {
            (Some(e), _) => e.clone(),
            (None, Some(ids)) => self.embed(ids)?,
            (None, None) => {
                return Err(ModelError::Input("forward needs ids or embeddings".into()))
            }
        };
        if h.ndim() != 3 || h.dim(2) != self.cfg.hidden_size {
            return Err(ModelError::Input(format!(
                "embeddings must be [B, L, {}], got {:?}",
                self.cfg.hidden_size,
                h.shape()
            )));
        }
        let l = h.dim(1);

        // Per-layer inputs (PLE models).
        let mut ple: Option<Array> = None;
        if self.ple.is_some() {
            let tokens = match (input.per_layer_inputs, input.ids) {
                (Some(p), _) => {
                    if p.dim(1) != l {
                        let off = cache.first().map(LayerCache::offset).unwrap_or(0);
                        let max_start = (p.dim(1) - l).max(0);
                        let s = off.min(max_start);
                        Some(p.index((.., s..s + l)))
                    } else {
                        Some(p.clone())
                    }
                }
                (None, Some(ids)) => Some(self.per_layer_inputs(ids)?),
                (None, None) => None,
            };
            if let Some(t) = tokens {
                ple = Some(self.project_per_layer_inputs(&h, Some(&t))?);
            }
        }

        let masks = self.make_masks(l, cache, input.mm_token_type_ids)?;

        let keep = match logits {
            Some(Logits::Last) => 1,
            _ => 0,
        };
        let n_layers = if logits.is_none() {
            self.first_kv_shared
        } else {
            self.layers.len()
        };
        let mut kvs: Vec<Option<(Array, Array, i32)>> = vec![None; self.layers.len()];
        let mut trimmed_prefix = 0;
        let mut pacer = PrefillPacer::new(l)?;
        for idx in 0..n_layers {
            let layer = &self.layers[idx];
            if keep > 0 && keep < h.dim(1) && idx == self.first_kv_shared {
                trimmed_prefix = h.dim(1) - keep;
                h = h.index((.., -keep.., ..));
            }
            let cur = h.dim(1);
            let mut mask = masks[idx].clone();
            if let Mask::Array(m) = &mask {
                if m.dim(-2) != cur {
                    mask = Mask::Array(m.index((Ellipsis, -cur.., ..)));
                }
            }
            let pli = ple.as_ref().map(|p| {
                let p = p.index((.., .., idx as i32, ..));
                if p.dim(1) != cur {
                    p.index((.., -cur.., ..))
                } else {
                    p
                }
            });
            let shared = if self.kv_source[idx] != idx {
                let (k, v, off) = kvs[self.kv_source[idx]].clone().ok_or_else(|| {
                    ModelError::Input(format!(
                        "layer {idx} shares K/V with a layer that did not run"
                    ))
                })?;
                Some((k, v, off + trimmed_prefix))
            } else {
                None
            };
            let c = if idx < self.first_kv_shared {
                Some(&mut cache[idx])
            } else {
                None
            };
            let (out, kv) = layer.forward(&h, &mask, c, pli.as_ref(), shared, &mut pacer)?;
            h = out;
            kvs[idx] = Some(kv);
            pacer.step(&h)?;
        }
        let Some(mode) = logits else {
            return Ok(None);
        };
        let mut h = self.norm.forward(&h)?;
        if mode == Logits::Last && h.dim(1) > 1 {
            h = h.index((.., -1.., ..));
        }
        let mut out = self.embed_tokens.as_linear(&h)?;
        if let Some(c) = self.cfg.final_logit_softcapping {
            out = softcap(&out, c)?;
        }
        Ok(Some(out))
    }

    /// One mask per layer, computed once per layer type from the first cache of that type
    /// (mlx-vlm `_make_masks`).
    fn make_masks(&self, l: i32, cache: &[LayerCache], mm: Option<&Array>) -> Result<Vec<Mask>> {
        let mm_types: Option<Vec<i32>> = match mm {
            Some(m) => Some(m.as_dtype(Dtype::Int32)?.as_slice::<i32>().to_vec()),
            None => None,
        };
        let has_visual = mm_types
            .as_ref()
            .is_some_and(|t| t.iter().any(|&x| x == 1 || x == 2));
        // mlx-vlm applies the image-block overlay on sliding AND full layers (transformers only
        // on sliding layers, inside the window); we follow mlx-vlm.
        let bidir = self.cfg.use_bidirectional_attention.as_deref() == Some("vision")
            && has_visual
            && l > 1;
        let mut sliding: Option<Mask> = None;
        let mut full: Option<Mask> = None;
        let mut out = Vec::with_capacity(self.layers.len());
        for (i, lt) in self.layer_types.iter().enumerate() {
            let slot = match lt {
                LayerType::Sliding => &mut sliding,
                LayerType::Full => &mut full,
            };
            if slot.is_none() {
                let c = cache.get(i);
                let offset = c.map(LayerCache::offset).unwrap_or(0);
                let mut m = match lt {
                    LayerType::Full => {
                        if l == 1 {
                            Mask::None
                        } else if bidir {
                            Mask::Array(causal_mask(l, offset, None)?)
                        } else {
                            Mask::Causal
                        }
                    }
                    LayerType::Sliding => {
                        let window = self.cfg.sliding_window;
                        let return_array = (l > 1 && offset > 0) || bidir;
                        if l > 1 {
                            let max_size = match c {
                                Some(LayerCache::Sliding(r)) => r.max_size(),
                                _ => window,
                            };
                            let off = (max_size - 1).min(offset);
                            if off + l > window || return_array {
                                Mask::Array(causal_mask(l, off, Some(window))?)
                            } else {
                                Mask::Causal
                            }
                        } else {
                            Mask::None
                        }
                    }
                };
                if bidir {
                    if let (Mask::Array(base), Some(mm)) = (&m, mm) {
                        if mm.dim(1) == base.dim(-1) && base.dim(-2) == base.dim(-1) {
                            m = Mask::Array(bidirectional_overlay(base, mm)?);
                        }
                    }
                }
                *slot = Some(m);
            }
            out.push(slot.clone().unwrap());
        }
        Ok(out)
    }
}

/// `base | same_image_block` where contiguous runs of image/video tokens (types 1/2) form blocks.
fn bidirectional_overlay(base: &Array, mm: &Array) -> Result<Array> {
    let is_vision = logical_or(mm.eq(Array::from_int(1))?, mm.eq(Array::from_int(2))?)?;
    let prev = concatenate(
        &[
            zeros_like(is_vision.index((.., ..1)))?,
            is_vision.index((.., ..-1)),
        ],
        1,
    )?;
    let starts = logical_and(&is_vision, logical_not(&prev)?)?;
    let group =
        cumsum(starts.as_dtype(Dtype::Int32)?, 1, None, None)?.subtract(Array::from_int(1))?;
    let block = select(
        &is_vision,
        &group,
        zeros_like(&group)?.subtract(Array::from_int(1))?,
    )?;
    let q = expand_dims(&block, -1)?;
    let k = expand_dims(&block, -2)?;
    let same = logical_and(q.ne(Array::from_int(-1))?, q.eq(&k)?)?;
    Ok(logical_or(base, expand_dims(&same, 1)?)?)
}

impl Attention {
    /// Returns the projected output and the (keys, values, rope offset) used.
    fn forward(
        &self,
        x: &Array,
        mask: &Mask,
        cache: Option<&mut LayerCache>,
        shared: Option<(Array, Array, i32)>,
    ) -> Result<(Array, (Array, Array, i32))> {
        let (b, l) = (x.dim(0), x.dim(1));
        let a = self.shape;
        let q = self
            .q_proj
            .forward(x)?
            .reshape(&[b, l, a.n_heads, a.head_dim])?;
        let q = self.q_norm.forward(&q)?;
        let (keys, values, offset) = match shared {
            Some(kv) => kv,
            None => {
                let (k_proj, k_norm) = match (&self.k_proj, &self.k_norm) {
                    (Some(p), Some(n)) => (p, n),
                    _ => {
                        return Err(ModelError::Input(
                            "KV-shared layer without shared K/V".into(),
                        ))
                    }
                };
                let cache = cache
                    .ok_or_else(|| ModelError::Input("missing cache for a decoder layer".into()))?;
                let k = k_proj
                    .forward(x)?
                    .reshape(&[b, l, a.n_kv_heads, a.head_dim])?;
                let v = match &self.v_proj {
                    Some(vp) => vp.forward(x)?.reshape(&[b, l, a.n_kv_heads, a.head_dim])?,
                    None => k.clone(), // k_eq_v: values from the raw K projection
                };
                let offset = cache.offset();
                let k = k_norm.forward(&k)?.transpose_axes(&[0, 2, 1, 3])?;
                let k = self.rope.apply(&k, offset)?;
                let v = rms_norm_no_scale(&v, self.eps)?.transpose_axes(&[0, 2, 1, 3])?;
                let (k, v) = cache.update_and_fetch(&k, &v)?;
                (k, v, offset)
            }
        };
        let q = q.transpose_axes(&[0, 2, 1, 3])?;
        let q = self.rope.apply(&q, offset)?;
        let o = sdpa(&q, &keys, &values, 1.0, mask)?;
        let o = o.transpose_axes(&[0, 2, 1, 3])?.reshape(&[b, l, -1])?;
        Ok((self.o_proj.forward(&o)?, (keys, values, offset)))
    }
}

impl DecoderLayer {
    /// Tensor parallel: adds up the ranks' partial outputs of a row-parallel projection.
    fn all_sum(&self, partial: Array) -> Result<Array> {
        match &self.tp {
            Some(g) => Ok(g.all_sum(&partial)?),
            None => Ok(partial),
        }
    }

    fn forward(
        &self,
        x: &Array,
        mask: &Mask,
        cache: Option<&mut LayerCache>,
        per_layer_input: Option<&Array>,
        shared: Option<(Array, Array, i32)>,
        pacer: &mut PrefillPacer,
    ) -> Result<(Array, (Array, Array, i32))> {
        let h = self.input_layernorm.forward(x)?;
        let (h, kv) = self.attn.forward(&h, mask, cache, shared)?;
        let h = self.all_sum(h)?;
        let h = self.post_attention_layernorm.forward(&h)?;
        let h = x.add(&h)?;
        pacer.step(&h)?;
        let residual = h.clone();
        let m = match &self.moe {
            Some(moe) => {
                let h1 = self.pre_feedforward_layernorm.forward(&h)?;
                let h1 = self.all_sum(self.mlp.forward(&h1, pacer)?)?;
                let h1 = moe.post_feedforward_layernorm_1.forward(&h1)?;
                let (idx, w) = moe.router.forward(&h)?;
                let h2 = moe.pre_feedforward_layernorm_2.forward(&h)?;
                let h2 = self.all_sum(moe.experts.forward(&h2, &idx, &w)?)?;
                let h2 = moe.post_feedforward_layernorm_2.forward(&h2)?;
                h1.add(&h2)?
            }
            None => {
                let h1 = self.pre_feedforward_layernorm.forward(&h)?;
                self.all_sum(self.mlp.forward(&h1, pacer)?)?
            }
        };
        let m = self.post_feedforward_layernorm.forward(&m)?;
        let mut h = residual.add(&m)?;
        if let (Some(p), Some(pli)) = (&self.ple, per_layer_input) {
            let g = p.per_layer_input_gate.forward(&h)?;
            let g = geglu(&g, pli)?;
            let g = p.per_layer_projection.forward(&g)?;
            let g = p.post_per_layer_input_norm.forward(&g)?;
            h = h.add(&g)?;
        }
        let h = h.multiply(&self.layer_scalar)?;
        Ok((h, kv))
    }
}

/// Overwrite, in order, the rows of `embeds [B, L, H]` where `ids == token_id` with the rows of
/// `features [.., N, H]` (mlx-vlm `masked_scatter`; features are cast to the embeddings' dtype).
pub fn merge_token_features(
    embeds: &Array,
    ids: &Array,
    token_id: i32,
    features: &Array,
) -> Result<Array> {
    let features = features.as_dtype(embeds.dtype())?;
    let mask = ids.eq(Array::from_int(token_id))?;
    let mask = mlx_rs::ops::broadcast_to(expand_dims(&mask, -1)?, embeds.shape())?;
    let mask_flat = mask.flatten(None, None)?.as_dtype(Dtype::Int32)?;
    let idx = cumsum(&mask_flat, None, None, None)?.subtract(Array::from_int(1))?;
    let src = features.flatten(None, None)?;
    let n = src.size() as i32;
    let aligned = src.take_axis(idx.remainder(Array::from_int(n))?, 0)?;
    let out = select(&mask_flat, &aligned, embeds.flatten(None, None)?)?;
    Ok(out.reshape(embeds.shape())?)
}
