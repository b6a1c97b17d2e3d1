//! `config.json` of Gemma 3 checkpoints: a bare `gemma3_text`, or a `gemma3` whose `text_config`
//! is the text model. Fields and defaults are mlx-lm 0.32's (`models/gemma3_text.py` ModelArgs,
//! `models/gemma3.py`), so a config that omits a field means what it means to mlx-lm.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::Checkpoint;
use crate::error::{ModelError, Result};
use crate::gemma4::config::deserialize;

/// `rope_scaling` of the global layers (mlx-lm `initialize_rope`: `default` and `linear` here).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type", default = "default_rope_type")]
    pub rope_type: String,
    #[serde(default = "one")]
    pub factor: f64,
}

fn default_rope_type() -> String {
    "default".into()
}
fn one() -> f64 {
    1.0
}

/// The text model's hyperparameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub hidden_size: i32,
    pub num_hidden_layers: i32,
    pub intermediate_size: i32,
    pub num_attention_heads: i32,
    pub head_dim: i32,
    pub rms_norm_eps: f64,
    pub vocab_size: i32,
    pub num_key_value_heads: i32,
    pub rope_theta: f64,
    pub rope_local_base_freq: f64,
    pub query_pre_attn_scalar: f64,
    pub sliding_window: i32,
    /// Every `sliding_window_pattern`-th layer is global; the others slide. mlx-lm reads only this
    /// (not transformers' `layer_types`).
    pub sliding_window_pattern: i32,
    pub max_position_embeddings: i32,
    pub rope_scaling: Option<RopeScaling>,
    /// Not applied by mlx-lm's gemma3_text; applied here when set (transformers does), `null` in
    /// every released Gemma 3 config.
    pub final_logit_softcapping: Option<f64>,
}

impl Default for TextConfig {
    /// mlx-lm's defaults (the 1B model's values).
    fn default() -> Self {
        TextConfig {
            hidden_size: 1152,
            num_hidden_layers: 26,
            intermediate_size: 6912,
            num_attention_heads: 4,
            head_dim: 256,
            rms_norm_eps: 1e-6,
            vocab_size: 262144,
            num_key_value_heads: 1,
            rope_theta: 1_000_000.0,
            rope_local_base_freq: 10_000.0,
            query_pre_attn_scalar: 256.0,
            sliding_window: 512,
            sliding_window_pattern: 6,
            max_position_embeddings: 32768,
            rope_scaling: None,
            final_logit_softcapping: None,
        }
    }
}

/// A parsed Gemma 3 config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `gemma3_text` or `gemma3`.
    pub model_type: String,
    pub text: TextConfig,
}

impl TextConfig {
    /// Whether layer `i` attends globally (mlx-lm: `(i + 1) % pattern == 0`).
    pub fn is_global(&self, i: usize) -> bool {
        (i + 1) % self.sliding_window_pattern as usize == 0
    }

    fn validate(&self, path: &Path, prefix: &str) -> Result<()> {
        let err = |name: &str, reason: String| {
            Err(ModelError::config(path, format!("{prefix}{name}"), reason))
        };
        crate::error::require_positive(
            path,
            prefix,
            &[
                ("hidden_size", self.hidden_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("intermediate_size", self.intermediate_size),
                ("num_attention_heads", self.num_attention_heads),
                ("head_dim", self.head_dim),
                ("num_key_value_heads", self.num_key_value_heads),
                ("vocab_size", self.vocab_size),
                ("sliding_window", self.sliding_window),
                ("sliding_window_pattern", self.sliding_window_pattern),
            ],
        )?;
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return err(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            );
        }
        if self.query_pre_attn_scalar <= 0.0 {
            return err(
                "query_pre_attn_scalar",
                format!("must be positive, found {}", self.query_pre_attn_scalar),
            );
        }
        if let Some(r) = &self.rope_scaling {
            if !matches!(r.rope_type.as_str(), "default" | "linear") {
                return err(
                    "rope_scaling.rope_type",
                    format!("`{}` is not supported (default, linear)", r.rope_type),
                );
            }
            if r.factor <= 0.0 {
                return err(
                    "rope_scaling.factor",
                    format!("must be positive, found {}", r.factor),
                );
            }
        }
        Ok(())
    }
}

impl Config {
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        Self::from_json(ckpt.config_json(), ckpt.config_path())
    }

    /// Parse a config; `path` names it in errors.
    pub fn from_json(v: &Value, path: &Path) -> Result<Self> {
        let model_type = v
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let text = match model_type.as_str() {
            "gemma3_text" => {
                let t: TextConfig = deserialize(v.clone(), path, "")?;
                t.validate(path, "")?;
                t
            }
            "gemma3" => {
                // mlx-lm gemma3.ModelArgs: the top-level vocab_size (default 262208) overrides the
                // text config's, and the head counts default to 8 / 4 there.
                let mut tv = match v.get("text_config") {
                    Some(Value::Object(m)) => m.clone(),
                    None | Some(Value::Null) => Default::default(),
                    Some(other) => {
                        return Err(ModelError::config(
                            path,
                            "text_config",
                            format!("expected an object, found {other}"),
                        ))
                    }
                };
                tv.insert(
                    "vocab_size".into(),
                    v.get("vocab_size").cloned().unwrap_or(Value::from(262208)),
                );
                tv.entry("num_attention_heads").or_insert(Value::from(8));
                tv.entry("num_key_value_heads").or_insert(Value::from(4));
                let t: TextConfig = deserialize(Value::Object(tv), path, "text_config")?;
                t.validate(path, "text_config.")?;
                t
            }
            other => {
                return Err(ModelError::UnsupportedModelType {
                    path: path.into(),
                    found: other.into(),
                    supported: "gemma3, gemma3_text".into(),
                })
            }
        };
        Ok(Config { model_type, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Config> {
        Config::from_json(&v, Path::new("config.json"))
    }

    #[test]
    fn gemma3_text_with_mlx_lm_defaults() {
        let c = parse(
            json!({"model_type": "gemma3_text", "hidden_size": 640, "num_hidden_layers": 18}),
        )
        .unwrap();
        assert_eq!(c.text.hidden_size, 640);
        assert_eq!(c.text.intermediate_size, 6912);
        assert_eq!(c.text.query_pre_attn_scalar, 256.0);
        assert!(!c.text.is_global(4) && c.text.is_global(5) && c.text.is_global(17));
    }

    #[test]
    fn gemma3_wraps_text_config_and_overrides_vocab() {
        let c =
            parse(json!({"model_type": "gemma3", "text_config": {"hidden_size": 2560}})).unwrap();
        assert_eq!(c.text.vocab_size, 262208);
        assert_eq!(
            (c.text.num_attention_heads, c.text.num_key_value_heads),
            (8, 4)
        );
        let c = parse(json!({"model_type": "gemma3", "vocab_size": 1000, "text_config": {"vocab_size": 5, "num_attention_heads": 2, "num_key_value_heads": 1}})).unwrap();
        assert_eq!((c.text.vocab_size, c.text.num_attention_heads), (1000, 2));
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(json!({"model_type": "gemma3_text", "hidden_size": "big"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.json: field `hidden_size`"), "{e}");
        let e = parse(json!({"model_type": "gemma3", "text_config": {"sliding_window": 0}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `text_config.sliding_window`: must be positive"),
            "{e}"
        );
        let e = parse(json!({"model_type": "gemma3_text", "rope_scaling": {"rope_type": "yarn", "factor": 2}}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `rope_scaling.rope_type`: `yarn` is not supported"),
            "{e}"
        );
        let e = parse(json!({"model_type": "gemma3_text", "num_attention_heads": 4, "num_key_value_heads": 3}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_key_value_heads`: 3 does not divide"), "{e}");
        let e = parse(json!({"model_type": "llama"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported model_type `llama`"), "{e}");
    }
}
