//! Tiny random-weight Gemma 4 checkpoints in the mlx-community 4-bit layout, for tests and as the
//! offline default model.
//!
//! [`write_tiny_checkpoint`] writes what `mlx_vlm convert -q --q-bits 4 --q-group-size 64` leaves
//! in its output folder for the three families of `tools/reference/build_tiny_gemma4.py`
//! ([`TinyVariant`]): `config.json`, `model.safetensors` (+ index), `generation_config.json`,
//! `processor_config.json`, the tiny tokenizer and chat template, and a README. The weights are
//! drawn with MLX's seeded generator the way the Python builder draws them, then quantized with
//! MLX's own affine `quantize` exactly where the converter quantizes (every text Linear and
//! embedding at 4 bits, the MoE router at 8 bits; the vision tower and projector stay bf16).
//! The same seed gives the same bytes.

mod config;
mod inspect;
mod params;
mod preset;
mod sharded;
mod side_files;
mod spec;
mod weights;

use std::path::{Path, PathBuf};

pub use config::{GenerationConfigFile, ModuleQuantization, QuantizationConfig, TinyConfig};
pub use inspect::{read_safetensors_header, InspectError, SafetensorsHeader, TensorInfo};
pub use params::{BITS, GROUP_SIZE, ROUTER_BITS};
pub use preset::{one_rank_of, Preset, UnknownPreset, FULL_SIZE_SHARD_BYTES};
pub use sharded::{plan_shards, shard_file_name, write_preset_checkpoint};
pub use side_files::{
    processor_config, processor_config_for, PROCESSOR_CONFIG_FILE, README_FILE, WEIGHTS_FILE,
    WEIGHTS_INDEX_FILE,
};
pub use spec::{
    RopeParameters, TextConfig, TextRope, TinyVariant, UnknownVariant, VisionConfig, VisionRope,
    TINY_MAX_SOFT_TOKENS, TINY_VOCAB_SIZE,
};

use crate::chat_template::CHAT_TEMPLATE_FILE;
use crate::generation_config::{CONFIG_FILE, GENERATION_CONFIG_FILE};
use crate::tiny_tokenizer::{write_tiny_tokenizer, TinyTokenizerError, TINY_CHAT_TEMPLATE};

#[derive(Debug, thiserror::Error)]
pub enum TinyError {
    #[error("cannot create the checkpoint folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serialize {file}: {source}")]
    Json {
        file: &'static str,
        source: serde_json::Error,
    },
    #[error("MLX failed while {step} ({tensor}): {message}")]
    Mlx {
        step: &'static str,
        tensor: String,
        message: String,
    },
    #[error("cannot save the weights to {path}: {message}")]
    Save { path: PathBuf, message: String },
    #[error("cannot write one tensor-parallel rank's shapes: {0}")]
    RankShapes(String),
    #[error("tiny chat template: {0}")]
    Template(String),
    #[error(transparent)]
    Tokenizer(#[from] TinyTokenizerError),
}

/// One file of the written checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub name: String,
    pub bytes: u64,
}

/// What [`write_tiny_checkpoint`] wrote.
#[derive(Debug, Clone)]
pub struct TinyReport {
    pub dir: PathBuf,
    pub variant: TinyVariant,
    /// The full-size preset whose shapes were written (None: the tiny `variant`).
    pub preset: Option<Preset>,
    /// `Some(n)`: the preset's shapes as one of n tensor-parallel ranks computes them.
    pub one_rank_of: Option<usize>,
    pub seed: u64,
    /// Tensors in `model.safetensors` (a quantized module counts three: weight, scales, biases).
    pub tensor_count: usize,
    pub quantized_modules: usize,
    /// The `quantization` block written to `config.json`.
    pub quantization: QuantizationConfig,
    /// Every file written, sorted by name.
    pub files: Vec<WrittenFile>,
}

impl TinyReport {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Bytes of all `*.safetensors` files (one file for the tiny variants, shards for presets).
    pub fn weights_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.name.ends_with(".safetensors"))
            .map(|f| f.bytes)
            .sum()
    }
}

/// Writes a tiny random Gemma 4 checkpoint of `variant` into `dir` (created if missing; files of
/// the same names are replaced, other files are left alone).
pub fn write_tiny_checkpoint(
    dir: &Path,
    variant: TinyVariant,
    seed: u64,
) -> Result<TinyReport, TinyError> {
    std::fs::create_dir_all(dir).map_err(|source| TinyError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;

    let params = params::model_params(&variant.text_config(), &variant.vision_config());
    let built = weights::build_tensors(&params, seed)?;
    let sizes = weights::save(&dir.join(WEIGHTS_FILE), &built.tensors)?;
    let index = side_files::weights_index(sizes.iter().map(|(k, n)| (k.as_str(), *n)));
    side_files::write_json(dir, WEIGHTS_INDEX_FILE, &index)?;

    let config = TinyConfig::new(variant);
    side_files::write_json(dir, CONFIG_FILE, &config)?;
    side_files::write_json(dir, GENERATION_CONFIG_FILE, &config.generation_config)?;
    side_files::write_json(dir, PROCESSOR_CONFIG_FILE, &processor_config(variant))?;
    side_files::write_bytes(
        dir,
        README_FILE,
        side_files::readme(variant, seed).as_bytes(),
    )?;

    write_tiny_tokenizer(dir, config.text_config.vocab_size)?;
    if !variant.large_template() {
        side_files::write_bytes(dir, CHAT_TEMPLATE_FILE, small_model_template()?.as_bytes())?;
    }

    let mut files = Vec::new();
    for name in [
        CONFIG_FILE,
        GENERATION_CONFIG_FILE,
        PROCESSOR_CONFIG_FILE,
        WEIGHTS_FILE,
        WEIGHTS_INDEX_FILE,
        README_FILE,
        CHAT_TEMPLATE_FILE,
        crate::tokenizer::TOKENIZER_FILE,
        crate::tokenizer_config::TOKENIZER_CONFIG_FILE,
    ] {
        let path = dir.join(name);
        let meta = std::fs::metadata(&path).map_err(|source| TinyError::Write { path, source })?;
        files.push(WrittenFile {
            name: name.to_string(),
            bytes: meta.len(),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(TinyReport {
        dir: dir.to_path_buf(),
        variant,
        preset: None,
        one_rank_of: None,
        seed,
        tensor_count: built.tensors.len(),
        quantized_modules: built.quantized_modules,
        quantization: config.quantization,
        files,
    })
}

/// The E2B/E4B form of the tiny chat template: the generation prompt ends at `<|turn>model\n`
/// instead of adding the empty thought channel of the large models.
pub fn small_model_template() -> Result<String, TinyError> {
    const THOUGHT_SWITCH: &str = "{%- if not enable_thinking | default(false) -%}";
    if !TINY_CHAT_TEMPLATE.contains(THOUGHT_SWITCH) {
        return Err(TinyError::Template(format!(
            "the large-model template has no {THOUGHT_SWITCH:?}"
        )));
    }
    Ok(TINY_CHAT_TEMPLATE.replace(THOUGHT_SWITCH, "{%- if false -%}"))
}

#[cfg(test)]
mod tests;
