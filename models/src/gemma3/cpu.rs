//! The Gemma 3 decoder run as one forward pass on the CPU, outside MLX's graph: the weights are
//! the loaded model's own buffers (read in place where their layout allows, see
//! [`crate::kernels::cpu_quant`]), the key/value cache is plain memory, and every operation
//! between the products is a loop over float32 slices ([`crate::kernels::cpu_ops`]).
//!
//! Why: on a CPU, MLX's graph costs a synchronisation per product and a scheduled operation per
//! norm, rotation and residual, and its quantized products move a fraction of the memory
//! bandwidth; a decoder this small spends its time there rather than in arithmetic. It is the
//! same model as [`super::Gemma3Text`] (same formulas, float32), used for float32 models when the
//! current stream is a CPU one and `VLMBENCH_KERNELS` is not `mlx`.

use super::config::TextConfig;
use super::text::Gemma3Text;
use crate::error::{ModelError, Result};
use crate::kernels::cpu::floats;
use crate::kernels::cpu_layers::{add_normed, logits, GegluMlp};
use crate::kernels::cpu_ops::{
    attention, rms_norm, rms_normed, rope, rope_inverse_frequencies, KvCache,
};
use crate::kernels::cpu_quant::CpuMatrix;
use crate::nn::Rope;

struct Layer {
    q: CpuMatrix,
    k: CpuMatrix,
    v: CpuMatrix,
    o: CpuMatrix,
    mlp: GegluMlp,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    input_norm: Vec<f32>,
    post_attention_norm: Vec<f32>,
    pre_feedforward_norm: Vec<f32>,
    post_feedforward_norm: Vec<f32>,
    /// RoPE's inverse frequencies and position scale.
    rope: Vec<f32>,
    rope_scale: f32,
    /// `None` for global layers.
    window: Option<usize>,
}

/// The float32 Gemma 3 text model on the CPU.
pub struct CpuGemma3 {
    embed: CpuMatrix,
    /// `None`: the embedding is the head.
    head: Option<CpuMatrix>,
    embed_scale: f32,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    softcap: Option<f32>,
    eps: f32,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    hidden: usize,
    attention_scale: f32,
}

fn refused(what: &str) -> impl Fn(String) -> ModelError + '_ {
    move |why| ModelError::Input(format!("{what}: the CPU decoder takes {why}"))
}

impl CpuGemma3 {
    /// The CPU form of a float32 `model`; an error names a weight whose form it cannot take.
    pub fn new(model: &Gemma3Text) -> Result<Self> {
        let cfg: &TextConfig = model.config();
        let (hidden, head_dim) = (cfg.hidden_size as usize, cfg.head_dim as usize);
        let mut layers = Vec::with_capacity(model.layers.len());
        for (i, b) in model.layers.iter().enumerate() {
            let a = &b.attn;
            let m = |l: &crate::quantized::Linear, name: &str| {
                l.cpu_matrix()
                    .map_err(refused(&format!("layer {i} {name}")))
            };
            let Rope::Base {
                dims,
                base,
                scale,
                traditional: false,
            } = a.rope
            else {
                return Err(ModelError::Input(format!(
                    "layer {i}: the CPU decoder takes rotate-half RoPE"
                )));
            };
            layers.push(Layer {
                q: m(&a.q_proj, "q_proj")?,
                k: m(&a.k_proj, "k_proj")?,
                v: m(&a.v_proj, "v_proj")?,
                o: m(&a.o_proj, "o_proj")?,
                mlp: GegluMlp {
                    gate: m(&b.mlp.gate_proj, "gate_proj")?,
                    up: m(&b.mlp.up_proj, "up_proj")?,
                    down: m(&b.mlp.down_proj, "down_proj")?,
                },
                q_norm: floats(&a.q_norm.weight)?,
                k_norm: floats(&a.k_norm.weight)?,
                input_norm: floats(&b.input_layernorm.weight)?,
                post_attention_norm: floats(&b.post_attention_layernorm.weight)?,
                pre_feedforward_norm: floats(&b.pre_feedforward_layernorm.weight)?,
                post_feedforward_norm: floats(&b.post_feedforward_layernorm.weight)?,
                rope: rope_inverse_frequencies(dims as usize, base),
                rope_scale: scale,
                window: (!b.global).then_some(cfg.sliding_window as usize),
            });
        }
        let embed = model
            .embed_tokens
            .cpu_matrix()
            .map_err(refused("embed_tokens"))?;
        let head = match &model.lm_head {
            Some(h) => Some(h.cpu_matrix().map_err(refused("lm_head"))?),
            None => None,
        };
        Ok(CpuGemma3 {
            embed,
            head,
            embed_scale: floats(&model.embed_scale.as_dtype(mlx_rs::Dtype::Float32)?)?[0],
            layers,
            norm: floats(&model.norm.weight)?,
            softcap: cfg.final_logit_softcapping.map(|c| c as f32),
            eps: cfg.rms_norm_eps as f32,
            heads: cfg.num_attention_heads as usize,
            kv_heads: cfg.num_key_value_heads as usize,
            head_dim,
            hidden,
            attention_scale: cfg.query_pre_attn_scalar.powf(-0.5) as f32,
        })
    }

    /// Rows of the embedding table (token ids are below this).
    pub fn vocab(&self) -> usize {
        self.embed.rows()
    }

    /// An empty cache for one sequence.
    pub fn make_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Runs `ids` (the next tokens of the sequence) through the decoder, appending to `cache`;
    /// returns the logits of the last one.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache) -> Vec<f32> {
        let (l, d, hd) = (ids.len(), self.hidden, self.head_dim);
        let offset = cache.len;
        let mut h = vec![0f32; l * d];
        for (row, &id) in h.chunks_exact_mut(d).zip(ids) {
            self.embed.row(id as usize, row);
            row.iter_mut().for_each(|v| *v *= self.embed_scale);
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let x = rms_normed(&h, &layer.input_norm, self.eps);
            let [mut q, mut k, v]: [Vec<f32>; 3] =
                CpuMatrix::matmul_t_each(&[&layer.q, &layer.k, &layer.v], &x, l)
                    .try_into()
                    .expect("three products");
            rms_norm(&mut q, &layer.q_norm, self.eps);
            rms_norm(&mut k, &layer.k_norm, self.eps);
            let rot =
                |t: &mut [f32], heads| rope(t, heads, hd, &layer.rope, layer.rope_scale, offset);
            rot(&mut q, self.heads);
            rot(&mut k, self.kv_heads);
            cache.keys[i].extend_from_slice(&k);
            cache.values[i].extend_from_slice(&v);
            let o = attention(
                &q,
                &cache.keys[i],
                &cache.values[i],
                l,
                offset + l,
                self.heads,
                self.kv_heads,
                hd,
                self.attention_scale,
                layer.window,
            );
            let r = layer.o.matmul_t(&o, l);
            add_normed(&mut h, r, &layer.post_attention_norm, self.eps);
            let y = rms_normed(&h, &layer.pre_feedforward_norm, self.eps);
            let r = layer.mlp.forward(&y, l);
            add_normed(&mut h, r, &layer.post_feedforward_norm, self.eps);
        }
        cache.len += l;
        logits(
            self.head.as_ref().unwrap_or(&self.embed),
            &h[(l - 1) * d..],
            &self.norm,
            self.eps,
            self.softcap,
        )
    }
}
