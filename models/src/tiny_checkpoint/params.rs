//! Every parameter of mlx-vlm's Gemma 4 module tree for a config, in the tree's flattening order,
//! with how it is initialised and how it is stored.
//!
//! The order matters: the Python builder gives parameter `i` (in this order) the `i`-th of
//! `split(key(seed), n)` keys, and we do the same, so both builders draw the same numbers.
//! Parameters the converter would drop (k/v of KV-shared layers, clip bounds without clipped
//! linears) are not part of the tree in the first place, so they are not listed.

use super::spec::{TextConfig, VisionConfig};

/// Default quantization of the mlx-community 4-bit checkpoints.
pub const GROUP_SIZE: i32 = 64;
pub const BITS: i32 = 4;
/// The converter quantizes MoE routers at 8 bits (their logits pick the experts).
pub const ROUTER_BITS: i32 = 8;

/// Scale and offset of a parameter drawn from a standard normal `r`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// `0.08 * r`: Linear weights (about MLX's `U(±1/√128)` spread).
    Linear,
    /// `0.05 * r`: embedding tables. A larger spread through the tied LM head makes the model
    /// repeat its last token.
    Embedding,
    /// `1 + 0.1 * r`: norm weights, `layer_scalar`, router scales, `std_scale`. All-ones (MLX's
    /// init) would make the model degenerate.
    AroundOne,
    /// `-(1.5 + 0.5 * |r|)`: clipped-linear lower bounds, tight enough to clip now and then.
    ClipMin,
    /// `1.5 + 0.5 * |r|`: clipped-linear upper bounds.
    ClipMax,
    /// `0.1 * r`: the vision `std_bias`.
    Small,
    /// `0.5 * r`: the vision position embedding table.
    Position,
}

/// How a parameter is written: bf16 as is, or affine-quantized (`.weight` uint32 plus
/// `.scales` / `.biases` bf16) with `group_size` 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Bf16,
    Quantized { bits: i32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Full tensor name, e.g. `language_model.model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    pub shape: Vec<i32>,
    pub init: Init,
    pub storage: Storage,
}

impl Param {
    /// Module path of a quantized parameter (the name without `.weight`), as the `quantization`
    /// block keys it.
    pub fn module_path(&self) -> &str {
        self.name.strip_suffix(".weight").unwrap_or(&self.name)
    }
}

/// Collects parameters under a name prefix.
struct Tree {
    params: Vec<Param>,
}

impl Tree {
    fn push(&mut self, name: String, shape: &[usize], init: Init, storage: Storage) {
        let shape = shape.iter().map(|&d| d as i32).collect();
        self.params.push(Param {
            name,
            shape,
            init,
            storage,
        });
    }

    /// A text-side Linear, Embedding or SwitchLinear: the converter quantizes it when its input
    /// dim (the last axis) is a multiple of the group size, and leaves it bf16 otherwise.
    fn text_quantizable(&mut self, module: String, shape: &[usize], init: Init, bits: i32) {
        let input_dim = shape[shape.len() - 1];
        let storage = if input_dim % GROUP_SIZE as usize == 0 {
            Storage::Quantized { bits }
        } else {
            Storage::Bf16
        };
        self.push(format!("{module}.weight"), shape, init, storage);
    }

    fn text_linear(&mut self, module: String, out_dim: usize, in_dim: usize) {
        self.text_quantizable(module, &[out_dim, in_dim], Init::Linear, BITS);
    }

    fn bf16(&mut self, name: String, shape: &[usize], init: Init) {
        self.push(name, shape, init, Storage::Bf16);
    }

    fn norm(&mut self, module: String, dim: usize) {
        self.bf16(format!("{module}.weight"), &[dim], Init::AroundOne);
    }
}

/// All parameters of the model (language model, vision tower, projector) in tree order.
pub fn model_params(text: &TextConfig, vision: &VisionConfig) -> Vec<Param> {
    let mut tree = Tree { params: Vec::new() };
    language_model(&mut tree, text);
    vision_tower(&mut tree, vision);
    // The projector lives under a name containing "vision", which the converter never quantizes.
    tree.bf16(
        "embed_vision.embedding_projection.weight".into(),
        &[text.hidden_size, vision.hidden_size],
        Init::Linear,
    );
    tree.params
}

fn language_model(tree: &mut Tree, t: &TextConfig) {
    let m = "language_model.model";
    let h = t.hidden_size;
    tree.text_quantizable(
        format!("{m}.embed_tokens"),
        &[t.vocab_size, h],
        Init::Embedding,
        BITS,
    );
    for i in 0..t.num_hidden_layers {
        decoder_layer(tree, t, &format!("{m}.layers.{i}"), i);
    }
    tree.norm(format!("{m}.norm"), h);
    let ple = t.hidden_size_per_layer_input;
    if ple > 0 {
        let width = t.num_hidden_layers * ple;
        tree.text_quantizable(
            format!("{m}.embed_tokens_per_layer"),
            &[t.vocab_size_per_layer_input, width],
            Init::Embedding,
            BITS,
        );
        tree.text_linear(format!("{m}.per_layer_model_projection"), width, h);
        tree.norm(format!("{m}.per_layer_projection_norm"), ple);
    }
}

fn decoder_layer(tree: &mut Tree, t: &TextConfig, p: &str, i: usize) {
    let h = t.hidden_size;
    let d = t.layer_head_dim(i);
    let kv = t.layer_kv_heads(i) * d;
    let q = t.num_attention_heads * d;
    let owns_kv = !t.is_kv_shared(i);

    tree.text_linear(format!("{p}.self_attn.q_proj"), q, h);
    if owns_kv {
        tree.text_linear(format!("{p}.self_attn.k_proj"), kv, h);
        if t.has_v_proj(i) {
            tree.text_linear(format!("{p}.self_attn.v_proj"), kv, h);
        }
    }
    tree.text_linear(format!("{p}.self_attn.o_proj"), h, q);
    tree.norm(format!("{p}.self_attn.q_norm"), d);
    if owns_kv {
        tree.norm(format!("{p}.self_attn.k_norm"), d);
    }

    let inter = t.layer_intermediate(i);
    tree.text_linear(format!("{p}.mlp.gate_proj"), inter, h);
    tree.text_linear(format!("{p}.mlp.down_proj"), h, inter);
    tree.text_linear(format!("{p}.mlp.up_proj"), inter, h);
    for norm in [
        "input_layernorm",
        "post_attention_layernorm",
        "pre_feedforward_layernorm",
        "post_feedforward_layernorm",
    ] {
        tree.norm(format!("{p}.{norm}"), h);
    }

    if t.enable_moe_block {
        let experts = t.num_experts.unwrap_or(0);
        let width = t.moe_intermediate_size.unwrap_or(0);
        tree.text_quantizable(
            format!("{p}.router.proj"),
            &[experts, h],
            Init::Linear,
            ROUTER_BITS,
        );
        tree.bf16(format!("{p}.router.scale"), &[h], Init::AroundOne);
        tree.bf16(
            format!("{p}.router.per_expert_scale"),
            &[experts],
            Init::AroundOne,
        );
        let glu = format!("{p}.experts.switch_glu");
        tree.text_quantizable(
            format!("{glu}.gate_proj"),
            &[experts, width, h],
            Init::Linear,
            BITS,
        );
        tree.text_quantizable(
            format!("{glu}.up_proj"),
            &[experts, width, h],
            Init::Linear,
            BITS,
        );
        tree.text_quantizable(
            format!("{glu}.down_proj"),
            &[experts, h, width],
            Init::Linear,
            BITS,
        );
        for norm in [
            "post_feedforward_layernorm_1",
            "post_feedforward_layernorm_2",
            "pre_feedforward_layernorm_2",
        ] {
            tree.norm(format!("{p}.{norm}"), h);
        }
    }

    let ple = t.hidden_size_per_layer_input;
    if ple > 0 {
        tree.text_linear(format!("{p}.per_layer_input_gate"), ple, h);
        tree.text_linear(format!("{p}.per_layer_projection"), h, ple);
        tree.norm(format!("{p}.post_per_layer_input_norm"), h);
    }
    tree.bf16(format!("{p}.layer_scalar"), &[1], Init::AroundOne);
}

fn vision_tower(tree: &mut Tree, v: &VisionConfig) {
    let d = v.hidden_size;
    let p = "vision_tower";
    let patch_dim = 3 * v.patch_size * v.patch_size;
    tree.bf16(
        format!("{p}.patch_embedder.input_proj.weight"),
        &[d, patch_dim],
        Init::Linear,
    );
    tree.bf16(
        format!("{p}.patch_embedder.position_embedding_table"),
        &[2, v.position_embedding_size, d],
        Init::Position,
    );
    let q = v.num_attention_heads * v.head_dim;
    let kv = v.num_key_value_heads * v.head_dim;
    for j in 0..v.num_hidden_layers {
        let l = format!("{p}.encoder.layers.{j}");
        for (name, out_dim, in_dim) in [
            ("q_proj", q, d),
            ("k_proj", kv, d),
            ("v_proj", kv, d),
            ("o_proj", d, q),
        ] {
            clippable_linear(tree, v, &format!("{l}.self_attn.{name}"), out_dim, in_dim);
        }
        tree.norm(format!("{l}.self_attn.q_norm"), v.head_dim);
        tree.norm(format!("{l}.self_attn.k_norm"), v.head_dim);
        let inter = v.intermediate_size;
        for (name, out_dim, in_dim) in [
            ("gate_proj", inter, d),
            ("up_proj", inter, d),
            ("down_proj", d, inter),
        ] {
            clippable_linear(tree, v, &format!("{l}.mlp.{name}"), out_dim, in_dim);
        }
        for norm in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ] {
            tree.norm(format!("{l}.{norm}"), d);
        }
    }
    if v.standardize {
        tree.bf16(format!("{p}.std_bias"), &[d], Init::Small);
        tree.bf16(format!("{p}.std_scale"), &[d], Init::AroundOne);
    }
}

/// A vision Linear wrapped so that it can clip its input and output; the scalar bounds exist only
/// with `use_clipped_linears`.
fn clippable_linear(
    tree: &mut Tree,
    v: &VisionConfig,
    module: &str,
    out_dim: usize,
    in_dim: usize,
) {
    tree.bf16(
        format!("{module}.linear.weight"),
        &[out_dim, in_dim],
        Init::Linear,
    );
    if v.use_clipped_linears {
        tree.bf16(format!("{module}.input_min"), &[], Init::ClipMin);
        tree.bf16(format!("{module}.input_max"), &[], Init::ClipMax);
        tree.bf16(format!("{module}.output_min"), &[], Init::ClipMin);
        tree.bf16(format!("{module}.output_max"), &[], Init::ClipMax);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_checkpoint::TinyVariant;

    fn params(v: TinyVariant) -> Vec<Param> {
        model_params(&v.text_config(), &v.vision_config())
    }

    #[test]
    fn counts_match_the_module_tree_of_each_variant() {
        // Parameter counts of mlx-vlm's module tree for the Python builder's configs.
        assert_eq!(params(TinyVariant::Dense).len(), 115);
        assert_eq!(params(TinyVariant::Moe).len(), 169);
        assert_eq!(params(TinyVariant::Ple).len(), 217);
    }

    #[test]
    fn every_text_matrix_is_quantized_and_nothing_on_the_vision_side_is() {
        for v in TinyVariant::ALL {
            for p in params(v) {
                let text_matrix = p.name.starts_with("language_model.") && p.shape.len() >= 2;
                match p.storage {
                    Storage::Quantized { bits } => {
                        assert!(text_matrix, "{v}: {} quantized", p.name);
                        let want = if p.name.ends_with("router.proj.weight") {
                            8
                        } else {
                            4
                        };
                        assert_eq!(bits, want, "{v}: {}", p.name);
                    }
                    Storage::Bf16 => assert!(!text_matrix, "{v}: {} left bf16", p.name),
                }
            }
        }
    }

    #[test]
    fn kv_shared_and_k_eq_v_layers_own_no_value_projection() {
        let names: Vec<String> = params(TinyVariant::Ple)
            .into_iter()
            .map(|p| p.name)
            .collect();
        let has = |n: &str| names.iter().any(|x| x == n);
        assert!(has("language_model.model.layers.4.self_attn.k_proj.weight"));
        for i in 5..8 {
            assert!(!has(&format!(
                "language_model.model.layers.{i}.self_attn.k_proj.weight"
            )));
            assert!(!has(&format!(
                "language_model.model.layers.{i}.self_attn.v_proj.weight"
            )));
            assert!(!has(&format!(
                "language_model.model.layers.{i}.self_attn.k_norm.weight"
            )));
            assert!(has(&format!(
                "language_model.model.layers.{i}.self_attn.q_norm.weight"
            )));
        }
        let dense: Vec<String> = params(TinyVariant::Dense)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert!(!dense
            .iter()
            .any(|n| n == "language_model.model.layers.2.self_attn.v_proj.weight"));
        assert!(dense
            .iter()
            .any(|n| n == "language_model.model.layers.2.self_attn.k_proj.weight"));
    }
}
