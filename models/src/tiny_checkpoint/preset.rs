//! Full-size presets: checkpoints with the shapes of a published model and random 4-bit weights,
//! for benchmarks where only the sizes matter (a 31B-shaped model weighs about 17 GB, so it is
//! generated where it runs instead of being carried there).
//!
//! The shapes are the published config values of the dense 31B model and of E2B (see
//! `gemma4-reference.md` §1.4/§1.5; E2B without its audio tower, which vlmbench does not run). The tokenizer stays the tiny one padded with `<unusedN>` to
//! the full vocabulary, so special-token ids are the tiny ones, not Google's: random prompts and
//! random weights make the text meaningless anyway.

use std::fmt;
use std::str::FromStr;

use super::spec::{TextConfig, VisionConfig, FULL, SLIDING};

/// mlx-community's shard size for large checkpoints (5 GB per `model-0000X-of-0000N.safetensors`).
pub const FULL_SIZE_SHARD_BYTES: u64 = 5_000_000_000;

/// A full-size model shape (or its miniature, for dry runs on a CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Gemma 4 31B dense: 60 layers of 5376, (5 sliding + 1 full) x 10, vision tower 1152 x 27.
    Gemma4_31b,
    /// The 31B structure at toy widths: 12 layers (5 sliding + 1 full) x 2, k_eq_v, bidirectional
    /// image attention, standardized vision tower; written in several small shards so the dry run
    /// exercises the sharded layout.
    Gemma4_31bMini,
    /// Gemma 4 E2B: 35 layers of 1536, (4 sliding + 1 full) x 7, per-layer embeddings (256 per
    /// layer), the last 20 layers sharing earlier layers' KV, double-wide MLPs on those, vision
    /// tower 768 x 16 with clipped linears. About 3 GB at 4 bits: the "small" model of CPU runs.
    Gemma4E2b,
}

impl Preset {
    pub const ALL: [Preset; 3] = [
        Preset::Gemma4_31b,
        Preset::Gemma4_31bMini,
        Preset::Gemma4E2b,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Gemma4_31b => "gemma-4-31b",
            Preset::Gemma4_31bMini => "gemma-4-31b-mini",
            Preset::Gemma4E2b => "gemma-4-e2b",
        }
    }

    /// Largest shard, in stored bytes; a single tensor larger than this gets a shard of its own.
    pub fn shard_bytes(self) -> u64 {
        match self {
            Preset::Gemma4_31b | Preset::Gemma4E2b => FULL_SIZE_SHARD_BYTES,
            Preset::Gemma4_31bMini => 1 << 20,
        }
    }

    pub fn text_config(self) -> TextConfig {
        if self == Preset::Gemma4E2b {
            return e2b_text_config();
        }
        let periods = match self {
            Preset::Gemma4_31b => 10,
            _ => 2,
        };
        let mut layer_types = Vec::new();
        for _ in 0..periods {
            layer_types.extend([SLIDING; 5].map(String::from));
            layer_types.push(FULL.to_string());
        }
        let shared = TextConfig {
            num_hidden_layers: layer_types.len(),
            layer_types,
            attention_k_eq_v: true,
            use_bidirectional_attention: Some("vision".into()),
            ..TextConfig::base()
        };
        match self {
            Preset::Gemma4_31b => TextConfig {
                hidden_size: 5376,
                intermediate_size: 21504,
                num_attention_heads: 32,
                num_key_value_heads: 16,
                num_global_key_value_heads: Some(4),
                head_dim: 256,
                global_head_dim: 512,
                sliding_window: 1024,
                vocab_size: 262_144,
                vocab_size_per_layer_input: 262_144,
                max_position_embeddings: 262_144,
                ..shared
            },
            _ => TextConfig {
                hidden_size: 256,
                intermediate_size: 1024,
                num_attention_heads: 8,
                num_key_value_heads: 4,
                num_global_key_value_heads: Some(1),
                head_dim: 32,
                global_head_dim: 64,
                sliding_window: 64,
                vocab_size: 4096,
                vocab_size_per_layer_input: 4096,
                max_position_embeddings: 8192,
                ..shared
            },
        }
    }

    pub fn vision_config(self) -> VisionConfig {
        if self == Preset::Gemma4E2b {
            return VisionConfig {
                hidden_size: 768,
                intermediate_size: 3072,
                num_hidden_layers: 16,
                num_attention_heads: 12,
                num_key_value_heads: 12,
                head_dim: 64,
                global_head_dim: 64,
                position_embedding_size: 10240,
                standardize: false,
                use_clipped_linears: true,
                patch_size: 16,
                pooling_kernel_size: 3,
                default_output_length: 280,
                ..VisionConfig::base()
            };
        }
        let shared = VisionConfig {
            standardize: true,
            use_clipped_linears: false,
            patch_size: 16,
            pooling_kernel_size: 3,
            default_output_length: 280,
            ..VisionConfig::base()
        };
        match self {
            Preset::Gemma4_31b => VisionConfig {
                hidden_size: 1152,
                intermediate_size: 4304,
                num_hidden_layers: 27,
                num_attention_heads: 16,
                num_key_value_heads: 16,
                head_dim: 72,
                global_head_dim: 72,
                position_embedding_size: 10240,
                ..shared
            },
            _ => VisionConfig {
                hidden_size: 144,
                intermediate_size: 288,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                num_key_value_heads: 2,
                head_dim: 72,
                global_head_dim: 72,
                position_embedding_size: 1024,
                ..shared
            },
        }
    }
}

/// The text shapes ONE of `ranks` tensor-parallel ranks computes with, split the way
/// `--tensor-parallel` splits the decoder (`gemma4::tensor_parallel`): query heads and MLP units
/// divided by `ranks`, KV heads divided too, or one per rank where there are fewer KV heads than
/// ranks (replicated); embeddings, norms and the tied LM head stay whole, as every rank holds
/// them. Benched on one GPU it gives a rank's compute time without the all-reduces: the ceiling of
/// `ranks`-way tensor-parallel decode on that GPU.
pub fn one_rank_of(text: &TextConfig, ranks: usize) -> Result<TextConfig, String> {
    let refuse = |field: &str, value: usize, why: &str| {
        format!("{field} = {value} cannot be split over {ranks} tensor-parallel ranks: {why}")
    };
    if ranks == 0 {
        return Err("a tensor-parallel group of 0 ranks".into());
    }
    if text.enable_moe_block {
        return Err("MoE experts are split whole, not by shape; no preset has them".into());
    }
    if text.num_attention_heads % ranks != 0 {
        return Err(refuse(
            "num_attention_heads",
            text.num_attention_heads,
            "each rank needs the same number of query heads",
        ));
    }
    // down_proj reads a rank's units in whole quantization groups.
    if text.intermediate_size % (ranks * super::params::GROUP_SIZE as usize) != 0 {
        return Err(refuse(
            "intermediate_size",
            text.intermediate_size,
            "each rank's share must be whole groups of 64",
        ));
    }
    let kv = |field: &str, n: usize| match (n % ranks, ranks % n) {
        (0, _) => Ok(n / ranks),
        (_, 0) => Ok(1),
        _ => Err(refuse(
            field,
            n,
            "the KV heads must divide, or be a multiple of, the ranks",
        )),
    };
    Ok(TextConfig {
        num_attention_heads: text.num_attention_heads / ranks,
        num_key_value_heads: kv("num_key_value_heads", text.num_key_value_heads)?,
        num_global_key_value_heads: text
            .num_global_key_value_heads
            .map(|n| kv("num_global_key_value_heads", n))
            .transpose()?,
        intermediate_size: text.intermediate_size / ranks,
        ..text.clone()
    })
}

/// E2B's text model (`gemma4-reference.md` §1.4): the 31B presets' fields do not apply (no
/// k_eq_v, no global KV heads, no bidirectional image attention; PLE and KV sharing instead).
fn e2b_text_config() -> TextConfig {
    let mut layer_types = Vec::new();
    for _ in 0..7 {
        layer_types.extend([SLIDING; 4].map(String::from));
        layer_types.push(FULL.to_string());
    }
    TextConfig {
        num_hidden_layers: layer_types.len(),
        layer_types,
        hidden_size: 1536,
        intermediate_size: 6144,
        num_attention_heads: 8,
        num_key_value_heads: 1,
        num_global_key_value_heads: None,
        head_dim: 256,
        global_head_dim: 512,
        attention_k_eq_v: false,
        sliding_window: 512,
        hidden_size_per_layer_input: 256,
        num_kv_shared_layers: 20,
        use_double_wide_mlp: true,
        use_bidirectional_attention: None,
        vocab_size: 262_144,
        vocab_size_per_layer_input: 262_144,
        max_position_embeddings: 131_072,
        ..TextConfig::base()
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of [`Preset::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset {0:?}: expected gemma-4-31b, gemma-4-31b-mini or gemma-4-e2b")]
pub struct UnknownPreset(pub String);

impl FromStr for Preset {
    type Err = UnknownPreset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPreset(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_checkpoint::params::{model_params, Storage};

    #[test]
    fn the_31b_preset_has_the_published_text_and_vision_shapes() {
        let t = Preset::Gemma4_31b.text_config();
        assert_eq!(
            (t.hidden_size, t.num_hidden_layers, t.intermediate_size),
            (5376, 60, 21504)
        );
        assert_eq!(
            (
                t.num_attention_heads,
                t.num_key_value_heads,
                t.num_global_key_value_heads
            ),
            (32, 16, Some(4))
        );
        assert_eq!(
            (t.head_dim, t.global_head_dim, t.sliding_window),
            (256, 512, 1024)
        );
        assert_eq!(
            (t.vocab_size, t.max_position_embeddings),
            (262_144, 262_144)
        );
        assert!(t.attention_k_eq_v && !t.enable_moe_block && !t.use_double_wide_mlp);
        assert_eq!(
            (t.hidden_size_per_layer_input, t.num_kv_shared_layers),
            (0, 0)
        );
        assert_eq!(t.use_bidirectional_attention.as_deref(), Some("vision"));
        assert_eq!(t.final_logit_softcapping, 30.0);
        // (5 sliding + 1 full) x 10: full attention on layers 5, 11, ..., 59.
        let full: Vec<usize> = (0..60).filter(|&i| t.is_full(i)).collect();
        assert_eq!(full, (0..10).map(|k| 6 * k + 5).collect::<Vec<_>>());
        assert_eq!(
            t.rope_parameters.full_attention.partial_rotary_factor,
            Some(0.25)
        );

        let v = Preset::Gemma4_31b.vision_config();
        assert_eq!(
            (v.hidden_size, v.intermediate_size, v.num_hidden_layers),
            (1152, 4304, 27)
        );
        assert_eq!(
            (v.num_attention_heads, v.head_dim, v.position_embedding_size),
            (16, 72, 10240)
        );
        assert_eq!(
            (v.patch_size, v.pooling_kernel_size, v.default_output_length),
            (16, 3, 280)
        );
        assert!(v.standardize && !v.use_clipped_linears);
    }

    #[test]
    fn the_e2b_preset_has_e2bs_published_shapes_and_per_layer_embeddings() {
        let t = Preset::Gemma4E2b.text_config();
        assert_eq!(
            (t.hidden_size, t.num_hidden_layers, t.intermediate_size),
            (1536, 35, 6144)
        );
        assert_eq!(
            (
                t.num_attention_heads,
                t.num_key_value_heads,
                t.num_global_key_value_heads
            ),
            (8, 1, None)
        );
        assert_eq!(
            (t.head_dim, t.global_head_dim, t.sliding_window),
            (256, 512, 512)
        );
        assert_eq!(
            (t.hidden_size_per_layer_input, t.num_kv_shared_layers),
            (256, 20)
        );
        assert!(
            t.use_double_wide_mlp && !t.attention_k_eq_v && t.use_bidirectional_attention.is_none()
        );
        // (4 sliding + 1 full) x 7: full attention on layers 4, 9, ..., 34.
        let full: Vec<usize> = (0..35).filter(|&i| t.is_full(i)).collect();
        assert_eq!(full, (0..7).map(|k| 5 * k + 4).collect::<Vec<_>>());
        let v = Preset::Gemma4E2b.vision_config();
        assert_eq!(
            (
                v.hidden_size,
                v.num_hidden_layers,
                v.num_attention_heads,
                v.head_dim
            ),
            (768, 16, 12, 64)
        );
        assert!(v.use_clipped_linears && !v.standardize);
        let params = model_params(&t, &v);
        let bytes: u64 = params.iter().map(super::super::sharded::stored_bytes).sum();
        // 4-bit text weights (the per-layer-embedding table alone is 262144 x 35*256) + bf16 vision.
        assert!((2.6e9..3.2e9).contains(&(bytes as f64)), "{bytes}");
    }

    #[test]
    fn the_31b_preset_has_the_published_projection_shapes_and_weighs_about_17_gb() {
        let t = Preset::Gemma4_31b.text_config();
        let params = model_params(&t, &Preset::Gemma4_31b.vision_config());
        let shape = |name: &str| {
            params
                .iter()
                .find(|p| p.name == name)
                .unwrap_or_else(|| panic!("no {name}"))
                .shape
                .clone()
        };
        let l = "language_model.model.layers";
        assert_eq!(
            shape(&format!("{l}.0.self_attn.q_proj.weight")),
            [8192, 5376]
        );
        assert_eq!(
            shape(&format!("{l}.0.self_attn.k_proj.weight")),
            [4096, 5376]
        );
        assert_eq!(
            shape(&format!("{l}.0.self_attn.v_proj.weight")),
            [4096, 5376]
        );
        assert_eq!(
            shape(&format!("{l}.0.self_attn.o_proj.weight")),
            [5376, 8192]
        );
        assert_eq!(
            shape(&format!("{l}.5.self_attn.q_proj.weight")),
            [16384, 5376]
        );
        assert_eq!(
            shape(&format!("{l}.5.self_attn.k_proj.weight")),
            [2048, 5376]
        );
        assert!(!params
            .iter()
            .any(|p| p.name == format!("{l}.5.self_attn.v_proj.weight")));
        assert_eq!(
            shape(&format!("{l}.5.self_attn.o_proj.weight")),
            [5376, 16384]
        );
        assert_eq!(shape(&format!("{l}.0.mlp.gate_proj.weight")), [21504, 5376]);

        let text_bytes: u64 = params
            .iter()
            .filter(|p| p.name.starts_with("language_model."))
            .map(super::super::sharded::stored_bytes)
            .sum();
        // mlx-community's 4-bit 31B: about 17.3 GB of language-model weights.
        assert!(
            (17.0e9..17.7e9).contains(&(text_bytes as f64)),
            "{text_bytes}"
        );
        assert!(params.iter().all(|p| !p.name.starts_with("language_model.")
            || p.shape.len() < 2
            || matches!(p.storage, Storage::Quantized { bits: 4 })));
    }

    #[test]
    fn preset_names_round_trip_and_unknown_names_are_rejected() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        }
        assert_eq!(
            "31b".parse::<Preset>().unwrap_err().to_string(),
            "unknown preset \"31b\": expected gemma-4-31b, gemma-4-31b-mini or gemma-4-e2b"
        );
    }

    /// The shapes one rank computes with are the slices `--tensor-parallel` gives rank 0
    /// (`gemma4::tensor_parallel`): q/k/v and gate/up keep 1/n of their rows, o_proj and down_proj
    /// 1/n of their inputs, fewer KV heads than ranks leave one per rank, the embedding is whole.
    #[test]
    fn one_rank_of_n_divides_heads_and_mlp_units_the_way_tensor_parallel_splits_them() {
        let full = Preset::Gemma4_31b.text_config();
        let vision = Preset::Gemma4_31b.vision_config();
        for (ranks, sliding_kv, global_kv) in [(2, 2048, 1024), (4, 1024, 512), (8, 512, 512)] {
            let t = one_rank_of(&full, ranks).unwrap();
            let params = model_params(&t, &vision);
            let (q_sliding, q_full, mlp) = (
                8192 / ranks as i32,
                16384 / ranks as i32,
                21504 / ranks as i32,
            );
            for (name, want) in [
                ("layers.0.self_attn.q_proj", [q_sliding, 5376]),
                ("layers.0.self_attn.k_proj", [sliding_kv, 5376]),
                ("layers.0.self_attn.o_proj", [5376, q_sliding]),
                ("layers.5.self_attn.q_proj", [q_full, 5376]),
                ("layers.5.self_attn.k_proj", [global_kv, 5376]),
                ("layers.5.self_attn.o_proj", [5376, q_full]),
                ("layers.0.mlp.gate_proj", [mlp, 5376]),
                ("layers.0.mlp.down_proj", [5376, mlp]),
                ("embed_tokens", [262_144, 5376]),
            ] {
                let name = format!("language_model.model.{name}.weight");
                let p = params.iter().find(|p| p.name == name).expect(&name);
                assert_eq!(p.shape, want, "{name}, one of {ranks}");
            }
            assert_eq!((t.hidden_size, t.num_hidden_layers), (5376, 60));
        }
        // E2B's single KV head is kept whole on each of two ranks.
        let e2b = one_rank_of(&Preset::Gemma4E2b.text_config(), 2).unwrap();
        assert_eq!((e2b.num_attention_heads, e2b.num_key_value_heads), (4, 1));
    }

    #[test]
    fn one_rank_of_refuses_a_split_that_tensor_parallel_refuses_and_names_the_field() {
        let mini = Preset::Gemma4_31bMini.text_config();
        let err = one_rank_of(&mini, 3).unwrap_err();
        assert!(
            err.starts_with("num_attention_heads = 8 cannot be split over 3"),
            "{err}"
        );
        let narrow = TextConfig {
            intermediate_size: 192,
            ..mini.clone()
        };
        let err = one_rank_of(&narrow, 2).unwrap_err();
        assert!(err.starts_with("intermediate_size = 192"), "{err}");
        let odd_kv = TextConfig {
            num_key_value_heads: 3,
            ..mini
        };
        let err = one_rank_of(&odd_kv, 2).unwrap_err();
        assert!(err.starts_with("num_key_value_heads = 3"), "{err}");
    }
}
