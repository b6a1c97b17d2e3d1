//! A tiny Moondream2 checkpoint with RANDOM weights in the published layout (`config.json` with
//! the `config` overrides, `model.safetensors` with `model.{vision,text,region}.*` in bf16), for
//! tests and offline demos. It keeps every size the reference hard-codes (27x27 grid of 14 px
//! patches, 27 vision blocks, 64-wide text heads, 1024 coordinate bins, 2x1024 size bins, 2048
//! context) and shrinks the widths; the vocabulary is 1024 ids, so the prompt templates are
//! remapped below 1024. The real tokenizer (moondream/starmie-v1) is not available offline;
//! `tokenizer.json` is a byte-level stand-in ([`super::tokenizer::write_tiny_starmie`]) with the
//! same `<|endoftext|>` = 0, so the CLI runs end to end. The same seed writes the same bytes.

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::{random, Array, Dtype};
use serde_json::{json, Value};

use super::config::MoondreamConfig;
use super::expected_tensor_names;
use crate::error::{ModelError, Result};

/// The tiny `config` block (the same dimensions as the parity fixtures).
pub fn tiny_config() -> Value {
    json!({
        "text": {"dim": 64, "ff_dim": 128, "n_layers": 2, "vocab_size": 1024, "max_context": 2048,
                 "n_heads": 1, "n_kv_heads": 1, "prefix_attn": 730},
        "vision": {"enc_dim": 32, "enc_patch_size": 14, "enc_n_layers": 27, "enc_ff_dim": 64,
                   "enc_n_heads": 2, "proj_out_dim": 64, "crop_size": 378, "in_channels": 3,
                   "max_crops": 12, "overlap_margin": 4, "proj_inner_dim": 128},
        "region": {"dim": 64, "coord_feat_dim": 64, "coord_out_dim": 1024, "size_feat_dim": 128,
                   "size_out_dim": 2048, "inner_dim": 128},
        "tokenizer": {"templates": {
            "caption": {"short": [1, 708, 2, 492, 3], "normal": [1, 708, 2, 382, 3], "long": [1, 708, 2, 59, 3]},
            "query": {"prefix": [1, 381, 2], "suffix": [3]},
            "detect": {"prefix": [1, 235, 476, 2], "suffix": [3]},
            "point": {"prefix": [1, 581, 2], "suffix": [3]}
        }}
    })
}

/// What [`write_tiny`] wrote.
#[derive(Debug, Clone)]
pub struct TinySummary {
    pub tensors: usize,
    pub weight_bytes: u64,
}

/// The shape of each tensor of the layout for `cfg`.
fn shape_of(name: &str, cfg: &MoondreamConfig) -> Vec<i32> {
    let (t, v, r) = (&cfg.text, &cfg.vision, &cfg.region);
    let qkv_text = t.dim + 2 * t.n_kv_heads * (t.dim / t.n_heads);
    let grid = cfg.grid();
    let patch = v.enc_patch_size * v.enc_patch_size * v.in_channels;
    let linear = |path: &str| -> Option<(i32, i32)> {
        let l = |p: &str| path.ends_with(p);
        Some(if path.starts_with("model.vision.") {
            match () {
                _ if l("patch_emb") => (v.enc_dim, patch),
                _ if l("attn.qkv") => (3 * v.enc_dim, v.enc_dim),
                _ if l("attn.proj") => (v.enc_dim, v.enc_dim),
                _ if l("proj_mlp.fc1") => (v.proj_inner_dim, 2 * v.enc_dim),
                _ if l("proj_mlp.fc2") => (v.proj_out_dim, v.proj_inner_dim),
                _ if l("mlp.fc1") => (v.enc_ff_dim, v.enc_dim),
                _ if l("mlp.fc2") => (v.enc_dim, v.enc_ff_dim),
                _ => return None,
            }
        } else if path.starts_with("model.text.") {
            match () {
                _ if l("attn.qkv") => (qkv_text, t.dim),
                _ if l("attn.proj") => (t.dim, t.dim),
                _ if l("mlp.fc1") => (t.ff_dim, t.dim),
                _ if l("mlp.fc2") => (t.dim, t.ff_dim),
                _ if l("lm_head") => (t.vocab_size, t.dim),
                _ => return None,
            }
        } else {
            match () {
                _ if l("coord_encoder") => (r.dim, r.coord_feat_dim),
                _ if l("size_encoder") => (r.dim, r.size_feat_dim),
                _ if l("coord_decoder.fc1") || l("size_decoder.fc1") => (r.inner_dim, r.dim),
                _ if l("coord_decoder.fc2") => (r.coord_out_dim, r.inner_dim),
                _ if l("size_decoder.fc2") => (r.size_out_dim, r.inner_dim),
                _ => return None,
            }
        })
    };
    match name {
        "model.vision.pos_emb" => vec![1, grid * grid, v.enc_dim],
        "model.text.wte" => vec![t.vocab_size, t.dim],
        "model.region.coord_features" => vec![1, r.coord_feat_dim / 2],
        "model.region.size_features" => vec![2, r.size_feat_dim / 2],
        _ => {
            let (stem, kind) = name.rsplit_once('.').expect("layout names have a suffix");
            match linear(stem) {
                Some((out, inp)) if kind == "weight" => vec![out, inp],
                Some((out, _)) => vec![out],
                // LayerNorms: width of their stream.
                None if stem.starts_with("model.vision.") => vec![v.enc_dim],
                None => vec![t.dim],
            }
        }
    }
}

/// Write `config.json` and `model.safetensors` of the tiny model into `dir` (created if missing).
pub fn write_tiny(dir: &Path, seed: u64) -> Result<TinySummary> {
    let io = |e: std::io::Error| ModelError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let config = json!({
        "architectures": ["HfMoondream"],
        "model_type": super::config::MODEL_TYPE,
        "torch_dtype": "bfloat16",
        "config": tiny_config(),
    });
    let cfg = MoondreamConfig::from_json(&config, &dir.join("config.json"))?;
    let names = expected_tensor_names(&cfg);
    let mut arrays: Vec<(String, Array)> = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let shape = shape_of(name, &cfg);
        let key = random::key(seed.wrapping_mul(1_000_003).wrapping_add(i as u64))?;
        let r = random::normal::<f32>(&shape[..], None, None, &key)?;
        // LayerNorm weights near 1; linear weights ~ 1/sqrt(fan_in); biases and the rest small;
        // Fourier frequencies and embeddings at unit-ish scale.
        let is_ln = name.contains(".ln") || name.contains("post_ln");
        let a = if is_ln && name.ends_with(".weight") {
            r.multiply(Array::from_f32(0.1))?
                .add(Array::from_f32(1.0))?
        } else if name.ends_with(".weight") && shape.len() == 2 {
            r.multiply(Array::from_f32(1.0 / (shape[1] as f32).sqrt()))?
        } else if name.ends_with("_features") {
            r.multiply(Array::from_f32(2.0))?
        } else if name.ends_with(".bias") {
            r.multiply(Array::from_f32(0.05))?
        } else {
            r
        };
        // A lean towards eos (id 0) so that captions and detect/point loops can end by themselves.
        let a = if name == "model.text.lm_head.bias" {
            let mut bump = vec![0f32; shape[0] as usize];
            bump[0] = 2.0;
            a.add(Array::from_slice(&bump, &shape))?
        } else {
            a
        };
        arrays.push((name.clone(), a.as_dtype(Dtype::Bfloat16)?));
    }
    let cfg_text = serde_json::to_string_pretty(&config).expect("json") + "\n";
    std::fs::write(dir.join("config.json"), cfg_text).map_err(io)?;
    let weights = dir.join("model.safetensors");
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    Array::save_safetensors(arrays.iter().map(|(k, a)| (k.as_str(), a)), &meta, &weights).map_err(
        |e| {
            ModelError::Input(format!(
                "{}: cannot write safetensors: {e}",
                weights.display()
            ))
        },
    )?;
    let weight_bytes = std::fs::metadata(&weights).map_err(io)?.len();
    super::tokenizer::write_tiny_starmie(&dir.join("tokenizer.json"))?;
    Ok(TinySummary {
        tensors: arrays.len(),
        weight_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moondream2::{sampling::TextSettings, CaptionLength, Moondream2};

    #[test]
    fn tiny_checkpoint_loads_and_runs_every_task() {
        let dir = tempfile::tempdir().unwrap();
        let s = write_tiny(dir.path(), 3).unwrap();
        assert_eq!(s.tensors, 372);
        let m = Moondream2::load(dir.path(), Dtype::Bfloat16).unwrap();
        let img = image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        });
        let enc = m.encode_image(&img).unwrap();
        let cap = m
            .caption(
                &enc,
                CaptionLength::Short,
                &TextSettings::greedy(4),
                &mut |_| {},
            )
            .unwrap();
        assert!(cap.tokens.len() <= 4);
        let det = m.detect(&enc, &[50, 60], 2).unwrap();
        assert!(det.items.len() <= 2);
        let pts = m.point(&enc, &[50, 60], 2).unwrap();
        assert!(pts.items.len() <= 2);
    }

    #[test]
    fn same_seed_writes_the_same_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_tiny(a.path(), 5).unwrap();
        write_tiny(b.path(), 5).unwrap();
        let read = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
        assert_eq!(read(a.path()), read(b.path()));
    }
}
