//! The three tiny variant families and their `text_config` / `vision_config`, at the sizes of
//! `tools/reference/build_tiny_gemma4.py` so that both builders describe the same model.
//!
//! Every quantized Linear has an input dim that is a multiple of 64 (hidden 128 = two groups per
//! row): the converter silently leaves any other Linear in bf16, and the tiny models must not
//! depend on that corner. `sliding_window` is 16 so that short prompts wrap the rotating cache.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::tiny_tokenizer::tiny_special_id;

/// Vocabulary of the tiny tokenizer and of the embedding tables.
pub const TINY_VOCAB_SIZE: usize = 384;
/// Soft tokens per image: `vision_config.default_output_length`, the processor's `max_soft_tokens`.
pub const TINY_MAX_SOFT_TOKENS: usize = 16;

pub const SLIDING: &str = "sliding_attention";
pub const FULL: &str = "full_attention";

/// Which published Gemma 4 family a tiny checkpoint mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TinyVariant {
    /// 31B flavour: sliding/full layers, `attention_k_eq_v`, bidirectional image attention,
    /// vision tower with `standardize`.
    #[default]
    Dense,
    /// 26B-A4B flavour: the dense attention plus a mixture-of-experts block (4 experts, top 2)
    /// whose router is quantized at 8 bits.
    Moe,
    /// E2B flavour: per-layer embeddings, the last 3 layers reuse earlier KV, double-wide MLP on
    /// those layers, vision tower with clipped linears.
    Ple,
}

impl TinyVariant {
    pub const ALL: [TinyVariant; 3] = [TinyVariant::Dense, TinyVariant::Moe, TinyVariant::Ple];

    pub fn name(self) -> &'static str {
        match self {
            TinyVariant::Dense => "dense",
            TinyVariant::Moe => "moe",
            TinyVariant::Ple => "ple",
        }
    }

    /// The E2B/E4B chat template ends the generation prompt at `<|turn>model\n`; the large
    /// (26B/31B) one adds an empty, closed thought channel.
    pub fn large_template(self) -> bool {
        !matches!(self, TinyVariant::Ple)
    }

    pub fn text_config(self) -> TextConfig {
        let base = TextConfig::base();
        let six = vec![SLIDING, SLIDING, FULL, SLIDING, SLIDING, FULL];
        match self {
            TinyVariant::Dense => TextConfig {
                num_hidden_layers: 6,
                layer_types: strings(&six),
                num_key_value_heads: 2,
                num_global_key_value_heads: Some(1),
                attention_k_eq_v: true,
                use_bidirectional_attention: Some("vision".into()),
                ..base
            },
            TinyVariant::Moe => TextConfig {
                num_hidden_layers: 6,
                layer_types: strings(&six),
                // The always-on dense MLP beside the experts.
                intermediate_size: 128,
                num_key_value_heads: 2,
                num_global_key_value_heads: Some(1),
                attention_k_eq_v: true,
                enable_moe_block: true,
                num_experts: Some(4),
                top_k_experts: Some(2),
                moe_intermediate_size: Some(64),
                use_bidirectional_attention: Some("vision".into()),
                ..base
            },
            TinyVariant::Ple => TextConfig {
                num_hidden_layers: 8,
                layer_types: strings(&[
                    SLIDING, SLIDING, FULL, SLIDING, SLIDING, FULL, SLIDING, FULL,
                ]),
                num_key_value_heads: 1,
                num_global_key_value_heads: None,
                attention_k_eq_v: false,
                hidden_size_per_layer_input: 64,
                // Layers 5, 6, 7 reuse the KV of layers 2, 4, 2.
                num_kv_shared_layers: 3,
                use_double_wide_mlp: true,
                use_bidirectional_attention: None,
                ..base
            },
        }
    }

    pub fn vision_config(self) -> VisionConfig {
        let (use_clipped_linears, standardize) = match self {
            TinyVariant::Dense | TinyVariant::Moe => (false, true),
            TinyVariant::Ple => (true, false),
        };
        VisionConfig {
            use_clipped_linears,
            standardize,
            ..VisionConfig::base()
        }
    }
}

impl fmt::Display for TinyVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not `dense`, `moe` or `ple`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tiny variant {0:?}: expected dense, moe or ple")]
pub struct UnknownVariant(pub String);

impl FromStr for TinyVariant {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TinyVariant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| UnknownVariant(s.to_string()))
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// RoPE settings of one attention type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partial_rotary_factor: Option<f64>,
    pub rope_theta: f64,
    pub rope_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextRope {
    pub full_attention: RopeParameters,
    pub sliding_attention: RopeParameters,
}

/// `text_config`, fields in the order the Python builder writes them. Optional fields that the
/// Python config carries as `null` serialize as `null`; the MoE-only ones are left out elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub head_dim: usize,
    pub global_head_dim: usize,
    pub sliding_window: usize,
    pub vocab_size: usize,
    pub vocab_size_per_layer_input: usize,
    pub final_logit_softcapping: f64,
    pub hidden_activation: String,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub rope_parameters: TextRope,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub attention_dropout: f64,
    pub pad_token_id: u32,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
    pub num_hidden_layers: usize,
    pub layer_types: Vec<String>,
    pub num_key_value_heads: usize,
    pub num_global_key_value_heads: Option<usize>,
    pub attention_k_eq_v: bool,
    pub hidden_size_per_layer_input: usize,
    pub num_kv_shared_layers: usize,
    pub use_double_wide_mlp: bool,
    pub enable_moe_block: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub num_experts: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub top_k_experts: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub moe_intermediate_size: Option<usize>,
    pub use_bidirectional_attention: Option<String>,
}

impl TextConfig {
    /// Fields shared by all variants; the layer structure is filled in per variant.
    pub(super) fn base() -> TextConfig {
        TextConfig {
            model_type: "gemma4_text".into(),
            hidden_size: 128,
            intermediate_size: 256,
            num_attention_heads: 4,
            head_dim: 32,
            global_head_dim: 64,
            sliding_window: 16,
            vocab_size: TINY_VOCAB_SIZE,
            vocab_size_per_layer_input: TINY_VOCAB_SIZE,
            final_logit_softcapping: 30.0,
            hidden_activation: "gelu_pytorch_tanh".into(),
            rms_norm_eps: 1e-6,
            max_position_embeddings: 4096,
            rope_parameters: TextRope {
                full_attention: RopeParameters {
                    partial_rotary_factor: Some(0.25),
                    rope_theta: 1_000_000.0,
                    rope_type: "proportional".into(),
                },
                sliding_attention: RopeParameters {
                    partial_rotary_factor: None,
                    rope_theta: 10_000.0,
                    rope_type: "default".into(),
                },
            },
            tie_word_embeddings: true,
            attention_bias: false,
            attention_dropout: 0.0,
            pad_token_id: special("<pad>"),
            bos_token_id: special("<bos>"),
            eos_token_id: special("<eos>"),
            num_hidden_layers: 0,
            layer_types: Vec::new(),
            num_key_value_heads: 0,
            num_global_key_value_heads: None,
            attention_k_eq_v: false,
            hidden_size_per_layer_input: 0,
            num_kv_shared_layers: 0,
            use_double_wide_mlp: false,
            enable_moe_block: false,
            num_experts: None,
            top_k_experts: None,
            moe_intermediate_size: None,
            use_bidirectional_attention: None,
        }
    }

    pub fn is_full(&self, layer: usize) -> bool {
        self.layer_types[layer] == FULL
    }

    /// Layers from this index on reuse the KV of an earlier layer and own no k/v projections.
    pub fn first_kv_shared_layer(&self) -> usize {
        self.num_hidden_layers - self.num_kv_shared_layers
    }

    pub fn is_kv_shared(&self, layer: usize) -> bool {
        layer >= self.first_kv_shared_layer()
    }

    /// Head dim of a layer: `global_head_dim` on full-attention layers.
    pub fn layer_head_dim(&self, layer: usize) -> usize {
        if self.is_full(layer) {
            self.global_head_dim
        } else {
            self.head_dim
        }
    }

    /// KV heads of a layer: full layers with `attention_k_eq_v` use the global count.
    pub fn layer_kv_heads(&self, layer: usize) -> usize {
        match self.num_global_key_value_heads {
            Some(global) if self.attention_k_eq_v && self.is_full(layer) => global,
            _ => self.num_key_value_heads,
        }
    }

    /// Full layers with `attention_k_eq_v` take V from the K projection: no `v_proj`.
    pub fn has_v_proj(&self, layer: usize) -> bool {
        !(self.attention_k_eq_v && self.is_full(layer))
    }

    /// Dense MLP width of a layer: doubled on KV-shared layers with `use_double_wide_mlp`.
    pub fn layer_intermediate(&self, layer: usize) -> usize {
        if self.use_double_wide_mlp && self.is_kv_shared(layer) {
            2 * self.intermediate_size
        } else {
            self.intermediate_size
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionRope {
    pub rope_theta: f64,
    pub rope_type: String,
}

/// `vision_config`, fields in the order the Python builder writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionConfig {
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub global_head_dim: usize,
    pub hidden_activation: String,
    pub rms_norm_eps: f64,
    pub patch_size: usize,
    pub pooling_kernel_size: usize,
    pub position_embedding_size: usize,
    pub default_output_length: usize,
    pub rope_parameters: VisionRope,
    pub attention_bias: bool,
    pub use_clipped_linears: bool,
    pub standardize: bool,
}

impl VisionConfig {
    pub(super) fn base() -> VisionConfig {
        VisionConfig {
            model_type: "gemma4_vision".into(),
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            num_key_value_heads: 2,
            head_dim: 32,
            global_head_dim: 32,
            hidden_activation: "gelu_pytorch_tanh".into(),
            rms_norm_eps: 1e-6,
            patch_size: 16,
            // >= 2: with 1 the vision-mask bookkeeping would pick the padding mask.
            pooling_kernel_size: 3,
            position_embedding_size: 64,
            default_output_length: TINY_MAX_SOFT_TOKENS,
            rope_parameters: VisionRope {
                rope_theta: 100.0,
                rope_type: "default".into(),
            },
            attention_bias: false,
            use_clipped_linears: false,
            standardize: false,
        }
    }
}

/// Id of a special token of the tiny tokenizer. The names used here are all in
/// `TINY_SPECIAL_TOKENS`; a test pins that, so the fallback is never taken.
pub(crate) fn special(token: &str) -> u32 {
    tiny_special_id(token).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_round_trip_and_unknown_names_are_rejected() {
        for v in TinyVariant::ALL {
            assert_eq!(v.name().parse::<TinyVariant>().unwrap(), v);
        }
        let err = "31b".parse::<TinyVariant>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown tiny variant \"31b\": expected dense, moe or ple"
        );
    }

    #[test]
    fn layer_geometry_follows_the_flags() {
        let dense = TinyVariant::Dense.text_config();
        // Full layers with k_eq_v: global head dim, one global KV head, no v_proj.
        assert_eq!(
            (
                dense.layer_head_dim(2),
                dense.layer_kv_heads(2),
                dense.has_v_proj(2)
            ),
            (64, 1, false)
        );
        assert_eq!(
            (
                dense.layer_head_dim(0),
                dense.layer_kv_heads(0),
                dense.has_v_proj(0)
            ),
            (32, 2, true)
        );
        assert!(!dense.is_kv_shared(5));

        let ple = TinyVariant::Ple.text_config();
        assert_eq!(ple.first_kv_shared_layer(), 5);
        assert_eq!((ple.layer_kv_heads(2), ple.has_v_proj(2)), (1, true));
        assert_eq!(
            (ple.layer_intermediate(4), ple.layer_intermediate(5)),
            (256, 512)
        );
        for v in TinyVariant::ALL {
            let t = v.text_config();
            assert_eq!(t.layer_types.len(), t.num_hidden_layers, "{v}");
            assert_eq!(t.sliding_window, 16, "{v}");
        }
    }

    #[test]
    fn token_ids_come_from_the_tiny_tokenizer() {
        let t = TinyVariant::Dense.text_config();
        assert_eq!((t.pad_token_id, t.bos_token_id, t.eos_token_id), (0, 2, 1));
        // Every name `special` is called with (here and in config.rs).
        for name in [
            "<pad>",
            "<bos>",
            "<eos>",
            "<turn|>",
            "<|tool_response>",
            "<|image|>",
            "<|image>",
            "<image|>",
            "<|audio|>",
            "<|audio>",
            "<audio|>",
            "<|video|>",
        ] {
            assert!(tiny_special_id(name).is_some(), "{name}");
        }
    }
}
