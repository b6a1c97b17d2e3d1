//! The small files next to the weights: `processor_config.json`, `model.safetensors.index.json`,
//! `README.md`, and the JSON writer they share with `config.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

use super::spec::{TinyVariant, VisionConfig};
use super::TinyError;

pub const PROCESSOR_CONFIG_FILE: &str = "processor_config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
pub const README_FILE: &str = "README.md";

/// `processor_config.json` as the converter re-saves it through the Gemma 4 processor: the image
/// processor (no mean/std normalisation, aspect-preserving resize to at most `max_soft_tokens`
/// pooled 3x3 patch blocks), plus the video and audio front ends every Gemma 4 processor carries.
pub fn processor_config(variant: TinyVariant) -> Value {
    processor_config_for(&variant.vision_config())
}

/// `processor_config.json` for a vision tower of these shapes: `max_soft_tokens` is its
/// `default_output_length`.
pub fn processor_config_for(vision: &VisionConfig) -> Value {
    let soft_tokens = vision.default_output_length;
    let rescale = 1.0 / 255.0;
    json!({
        "audio_seq_length": 750,
        "image_processor": {
            "do_convert_rgb": true,
            "do_normalize": false,
            "do_rescale": true,
            "do_resize": true,
            "image_mean": [0.0, 0.0, 0.0],
            "image_processor_type": "Gemma4ImageProcessor",
            "image_std": [1.0, 1.0, 1.0],
            "max_soft_tokens": soft_tokens,
            "patch_size": vision.patch_size,
            "pooling_kernel_size": vision.pooling_kernel_size,
            "resample": 3,
            "rescale_factor": rescale,
            // transformers' default, unused by the aspect-preserving resize.
            "size": {"height": 224, "width": 224}
        },
        "image_seq_length": soft_tokens,
        "processor_class": "Gemma4Processor",
        "video_processor": {
            "default_fps": 2.0,
            "do_normalize": false,
            "do_rescale": true,
            "do_resize": true,
            "image_mean": [0.0, 0.0, 0.0],
            "image_std": [1.0, 1.0, 1.0],
            "max_soft_tokens": 70,
            "num_frames": 32,
            "patch_size": vision.patch_size,
            "pooling_kernel_size": vision.pooling_kernel_size,
            "rescale_factor": rescale,
            "video_processor_type": "Gemma4VideoProcessor"
        },
        "feature_extractor": {
            "feature_extractor_type": "Gemma4AudioFeatureExtractor",
            "sampling_rate": 16000,
            "num_mel_filters": 128,
            "fft_length": 512,
            "hop_length": 160,
            "chunk_duration": 8.0,
            "overlap_duration": 1.0
        },
        "audio_ms_per_token": 40
    })
}

/// `model.safetensors.index.json`: every tensor maps to the single shard; `total_size` is the sum
/// of the tensor data bytes (header excluded).
pub fn weights_index<'a>(tensors: impl IntoIterator<Item = (&'a str, usize)>) -> Value {
    sharded_weights_index(tensors.into_iter().map(|(name, n)| (name, n, WEIGHTS_FILE)))
}

/// `model.safetensors.index.json` of a sharded checkpoint: `(tensor, data bytes, shard file)`.
pub fn sharded_weights_index<'a>(
    tensors: impl IntoIterator<Item = (&'a str, usize, &'a str)>,
) -> Value {
    let mut total = 0usize;
    let mut map = BTreeMap::new();
    for (name, nbytes, file) in tensors {
        total += nbytes;
        map.insert(name.to_string(), file.to_string());
    }
    json!({"metadata": {"total_size": total}, "weight_map": map})
}

pub fn readme(variant: TinyVariant, seed: u64) -> String {
    format!(
        "---\nlibrary_name: mlx\npipeline_tag: image-text-to-text\ntags:\n- mlx\n---\n\
         # Tiny random Gemma 4 ({variant}, seed {seed})\n\n\
         Written by `vlmbench make-tiny`. The weights are random: the model runs, but its output means\n\
         nothing. It exists for tests and offline demos. Layout: Gemma 4 in the mlx-community 4-bit\n\
         format (affine, group size 64; the MoE router at 8 bits; vision tower in bf16).\n"
    )
}

/// Writes `value` as JSON with four-space indents (the converter's style) and a final newline.
pub fn write_json(
    dir: &Path,
    file: &'static str,
    value: &impl Serialize,
) -> Result<u64, TinyError> {
    let mut bytes = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
    value
        .serialize(&mut ser)
        .map_err(|source| TinyError::Json { file, source })?;
    bytes.push(b'\n');
    write_bytes(dir, file, &bytes)
}

pub fn write_bytes(dir: &Path, file: &str, bytes: &[u8]) -> Result<u64, TinyError> {
    let path = dir.join(file);
    std::fs::write(&path, bytes).map_err(|source| TinyError::Write { path, source })?;
    Ok(bytes.len() as u64)
}
