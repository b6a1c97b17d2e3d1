//! `config.json` of Gemma 4 checkpoints: top-level `gemma4` (with `text_config`, `vision_config`,
//! `audio_config`) or a bare `gemma4_text`. Defaults are mlx-vlm 0.7.10's (the E2B values), which
//! differ from transformers' in several places; real configs serialize every field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::{read_json, Checkpoint};
use crate::error::{ModelError, Result};

/// Attention type of a decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum LayerType {
    #[serde(rename = "sliding_attention")]
    Sliding,
    #[serde(rename = "full_attention")]
    Full,
}

impl LayerType {
    pub fn key(self) -> &'static str {
        match self {
            LayerType::Sliding => "sliding_attention",
            LayerType::Full => "full_attention",
        }
    }
}

/// One entry of `rope_parameters`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeParameters {
    /// `default`, `linear` or `proportional` (HF `type` is accepted as an alias).
    #[serde(default = "default_rope_type", alias = "type")]
    pub rope_type: String,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "one")]
    pub partial_rotary_factor: f64,
    #[serde(default = "one")]
    pub factor: f64,
}

fn default_rope_type() -> String {
    "default".into()
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn one() -> f64 {
    1.0
}

impl Default for RopeParameters {
    fn default() -> Self {
        RopeParameters {
            rope_type: default_rope_type(),
            rope_theta: default_rope_theta(),
            partial_rotary_factor: 1.0,
            factor: 1.0,
        }
    }
}

/// `text_config` (mlx-vlm `TextConfig`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub model_type: String,
    pub hidden_size: i32,
    pub num_hidden_layers: i32,
    pub intermediate_size: i32,
    pub num_attention_heads: i32,
    pub head_dim: i32,
    pub global_head_dim: i32,
    /// Unused by the math (only `rope_parameters` matters); kept for completeness.
    pub global_partial_rotary_factor: f64,
    pub rms_norm_eps: f64,
    pub vocab_size: i32,
    pub vocab_size_per_layer_input: i32,
    pub num_key_value_heads: i32,
    pub num_global_key_value_heads: Option<i32>,
    pub num_kv_shared_layers: i32,
    pub pad_token_id: Option<i64>,
    pub hidden_activation: String,
    pub hidden_size_per_layer_input: i32,
    pub rope_traditional: bool,
    /// Unused by the math; kept for completeness.
    pub partial_rotary_factor: f64,
    pub rope_parameters: Option<BTreeMap<String, RopeParameters>>,
    pub sliding_window: i32,
    pub sliding_window_pattern: i32,
    pub max_position_embeddings: i64,
    pub attention_bias: bool,
    pub attention_dropout: f64,
    pub attention_k_eq_v: bool,
    pub use_bidirectional_attention: Option<String>,
    pub final_logit_softcapping: Option<f64>,
    pub use_double_wide_mlp: bool,
    pub enable_moe_block: bool,
    pub use_second_mlp_block: bool,
    pub num_experts: Option<i32>,
    pub top_k_experts: Option<i32>,
    pub moe_intermediate_size: Option<i32>,
    /// As written in config.json; see [`TextConfig::layer_types`] for the resolved list.
    #[serde(rename = "layer_types")]
    pub layer_types_raw: Option<Vec<LayerType>>,
    pub tie_word_embeddings: bool,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            model_type: "gemma4_text".into(),
            hidden_size: 1536,
            num_hidden_layers: 35,
            intermediate_size: 6144,
            num_attention_heads: 8,
            head_dim: 256,
            global_head_dim: 512,
            global_partial_rotary_factor: 0.25,
            rms_norm_eps: 1e-6,
            vocab_size: 262144,
            vocab_size_per_layer_input: 262144,
            num_key_value_heads: 1,
            num_global_key_value_heads: None,
            num_kv_shared_layers: 20,
            pad_token_id: Some(0),
            hidden_activation: "gelu_pytorch_tanh".into(),
            hidden_size_per_layer_input: 256,
            rope_traditional: false,
            partial_rotary_factor: 1.0,
            rope_parameters: None,
            sliding_window: 512,
            sliding_window_pattern: 5,
            max_position_embeddings: 131072,
            attention_bias: false,
            attention_dropout: 0.0,
            attention_k_eq_v: false,
            use_bidirectional_attention: None,
            final_logit_softcapping: Some(30.0),
            use_double_wide_mlp: true,
            enable_moe_block: false,
            use_second_mlp_block: false,
            num_experts: None,
            top_k_experts: None,
            moe_intermediate_size: None,
            layer_types_raw: None,
            tie_word_embeddings: true,
        }
    }
}

/// Resolved shapes of one decoder layer's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub layer_type: LayerType,
    pub head_dim: i32,
    pub n_heads: i32,
    pub n_kv_heads: i32,
    /// Full layers with `attention_k_eq_v`: no `v_proj`, V comes from the raw K projection.
    pub k_eq_v: bool,
}

impl TextConfig {
    /// `layer_types` from the config; only when absent derived from `sliding_window_pattern`
    /// ((pattern-1) sliding + 1 full, repeated), as mlx-vlm does.
    pub fn layer_types(&self) -> Vec<LayerType> {
        if let Some(lt) = &self.layer_types_raw {
            return lt.clone();
        }
        let p = self.sliding_window_pattern.max(1) as usize;
        (0..self.num_hidden_layers as usize)
            .map(|i| {
                if i % p == p - 1 {
                    LayerType::Full
                } else {
                    LayerType::Sliding
                }
            })
            .collect()
    }

    /// `rope_parameters[layer_type]`, with mlx-vlm's defaults when the block or the entry is absent.
    pub fn rope_for(&self, lt: LayerType) -> RopeParameters {
        match &self.rope_parameters {
            Some(map) => map.get(lt.key()).cloned().unwrap_or_default(),
            None => match lt {
                LayerType::Full => RopeParameters {
                    rope_type: "proportional".into(),
                    rope_theta: 1_000_000.0,
                    partial_rotary_factor: 1.0,
                    factor: 1.0,
                },
                LayerType::Sliding => RopeParameters {
                    rope_type: "default".into(),
                    rope_theta: 10_000.0,
                    partial_rotary_factor: 1.0,
                    factor: 1.0,
                },
            },
        }
    }

    /// Index of the first KV-shared layer (`num_hidden_layers` when there is none).
    pub fn first_kv_shared_layer(&self) -> i32 {
        self.num_hidden_layers - self.num_kv_shared_layers.max(0)
    }

    /// Attention shapes of layer `i`.
    pub fn attention_shape(&self, i: usize) -> AttentionShape {
        let lt = self.layer_types()[i];
        let full = lt == LayerType::Full;
        let head_dim = if full && self.global_head_dim > 0 {
            self.global_head_dim
        } else {
            self.head_dim
        };
        let k_eq_v = self.attention_k_eq_v && full;
        let n_kv_heads = match (k_eq_v, self.num_global_key_value_heads) {
            (true, Some(n)) => n,
            _ => self.num_key_value_heads,
        };
        AttentionShape {
            layer_type: lt,
            head_dim,
            n_heads: self.num_attention_heads,
            n_kv_heads,
            k_eq_v,
        }
    }

    /// For each layer, the layer whose K/V it uses: itself, or for KV-shared layers the last
    /// non-shared layer of the same type.
    pub fn kv_source_layers(&self) -> Vec<usize> {
        let lts = self.layer_types();
        let n = lts.len();
        let m = self.first_kv_shared_layer().clamp(0, n as i32) as usize;
        let mut src: Vec<usize> = (0..n).collect();
        if m < n {
            for j in m..n {
                if let Some(i) = (0..m).rev().find(|&i| lts[i] == lts[j]) {
                    src[j] = i;
                }
            }
        }
        src
    }

    /// MLP width of layer `i` (doubled on KV-shared layers with `use_double_wide_mlp`).
    pub fn mlp_width(&self, i: usize) -> i32 {
        let first = self.first_kv_shared_layer();
        let shared = (i as i32) >= first && first > 0 && self.num_kv_shared_layers > 0;
        if self.use_double_wide_mlp && shared {
            2 * self.intermediate_size
        } else {
            self.intermediate_size
        }
    }

    /// Whether layer `i` reuses another layer's K/V.
    pub fn is_kv_shared(&self, i: usize) -> bool {
        let first = self.first_kv_shared_layer();
        self.num_kv_shared_layers > 0 && first > 0 && (i as i32) >= first
    }

    /// Check the values this implementation relies on. `path`/`prefix` name the fields in errors.
    pub fn validate(&self, path: &Path, prefix: &str) -> Result<()> {
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
            ],
        )?;
        self.check_supported()
            .and_then(|()| self.check_layers())
            .and_then(|()| self.check_moe())
            .map_err(|(name, reason)| ModelError::config(path, format!("{prefix}{name}"), reason))
    }

    /// Settings vlmbench does not implement: the field and why.
    fn check_supported(&self) -> std::result::Result<(), (String, String)> {
        let fail = |name: &str, reason: String| Err((name.to_owned(), reason));
        if !matches!(
            self.hidden_activation.as_str(),
            "gelu_pytorch_tanh" | "gelu_tanh"
        ) {
            let act = &self.hidden_activation;
            return fail(
                "hidden_activation",
                format!("`{act}` is not supported (Gemma 4 uses gelu_pytorch_tanh)"),
            );
        }
        if self.attention_bias {
            return fail(
                "attention_bias",
                "true is not supported (Gemma 4 has no attention biases)".into(),
            );
        }
        if self.use_second_mlp_block {
            return fail("use_second_mlp_block", "true is not supported".into());
        }
        if let Some(b) = self
            .use_bidirectional_attention
            .as_ref()
            .filter(|b| *b != "vision")
        {
            return fail(
                "use_bidirectional_attention",
                format!("`{b}` is not supported (only \"vision\" or null)"),
            );
        }
        for (k, r) in self.rope_parameters.iter().flatten() {
            if !matches!(r.rope_type.as_str(), "default" | "linear" | "proportional") {
                return fail(
                    &format!("rope_parameters.{k}.rope_type"),
                    format!(
                        "`{}` is not supported (default, linear, proportional)",
                        r.rope_type
                    ),
                );
            }
        }
        if self.hidden_size_per_layer_input < 0 {
            return fail("hidden_size_per_layer_input", "must not be negative".into());
        }
        Ok(())
    }

    /// The per-layer settings: layer types, attention heads, KV sharing.
    fn check_layers(&self) -> std::result::Result<(), (String, String)> {
        let fail = |name: &str, reason: String| Err((name.to_owned(), reason));
        let layers = self.num_hidden_layers;
        if let Some(lt) = self
            .layer_types_raw
            .as_ref()
            .filter(|lt| lt.len() != layers as usize)
        {
            let reason = format!("has {} entries but num_hidden_layers is {layers}", lt.len());
            return fail("layer_types", reason);
        }
        if self.attention_k_eq_v && self.num_global_key_value_heads.is_some_and(|n| n <= 0) {
            return fail("num_global_key_value_heads", "must be positive".into());
        }
        let lts = self.layer_types();
        for i in 0..lts.len() {
            let a = self.attention_shape(i);
            if a.n_heads % a.n_kv_heads != 0 {
                let reason = format!(
                    "{} is not a multiple of the {} KV heads of layer {i}",
                    a.n_heads, a.n_kv_heads
                );
                return fail("num_attention_heads", reason);
            }
        }
        let shared = self.num_kv_shared_layers;
        if shared != 0 && (shared < 0 || shared >= layers) {
            let reason = format!("{shared} must be in 0..num_hidden_layers");
            return fail("num_kv_shared_layers", reason);
        }
        let src = self.kv_source_layers();
        if let Some(j) = (0..lts.len()).find(|&j| self.is_kv_shared(j) && src[j] == j) {
            let reason = format!(
                "shared layer {j} ({}) has no earlier non-shared layer of its type",
                lts[j].key()
            );
            return fail("num_kv_shared_layers", reason);
        }
        Ok(())
    }

    /// The mixture-of-experts sizes, required when `enable_moe_block` is set.
    fn check_moe(&self) -> std::result::Result<(), (String, String)> {
        if !self.enable_moe_block {
            return Ok(());
        }
        for (name, v) in [
            ("num_experts", self.num_experts),
            ("top_k_experts", self.top_k_experts),
            ("moe_intermediate_size", self.moe_intermediate_size),
        ] {
            if v.is_none_or(|x| x <= 0) {
                let reason = "required (positive) when enable_moe_block is true";
                return Err((name.to_owned(), reason.into()));
            }
        }
        if self.top_k_experts > self.num_experts {
            return Err(("top_k_experts".into(), "exceeds num_experts".into()));
        }
        Ok(())
    }
}

/// `vision_config` (mlx-vlm `VisionConfig`); parsed here, used by the vision tower.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub model_type: String,
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub num_hidden_layers: i32,
    pub num_attention_heads: i32,
    pub num_key_value_heads: i32,
    pub head_dim: i32,
    pub global_head_dim: i32,
    pub hidden_activation: String,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: i64,
    pub attention_bias: bool,
    pub default_output_length: i32,
    pub patch_size: i32,
    pub position_embedding_size: i32,
    pub pooling_kernel_size: i32,
    pub use_clipped_linears: bool,
    pub standardize: bool,
    pub rope_parameters: Option<RopeParameters>,
}

impl Default for VisionConfig {
    fn default() -> Self {
        VisionConfig {
            model_type: "gemma4_vision".into(),
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 16,
            num_attention_heads: 12,
            num_key_value_heads: 12,
            head_dim: 64,
            global_head_dim: 64,
            hidden_activation: "gelu_pytorch_tanh".into(),
            rms_norm_eps: 1e-6,
            max_position_embeddings: 131072,
            attention_bias: false,
            default_output_length: 280,
            patch_size: 16,
            position_embedding_size: 10240,
            pooling_kernel_size: 3,
            use_clipped_linears: false,
            standardize: false,
            rope_parameters: None,
        }
    }
}

impl VisionConfig {
    /// `rope_parameters.rope_theta` (mlx reads only theta; default 100).
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .map(|r| r.rope_theta)
            .unwrap_or(100.0)
    }
}

/// `audio_config` (E2B/E4B). The audio path is not implemented; the block is kept as JSON.
pub type AudioConfig = Value;

/// Multimodal token ids from the top-level config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultimodalTokens {
    pub image_token_id: i32,
    pub audio_token_id: i32,
    pub video_token_id: Option<i32>,
    pub boi_token_id: i32,
    pub eoi_token_id: i32,
    pub boa_token_id: i32,
    pub eoa_token_id: i32,
}

/// A whole Gemma 4 `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `gemma4` or `gemma4_text`.
    pub model_type: String,
    pub text: TextConfig,
    /// Absent for `gemma4_text`.
    pub vision: Option<VisionConfig>,
    pub audio: Option<AudioConfig>,
    /// Absent for `gemma4_text`.
    pub tokens: Option<MultimodalTokens>,
    pub vision_soft_tokens_per_image: i32,
    pub eos_token_ids: Vec<i64>,
    pub pad_token_id: i64,
    pub tie_word_embeddings: bool,
}

pub const SUPPORTED_MODEL_TYPES: &str = "gemma4, gemma4_text";

impl Config {
    /// Parse `config.json` of a checkpoint.
    pub fn from_checkpoint(ckpt: &Checkpoint) -> Result<Self> {
        Self::from_json(ckpt.config_json(), ckpt.config_path())
    }

    /// Parse a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_json(&read_json(path)?, path)
    }

    /// Parse the JSON of a `config.json`; `path` is used in error messages.
    pub fn from_json(v: &Value, path: &Path) -> Result<Self> {
        let model_type = match v.get("model_type") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(ModelError::config(
                    path,
                    "model_type",
                    format!("expected a string, found {other}"),
                ))
            }
            None => return Err(ModelError::config(path, "model_type", "missing")),
        };
        let eos_token_ids = parse_ids(v.get("eos_token_id"), path, "eos_token_id")?;
        let pad_token_id = v.get("pad_token_id").and_then(Value::as_i64).unwrap_or(0);
        let tie_word_embeddings = v
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        match model_type.as_str() {
            "gemma4" => {
                let tv = v
                    .get("text_config")
                    .cloned()
                    .unwrap_or(Value::Object(Default::default()));
                let text: TextConfig = deserialize(tv, path, "text_config")?;
                text.validate(path, "text_config.")?;
                let vision = match v.get("vision_config") {
                    None | Some(Value::Null) => Some(VisionConfig::default()),
                    Some(vv) => Some(deserialize(vv.clone(), path, "vision_config")?),
                };
                let audio = v.get("audio_config").filter(|a| !a.is_null()).cloned();
                let int = |key: &str, default: i32| -> Result<i32> {
                    match v.get(key) {
                        None | Some(Value::Null) => Ok(default),
                        Some(x) => x.as_i64().map(|x| x as i32).ok_or_else(|| {
                            ModelError::config(path, key, format!("expected an integer, found {x}"))
                        }),
                    }
                };
                let video = match v.get("video_token_id") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(int("video_token_id", 0)?),
                };
                let tokens = MultimodalTokens {
                    image_token_id: int("image_token_id", 258880)?,
                    audio_token_id: int("audio_token_id", 258881)?,
                    video_token_id: video,
                    boi_token_id: int("boi_token_id", 255999)?,
                    eoi_token_id: int("eoi_token_id", 258882)?,
                    boa_token_id: int("boa_token_id", 256000)?,
                    eoa_token_id: int("eoa_token_id", 258883)?,
                };
                Ok(Config {
                    model_type,
                    text,
                    vision,
                    audio,
                    tokens: Some(tokens),
                    vision_soft_tokens_per_image: int("vision_soft_tokens_per_image", 280)?,
                    eos_token_ids,
                    pad_token_id,
                    tie_word_embeddings,
                })
            }
            "gemma4_text" => {
                let mut text: TextConfig = deserialize(v.clone(), path, "")?;
                // mlx-vlm's gemma4_text ModelConfig has its own default: 0.25 on full layers.
                if text.rope_parameters.is_none() {
                    let mut m = BTreeMap::new();
                    m.insert(
                        "full_attention".to_string(),
                        RopeParameters {
                            rope_type: "proportional".into(),
                            rope_theta: 1_000_000.0,
                            partial_rotary_factor: 0.25,
                            factor: 1.0,
                        },
                    );
                    m.insert("sliding_attention".to_string(), RopeParameters::default());
                    text.rope_parameters = Some(m);
                }
                text.validate(path, "")?;
                Ok(Config {
                    model_type,
                    text,
                    vision: None,
                    audio: None,
                    tokens: None,
                    vision_soft_tokens_per_image: 0,
                    eos_token_ids,
                    pad_token_id,
                    tie_word_embeddings,
                })
            }
            other => Err(ModelError::UnsupportedModelType {
                path: path.to_path_buf(),
                found: other.to_string(),
                supported: SUPPORTED_MODEL_TYPES.into(),
            }),
        }
    }
}

/// Deserialize `v`, naming the failing field (under `field`) in the error.
pub(crate) fn deserialize<T: for<'de> Deserialize<'de>>(
    v: Value,
    path: &Path,
    field: &str,
) -> Result<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let inner = e.path().to_string();
        let name = match (field.is_empty(), inner.as_str()) {
            (true, ".") => "(top level)".to_string(),
            (true, _) => inner.clone(),
            (false, ".") => field.to_string(),
            (false, _) => format!("{field}.{inner}"),
        };
        ModelError::config(path, name, e.into_inner().to_string())
    })
}

fn parse_ids(v: Option<&Value>, path: &Path, field: &str) -> Result<Vec<i64>> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|x| vec![x])
            .ok_or_else(|| ModelError::config(path, field, "expected an integer")),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_i64().ok_or_else(|| {
                    ModelError::config(path, field, format!("expected integers, found {x}"))
                })
            })
            .collect(),
        Some(other) => Err(ModelError::config(
            path,
            field,
            format!("expected an integer or a list, found {other}"),
        )),
    }
}
