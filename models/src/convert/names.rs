//! llama.cpp tensor names of a `gemma3` GGUF and their Hugging Face / mlx-lm `gemma3_text` names.
//!
//! llama.cpp's converter renames tensors and, for Gemma, adds 1 to every RMSNorm weight (its
//! RMSNorm multiplies by `w` where Gemma's multiplies by `1 + w`). Q/K are not permuted for Gemma
//! (its RoPE is the rotate-half form llama.cpp calls NEOX), and `[in, out]` GGML dims already read
//! as the `[out, in]` Linear layout.

/// What a tensor is, which decides how it is converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The token embedding (also the tied LM head): quantizable.
    Embedding,
    /// A bias-free Linear weight `[out, in]`: quantizable.
    Linear,
    /// A Gemma RMSNorm weight stored by llama.cpp as `1 + w`: converted to `w`.
    Norm,
}

/// A GGUF tensor's place in the MLX checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// Module path, without the `.weight` suffix (`model.layers.3.self_attn.q_proj`).
    pub module: String,
    pub role: Role,
    /// Decoder layer index, for per-layer tensors.
    pub layer: Option<usize>,
}

/// Map one llama.cpp tensor name of a `gemma3` GGUF; `None` when the name is not part of the
/// Gemma 3 text model.
pub fn gemma3(name: &str) -> Option<Mapped> {
    let top = |module: &str, role| {
        Some(Mapped {
            module: module.into(),
            role,
            layer: None,
        })
    };
    match name {
        "token_embd.weight" => return top("model.embed_tokens", Role::Embedding),
        "output_norm.weight" => return top("model.norm", Role::Norm),
        "output.weight" => return top("lm_head", Role::Linear),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (idx, leaf) = rest.split_once('.')?;
    let layer: usize = idx.parse().ok()?;
    let leaf = leaf.strip_suffix(".weight")?;
    let (sub, role) = match leaf {
        "attn_norm" => ("input_layernorm", Role::Norm),
        "attn_q" => ("self_attn.q_proj", Role::Linear),
        "attn_k" => ("self_attn.k_proj", Role::Linear),
        "attn_v" => ("self_attn.v_proj", Role::Linear),
        "attn_output" => ("self_attn.o_proj", Role::Linear),
        "attn_q_norm" => ("self_attn.q_norm", Role::Norm),
        "attn_k_norm" => ("self_attn.k_norm", Role::Norm),
        "post_attention_norm" => ("post_attention_layernorm", Role::Norm),
        "ffn_norm" => ("pre_feedforward_layernorm", Role::Norm),
        "post_ffw_norm" => ("post_feedforward_layernorm", Role::Norm),
        "ffn_gate" => ("mlp.gate_proj", Role::Linear),
        "ffn_up" => ("mlp.up_proj", Role::Linear),
        "ffn_down" => ("mlp.down_proj", Role::Linear),
        _ => return None,
    };
    Some(Mapped {
        module: format!("model.layers.{layer}.{sub}"),
        role,
        layer: Some(layer),
    })
}

/// The `[out, in]` (or `[len]` for norms) shape a module must have in a Gemma 3 text model.
pub fn expected_shape(m: &Mapped, c: &super::config::Gemma3Params) -> Vec<u64> {
    let (h, hd) = (c.hidden_size, c.head_dim);
    let leaf = m.module.rsplit('.').next().unwrap_or("");
    match leaf {
        "embed_tokens" | "lm_head" => vec![c.vocab_size, h],
        "q_proj" => vec![c.num_attention_heads * hd, h],
        "k_proj" | "v_proj" => vec![c.num_key_value_heads * hd, h],
        "o_proj" => vec![h, c.num_attention_heads * hd],
        "gate_proj" | "up_proj" => vec![c.intermediate_size, h],
        "down_proj" => vec![h, c.intermediate_size],
        "q_norm" | "k_norm" => vec![hd],
        _ => vec![h],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_gemma3_tensor_kind() {
        let m = gemma3("blk.11.attn_q.weight").unwrap();
        assert_eq!(m.module, "model.layers.11.self_attn.q_proj");
        assert_eq!((m.role, m.layer), (Role::Linear, Some(11)));
        assert_eq!(
            gemma3("blk.0.ffn_norm.weight").unwrap().module,
            "model.layers.0.pre_feedforward_layernorm"
        );
        assert_eq!(
            gemma3("blk.0.post_ffw_norm.weight").unwrap().module,
            "model.layers.0.post_feedforward_layernorm"
        );
        assert_eq!(gemma3("blk.0.attn_k_norm.weight").unwrap().role, Role::Norm);
        assert_eq!(gemma3("token_embd.weight").unwrap().role, Role::Embedding);
        assert_eq!(gemma3("output_norm.weight").unwrap().module, "model.norm");
        assert_eq!(gemma3("output.weight").unwrap().module, "lm_head");
        for bad in [
            "blk.x.attn_q.weight",
            "blk.0.attn_q.bias",
            "blk.0.rope_freqs.weight",
            "rope_freqs.weight",
            "blk.0",
        ] {
            assert_eq!(gemma3(bad), None, "{bad}");
        }
    }
}
