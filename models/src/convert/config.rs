//! `config.json` and `generation_config.json` of a Gemma 3 text checkpoint from GGUF metadata.
//!
//! Every value stored in the GGUF is taken from it. Three hyperparameters are not stored because
//! llama.cpp hard-codes them for `gemma3`; they are set as llama.cpp sets them: the sliding-window
//! pattern 6 (every 6th layer global), the local RoPE base 10000, and the attention scale
//! `1/sqrt(head_dim)` (`hidden/heads` instead of `head_dim` for the 62-layer 27B).

use serde_json::{json, Map, Value};

use super::error::Result;
use crate::gguf::{GgufError, GgufFile};

/// The hyperparameters of a Gemma 3 text model.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Params {
    pub hidden_size: u64,
    pub num_hidden_layers: u64,
    pub intermediate_size: u64,
    pub num_attention_heads: u64,
    pub num_key_value_heads: u64,
    pub head_dim: u64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_local_base_freq: f64,
    pub rope_scaling: Option<(String, f64)>,
    pub query_pre_attn_scalar: u64,
    pub sliding_window: u64,
    pub sliding_window_pattern: u64,
    pub max_position_embeddings: u64,
    pub vocab_size: u64,
    pub final_logit_softcapping: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<i64>,
    pub eos_token_id: Option<i64>,
    pub pad_token_id: Option<i64>,
}

/// Not in the GGUF; llama.cpp's values for `gemma3`.
pub const SLIDING_WINDOW_PATTERN: u64 = 6;
pub const ROPE_LOCAL_BASE_FREQ: f64 = 10_000.0;

fn positive(f: &GgufFile, key: &str) -> Result<u64> {
    match f.get_int(key)? {
        Some(v) if v > 0 => Ok(v as u64),
        Some(v) => Err(meta_err(f, key, format!("must be positive, found {v}"))),
        None => Err(meta_err(f, key, "missing".into())),
    }
}

fn meta_err(f: &GgufFile, key: &str, reason: String) -> super::error::ConvertError {
    GgufError::Metadata {
        path: f.path().to_path_buf(),
        key: key.into(),
        reason,
    }
    .into()
}

impl Gemma3Params {
    /// Read from a `gemma3` GGUF. `vocab_size` is the embedding's row count.
    pub fn from_gguf(f: &GgufFile, vocab_size: u64, has_output: bool) -> Result<Self> {
        let a = "gemma3";
        let key = |k: &str| format!("{a}.{k}");
        let hidden = positive(f, &key("embedding_length"))?;
        let heads = positive(f, &key("attention.head_count"))?;
        let kv_heads = match f.get_int(&key("attention.head_count_kv"))? {
            Some(_) => positive(f, &key("attention.head_count_kv"))?,
            None => heads,
        };
        let head_dim = match f.get_int(&key("attention.key_length"))? {
            Some(_) => positive(f, &key("attention.key_length"))?,
            None => hidden / heads,
        };
        if let Some(v) = f.get_int(&key("attention.value_length"))? {
            if v as u64 != head_dim {
                return Err(meta_err(
                    f,
                    &key("attention.value_length"),
                    format!("{v} differs from key_length {head_dim}; Gemma 3 uses one head dim"),
                ));
            }
        }
        if heads % kv_heads != 0 {
            return Err(meta_err(
                f,
                &key("attention.head_count_kv"),
                format!("{kv_heads} does not divide head_count {heads}"),
            ));
        }
        let layers = positive(f, &key("block_count"))?;
        let eps = f
            .get_f64(&key("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| {
                meta_err(
                    f,
                    &key("attention.layer_norm_rms_epsilon"),
                    "missing".into(),
                )
            })?;
        let rope_scaling = match f.get_str(&key("rope.scaling.type"))? {
            None | Some("none") => None,
            Some(t) => {
                let factor = f.get_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0);
                Some((t.to_string(), factor))
            }
        };
        // llama.cpp: 27B (62 layers) scales queries by 1/sqrt(hidden/heads), the others by 1/sqrt(head_dim).
        let query_pre_attn_scalar = if layers == 62 {
            hidden / heads
        } else {
            head_dim
        };
        let token_id = |k: &str| f.get_int(&format!("tokenizer.ggml.{k}"));
        Ok(Gemma3Params {
            hidden_size: hidden,
            num_hidden_layers: layers,
            intermediate_size: positive(f, &key("feed_forward_length"))?,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            rms_norm_eps: eps,
            rope_theta: f.get_f64(&key("rope.freq_base"))?.unwrap_or(1_000_000.0),
            rope_local_base_freq: ROPE_LOCAL_BASE_FREQ,
            rope_scaling,
            query_pre_attn_scalar,
            sliding_window: positive(f, &key("attention.sliding_window"))?,
            sliding_window_pattern: SLIDING_WINDOW_PATTERN,
            max_position_embeddings: positive(f, &key("context_length"))?,
            vocab_size,
            final_logit_softcapping: f.get_f64(&key("final_logit_softcapping"))?,
            attn_logit_softcapping: f.get_f64(&key("attn_logit_softcapping"))?,
            tie_word_embeddings: !has_output,
            bos_token_id: token_id("bos_token_id")?,
            eos_token_id: token_id("eos_token_id")?,
            pad_token_id: token_id("padding_token_id")?,
        })
    }

    /// Stop ids: the GGUF's eos and `<end_of_turn>` when the vocabulary has it (as Gemma 3's
    /// Hugging Face generation config lists `[1, 106]`).
    pub fn stop_ids(&self, end_of_turn: Option<i64>) -> Vec<i64> {
        let mut v: Vec<i64> = self.eos_token_id.into_iter().collect();
        if let Some(e) = end_of_turn {
            if !v.contains(&e) {
                v.push(e);
            }
        }
        v
    }

    /// `config.json` (without the quantization block): the fields mlx-lm's `gemma3_text` reads,
    /// plus the Hugging Face ones that describe the same model.
    pub fn config_json(&self, stop_ids: &[i64]) -> Map<String, Value> {
        let layer_types: Vec<&str> = (0..self.num_hidden_layers)
            .map(|i| {
                if (i + 1) % self.sliding_window_pattern == 0 {
                    "full_attention"
                } else {
                    "sliding_attention"
                }
            })
            .collect();
        let rope_scaling = match &self.rope_scaling {
            Some((t, factor)) => json!({"rope_type": t, "factor": factor}),
            None => Value::Null,
        };
        let v = json!({
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "intermediate_size": self.intermediate_size,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "vocab_size": self.vocab_size,
            "rope_theta": self.rope_theta,
            "rope_local_base_freq": self.rope_local_base_freq,
            "rope_scaling": rope_scaling,
            "query_pre_attn_scalar": self.query_pre_attn_scalar,
            "sliding_window": self.sliding_window,
            "sliding_window_pattern": self.sliding_window_pattern,
            "layer_types": layer_types,
            "max_position_embeddings": self.max_position_embeddings,
            "final_logit_softcapping": self.final_logit_softcapping,
            "attn_logit_softcapping": self.attn_logit_softcapping,
            "hidden_activation": "gelu_pytorch_tanh",
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": stop_ids,
            "pad_token_id": self.pad_token_id,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("json! object"),
        }
    }

    /// `generation_config.json`: token ids only (the GGUF stores no sampling defaults), so
    /// generation is greedy unless asked otherwise.
    pub fn generation_config_json(&self, stop_ids: &[i64]) -> Value {
        json!({
            "bos_token_id": self.bos_token_id,
            "eos_token_id": stop_ids,
            "pad_token_id": self.pad_token_id,
        })
    }
}
