//! The converter on the tiny random Gemma 3 GGUF: every mode, the written files, exactness of the
//! lossless import, and the error paths (each must name the file and the tensor or field).

use std::path::{Path, PathBuf};

use mlx_rs::{Array, Dtype};
use serde_json::Value;

use super::*;
use crate::gguf::tiny_gemma3::*;
use crate::gguf::writer::{gguf_bytes, RawTensor};
use crate::gguf::{GgmlType, GgufFile, MetaValue};

fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let gguf = write_tiny_gemma3(dir.path(), 1).unwrap();
    (dir, gguf)
}

fn opts(quant: QuantMode) -> ConvertOptions {
    ConvertOptions {
        quant,
        dtype: Dtype::Float32,
        tokenizer_dir: None,
        overwrite: false,
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn lossless_import_dequantizes_to_the_ggml_values() {
    let (dir, gguf) = fixture();
    let out = dir.path().join("keep");
    let s = convert_gguf(&gguf, &out, &opts(QuantMode::KeepGguf)).unwrap();
    assert_eq!(s.vocab.compared, TINY_VOCAB);
    assert_eq!(s.vocab.space_spelling, 1);
    assert_eq!(s.norms.bf16_exact_minus_one, s.norms.values);
    let cfg = read_json(&out.join("config.json"));
    assert_eq!(cfg["model_type"], "gemma3_text");
    assert_eq!(cfg["num_hidden_layers"], TINY_LAYERS);
    assert_eq!(cfg["num_key_value_heads"], TINY_KV_HEADS);
    assert_eq!(cfg["sliding_window"], TINY_WINDOW);
    assert_eq!(cfg["sliding_window_pattern"], 6);
    assert_eq!(cfg["query_pre_attn_scalar"], TINY_HEAD_DIM);
    assert_eq!(cfg["rope_local_base_freq"], 10000.0);
    assert_eq!(cfg["tie_word_embeddings"], true);
    assert_eq!(cfg["eos_token_id"], serde_json::json!([1]));
    assert_eq!(cfg["layer_types"][5], "full_attention");
    let q = &cfg["quantization"];
    assert_eq!(q, &cfg["quantization_config"]);
    assert_eq!(q["group_size"], 32);
    // Per-module entries for every module whose bits differ from the default.
    let default_bits = q["bits"].as_i64().unwrap();
    let w = Array::load_safetensors(out.join("model.safetensors")).unwrap();
    let f = GgufFile::open(&gguf).unwrap();
    let mut exact = 0;
    for t in &f.tensors {
        let m = names::gemma3(&t.name).unwrap();
        let want = f.dequantize(t).unwrap();
        let got: Vec<f32> = match w.get(&format!("{}.scales", m.module)) {
            Some(scales) => {
                let bits = q
                    .get(&m.module)
                    .map_or(default_bits, |e| e["bits"].as_i64().unwrap())
                    as i32;
                let wq = &w[&format!("{}.weight", m.module)];
                let b = &w[&format!("{}.biases", m.module)];
                exact += 1;
                mlx_rs::ops::dequantize(wq, scales, b, 32, bits)
                    .unwrap()
                    .as_slice::<f32>()
                    .to_vec()
            }
            None => w[&format!("{}.weight", m.module)]
                .as_slice::<f32>()
                .to_vec(),
        };
        let want: Vec<f32> = if m.role == names::Role::Norm {
            want.iter().map(|x| x - 1.0).collect()
        } else {
            want
        };
        assert_eq!(got, want, "{}", t.name);
        // Q6_K and F16 have no group-32 affine form: dense.
        let dense = matches!(t.ggml_type, GgmlType::Q6K | GgmlType::F16 | GgmlType::F32);
        assert_eq!(
            w.contains_key(&format!("{}.scales", m.module)),
            !dense,
            "{}",
            t.name
        );
    }
    assert!(exact > 30);
    let gen = read_json(&out.join("generation_config.json"));
    assert_eq!(gen["eos_token_id"], serde_json::json!([1]));
    let tc = read_json(&out.join("tokenizer_config.json"));
    assert_eq!(tc["eos_token"], "<eos>");
    assert!(tc.get("chat_template").is_none());
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        std::fs::read(dir.path().join("tokenizer.json")).unwrap()
    );
}

#[test]
fn requantized_and_dense_checkpoints() {
    let (dir, gguf) = fixture();
    let out = dir.path().join("q4");
    let q = QuantParams {
        bits: 4,
        group_size: 64,
    };
    convert_gguf(
        &gguf,
        &out,
        &ConvertOptions {
            dtype: Dtype::Bfloat16,
            ..opts(QuantMode::Affine(q))
        },
    )
    .unwrap();
    let cfg = read_json(&out.join("config.json"));
    assert_eq!(
        cfg["quantization"],
        serde_json::json!({"group_size": 64, "bits": 4, "mode": "affine"})
    );
    let w = Array::load_safetensors(out.join("model.safetensors")).unwrap();
    let e = &w["model.embed_tokens.weight"];
    assert_eq!(
        (e.dtype(), e.shape()),
        (
            Dtype::Uint32,
            &[TINY_VOCAB as i32, TINY_HIDDEN as i32 / 8][..]
        )
    );
    assert_eq!(w["model.embed_tokens.scales"].dtype(), Dtype::Bfloat16);
    assert_eq!(w["model.norm.weight"].dtype(), Dtype::Bfloat16);
    // Re-quantization error is bounded by half a quantization step of each group.
    let f = GgufFile::open(&gguf).unwrap();
    let t = f.tensor("blk.0.ffn_up.weight").unwrap();
    let want = f.dequantize(t).unwrap();
    let m = "model.layers.0.mlp.up_proj";
    let got = mlx_rs::ops::dequantize(
        &w[&format!("{m}.weight")],
        &w[&format!("{m}.scales")],
        &w[&format!("{m}.biases")],
        64,
        4,
    )
    .unwrap()
    .as_dtype(Dtype::Float32)
    .unwrap();
    let scales = w[&format!("{m}.scales")].as_dtype(Dtype::Float32).unwrap();
    let biases = w[&format!("{m}.biases")].as_dtype(Dtype::Float32).unwrap();
    let (got, scales, biases) = (
        got.as_slice::<f32>(),
        scales.as_slice::<f32>(),
        biases.as_slice::<f32>(),
    );
    for (i, (g, x)) in got.iter().zip(&want).enumerate() {
        // One step (MLX's affine quantizer nudges the scale so that zero is representable, which can
        // cost up to a step at a group's edge), plus the bf16 rounding (2^-8 relative) of the scale
        // times a code <= 15 and of the bias.
        let (s, b) = (scales[i / 64].abs(), biases[i / 64].abs());
        let bound = s + (15.0 * s + b) / 256.0 + 1e-6;
        assert!(
            (g - x).abs() <= bound,
            "value {i}: {g} vs {x} (scale {s}, bias {b})"
        );
    }

    let out = dir.path().join("dense");
    convert_gguf(&gguf, &out, &opts(QuantMode::Dense)).unwrap();
    let cfg = read_json(&out.join("config.json"));
    assert!(cfg.get("quantization").is_none());
    let w = Array::load_safetensors(out.join("model.safetensors")).unwrap();
    assert!(w.keys().all(|k| k.ends_with(".weight")));
    assert_eq!(
        w["model.layers.0.mlp.up_proj.weight"].as_slice::<f32>(),
        &want[..]
    );
}

fn err(gguf: &Path, out: &Path) -> String {
    convert_gguf(gguf, out, &opts(QuantMode::KeepGguf))
        .unwrap_err()
        .to_string()
}

/// The tiny GGUF with its metadata and tensors edited.
fn edited(
    dir: &Path,
    edit: impl Fn(&mut Vec<(String, MetaValue)>, &mut Vec<RawTensor>),
) -> PathBuf {
    let f = GgufFile::open(dir.join("tiny-gemma3.gguf")).unwrap();
    let mut meta: Vec<(String, MetaValue)> = f
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut tensors: Vec<RawTensor> = f
        .tensors
        .iter()
        .map(|t| RawTensor::blocks(&t.name, &t.shape(), t.ggml_type, f.read_raw(t).unwrap()))
        .collect();
    edit(&mut meta, &mut tensors);
    let refs: Vec<(&str, MetaValue)> = meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let p = dir.join("edited.gguf");
    std::fs::write(&p, gguf_bytes(&refs, &tensors)).unwrap();
    p
}

#[test]
fn errors_name_the_file_and_what_is_wrong() {
    let (dir, gguf) = fixture();
    let d = dir.path();
    let out = d.join("out");

    let p = edited(d, |m, _| {
        m.iter_mut()
            .filter(|(k, _)| k == "general.architecture")
            .for_each(|(_, v)| *v = MetaValue::String("llama".into()))
    });
    assert!(err(&p, &out).contains(
        "edited.gguf: general.architecture `llama` is not supported (supported: gemma3)"
    ));

    let p = edited(d, |m, _| {
        m.retain(|(k, _)| k != "gemma3.attention.sliding_window")
    });
    assert!(
        err(&p, &out).contains("edited.gguf: metadata `gemma3.attention.sliding_window`: missing"),
        "{}",
        err(&p, &out)
    );

    let p = edited(d, |_, t| {
        t.push(RawTensor::f32("rope_freqs.weight", &[32], &[1.0; 32]))
    });
    assert!(err(&p, &out).contains("tensor `rope_freqs.weight` has no gemma3 counterpart"));

    let p = edited(d, |_, t| t.retain(|t| t.name != "blk.3.ffn_up.weight"));
    assert!(err(&p, &out).contains("tensor `blk.3.ffn_up.weight`: missing"));

    let p = edited(d, |_, t| {
        let i = t
            .iter()
            .position(|t| t.name == "blk.0.attn_q_norm.weight")
            .unwrap();
        t[i] = RawTensor::f32("blk.0.attn_q_norm.weight", &[32], &[1.0; 32]);
    });
    assert!(err(&p, &out)
        .contains("tensor `blk.0.attn_q_norm.weight`: shape [32] (GGML dims [32]), expected [64]"));

    // A vocabulary that disagrees with tokenizer.json (beyond space spelling).
    let p = edited(d, |m, _| {
        let (_, v) = m
            .iter_mut()
            .find(|(k, _)| k == "tokenizer.ggml.tokens")
            .unwrap();
        if let MetaValue::Array(a) = v {
            a[300] = MetaValue::String("zzz".into());
        }
    });
    let e = err(&p, &out);
    assert!(
        e.contains("tokenizer.json: does not match the vocabulary of")
            && e.contains("id 300: GGUF \"zzz\""),
        "{e}"
    );

    // No tokenizer next to a GGUF in another directory.
    let lone = tempfile::tempdir().unwrap();
    let moved = lone.path().join("m.gguf");
    std::fs::copy(&gguf, &moved).unwrap();
    assert!(err(&moved, &out)
        .contains("tokenizer.json: not found next to the GGUF: pass --tokenizer DIR"));

    // A non-empty output directory is left alone unless overwriting.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    assert!(
        err(&gguf, &out).contains("out: exists and is not empty (pass --force to write into it)")
    );
    convert_gguf(
        &gguf,
        &out,
        &ConvertOptions {
            overwrite: true,
            ..opts(QuantMode::KeepGguf)
        },
    )
    .unwrap();
    assert!(out.join("keep.txt").exists() && out.join("config.json").exists());

    // A file that is not GGUF.
    let bogus = d.join("bogus.gguf");
    std::fs::write(&bogus, b"not a gguf file at all").unwrap();
    assert!(err(&bogus, &d.join("o2")).contains("bogus.gguf: not a valid GGUF file: magic"));
}
