//! Writing a full-size [`Preset`] checkpoint shard by shard, in mlx-community's layout
//! (`model-0000X-of-0000N.safetensors` plus `model.safetensors.index.json`).
//!
//! A 31B-shaped model is about 17 GB stored and several times that as float32 draws, so nothing
//! is held longer than one shard: each parameter is drawn, quantized and evaluated on its own,
//! the shard is saved, and its arrays are dropped before the next shard starts. The draws run on
//! the default device (the GPU where there is one: seconds instead of many minutes on a CPU);
//! unlike the tiny variants, these bytes are not meant to match the Python builder's.

use std::collections::BTreeMap;
use std::path::Path;

use mlx_rs::ops::indexing::IndexOp;

use super::config::TinyConfig;
use super::params::GROUP_SIZE;
use super::params::{model_params, Param, Storage};
use super::preset::Preset;
use super::side_files::{self, processor_config_for, README_FILE, WEIGHTS_INDEX_FILE};
use super::weights::{build_param, save, split_keys};
use super::{TinyError, TinyReport, TinyVariant, WrittenFile};
use crate::chat_template::CHAT_TEMPLATE_FILE;
use crate::generation_config::{CONFIG_FILE, GENERATION_CONFIG_FILE};
use crate::tiny_tokenizer::write_tiny_tokenizer;

/// Bytes a parameter takes in the file: bf16, or packed `bits`-bit codes plus a bf16 scale and
/// bias per group of 64.
pub fn stored_bytes(p: &Param) -> u64 {
    let n: u64 = p.shape.iter().map(|&d| d as u64).product();
    match p.storage {
        Storage::Bf16 => 2 * n,
        Storage::Quantized { bits } => n * bits as u64 / 8 + 2 * 2 * n / GROUP_SIZE as u64,
    }
}

/// Consecutive runs of parameters (tree order) of at most `max_bytes` stored each; a parameter
/// larger than `max_bytes` gets a shard of its own.
pub fn plan_shards(params: &[Param], max_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut shards = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, p) in params.iter().enumerate() {
        let b = stored_bytes(p);
        if i > start && bytes + b > max_bytes {
            shards.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += b;
    }
    if start < params.len() {
        shards.push(start..params.len());
    }
    shards
}

/// `model-00001-of-00004.safetensors` for shard 0 of 4.
pub fn shard_file_name(index: usize, count: usize) -> String {
    format!("model-{:05}-of-{:05}.safetensors", index + 1, count)
}

/// Writes a `preset`-shaped checkpoint with random weights into `dir` (created if missing), or,
/// with `one_rank_of: Some(n)`, the shapes one of n tensor-parallel ranks computes with
/// ([`super::preset::one_rank_of`]). `on_shard` hears about each weights file as soon as it is on
/// disk (for progress output).
pub fn write_preset_checkpoint(
    dir: &Path,
    preset: Preset,
    one_rank_of: Option<usize>,
    seed: u64,
    mut on_shard: impl FnMut(&WrittenFile, usize, usize),
) -> Result<TinyReport, TinyError> {
    let text = match one_rank_of {
        None => preset.text_config(),
        Some(n) => {
            super::preset::one_rank_of(&preset.text_config(), n).map_err(TinyError::RankShapes)?
        }
    };
    let vision = preset.vision_config();
    std::fs::create_dir_all(dir).map_err(|source| TinyError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let params = model_params(&text, &vision);
    let keys = split_keys(seed, params.len())?;
    let shards = plan_shards(&params, preset.shard_bytes());

    let mut files = Vec::new();
    let mut index_entries: Vec<(String, usize, String)> = Vec::new();
    let (mut tensor_count, mut quantized_modules) = (0, 0);
    for (s, range) in shards.iter().enumerate() {
        let name = shard_file_name(s, shards.len());
        let mut tensors = BTreeMap::new();
        for i in range.clone() {
            let built = build_param(&params[i], &keys.index(i as i32))?;
            // Evaluate now, so only the stored form stays alive (not the float32 draw).
            mlx_rs::transforms::eval(built.iter().map(|(_, a)| a)).map_err(|e| TinyError::Mlx {
                step: "evaluating",
                tensor: params[i].name.clone(),
                message: e.what().to_string(),
            })?;
            quantized_modules += usize::from(built.len() == 3);
            tensors.extend(built);
        }
        tensor_count += tensors.len();
        let sizes = save(&dir.join(&name), &tensors)?;
        drop(tensors);
        index_entries.extend(sizes.into_iter().map(|(k, n)| (k, n, name.clone())));
        let written = file_entry(dir, &name)?;
        on_shard(&written, s, shards.len());
        files.push(written);
    }
    let index = side_files::sharded_weights_index(
        index_entries
            .iter()
            .map(|(k, n, f)| (k.as_str(), *n, f.as_str())),
    );
    side_files::write_json(dir, WEIGHTS_INDEX_FILE, &index)?;

    let config = TinyConfig::for_shapes(text, vision);
    side_files::write_json(dir, CONFIG_FILE, &config)?;
    side_files::write_json(dir, GENERATION_CONFIG_FILE, &config.generation_config)?;
    side_files::write_json(
        dir,
        super::PROCESSOR_CONFIG_FILE,
        &processor_config_for(&config.vision_config),
    )?;
    side_files::write_bytes(
        dir,
        README_FILE,
        readme(preset, one_rank_of, seed).as_bytes(),
    )?;
    write_tiny_tokenizer(dir, config.text_config.vocab_size)?;

    for name in [
        CONFIG_FILE,
        GENERATION_CONFIG_FILE,
        super::PROCESSOR_CONFIG_FILE,
        WEIGHTS_INDEX_FILE,
        README_FILE,
        CHAT_TEMPLATE_FILE,
        crate::tokenizer::TOKENIZER_FILE,
        crate::tokenizer_config::TOKENIZER_CONFIG_FILE,
    ] {
        files.push(file_entry(dir, name)?);
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(TinyReport {
        dir: dir.to_path_buf(),
        variant: TinyVariant::Dense,
        preset: Some(preset),
        one_rank_of,
        seed,
        tensor_count,
        quantized_modules,
        quantization: config.quantization,
        files,
    })
}

fn file_entry(dir: &Path, name: &str) -> Result<WrittenFile, TinyError> {
    let path = dir.join(name);
    let meta = std::fs::metadata(&path).map_err(|source| TinyError::Write { path, source })?;
    Ok(WrittenFile {
        name: name.to_string(),
        bytes: meta.len(),
    })
}

fn readme(preset: Preset, one_rank_of: Option<usize>, seed: u64) -> String {
    let (shapes, flag) = match one_rank_of {
        None => (format!("preset {preset}"), String::new()),
        Some(n) => (
            format!("one of {n} tensor-parallel ranks of preset {preset}"),
            format!(" --one-rank-of {n}"),
        ),
    };
    format!(
        "---\nlibrary_name: mlx\npipeline_tag: image-text-to-text\ntags:\n- mlx\n---\n\
         # Random Gemma 4 with the shapes of {shapes} (seed {seed})\n\n\
         Written by `vlmbench make-tiny --preset {preset}{flag}`. The weights are random and the tokenizer is the\n\
         tiny one padded to the full vocabulary: the model runs at full size, but its output means nothing.\n\
         It exists for speed and memory benchmarks. Layout: Gemma 4 in the mlx-community 4-bit format\n\
         (affine, group size 64; vision tower in bf16), in shards with an index.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_checkpoint::read_safetensors_header;

    #[test]
    fn shards_are_consecutive_bounded_and_cover_every_parameter() {
        let p = Preset::Gemma4_31b;
        let params = model_params(&p.text_config(), &p.vision_config());
        let shards = plan_shards(&params, p.shard_bytes());
        assert_eq!(shards.first().unwrap().start, 0);
        assert_eq!(shards.last().unwrap().end, params.len());
        for w in shards.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &shards {
            let bytes: u64 = params[r.clone()].iter().map(stored_bytes).sum();
            assert!(bytes <= p.shard_bytes() || r.len() == 1, "{r:?}: {bytes}");
        }
        // About 18.4 GB in all (17.3 text + 1.1 vision) in 5 GB shards.
        assert_eq!(shards.len(), 4);
        assert_eq!(shard_file_name(0, 4), "model-00001-of-00004.safetensors");
    }

    #[test]
    fn the_mini_preset_writes_several_shards_that_the_index_describes_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut heard = Vec::new();
        let report =
            write_preset_checkpoint(dir.path(), Preset::Gemma4_31bMini, None, 0, |f, i, n| {
                heard.push((f.name.clone(), i, n))
            })
            .unwrap();
        let shards: Vec<&WrittenFile> = report
            .files
            .iter()
            .filter(|f| f.name.ends_with(".safetensors"))
            .collect();
        assert!(shards.len() >= 3, "{:?}", report.files);
        assert_eq!(heard.len(), shards.len());
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(WEIGHTS_INDEX_FILE)).unwrap())
                .unwrap();
        let map = index["weight_map"].as_object().unwrap();
        assert_eq!(map.len(), report.tensor_count);
        let mut total = 0u64;
        for shard in &shards {
            let header = read_safetensors_header(&dir.path().join(&shard.name)).unwrap();
            for (name, info) in &header.tensors {
                assert_eq!(map[name], shard.name.as_str(), "{name}");
                total += (info.data_offsets[1] - info.data_offsets[0]) as u64;
            }
        }
        assert_eq!(index["metadata"]["total_size"], total);
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(config["text_config"]["num_hidden_layers"], 12);
        assert_eq!(config["vision_soft_tokens_per_image"], 280);
        assert_eq!(config["quantization"]["bits"], 4);
    }
}
