//! MLX Gemma 4 checkpoint → GGUF for llama.cpp's `gemma4` architecture (`vlmbench convert
//! --to-gguf`): the language model only (the vision and audio towers are left out; llama.cpp
//! reads them from a separate `mmproj` file, which this does not write).
//!
//! Types of the file ([`GgufType`]):
//! * `q4_1`: lossless. An MLX affine 4-bit group (`w = scale * q + bias`, group size 32, 64 or
//!   128) is one, two or four GGML Q4_1 blocks (`w = d * q + m`, 32 values, `d` and `m` in fp16)
//!   with the same codes: exact wherever the scales and biases convert exactly to fp16, which is
//!   checked value by value (a scale that does not fails the export unless rounding is allowed,
//!   and out-of-range ones always do). 5-bit groups are Q5_1 the same way. Tensors quantized at
//!   other widths (the 8-bit MoE router) are written dequantized in F32, norms in F32, other
//!   unquantized tensors as stored (BF16/F16/F32).
//! * `q4_k_m`: what people download. Weights are dequantized and re-quantized to Q4_K, with Q6_K
//!   where llama.cpp's Q4_K_M mix puts it (token and per-layer embeddings, as the LM head is
//!   tied; `attn_v` and `ffn_down` of the layers its `use_more_bits` picks), its fallbacks for
//!   rows that are not whole 256-value super-blocks (Q5_0, Q8_0), and the tensors it leaves
//!   unquantized (norms and router in F32, `per_layer_model_proj` in F16). The quantizer is a
//!   simple min/max one ([`crate::gguf::quantize`]), not llama.cpp's importance-weighted search.
//! * `f32`: every weight dequantized to F32, exactly the values MLX dequantizes (for bf16/fp16
//!   scales): for checking llama.cpp's arithmetic against vlmbench's in float32.
//!
//! Names, metadata and layout follow llama.cpp's `convert_hf_to_gguf.py` (`Gemma4Model`) and
//! `src/models/gemma4.cpp`: norms are stored as they are (Gemma 4's RMSNorm has no `1 + w`),
//! per-layer KV head counts and MLP widths are arrays, the full-attention layers' proportional
//! RoPE is a `rope_freqs` tensor (1 for the rotated pairs, 1e30 for the rest), and KV-shared
//! layers must reuse the layers llama.cpp assumes (the last sliding and the last full layer
//! before them); a checkpoint whose layer pattern breaks that is refused.

mod source;
pub mod tokenizer;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use self::source::{Dtype, Source};
use super::quantize::{
    f16_exact, q4_1_block, q5_1_block, quantize_q4_k, quantize_q5_0, quantize_q6_k, quantize_q8_0,
    QK_K,
};
use super::writer::{StreamWriter, TensorSpec};
use super::{GgmlType, MetaValue};
use crate::checkpoint::Checkpoint;
use crate::error::ModelError;
use crate::gemma4::{Config, LayerType, TextConfig};

/// Errors of the export; each names the file, tensor or config field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Model(#[from] ModelError),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A checkpoint file the exporter cannot read as expected.
    #[error("{path}: {reason}")]
    Source { path: PathBuf, reason: String },

    /// A config value llama.cpp's gemma4 cannot represent or this exporter does not handle.
    #[error("{path}: {field}: {reason}")]
    Unsupported {
        path: PathBuf,
        field: String,
        reason: String,
    },

    #[error("{path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    /// A tensor that is missing, of the wrong shape, or not one of the language model's.
    #[error("{dir}: tensor `{tensor}`: {reason}")]
    Tensor {
        dir: PathBuf,
        tensor: String,
        reason: String,
    },

    /// Scales or biases that fp16 cannot hold exactly, for the lossless Q4_1 export.
    #[error("{dir}: {reason}")]
    NotExact { dir: PathBuf, reason: String },

    #[error("{path}: {reason}")]
    Output { path: PathBuf, reason: String },
}

impl ExportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> ExportError {
        ExportError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The tensor types of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    /// Lossless: 4-bit groups as Q4_1 (5-bit as Q5_1).
    Q4_1,
    /// llama.cpp's Q4_K_M mix, re-quantized from the dequantized weights.
    Q4KM,
    /// Every weight dequantized to F32.
    F32,
}

impl GgufType {
    pub fn name(self) -> &'static str {
        match self {
            GgufType::Q4_1 => "q4_1",
            GgufType::Q4KM => "q4_k_m",
            GgufType::F32 => "f32",
        }
    }

    /// llama.cpp's `llama_ftype` (`general.file_type`).
    fn file_type(self) -> u32 {
        match self {
            GgufType::F32 => 0,
            GgufType::Q4_1 => 3,
            GgufType::Q4KM => 15,
        }
    }
}

impl std::str::FromStr for GgufType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "q4_1" => Ok(GgufType::Q4_1),
            "q4_k_m" => Ok(GgufType::Q4KM),
            "f32" => Ok(GgufType::F32),
            _ => Err(format!("`{s}`: expected q4_1, q4_k_m or f32")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub ty: GgufType,
    /// Q4_1: round scales and biases that fp16 cannot hold exactly to the nearest fp16 instead
    /// of failing (they are counted in the report either way).
    pub allow_rounding: bool,
    /// Replace an existing output file.
    pub overwrite: bool,
}

/// What happened to one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorReport {
    /// GGUF name.
    pub name: String,
    /// Checkpoint module or tensor it came from (empty for generated tensors).
    pub source: String,
    /// Row-major shape.
    pub shape: Vec<u64>,
    pub ty: GgmlType,
    /// How it was converted, e.g. `4-bit g64 -> Q4_1 (lossless)`.
    pub how: String,
    /// Q4_1/Q5_1 from affine groups: scales + biases checked, how many of them fp16 does not
    /// hold exactly, how many of those are out of its range (NaN and infinities included), and
    /// how many of those are NaN or infinite in the checkpoint itself.
    pub checked: u64,
    pub inexact: u64,
    pub out_of_range: u64,
    pub non_finite: u64,
}

/// What an export did.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub out: PathBuf,
    pub ty: GgufType,
    pub layers: usize,
    pub hidden: usize,
    pub vocab: usize,
    pub tensors: Vec<TensorReport>,
    pub bytes: u64,
    pub notes: Vec<String>,
}

impl ExportReport {
    /// Totals over the tensors: (checked, inexact, out of range).
    pub fn exactness(&self) -> (u64, u64, u64) {
        self.tensors.iter().fold((0, 0, 0), |a, t| {
            (a.0 + t.checked, a.1 + t.inexact, a.2 + t.out_of_range)
        })
    }
}

/// Where a GGUF tensor's values come from.
#[derive(Debug, Clone)]
enum Src {
    /// An MLX affine-quantized module: `<module>.weight` (uint32 codes), `.scales`, `.biases`.
    Affine {
        module: String,
        bits: u32,
        group: u64,
    },
    /// A float tensor as stored.
    Dense { name: String, dtype: Dtype },
    /// Values made here (`rope_freqs`).
    Values(Vec<f32>),
}

#[derive(Debug, Clone)]
struct Item {
    gguf: String,
    src: Src,
    /// Row-major shape of the values.
    shape: Vec<u64>,
    ty: GgmlType,
    how: String,
    layer: Option<usize>,
    checked: u64,
    inexact: u64,
    out_of_range: u64,
    non_finite: u64,
}

impl Item {
    fn row_len(&self) -> u64 {
        *self.shape.last().unwrap()
    }
    fn rows(&self) -> u64 {
        self.shape.iter().product::<u64>() / self.row_len()
    }
    fn source_name(&self) -> String {
        match &self.src {
            Src::Affine { module, .. } => module.clone(),
            Src::Dense { name, .. } => name.clone(),
            Src::Values(_) => String::new(),
        }
    }
}

/// The MLX module (or tensor) names of one decoder layer, with their GGUF names.
const LAYER_TENSORS: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj", "attn_q.weight"),
    ("self_attn.k_proj", "attn_k.weight"),
    ("self_attn.v_proj", "attn_v.weight"),
    ("self_attn.o_proj", "attn_output.weight"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    (
        "post_attention_layernorm.weight",
        "post_attention_norm.weight",
    ),
    ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
    ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
    ("mlp.gate_proj", "ffn_gate.weight"),
    ("mlp.up_proj", "ffn_up.weight"),
    ("mlp.down_proj", "ffn_down.weight"),
    ("layer_scalar", "layer_output_scale.weight"),
    ("router.proj", "ffn_gate_inp.weight"),
    ("router.scale", "ffn_gate_inp.scale"),
    ("router.per_expert_scale", "ffn_down_exps.scale"),
    ("experts.switch_glu.gate_proj", "ffn_gate_exps.weight"),
    ("experts.switch_glu.up_proj", "ffn_up_exps.weight"),
    ("experts.switch_glu.down_proj", "ffn_down_exps.weight"),
    (
        "pre_feedforward_layernorm_2.weight",
        "pre_ffw_norm_2.weight",
    ),
    (
        "post_feedforward_layernorm_1.weight",
        "post_ffw_norm_1.weight",
    ),
    (
        "post_feedforward_layernorm_2.weight",
        "post_ffw_norm_2.weight",
    ),
    ("per_layer_input_gate", "inp_gate.weight"),
    ("per_layer_projection", "proj.weight"),
    ("post_per_layer_input_norm.weight", "post_norm.weight"),
];

/// Model-level tensors (MLX name under the model prefix, GGUF name).
const MODEL_TENSORS: &[(&str, &str)] = &[
    ("embed_tokens", "token_embd.weight"),
    ("embed_tokens_per_layer", "per_layer_token_embd.weight"),
    ("per_layer_model_projection", "per_layer_model_proj.weight"),
    (
        "per_layer_projection_norm.weight",
        "per_layer_proj_norm.weight",
    ),
    ("norm.weight", "output_norm.weight"),
];

/// Checkpoint tensors under these prefixes belong to the towers this export leaves out.
const LEFT_OUT: [&str; 4] = [
    "vision_tower.",
    "embed_vision.",
    "audio_tower.",
    "embed_audio.",
];

fn unsupported(path: &Path, field: &str, reason: impl Into<String>) -> ExportError {
    ExportError::Unsupported {
        path: path.into(),
        field: field.into(),
        reason: reason.into(),
    }
}

/// The shapes llama.cpp's gemma4 derives from the metadata, checked against what the checkpoint
/// means (KV-sharing sources, RoPE); returns the full layers' `rope_freqs`.
fn check_for_llama(t: &TextConfig, cfg: &Path) -> Result<Option<Vec<f32>>, ExportError> {
    let lts = t.layer_types();
    let n = lts.len();
    let first_shared = t.first_kv_shared_layer().max(0) as usize;
    if t.num_kv_shared_layers > 0 {
        let src = t.kv_source_layers();
        for j in first_shared..n {
            let llama = first_shared as i64 - if lts[j] == LayerType::Sliding { 2 } else { 1 };
            if llama < 0 || src[j] as i64 != llama {
                return Err(unsupported(
                    cfg,
                    "text_config.num_kv_shared_layers",
                    format!(
                        "KV-shared layer {j} ({}) reuses layer {}'s KV in this checkpoint, but llama.cpp's gemma4 reuses layer {llama} (the last sliding and the last full layer before the shared ones, in that order): llama.cpp cannot run this layer pattern",
                        lts[j].key(),
                        src[j]
                    ),
                ));
            }
        }
    }
    if t.rope_traditional {
        return Err(unsupported(
            cfg,
            "text_config.rope_traditional",
            "true: llama.cpp's gemma4 rotates halves (NeoX style)",
        ));
    }
    let sliding = t.rope_for(LayerType::Sliding);
    if (sliding.rope_type != "default" && !(sliding.rope_type == "linear" && sliding.factor == 1.0))
        || sliding.partial_rotary_factor != 1.0
    {
        return Err(unsupported(
            cfg,
            "text_config.rope_parameters.sliding_attention",
            format!(
                "rope_type `{}` with partial_rotary_factor {} is not exported (only default over the whole head)",
                sliding.rope_type, sliding.partial_rotary_factor
            ),
        ));
    }
    if !lts.contains(&LayerType::Full) {
        return Ok(None);
    }
    let full = t.rope_for(LayerType::Full);
    let d = if t.global_head_dim > 0 {
        t.global_head_dim
    } else {
        t.head_dim
    } as usize;
    let rotated = match full.rope_type.as_str() {
        "proportional" => (full.partial_rotary_factor * d as f64 / 2.0) as usize,
        "default" if full.partial_rotary_factor == 1.0 => d / 2,
        other => {
            return Err(unsupported(
                cfg,
                "text_config.rope_parameters.full_attention",
                format!(
                    "rope_type `{other}` with partial_rotary_factor {} is not exported (proportional, or default over the whole head)",
                    full.partial_rotary_factor
                ),
            ))
        }
    };
    let mut f = vec![1.0f32; rotated.min(d / 2)];
    f.resize(d / 2, 1e30);
    Ok(Some(f))
}

/// The `gemma4.*` hyperparameters.
fn hparams(t: &TextConfig) -> Vec<(String, MetaValue)> {
    let n = t.num_hidden_layers as usize;
    let lts = t.layer_types();
    let key = |k: &str| format!("gemma4.{k}");
    let u = |v: i64| MetaValue::U32(v as u32);
    let per_layer = |v: Vec<i64>| {
        if v.iter().all(|&x| x == v[0]) {
            u(v[0])
        } else {
            MetaValue::Array(v.into_iter().map(u).collect())
        }
    };
    let full_head = if t.global_head_dim > 0 {
        t.global_head_dim
    } else {
        t.head_dim
    } as i64;
    let sliding = t.rope_for(LayerType::Sliding);
    let mut m = vec![
        (
            key("context_length"),
            u(t.max_position_embeddings.min(u32::MAX as i64)),
        ),
        (key("embedding_length"), u(t.hidden_size as i64)),
        (key("block_count"), u(n as i64)),
        (
            key("feed_forward_length"),
            per_layer((0..n).map(|i| t.mlp_width(i) as i64).collect()),
        ),
        (key("attention.head_count"), u(t.num_attention_heads as i64)),
        (
            key("attention.head_count_kv"),
            per_layer(
                (0..n)
                    .map(|i| t.attention_shape(i).n_kv_heads as i64)
                    .collect(),
            ),
        ),
        (key("attention.key_length"), u(full_head)),
        (key("attention.value_length"), u(full_head)),
        (key("attention.key_length_swa"), u(t.head_dim as i64)),
        (key("attention.value_length_swa"), u(t.head_dim as i64)),
        (
            key("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(t.rms_norm_eps as f32),
        ),
        (key("attention.sliding_window"), u(t.sliding_window as i64)),
        (
            key("attention.sliding_window_pattern"),
            MetaValue::Array(
                lts.iter()
                    .map(|&l| MetaValue::Bool(l == LayerType::Sliding))
                    .collect(),
            ),
        ),
        (
            key("attention.shared_kv_layers"),
            u(t.num_kv_shared_layers.max(0) as i64),
        ),
        (
            key("embedding_length_per_layer_input"),
            u(t.hidden_size_per_layer_input.max(0) as i64),
        ),
        (
            key("rope.freq_base"),
            MetaValue::F32(t.rope_for(LayerType::Full).rope_theta as f32),
        ),
        (
            key("rope.freq_base_swa"),
            MetaValue::F32(sliding.rope_theta as f32),
        ),
        // Full layers rotate the whole head: the proportional part is in `rope_freqs`.
        (key("rope.dimension_count"), u(full_head)),
        (key("rope.dimension_count_swa"), u(t.head_dim as i64)),
    ];
    if let Some(cap) = t.final_logit_softcapping.filter(|&c| c > 0.0) {
        m.push((key("final_logit_softcapping"), MetaValue::F32(cap as f32)));
    }
    if t.enable_moe_block {
        m.push((key("expert_count"), u(t.num_experts.unwrap_or(0) as i64)));
        m.push((
            key("expert_used_count"),
            u(t.top_k_experts.unwrap_or(0) as i64),
        ));
        m.push((
            key("expert_feed_forward_length"),
            u(t.moe_intermediate_size.unwrap_or(0) as i64),
        ));
    }
    m
}

/// llama.cpp's `use_more_bits`: the layers its Q4_K_M mix gives Q6_K.
fn use_more_bits(i: usize, n: usize) -> bool {
    let (i, n) = (i as i64, n as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// A row length's fallback for a K-quant type, as llama.cpp's quantizer does it.
fn fit(ty: GgmlType, row: u64) -> GgmlType {
    let ty = match ty {
        GgmlType::Q4K | GgmlType::Q6K if row % QK_K as u64 != 0 => {
            if ty == GgmlType::Q4K {
                GgmlType::Q5_0
            } else {
                GgmlType::Q8_0
            }
        }
        t => t,
    };
    if ty.block_geometry().is_some_and(|(b, _)| row % b != 0) {
        GgmlType::F16
    } else {
        ty
    }
}

fn describe_src(src: &Src) -> String {
    match src {
        Src::Affine { bits, group, .. } => format!("{bits}-bit g{group}"),
        Src::Dense { dtype, .. } => dtype.name().to_string(),
        Src::Values(_) => "generated".into(),
    }
}

/// Choose every tensor's GGML type.
fn choose_types(items: &mut [Item], ty: GgufType, n_layers: usize, notes: &mut Vec<String>) {
    let n_v = items
        .iter()
        .filter(|i| i.gguf.ends_with("attn_v.weight"))
        .count();
    let mut i_v = 0;
    let mut dense_8bit = BTreeSet::new();
    for it in items.iter_mut() {
        let one_d = it.shape.len() == 1;
        let from = describe_src(&it.src);
        let (t, how) = match ty {
            GgufType::F32 => match &it.src {
                Src::Affine { .. } => (GgmlType::F32, format!("{from} -> F32 (dequantized)")),
                _ => (GgmlType::F32, format!("{from} -> F32")),
            },
            GgufType::Q4_1 => match (&it.src, one_d) {
                (Src::Affine { bits: 4, .. }, _) => {
                    (GgmlType::Q4_1, format!("{from} -> Q4_1 (lossless)"))
                }
                (Src::Affine { bits: 5, .. }, _) => {
                    (GgmlType::Q5_1, format!("{from} -> Q5_1 (lossless)"))
                }
                (Src::Affine { bits, .. }, _) => {
                    dense_8bit.insert(*bits);
                    (
                        GgmlType::F32,
                        format!("{from} -> F32 (dequantized; no GGML type holds {bits}-bit affine groups)"),
                    )
                }
                (Src::Dense { dtype, .. }, false) => {
                    let t = match dtype {
                        Dtype::BF16 => GgmlType::BF16,
                        Dtype::F16 => GgmlType::F16,
                        _ => GgmlType::F32,
                    };
                    (t, format!("{from} -> {t} (as stored)"))
                }
                _ => (GgmlType::F32, format!("{from} -> F32")),
            },
            GgufType::Q4KM => {
                let name = it.gguf.as_str();
                let keep = one_d
                    || !name.ends_with("weight")
                    || name.ends_with("_norm.weight")
                    || name.contains("ffn_gate_inp.weight")
                    || name.contains("per_layer_model_proj");
                if keep {
                    let t = if one_d || name.contains("ffn_gate_inp") {
                        GgmlType::F32
                    } else {
                        GgmlType::F16
                    };
                    (t, format!("{from} -> {t} (not quantized in Q4_K_M)"))
                } else {
                    let want = if name == "token_embd.weight"
                        || name == "per_layer_token_embd.weight"
                        || name == "output.weight"
                    {
                        GgmlType::Q6K
                    } else if name.ends_with("attn_v.weight") {
                        let more = use_more_bits(i_v, n_v);
                        i_v += 1;
                        if more {
                            GgmlType::Q6K
                        } else {
                            GgmlType::Q4K
                        }
                    } else if name.contains("ffn_down") {
                        if use_more_bits(it.layer.unwrap_or(0), n_layers) {
                            GgmlType::Q6K
                        } else {
                            GgmlType::Q4K
                        }
                    } else {
                        GgmlType::Q4K
                    };
                    let t = fit(want, it.row_len());
                    let why = if t != want {
                        format!("; {want}'s fallback for rows of {} values", it.row_len())
                    } else {
                        String::new()
                    };
                    (t, format!("{from} -> {t} (re-quantized{why})"))
                }
            }
        };
        it.ty = t;
        it.how = how;
    }
    for bits in dense_8bit {
        notes.push(format!(
            "{bits}-bit affine tensors are written dequantized in F32: Q8_0 is symmetric (no per-group minimum), so it cannot hold them exactly"
        ));
    }
}

/// A tensor the GGUF needs: its MLX name under the model prefix, GGUF name, row-major shape,
/// layer, and whether llama.cpp requires it.
struct Wanted {
    mlx: String,
    gguf: String,
    shape: Vec<u64>,
    layer: Option<usize>,
    required: bool,
}

/// Every tensor of the GGUF, from the config and the checkpoint.
fn plan(
    t: &TextConfig,
    ckpt: &Checkpoint,
    src: &Source,
    prefix: &str,
    rope_freqs: Option<Vec<f32>>,
) -> Result<Vec<Item>, ExportError> {
    let dir = ckpt.dir().to_path_buf();
    let n = t.num_hidden_layers as usize;
    let h = t.hidden_size as u64;
    let p = t.hidden_size_per_layer_input.max(0) as u64;
    let vocab = t.vocab_size as u64;
    let bad = |tensor: &str, reason: String| ExportError::Tensor {
        dir: dir.clone(),
        tensor: tensor.into(),
        reason,
    };

    let mut want: Vec<Wanted> = vec![];
    let mut model = |mlx: &str, shape: Vec<u64>, required: bool| {
        let gguf = MODEL_TENSORS.iter().find(|m| m.0 == mlx).unwrap().1;
        want.push(Wanted {
            mlx: format!("{prefix}{mlx}"),
            gguf: gguf.into(),
            shape,
            layer: None,
            required,
        });
    };
    model("embed_tokens", vec![vocab, h], true);
    if p > 0 {
        if t.vocab_size_per_layer_input != t.vocab_size {
            return Err(unsupported(
                ckpt.config_path(),
                "text_config.vocab_size_per_layer_input",
                format!(
                    "{} differs from vocab_size {}: llama.cpp's gemma4 indexes both tables with the same ids",
                    t.vocab_size_per_layer_input, t.vocab_size
                ),
            ));
        }
        model("embed_tokens_per_layer", vec![vocab, n as u64 * p], true);
        model("per_layer_model_projection", vec![n as u64 * p, h], true);
        model("per_layer_projection_norm.weight", vec![p], true);
    }
    model("norm.weight", vec![h], true);
    for i in 0..n {
        let a = t.attention_shape(i);
        let (d, heads, kv) = (a.head_dim as u64, a.n_heads as u64, a.n_kv_heads as u64);
        let shared = t.is_kv_shared(i);
        let ff = t.mlp_width(i) as u64;
        let mut layer = |mlx: &str, shape: Vec<u64>, required: bool| {
            let gguf = LAYER_TENSORS.iter().find(|m| m.0 == mlx).unwrap().1;
            want.push(Wanted {
                mlx: format!("{prefix}layers.{i}.{mlx}"),
                gguf: format!("blk.{i}.{gguf}"),
                shape,
                layer: Some(i),
                required,
            });
        };
        layer("input_layernorm.weight", vec![h], true);
        layer("self_attn.q_proj", vec![heads * d, h], true);
        // Shared layers read another layer's KV; llama.cpp loads their k/v if present.
        layer("self_attn.k_proj", vec![kv * d, h], !shared);
        layer("self_attn.v_proj", vec![kv * d, h], !shared && !a.k_eq_v);
        layer("self_attn.o_proj", vec![h, heads * d], true);
        layer("self_attn.q_norm.weight", vec![d], true);
        layer("self_attn.k_norm.weight", vec![d], !shared);
        layer("post_attention_layernorm.weight", vec![h], true);
        layer("pre_feedforward_layernorm.weight", vec![h], true);
        layer("post_feedforward_layernorm.weight", vec![h], true);
        layer("mlp.gate_proj", vec![ff, h], true);
        layer("mlp.up_proj", vec![ff, h], true);
        layer("mlp.down_proj", vec![h, ff], true);
        layer("layer_scalar", vec![1], false);
        if t.enable_moe_block {
            let e = t.num_experts.unwrap_or(0) as u64;
            let im = t.moe_intermediate_size.unwrap_or(0) as u64;
            layer("router.proj", vec![e, h], true);
            layer("router.scale", vec![h], true);
            layer("router.per_expert_scale", vec![e], true);
            layer("experts.switch_glu.gate_proj", vec![e, im, h], true);
            layer("experts.switch_glu.up_proj", vec![e, im, h], true);
            layer("experts.switch_glu.down_proj", vec![e, h, im], true);
            layer("pre_feedforward_layernorm_2.weight", vec![h], true);
            layer("post_feedforward_layernorm_1.weight", vec![h], true);
            layer("post_feedforward_layernorm_2.weight", vec![h], true);
        }
        if p > 0 {
            layer("per_layer_input_gate", vec![p, h], true);
            layer("per_layer_projection", vec![h, p], true);
            layer("post_per_layer_input_norm.weight", vec![h], true);
        }
    }

    let mut items = vec![];
    for Wanted {
        mlx,
        gguf,
        shape,
        layer,
        required,
    } in want
    {
        let (src_kind, found) = if let Some(e) = src.get(&mlx) {
            // A float tensor (norms, layer_scalar) or a module left unquantized.
            (
                Src::Dense {
                    name: mlx.clone(),
                    dtype: e.dtype,
                },
                e.shape.clone(),
            )
        } else if let Some(e) = src.get(&format!("{mlx}.weight")) {
            match ckpt.module_quantization(&mlx)? {
                Some(q) => {
                    let (bits, group) = (q.bits as u64, q.group_size as u64);
                    let wname = format!("{mlx}.weight");
                    if e.dtype != Dtype::U32 {
                        return Err(bad(
                            &wname,
                            format!(
                                "quantized ({bits}-bit) but stored as {}, not uint32",
                                e.dtype.name()
                            ),
                        ));
                    }
                    let cols = e.row_len() * 32 / bits;
                    let mut logical = e.shape.clone();
                    *logical.last_mut().unwrap() = cols;
                    let mut want_scales = logical.clone();
                    *want_scales.last_mut().unwrap() = cols / group.max(1);
                    for part in ["scales", "biases"] {
                        let name = format!("{mlx}.{part}");
                        let s = src.get(&name).ok_or_else(|| {
                            bad(&name, "missing (the module is quantized)".into())
                        })?;
                        if s.shape != want_scales || s.dtype == Dtype::U32 {
                            return Err(bad(
                                &name,
                                format!(
                                    "{} {:?}, expected a float tensor of shape {want_scales:?} for {bits}-bit groups of {group}",
                                    s.dtype.name(),
                                    s.shape
                                ),
                            ));
                        }
                    }
                    if cols % group != 0 || group % 32 != 0 {
                        return Err(bad(
                            &wname,
                            format!("rows of {cols} values in groups of {group}: not whole 32-value blocks"),
                        ));
                    }
                    (
                        Src::Affine {
                            module: mlx.clone(),
                            bits: bits as u32,
                            group,
                        },
                        logical,
                    )
                }
                None => (
                    Src::Dense {
                        name: format!("{mlx}.weight"),
                        dtype: e.dtype,
                    },
                    e.shape.clone(),
                ),
            }
        } else if required {
            return Err(bad(&mlx, "missing".into()));
        } else {
            continue;
        };
        if let Src::Dense {
            dtype: Dtype::U32,
            name,
        } = &src_kind
        {
            return Err(bad(name, "uint32 data without quantization scales".into()));
        }
        let found = if found.is_empty() { vec![1] } else { found };
        if found != shape {
            return Err(bad(
                &mlx,
                format!("shape {found:?}, expected {shape:?} from config.json"),
            ));
        }
        items.push(Item {
            gguf,
            src: src_kind,
            shape,
            ty: GgmlType::F32,
            how: String::new(),
            layer,
            checked: 0,
            inexact: 0,
            out_of_range: 0,
            non_finite: 0,
        });
    }
    if let Some(f) = rope_freqs {
        items.push(Item {
            gguf: "rope_freqs.weight".into(),
            shape: vec![f.len() as u64],
            src: Src::Values(f),
            ty: GgmlType::F32,
            how: String::new(),
            layer: None,
            checked: 0,
            inexact: 0,
            out_of_range: 0,
            non_finite: 0,
        });
    }
    Ok(items)
}

/// Count the scales and biases of a lossless (Q4_1/Q5_1) tensor that fp16 does not hold.
fn check_exact(it: &mut Item, src: &Source) -> Result<(), ExportError> {
    let Src::Affine { module, .. } = &it.src else {
        return Ok(());
    };
    for part in ["scales", "biases"] {
        let v = src.read_f32(&format!("{module}.{part}"))?;
        it.checked += v.len() as u64;
        for x in v {
            let (h, exact) = f16_exact(x);
            if !exact {
                it.inexact += 1;
                if !h.is_finite() {
                    it.out_of_range += 1;
                }
                if !x.is_finite() {
                    it.non_finite += 1;
                }
            }
        }
    }
    Ok(())
}

/// Unpack `n` codes of `bits` from MLX's little-endian bit stream.
fn unpack(words: &[u8], bits: u32, n: usize, out: &mut Vec<u8>) {
    match bits {
        // Little-endian words: byte k holds values 2k (low nibble) and 2k + 1.
        4 => {
            out.extend(words[..n / 2].iter().flat_map(|&b| [b & 0x0F, b >> 4]));
            return;
        }
        8 => {
            out.extend_from_slice(&words[..n]);
            return;
        }
        _ => {}
    }
    let mask = (1u64 << bits) - 1;
    let word = |i: usize| u32::from_le_bytes(words[4 * i..4 * i + 4].try_into().unwrap()) as u64;
    for i in 0..n {
        let pos = i * bits as usize;
        let (w, s) = (pos / 32, pos % 32);
        let mut v = word(w) >> s;
        if s + bits as usize > 32 {
            v |= word(w + 1) << (32 - s);
        }
        out.push((v & mask) as u8);
    }
}

/// Rows of an item at a time: about 4M values.
fn chunk_rows(it: &Item) -> u64 {
    ((1u64 << 22) / it.row_len()).max(1)
}

/// The values of rows `[r0, r1)` as f32: dequantized (`scale * q + bias`) or as stored.
fn values(it: &Item, src: &Source, r0: u64, r1: u64) -> Result<Vec<f32>, ExportError> {
    match &it.src {
        Src::Values(v) => {
            Ok(v[(r0 * it.row_len()) as usize..(r1 * it.row_len()) as usize].to_vec())
        }
        Src::Dense { name, .. } => src.read_f32_rows(name, r0, r1),
        Src::Affine {
            module,
            bits,
            group,
        } => {
            let AffineRows {
                codes,
                scales,
                biases,
            } = affine_rows(module, *bits, src, r0, r1)?;
            let g = *group as usize;
            Ok(codes
                .iter()
                .enumerate()
                .map(|(i, &q)| scales[i / g] * q as f32 + biases[i / g])
                .collect())
        }
    }
}

fn affine_rows(
    module: &str,
    bits: u32,
    src: &Source,
    r0: u64,
    r1: u64,
) -> Result<AffineRows, ExportError> {
    let wname = format!("{module}.weight");
    let w = src.get(&wname).unwrap();
    let wrow = w.row_len() * 4;
    let words = src.read(&wname, r0 * wrow, r1 * wrow)?;
    let n = ((r1 - r0) * w.row_len() * 32 / bits as u64) as usize;
    let mut codes = Vec::with_capacity(n);
    unpack(&words, bits, n, &mut codes);
    let scales = src.read_f32_rows(&format!("{module}.scales"), r0, r1)?;
    let biases = src.read_f32_rows(&format!("{module}.biases"), r0, r1)?;
    Ok(AffineRows {
        codes,
        scales,
        biases,
    })
}

/// Rows of an affine tensor: one code per value, one scale and bias per group.
struct AffineRows {
    codes: Vec<u8>,
    scales: Vec<f32>,
    biases: Vec<f32>,
}

/// Encode rows of f32 values as `ty`, row by row in parallel.
fn encode(ty: GgmlType, x: &[f32], row: usize) -> Vec<u8> {
    match ty {
        GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => x
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        GgmlType::BF16 => x
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        _ => {
            let f: fn(&[f32], &mut Vec<u8>) = match ty {
                GgmlType::Q4K => quantize_q4_k,
                GgmlType::Q6K => quantize_q6_k,
                GgmlType::Q5_0 => quantize_q5_0,
                GgmlType::Q8_0 => quantize_q8_0,
                other => unreachable!("no encoder chosen for {other}"),
            };
            x.par_chunks(row)
                .map(|r| {
                    let mut out = Vec::new();
                    f(r, &mut out);
                    out
                })
                .collect::<Vec<_>>()
                .concat()
        }
    }
}

/// Write one item's data.
fn write_item(
    it: &Item,
    src: &Source,
    w: &mut StreamWriter,
    allow_rounding: bool,
) -> Result<(), ExportError> {
    let rows = it.rows();
    let step = chunk_rows(it);
    let row = it.row_len() as usize;
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + step).min(rows);
        let bytes = match (&it.src, it.ty) {
            (
                Src::Affine {
                    module,
                    bits,
                    group,
                },
                GgmlType::Q4_1 | GgmlType::Q5_1,
            ) => {
                let AffineRows {
                    codes,
                    scales,
                    biases,
                } = affine_rows(module, *bits, src, r0, r1)?;
                let g = *group as usize;
                let mut out = Vec::with_capacity(codes.len() / 32 * 24);
                for (b, block) in codes.chunks_exact(32).enumerate() {
                    let (s, m) = (scales[b * 32 / g], biases[b * 32 / g]);
                    let (d, de) = f16_exact(s);
                    let (mm, me) = f16_exact(m);
                    debug_assert!(allow_rounding || (de && me), "checked before writing");
                    if it.ty == GgmlType::Q4_1 {
                        q4_1_block(&mut out, d, mm, block);
                    } else {
                        q5_1_block(&mut out, d, mm, block);
                    }
                }
                out
            }
            (Src::Dense { name, dtype }, ty) if dtype_matches(*dtype, ty) => {
                let e = src.get(name).unwrap();
                let rb = e.row_len() * e.dtype.size();
                src.read(name, r0 * rb, r1 * rb)?
            }
            (_, ty) => encode(ty, &values(it, src, r0, r1)?, row),
        };
        w.write(&bytes).map_err(|e| ExportError::Output {
            path: PathBuf::from(&it.gguf),
            reason: e.to_string(),
        })?;
        r0 = r1;
    }
    Ok(())
}

fn dtype_matches(d: Dtype, t: GgmlType) -> bool {
    matches!(
        (d, t),
        (Dtype::BF16, GgmlType::BF16) | (Dtype::F16, GgmlType::F16) | (Dtype::F32, GgmlType::F32)
    )
}

/// The model prefix of the language model's tensors.
fn model_prefix(ckpt: &Checkpoint) -> Result<&'static str, ExportError> {
    for p in ["language_model.model.", "model."] {
        if ckpt.contains(&format!("{p}embed_tokens.weight")) {
            return Ok(p);
        }
    }
    Err(ExportError::Tensor {
        dir: ckpt.dir().into(),
        tensor: "language_model.model.embed_tokens.weight".into(),
        reason: "missing (no Gemma 4 language model in this checkpoint)".into(),
    })
}

/// Export the MLX Gemma 4 checkpoint in `model_dir` as a GGUF file `out`.
pub fn export_gemma4(
    model_dir: &Path,
    out: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    if out.exists() && !opts.overwrite {
        return Err(ExportError::Output {
            path: out.into(),
            reason: "exists (pass --force to replace it)".into(),
        });
    }
    let ckpt = Checkpoint::open(model_dir)?;
    let cfg_path = ckpt.config_path().to_path_buf();
    let cfg = Config::from_checkpoint(&ckpt)?;
    let t = &cfg.text;
    let rope_freqs = check_for_llama(t, &cfg_path)?;
    let src = Source::open(&ckpt)?;
    let prefix = model_prefix(&ckpt)?;
    let mut items = plan(t, &ckpt, &src, prefix, rope_freqs)?;
    let lm_head = format!("{}lm_head", prefix.strip_suffix("model.").unwrap_or(prefix));
    let mut notes = vec![];

    // Every checkpoint tensor is exported or belongs to a tower left out.
    let used: BTreeSet<String> = items
        .iter()
        .flat_map(|it| match &it.src {
            Src::Affine { module, .. } => ["weight", "scales", "biases"]
                .iter()
                .map(|p| format!("{module}.{p}"))
                .collect::<Vec<_>>(),
            Src::Dense { name, .. } => vec![name.clone()],
            Src::Values(_) => vec![],
        })
        .collect();
    let mut left_out: BTreeMap<&str, usize> = BTreeMap::new();
    let mut names: Vec<&str> = ckpt.tensor_names().collect();
    names.sort();
    for name in names {
        if used.contains(name) {
            continue;
        }
        if let Some(p) = LEFT_OUT.iter().find(|p| name.starts_with(**p)) {
            *left_out.entry(p.trim_end_matches('.')).or_default() += 1;
            continue;
        }
        if name.starts_with(&lm_head) {
            return Err(ExportError::Tensor {
                dir: model_dir.into(),
                tensor: name.into(),
                reason: "an untied LM head is not exported (Gemma 4 ties it to embed_tokens)"
                    .into(),
            });
        }
        return Err(ExportError::Tensor {
            dir: model_dir.into(),
            tensor: name.into(),
            reason: "not a tensor of the Gemma 4 language model as llama.cpp's gemma4 reads it"
                .into(),
        });
    }
    for (tower, n) in &left_out {
        notes.push(format!(
            "left out: `{tower}` ({n} tensor{}): the GGUF holds the language model only (llama.cpp reads towers from an mmproj file, not written here)",
            if *n == 1 { "" } else { "s" }
        ));
    }

    choose_types(
        &mut items,
        opts.ty,
        t.num_hidden_layers as usize,
        &mut notes,
    );
    if opts.ty == GgufType::Q4_1 {
        for it in items.iter_mut() {
            if matches!(it.ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                check_exact(it, &src)?;
            }
        }
        let bad: Vec<&Item> = items.iter().filter(|i| i.inexact > 0).collect();
        let total: u64 = bad.iter().map(|i| i.inexact).sum();
        let range: u64 = bad.iter().map(|i| i.out_of_range).sum();
        let non_finite: u64 = bad.iter().map(|i| i.non_finite).sum();
        if let Some(first) = bad.first() {
            let nan = if non_finite > 0 {
                format!(", {non_finite} of them NaN or infinite in the checkpoint")
            } else {
                String::new()
            };
            let what = format!(
                "{total} scales/biases in {} tensor{} are not exactly representable in fp16 ({range} out of its range{nan}; first: `{}`, {} of {})",
                bad.len(),
                if bad.len() == 1 { "" } else { "s" },
                first.source_name(),
                first.inexact,
                first.checked
            );
            if range > 0 {
                return Err(ExportError::NotExact {
                    dir: model_dir.into(),
                    reason: format!("{what}: Q4_1 cannot hold them; use --gguf-type q4_k_m or f32"),
                });
            }
            if !opts.allow_rounding {
                return Err(ExportError::NotExact {
                    dir: model_dir.into(),
                    reason: format!(
                        "{what}: the Q4_1 export would not be lossless; pass --allow-rounding to round them to the nearest fp16"
                    ),
                });
            }
            notes.push(format!(
                "{what}: rounded to the nearest fp16 (--allow-rounding)"
            ));
        }
    }

    let vocab = tokenizer::read_vocab(model_dir, t.vocab_size as usize, ckpt.config_json())?;
    if vocab.padded > 0 {
        notes.push(format!(
            "tokenizer.json has {} fewer tokens than the embedding's {} rows: written as unused `[PADn]`",
            vocab.padded, t.vocab_size
        ));
    }
    let name = model_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "gemma4".into());
    let mut metadata: Vec<(String, MetaValue)> = vec![
        ("general.architecture".into(), MetaValue::String("gemma4".into())),
        ("general.type".into(), MetaValue::String("model".into())),
        ("general.name".into(), MetaValue::String(name)),
        (
            "general.description".into(),
            MetaValue::String(format!(
                "Gemma 4 language model exported by vlmbench convert --to-gguf ({}) from an MLX checkpoint",
                opts.ty.name()
            )),
        ),
        ("general.file_type".into(), MetaValue::U32(opts.ty.file_type())),
        ("general.quantization_version".into(), MetaValue::U32(2)),
    ];
    metadata.extend(hparams(t));
    metadata.extend(vocab.metadata());

    let specs: Vec<TensorSpec> = items
        .iter()
        .map(|it| TensorSpec::new(it.gguf.clone(), &it.shape, it.ty))
        .collect();
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let out_err = |e: std::io::Error| ExportError::Output {
        path: out.into(),
        reason: e.to_string(),
    };
    let result = (|| {
        let mut w = StreamWriter::create(&partial, &metadata, &specs).map_err(out_err)?;
        for it in &items {
            write_item(it, &src, &mut w, opts.allow_rounding)?;
        }
        w.finish().map_err(out_err)?;
        std::fs::rename(&partial, out).map_err(out_err)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(ExportReport {
        out: out.into(),
        ty: opts.ty,
        layers: t.num_hidden_layers as usize,
        hidden: t.hidden_size as usize,
        vocab: t.vocab_size as usize,
        tensors: items
            .iter()
            .map(|it| TensorReport {
                name: it.gguf.clone(),
                source: it.source_name(),
                shape: it.shape.clone(),
                ty: it.ty,
                how: it.how.clone(),
                checked: it.checked,
                inexact: it.inexact,
                out_of_range: it.out_of_range,
                non_finite: it.non_finite,
            })
            .collect(),
        bytes,
        notes,
    })
}
