//! Moondream2's configuration. The published `config.json` (revision 2025-06-21) is
//! `{"model_type": "moondream1", "config": {}, ...}`: every value comes from the defaults below
//! (the reference's `config.py` dataclasses), and any group given under `config`
//! (`text`, `vision`, `region`, `tokenizer`) overrides them field by field, as the reference's
//! `MoondreamConfig.from_dict` does. Tiny test checkpoints use that to shrink the model.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{require_positive, ModelError, Result};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TextConfig {
    pub dim: i32,
    pub ff_dim: i32,
    pub n_layers: i32,
    pub vocab_size: i32,
    pub max_context: i32,
    pub n_heads: i32,
    pub n_kv_heads: i32,
    pub prefix_attn: i32,
    /// Only `null` (no torchao int4 groups) is supported.
    pub group_size: Option<i32>,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            dim: 2048,
            ff_dim: 8192,
            n_layers: 24,
            vocab_size: 51200,
            max_context: 2048,
            n_heads: 32,
            n_kv_heads: 32,
            prefix_attn: 730,
            group_size: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VisionConfig {
    pub enc_dim: i32,
    pub enc_patch_size: i32,
    pub enc_n_layers: i32,
    pub enc_ff_dim: i32,
    pub enc_n_heads: i32,
    pub proj_out_dim: i32,
    pub crop_size: i32,
    pub in_channels: i32,
    pub max_crops: i32,
    pub overlap_margin: i32,
    pub proj_inner_dim: i32,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            enc_dim: 1152,
            enc_patch_size: 14,
            enc_n_layers: 27,
            enc_ff_dim: 4304,
            enc_n_heads: 16,
            proj_out_dim: 2048,
            crop_size: 378,
            in_channels: 3,
            max_crops: 12,
            overlap_margin: 4,
            proj_inner_dim: 8192,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionConfig {
    pub dim: i32,
    pub coord_feat_dim: i32,
    pub coord_out_dim: i32,
    pub size_feat_dim: i32,
    pub size_out_dim: i32,
    pub inner_dim: i32,
    pub group_size: Option<i32>,
}

impl Default for RegionConfig {
    fn default() -> Self {
        RegionConfig {
            dim: 2048,
            coord_feat_dim: 256,
            coord_out_dim: 1024,
            size_feat_dim: 512,
            size_out_dim: 2048,
            inner_dim: 8192,
            group_size: None,
        }
    }
}

/// Prompt templates: caption lengths, and prefix/suffix pairs for query, detect and point.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Templates {
    pub caption: BTreeMap<String, Vec<u32>>,
    pub query: PrefixSuffix,
    pub detect: PrefixSuffix,
    pub point: PrefixSuffix,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixSuffix {
    pub prefix: Vec<u32>,
    pub suffix: Vec<u32>,
}

impl Default for Templates {
    fn default() -> Self {
        let ps = |prefix: &[u32]| PrefixSuffix {
            prefix: prefix.to_vec(),
            suffix: vec![3],
        };
        Templates {
            caption: [
                ("short", vec![1, 32708, 2, 12492, 3]),
                ("normal", vec![1, 32708, 2, 6382, 3]),
                ("long", vec![1, 32708, 2, 4059, 3]),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            query: ps(&[1, 15381, 2]),
            detect: ps(&[1, 7235, 476, 2]),
            point: ps(&[1, 2581, 2]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenizerConfig {
    pub bos_id: u32,
    pub eos_id: u32,
    pub answer_id: u32,
    pub thinking_id: u32,
    pub coord_id: u32,
    pub size_id: u32,
    pub start_ground_points_id: u32,
    pub end_ground_id: u32,
    pub templates: Templates,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            bos_id: 0,
            eos_id: 0,
            answer_id: 3,
            thinking_id: 4,
            coord_id: 5,
            size_id: 6,
            start_ground_points_id: 7,
            end_ground_id: 9,
            templates: Templates::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoondreamConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub region: RegionConfig,
    pub tokenizer: TokenizerConfig,
}

/// The `model_type` of the published checkpoint (a leftover name from Moondream 1).
pub const MODEL_TYPE: &str = "moondream1";

impl MoondreamConfig {
    /// Parse `config.json` (already read): `model_type` must be `moondream1`, and the `config`
    /// object (may be empty) overrides the defaults.
    pub fn from_json(v: &Value, path: &Path) -> Result<Self> {
        match v.get("model_type").and_then(Value::as_str) {
            Some(MODEL_TYPE) => {}
            other => {
                return Err(ModelError::UnsupportedModelType {
                    path: path.to_path_buf(),
                    found: other.unwrap_or("<missing>").to_string(),
                    supported: MODEL_TYPE.to_string(),
                })
            }
        }
        let inner = v
            .get("config")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        let cfg: MoondreamConfig = serde_path_to_error::deserialize(inner).map_err(|e| {
            ModelError::config(path, format!("config.{}", e.path()), e.inner().to_string())
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The quirks the reference hard-codes, checked so that a config outside them fails at load
    /// time with the field named instead of producing silently different results.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let (t, v, r) = (&self.text, &self.vision, &self.region);
        require_positive(
            path,
            "config.text.",
            &[
                ("dim", t.dim),
                ("ff_dim", t.ff_dim),
                ("n_layers", t.n_layers),
                ("vocab_size", t.vocab_size),
                ("n_heads", t.n_heads),
                ("n_kv_heads", t.n_kv_heads),
            ],
        )?;
        require_positive(
            path,
            "config.vision.",
            &[
                ("enc_dim", v.enc_dim),
                ("enc_n_heads", v.enc_n_heads),
                ("enc_ff_dim", v.enc_ff_dim),
                ("proj_inner_dim", v.proj_inner_dim),
            ],
        )?;
        require_positive(
            path,
            "config.region.",
            &[
                ("inner_dim", r.inner_dim),
                ("coord_feat_dim", r.coord_feat_dim),
                ("size_feat_dim", r.size_feat_dim),
            ],
        )?;
        self.check_shapes()
            .and_then(|()| self.check_token_ids())
            .map_err(|(field, reason)| ModelError::config(path, field, reason))
    }

    /// The sizes the reference code fixes or relates: the field and why.
    fn check_shapes(&self) -> std::result::Result<(), (&'static str, String)> {
        let (t, v, r) = (&self.text, &self.vision, &self.region);
        let bad = |field: &'static str, reason: String| Err((field, reason));
        if t.group_size.is_some() || r.group_size.is_some() {
            return bad(
                "config.text.group_size",
                "torchao int4 checkpoints are not supported; use the bf16 model.safetensors".into(),
            );
        }
        if t.dim % t.n_heads != 0 || t.dim / t.n_heads != 64 {
            return bad(
                "config.text.n_heads",
                format!(
                    "head dim must be 64 (the rotary code rotates 32 channels), found {}/{}",
                    t.dim, t.n_heads
                ),
            );
        }
        if t.n_heads % t.n_kv_heads != 0 {
            return bad(
                "config.text.n_kv_heads",
                format!("must divide n_heads {}", t.n_heads),
            );
        }
        if v.crop_size != 378
            || v.enc_patch_size != 14
            || v.enc_n_layers != 27
            || v.in_channels != 3
        {
            return bad(
                "config.vision",
                "crop_size 378, enc_patch_size 14, in_channels 3 and enc_n_layers 27 are fixed (the reference uses enc_n_layers as the 27x27 grid size and 378 px crops)".into(),
            );
        }
        if v.enc_dim % v.enc_n_heads != 0 {
            return bad(
                "config.vision.enc_n_heads",
                format!("must divide enc_dim {}", v.enc_dim),
            );
        }
        if t.prefix_attn != 730 {
            return bad(
                "config.text.prefix_attn",
                format!(
                    "must be 730 (BOS + 27x27 image tokens), found {}",
                    t.prefix_attn
                ),
            );
        }
        if v.proj_out_dim != t.dim || r.dim != t.dim {
            return bad(
                "config.vision.proj_out_dim",
                format!(
                    "proj_out_dim {} and region.dim {} must equal text.dim {}",
                    v.proj_out_dim, r.dim, t.dim
                ),
            );
        }
        if r.coord_out_dim != 1024 || r.size_out_dim != 2048 {
            return bad("config.region", "coord_out_dim 1024 and size_out_dim 2048 are fixed (1024 coordinate bins, 2x1024 log-size bins)".into());
        }
        if r.coord_feat_dim % 2 != 0 || r.size_feat_dim % 2 != 0 {
            return bad(
                "config.region",
                "coord_feat_dim and size_feat_dim must be even (cos and sin halves)".into(),
            );
        }
        if v.max_crops <= 0 || v.overlap_margin < 0 || 2 * v.overlap_margin >= 27 {
            return bad(
                "config.vision.overlap_margin",
                "max_crops must be positive and 0 <= overlap_margin < 13.5".into(),
            );
        }
        Ok(())
    }

    /// Every token id of the prompt templates inside the vocabulary.
    fn check_token_ids(&self) -> std::result::Result<(), (&'static str, String)> {
        let vocab = self.text.vocab_size as u32;
        let tk = &self.tokenizer;
        let t = &tk.templates;
        let specials = [tk.bos_id, tk.eos_id, tk.answer_id, tk.coord_id, tk.size_id];
        let all_ids = t
            .caption
            .values()
            .flatten()
            .chain(
                [&t.query, &t.detect, &t.point]
                    .into_iter()
                    .flat_map(|p| p.prefix.iter().chain(&p.suffix)),
            )
            .chain(&specials);
        match all_ids.copied().find(|&id| id >= vocab) {
            Some(id) => Err((
                "config.tokenizer.templates",
                format!("token id {id} is outside the vocabulary ({vocab})"),
            )),
            None => Ok(()),
        }
    }

    /// Patches per crop side (27).
    pub fn grid(&self) -> i32 {
        self.vision.crop_size / self.vision.enc_patch_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn published_empty_config_gives_the_reference_defaults() {
        let c = MoondreamConfig::from_json(
            &json!({"model_type": "moondream1", "config": {}}),
            Path::new("c.json"),
        )
        .unwrap();
        assert_eq!(c.text.dim, 2048);
        assert_eq!(c.text.n_layers, 24);
        assert_eq!(c.vision.enc_ff_dim, 4304);
        assert_eq!(c.region.inner_dim, 8192);
        assert_eq!(
            c.tokenizer.templates.caption["normal"],
            vec![1, 32708, 2, 6382, 3]
        );
        assert_eq!(c.tokenizer.templates.detect.prefix, vec![1, 7235, 476, 2]);
        assert_eq!(c.tokenizer.templates.point.prefix, vec![1, 2581, 2]);
        assert_eq!(c.tokenizer.templates.query.prefix, vec![1, 15381, 2]);
    }

    #[test]
    fn other_model_types_are_rejected_by_name() {
        let e = MoondreamConfig::from_json(&json!({"model_type": "gemma4"}), Path::new("c.json"))
            .unwrap_err();
        assert!(
            e.to_string().contains("unsupported model_type `gemma4`"),
            "{e}"
        );
    }

    #[test]
    fn a_grid_other_than_27_is_rejected_with_the_field() {
        let e = MoondreamConfig::from_json(
            &json!({"model_type": "moondream1", "config": {"vision": {"enc_n_layers": 4}}}),
            Path::new("c.json"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("config.vision"), "{e}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = MoondreamConfig::from_json(
            &json!({"model_type": "moondream1", "config": {"text": {"dims": 4}}}),
            Path::new("c.json"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("dims"), "{e}");
    }
}
