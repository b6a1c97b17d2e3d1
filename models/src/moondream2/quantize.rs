//! Our 4-bit variant of a Moondream2 checkpoint: the text model's linear layers (qkv, proj, fc1,
//! fc2, lm_head) and the vision projection (`proj_mlp`) become MLX affine-quantized triplets
//! (`.weight` uint32, `.scales`, `.biases`) with a top-level `quantization` block in
//! `config.json`, as mlx-community checkpoints have it. The linear biases (`.bias`), the
//! embeddings, the vision encoder and the region head stay in bf16 (the region head decides
//! coordinates by argmax over 1024 bins; it is small, so it keeps full precision).

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::ops::quantize;
use mlx_rs::{Array, Dtype};
use serde_json::{json, Value};

use super::config::MoondreamConfig;
use crate::checkpoint::Checkpoint;
use crate::error::{ModelError, Result};

/// Whether the weight `name` is quantized in our 4-bit variant.
pub fn is_quantized_weight(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".weight") else {
        return false;
    };
    let text_linear = stem.starts_with("model.text.")
        && [".attn.qkv", ".attn.proj", ".mlp.fc1", ".mlp.fc2", "lm_head"]
            .iter()
            .any(|s| stem.ends_with(s));
    let projection = stem.starts_with("model.vision.proj_mlp.");
    text_linear || projection
}

/// Write the quantized variant of the dense checkpoint in `src` to `out`. Every quantized weight's
/// input width must be a multiple of `group_size`. Returns the number of quantized weights.
pub fn write_quantized(src: &Path, out: &Path, bits: i32, group_size: i32) -> Result<usize> {
    let ckpt = Checkpoint::open(src)?;
    MoondreamConfig::from_json(ckpt.config_json(), ckpt.config_path())?;
    if ckpt.quantization().is_some() {
        return Err(ModelError::config(
            ckpt.config_path(),
            "quantization",
            "the checkpoint is already quantized",
        ));
    }
    let mut names: Vec<&str> = ckpt.tensor_names().collect();
    names.sort_unstable();
    let mut arrays: Vec<(String, Array)> = Vec::new();
    let mut count = 0;
    for name in names {
        let t = ckpt.tensor(name)?;
        if is_quantized_weight(name) {
            let in_dim = t.dim(1);
            if in_dim % group_size != 0 {
                return Err(ModelError::Input(format!(
                    "{name}: input width {in_dim} is not a multiple of group size {group_size}"
                )));
            }
            let (w, scales, biases) = quantize(t.as_dtype(Dtype::Bfloat16)?, group_size, bits)?;
            let stem = name.strip_suffix(".weight").expect("checked");
            arrays.push((name.to_string(), w));
            arrays.push((format!("{stem}.scales"), scales));
            arrays.push((format!("{stem}.biases"), biases));
            count += 1;
        } else {
            arrays.push((name.to_string(), t.clone()));
        }
    }
    let io = |e: std::io::Error| ModelError::Io {
        path: out.to_path_buf(),
        source: e,
    };
    std::fs::create_dir_all(out).map_err(io)?;
    let mut config: Value = ckpt.config_json().clone();
    config["quantization"] = json!({"group_size": group_size, "bits": bits, "mode": "affine"});
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&config).expect("json") + "\n",
    )
    .map_err(io)?;
    let weights = out.join("model.safetensors");
    let meta = HashMap::from([("format".to_string(), "mlx".to_string())]);
    Array::save_safetensors(arrays.iter().map(|(k, a)| (k.as_str(), a)), &meta, &weights).map_err(
        |e| {
            ModelError::Input(format!(
                "{}: cannot write safetensors: {e}",
                weights.display()
            ))
        },
    )?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moondream2::{sampling::TextSettings, tiny::write_tiny, CaptionLength, Moondream2};

    #[test]
    fn text_and_projection_weights_are_the_ones_quantized() {
        assert!(is_quantized_weight("model.text.blocks.3.attn.qkv.weight"));
        assert!(is_quantized_weight("model.text.lm_head.weight"));
        assert!(is_quantized_weight("model.vision.proj_mlp.fc2.weight"));
        assert!(!is_quantized_weight("model.vision.blocks.0.mlp.fc1.weight"));
        assert!(!is_quantized_weight("model.text.blocks.0.ln.weight"));
        assert!(!is_quantized_weight("model.text.lm_head.bias"));
        assert!(!is_quantized_weight(
            "model.region.coord_decoder.fc1.weight"
        ));
    }

    #[test]
    fn the_4bit_variant_loads_runs_and_stays_close_to_bf16() {
        let (dense_dir, q_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_tiny(dense_dir.path(), 11).unwrap();
        // Tiny model: 2 text blocks x 4 linears + lm_head + 2 projection layers.
        assert_eq!(
            write_quantized(dense_dir.path(), q_dir.path(), 4, 64).unwrap(),
            11
        );
        let dense = Moondream2::load(dense_dir.path(), Dtype::Bfloat16).unwrap();
        let quant = Moondream2::load(q_dir.path(), Dtype::Bfloat16).unwrap();
        let img = image::RgbImage::from_fn(120, 90, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x ^ y) * 5) as u8])
        });
        let (fd, fq) = (
            dense.image_features(&img).unwrap(),
            quant.image_features(&img).unwrap(),
        );
        let as_f32 = |a: &Array| {
            let a = a.as_dtype(Dtype::Float32).unwrap();
            a.as_slice::<f32>().to_vec()
        };
        let (d, q) = (as_f32(&fd.projected), as_f32(&fq.projected));
        let rms = |v: &[f32]| (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
        let diff: Vec<f32> = d.iter().zip(&q).map(|(a, b)| a - b).collect();
        // 4-bit weights with 64-wide groups: the projection moves by a few percent, not more.
        let rel = rms(&diff) / rms(&d);
        assert!(rel > 0.0 && rel < 0.2, "relative RMS difference {rel}");
        let enc = quant.encode_image(&img).unwrap();
        let cap = quant
            .caption(
                &enc,
                CaptionLength::Short,
                &TextSettings::greedy(8),
                &mut |_| {},
            )
            .unwrap();
        assert!(cap.tokens.len() <= 8);
        // Running twice gives the same greedy tokens.
        let again = quant
            .caption(
                &enc,
                CaptionLength::Short,
                &TextSettings::greedy(8),
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(cap.tokens, again.tokens);
    }

    #[test]
    fn an_already_quantized_checkpoint_is_refused() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        write_tiny(a.path(), 1).unwrap();
        write_quantized(a.path(), b.path(), 4, 64).unwrap();
        let e = write_quantized(b.path(), c.path(), 4, 64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("already quantized"), "{e}");
    }
}
