//! `config.json` and `generation_config.json` as mlx-vlm's converter leaves them: the converter
//! merges the generation config into `config.json` (sampling fields, a nested copy, and the union of
//! the stop ids), drops `torch_dtype`, and adds the `quantization` block twice (also as
//! `quantization_config`) with one entry per module quantized differently from the default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::params::{Param, Storage, BITS, GROUP_SIZE};
use super::spec::{special, TextConfig, TinyVariant, VisionConfig};

/// Quantization of one module that differs from the default (the converter writes no `mode` here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleQuantization {
    pub group_size: i32,
    pub bits: i32,
}

/// The `quantization` block: defaults, then per-module overrides keyed by module path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantizationConfig {
    pub group_size: i32,
    pub bits: i32,
    pub mode: String,
    #[serde(flatten)]
    pub overrides: BTreeMap<String, ModuleQuantization>,
}

impl QuantizationConfig {
    /// The block the converter writes for these parameters: the 4-bit default plus an entry for
    /// every module quantized at other bits.
    pub(crate) fn for_params(params: &[Param]) -> QuantizationConfig {
        let overrides = params
            .iter()
            .filter_map(|p| match p.storage {
                Storage::Quantized { bits } if bits != BITS => Some((
                    p.module_path().to_string(),
                    ModuleQuantization {
                        group_size: GROUP_SIZE,
                        bits,
                    },
                )),
                _ => None,
            })
            .collect();
        QuantizationConfig {
            group_size: GROUP_SIZE,
            bits: BITS,
            mode: "affine".into(),
            overrides,
        }
    }

    /// Bits of the module at `path` (e.g. `language_model.model.layers.0.router.proj`).
    pub fn bits_for(&self, path: &str) -> i32 {
        self.overrides.get(path).map_or(self.bits, |o| o.bits)
    }
}

/// `generation_config.json` of the Gemma 4 IT checkpoints (sampling on by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfigFile {
    pub bos_token_id: u32,
    pub pad_token_id: u32,
    pub eos_token_id: Vec<u32>,
    pub do_sample: bool,
    pub temperature: f64,
    /// Must stay below the tiny vocab, or mlx-vlm's top-k filter raises.
    pub top_k: u32,
    pub top_p: f64,
}

impl GenerationConfigFile {
    pub fn tiny() -> GenerationConfigFile {
        GenerationConfigFile {
            bos_token_id: special("<bos>"),
            pad_token_id: special("<pad>"),
            // <eos>, <turn|>, <|tool_response>: the stop ids of the real checkpoints.
            eos_token_id: vec![
                special("<eos>"),
                special("<turn|>"),
                special("<|tool_response>"),
            ],
            do_sample: true,
            temperature: 1.0,
            top_k: 64,
            top_p: 0.95,
        }
    }
}

/// `config.json`. Fields are declared in sorted order because the converter writes the top level
/// sorted; nested configs keep the builder's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TinyConfig {
    pub architectures: Vec<String>,
    pub audio_config: Option<serde_json::Value>,
    pub audio_token_id: u32,
    pub boa_token_id: u32,
    pub boi_token_id: u32,
    pub bos_token_id: u32,
    pub do_sample: bool,
    pub eoa_token_id: u32,
    /// HF's name for `eoa_token_id`; both are written, as in the published configs.
    pub eoa_token_index: u32,
    pub eoi_token_id: u32,
    pub eos_token_id: Vec<u32>,
    pub generation_config: GenerationConfigFile,
    pub image_token_id: u32,
    pub initializer_range: f64,
    pub model_type: String,
    pub pad_token_id: u32,
    pub quantization: QuantizationConfig,
    pub quantization_config: QuantizationConfig,
    pub temperature: f64,
    pub text_config: TextConfig,
    pub tie_word_embeddings: bool,
    pub top_k: u32,
    pub top_p: f64,
    pub video_token_id: u32,
    pub vision_config: VisionConfig,
    pub vision_soft_tokens_per_image: usize,
}

impl TinyConfig {
    /// The config of a tiny checkpoint of `variant`.
    pub fn new(variant: TinyVariant) -> TinyConfig {
        TinyConfig::for_shapes(variant.text_config(), variant.vision_config())
    }

    /// The config of a checkpoint of these shapes (a tiny variant's or a full-size preset's).
    pub fn for_shapes(text_config: TextConfig, vision_config: VisionConfig) -> TinyConfig {
        let params = super::params::model_params(&text_config, &vision_config);
        let quantization = QuantizationConfig::for_params(&params);
        let generation = GenerationConfigFile::tiny();
        TinyConfig {
            architectures: vec!["Gemma4ForConditionalGeneration".into()],
            audio_config: None,
            audio_token_id: special("<|audio|>"),
            boa_token_id: special("<|audio>"),
            boi_token_id: special("<|image>"),
            bos_token_id: special("<bos>"),
            do_sample: generation.do_sample,
            eoa_token_id: special("<audio|>"),
            eoa_token_index: special("<audio|>"),
            eoi_token_id: special("<image|>"),
            // The converter's union of config ([<eos>, <turn|>]) and generation-config stop ids.
            eos_token_id: generation.eos_token_id.clone(),
            image_token_id: special("<|image|>"),
            initializer_range: 0.02,
            model_type: "gemma4".into(),
            pad_token_id: special("<pad>"),
            quantization_config: quantization.clone(),
            quantization,
            temperature: generation.temperature,
            vision_soft_tokens_per_image: vision_config.default_output_length,
            text_config,
            tie_word_embeddings: true,
            top_k: generation.top_k,
            top_p: generation.top_p,
            video_token_id: special("<|video|>"),
            vision_config,
            generation_config: generation,
        }
    }
}
