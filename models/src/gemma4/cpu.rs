//! The dense Gemma 4 text decoder run as one forward pass on the CPU, outside MLX's graph, as
//! [`crate::gemma3::cpu`] runs Gemma 3 (same reasons, same kernels): per-layer inputs (PLE), KV
//! sharing, sliding and full layers with their own head sizes and RoPE, `k_eq_v`, the value norm,
//! `layer_scalar`, the soft-capped tied head. Text prompts only (an image prompt runs MLX's graph);
//! mixture-of-experts and tensor-parallel models stay on MLX's graph.

use super::config::LayerType;
use super::text::Gemma4Text;
use crate::error::{ModelError, Result};
use crate::kernels::cpu::floats;
use crate::kernels::cpu_layers::{add_normed, logits, GegluMlp};
use crate::kernels::cpu_ops::{
    add, attention, gelu_tanh_mul, rms_norm, rms_norm_unscaled, rms_normed, rope,
    rope_inverse_frequencies, KvCache,
};
use crate::kernels::cpu_quant::CpuMatrix;
use crate::nn::Rope;
use crate::quantized::Linear;

struct Layer {
    q: CpuMatrix,
    /// `None` on layers that read another layer's keys and values.
    k: Option<CpuMatrix>,
    /// `None` on shared layers and with `k_eq_v` (values from the raw K projection).
    v: Option<CpuMatrix>,
    o: CpuMatrix,
    mlp: GegluMlp,
    q_norm: Vec<f32>,
    k_norm: Option<Vec<f32>>,
    input_norm: Vec<f32>,
    post_attention_norm: Vec<f32>,
    pre_feedforward_norm: Vec<f32>,
    post_feedforward_norm: Vec<f32>,
    ple: Option<LayerPle>,
    scalar: f32,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rope: Vec<f32>,
    rope_scale: f32,
    /// `None` for full layers.
    window: Option<usize>,
    /// The layer whose cache this one reads (itself unless shared).
    kv_source: usize,
}

struct LayerPle {
    gate: CpuMatrix,
    projection: CpuMatrix,
    norm: Vec<f32>,
}

struct ModelPle {
    table: CpuMatrix,
    projection: CpuMatrix,
    norm: Vec<f32>,
    width: usize,
}

/// The float32 dense Gemma 4 text model on the CPU.
pub struct CpuGemma4 {
    embed: CpuMatrix,
    embed_scale: f32,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    ple: Option<ModelPle>,
    multimodal_ids: Vec<i32>,
    first_kv_shared: usize,
    softcap: Option<f32>,
    eps: f32,
    hidden: usize,
}

fn matrix(l: &Linear, what: &str) -> Result<CpuMatrix> {
    l.cpu_matrix()
        .map_err(|why| ModelError::Input(format!("{what}: the CPU decoder takes {why}")))
}

/// RoPE's inverse frequencies and position scale (MLX `fast.rope`'s, rotate-half).
fn rope_of(r: &Rope, what: &str) -> Result<(Vec<f32>, f32)> {
    match r {
        Rope::Base {
            dims,
            base,
            scale,
            traditional: false,
        } => Ok((rope_inverse_frequencies(*dims as usize, *base), *scale)),
        Rope::Freqs {
            freqs,
            traditional: false,
            ..
        } => Ok((floats(freqs)?.iter().map(|f| 1.0 / f).collect(), 1.0)),
        Rope::Identity => Ok((Vec::new(), 1.0)),
        _ => Err(ModelError::Input(format!(
            "{what}: the CPU decoder takes rotate-half RoPE"
        ))),
    }
}

impl CpuGemma4 {
    /// The CPU form of a float32 dense `model`; an error names what it cannot take.
    pub fn new(model: &Gemma4Text) -> Result<Self> {
        if model.group.is_some() {
            return Err(ModelError::Input(
                "the CPU decoder does not run tensor-parallel shards".into(),
            ));
        }
        let cfg = model.config();
        let mut layers = Vec::with_capacity(model.layers.len());
        for (i, l) in model.layers.iter().enumerate() {
            if l.moe.is_some() {
                return Err(ModelError::Input(
                    "the CPU decoder does not run mixture-of-experts layers".into(),
                ));
            }
            let a = &l.attn;
            let what = |name: &str| format!("layer {i} {name}");
            let (rope, rope_scale) = rope_of(&a.rope, &what("rope"))?;
            layers.push(Layer {
                q: matrix(&a.q_proj, &what("q_proj"))?,
                k: a.k_proj
                    .as_ref()
                    .map(|k| matrix(k, &what("k_proj")))
                    .transpose()?,
                v: a.v_proj
                    .as_ref()
                    .map(|v| matrix(v, &what("v_proj")))
                    .transpose()?,
                o: matrix(&a.o_proj, &what("o_proj"))?,
                mlp: GegluMlp {
                    gate: matrix(&l.mlp.gate_proj, &what("gate_proj"))?,
                    up: matrix(&l.mlp.up_proj, &what("up_proj"))?,
                    down: matrix(&l.mlp.down_proj, &what("down_proj"))?,
                },
                q_norm: floats(&a.q_norm.weight)?,
                k_norm: a.k_norm.as_ref().map(|n| floats(&n.weight)).transpose()?,
                input_norm: floats(&l.input_layernorm.weight)?,
                post_attention_norm: floats(&l.post_attention_layernorm.weight)?,
                pre_feedforward_norm: floats(&l.pre_feedforward_layernorm.weight)?,
                post_feedforward_norm: floats(&l.post_feedforward_layernorm.weight)?,
                ple: match &l.ple {
                    Some(p) => Some(LayerPle {
                        gate: matrix(&p.per_layer_input_gate, &what("per_layer_input_gate"))?,
                        projection: matrix(&p.per_layer_projection, &what("per_layer_projection"))?,
                        norm: floats(&p.post_per_layer_input_norm.weight)?,
                    }),
                    None => None,
                },
                scalar: floats(&l.layer_scalar)?[0],
                heads: a.shape.n_heads as usize,
                kv_heads: a.shape.n_kv_heads as usize,
                head_dim: a.shape.head_dim as usize,
                rope,
                rope_scale,
                window: (a.shape.layer_type == LayerType::Sliding)
                    .then_some(cfg.sliding_window as usize),
                kv_source: model.kv_source[i],
            });
        }
        let ple = match &model.ple {
            Some(p) => Some(ModelPle {
                table: p
                    .embed_tokens_per_layer
                    .cpu_matrix()
                    .map_err(|why| ModelError::Input(format!("embed_tokens_per_layer: {why}")))?,
                projection: matrix(&p.per_layer_model_projection, "per_layer_model_projection")?,
                norm: floats(&p.per_layer_projection_norm.weight)?,
                width: p.width as usize,
            }),
            None => None,
        };
        let embed = model
            .embed_tokens
            .cpu_matrix()
            .map_err(|why| ModelError::Input(format!("embed_tokens: {why}")))?;
        Ok(CpuGemma4 {
            embed,
            // `scalar(sqrt(H), dtype)`: the value rounded to float32.
            embed_scale: (cfg.hidden_size as f64).sqrt() as f32,
            layers,
            norm: floats(&model.norm.weight)?,
            ple,
            multimodal_ids: model.multimodal_ids.clone(),
            first_kv_shared: model.first_kv_shared,
            softcap: cfg.final_logit_softcapping.map(|c| c as f32),
            eps: cfg.rms_norm_eps as f32,
            hidden: cfg.hidden_size as usize,
        })
    }

    /// Rows of the embedding table (token ids are below this).
    pub fn vocab(&self) -> usize {
        self.embed.rows()
    }

    /// An empty cache for one sequence.
    pub fn make_cache(&self) -> KvCache {
        KvCache::new(self.first_kv_shared)
    }

    /// The per-layer inputs of `ids` (`[l, layers * width]`): the table's rows times
    /// `sqrt(width)`, added to the normed projection of `h` times `hidden^-0.5`, times
    /// `2^-0.5` (mlx-vlm's `project_per_layer_inputs`). A prompt looks up image, audio and
    /// video ids as the pad id 0, a decode step its raw id.
    fn per_layer_inputs(&self, p: &ModelPle, ids: &[u32], h: &[f32], prompt: bool) -> Vec<f32> {
        let (l, n) = (ids.len(), p.table.inputs());
        let mut tokens = vec![0f32; l * n];
        let table_scale = (p.width as f64).sqrt() as f32;
        for (row, &id) in tokens.chunks_exact_mut(n).zip(ids) {
            let id = if prompt && self.multimodal_ids.contains(&(id as i32)) {
                0
            } else {
                id as usize
            };
            p.table.row(id, row);
            row.iter_mut().for_each(|v| *v *= table_scale);
        }
        let mut proj = p.projection.matmul_t(h, l);
        let proj_scale = (self.hidden as f64).powf(-0.5) as f32;
        proj.iter_mut().for_each(|v| *v *= proj_scale);
        rms_norm(&mut proj, &p.norm, self.eps);
        let half = 2f64.powf(-0.5) as f32;
        for (v, t) in proj.iter_mut().zip(&tokens) {
            *v = (*v + t) * half;
        }
        proj
    }

    /// Runs the next tokens `ids` of the sequence (`prompt`: they are a prompt's), appending to
    /// `cache`; returns the logits of the last one.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache, prompt: bool) -> Vec<f32> {
        let (mut l, d) = (ids.len(), self.hidden);
        let offset = cache.len;
        let mut h = vec![0f32; l * d];
        for (row, &id) in h.chunks_exact_mut(d).zip(ids) {
            self.embed.row(id as usize, row);
            row.iter_mut().for_each(|v| *v *= self.embed_scale);
        }
        let mut ple = self
            .ple
            .as_ref()
            .map(|p| self.per_layer_inputs(p, ids, &h, prompt));
        for (i, layer) in self.layers.iter().enumerate() {
            // Layers from the first shared one on write no cache: only the last position's
            // output is needed (mlx-vlm trims there too).
            if i == self.first_kv_shared && l > 1 {
                h.drain(..(l - 1) * d);
                if let Some(p) = ple.as_mut() {
                    let w = p.len() / l;
                    p.drain(..(l - 1) * w);
                }
                l = 1;
            }
            let (hd, keys_so_far) = (layer.head_dim, offset + ids.len());
            let x = rms_normed(&h, &layer.input_norm, self.eps);
            // The layer's projections of `x` in one parallel loop: q, then k and v where the
            // layer has its own cache (v is k where the checkpoint ties them).
            let mut projections = match &layer.k {
                Some(kp) => {
                    let mut matrices = vec![&layer.q, kp];
                    matrices.extend(&layer.v);
                    CpuMatrix::matmul_t_each(&matrices, &x, l)
                }
                None => vec![layer.q.matmul_t(&x, l)],
            }
            .into_iter();
            let mut q = projections.next().expect("the query projection");
            rms_norm(&mut q, &layer.q_norm, self.eps);
            rope(
                &mut q,
                layer.heads,
                hd,
                &layer.rope,
                layer.rope_scale,
                offset + ids.len() - l,
            );
            if let (Some(mut k), Some(k_norm)) = (projections.next(), &layer.k_norm) {
                let mut v = projections.next().unwrap_or_else(|| k.clone());
                rms_norm(&mut k, k_norm, self.eps);
                rope(
                    &mut k,
                    layer.kv_heads,
                    hd,
                    &layer.rope,
                    layer.rope_scale,
                    offset,
                );
                rms_norm_unscaled(&mut v, hd, self.eps);
                cache.keys[i].extend_from_slice(&k);
                cache.values[i].extend_from_slice(&v);
            }
            let s = layer.kv_source;
            let o = attention(
                &q,
                &cache.keys[s],
                &cache.values[s],
                l,
                keys_so_far,
                layer.heads,
                layer.kv_heads,
                hd,
                1.0,
                layer.window,
            );
            let r = layer.o.matmul_t(&o, l);
            add_normed(&mut h, r, &layer.post_attention_norm, self.eps);
            let y = rms_normed(&h, &layer.pre_feedforward_norm, self.eps);
            let r = layer.mlp.forward(&y, l);
            add_normed(&mut h, r, &layer.post_feedforward_norm, self.eps);
            if let (Some(lp), Some(p), Some(model)) = (&layer.ple, &ple, &self.ple) {
                let (w, n) = (model.width, p.len() / l);
                let mut g = lp.gate.matmul_t(&h, l);
                let inputs: Vec<f32> = p
                    .chunks_exact(n)
                    .flat_map(|row| row[i * w..(i + 1) * w].iter().copied())
                    .collect();
                gelu_tanh_mul(&mut g, &inputs);
                let mut g = lp.projection.matmul_t(&g, l);
                rms_norm(&mut g, &lp.norm, self.eps);
                add(&mut h, &g);
            }
            h.iter_mut().for_each(|v| *v *= layer.scalar);
        }
        cache.len += ids.len();
        logits(
            &self.embed,
            &h[(l - 1) * d..],
            &self.norm,
            self.eps,
            self.softcap,
        )
    }
}
