//! Checks of written checkpoints that need no Python (the cross-check against the Python builder
//! and mlx-vlm is `models/tests/tiny_checkpoint_reference.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use mlx_rs::ops::dequantize;
use mlx_rs::{Array, Dtype};

use super::*;
use crate::chat_messages::ChatMessage;
use crate::chat_template::{ChatTemplate, RenderOptions};
use crate::tokenizer::Tokenizer;
use crate::tokenizer_config::TokenizerConfig;

fn write(variant: TinyVariant, seed: u64) -> (tempfile::TempDir, TinyReport) {
    let dir = tempfile::tempdir().unwrap();
    let report = write_tiny_checkpoint(dir.path(), variant, seed).unwrap();
    (dir, report)
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> T {
    serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap()
}

fn header(dir: &Path) -> SafetensorsHeader {
    read_safetensors_header(&dir.join(WEIGHTS_FILE)).unwrap()
}

fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn same_seed_gives_the_same_bytes_and_another_seed_other_weights() {
    for variant in TinyVariant::ALL {
        let (a, report) = write(variant, 0);
        let (b, _) = write(variant, 0);
        let (c, _) = write(variant, 1);
        let (fa, fb, fc) = (
            all_files(a.path()),
            all_files(b.path()),
            all_files(c.path()),
        );
        assert_eq!(
            fa.keys().collect::<Vec<_>>(),
            fb.keys().collect::<Vec<_>>(),
            "{variant}"
        );
        for (name, bytes) in &fa {
            assert!(
                bytes == &fb[name],
                "{variant}: {name} differs between two runs with seed 0"
            );
        }
        assert_ne!(
            fa[WEIGHTS_FILE], fc[WEIGHTS_FILE],
            "{variant}: seeds 0 and 1 gave the same weights"
        );
        let names = |h: SafetensorsHeader| {
            h.tensors
                .into_iter()
                .map(|(k, v)| (k, v.dtype, v.shape))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(header(a.path())),
            names(header(c.path())),
            "{variant}"
        );

        // The report lists exactly the files in the folder, with their sizes.
        let listed: BTreeMap<String, u64> = report
            .files
            .iter()
            .map(|f| (f.name.clone(), f.bytes))
            .collect();
        let on_disk: BTreeMap<String, u64> = fa
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect();
        assert_eq!(listed, on_disk, "{variant}");
        assert_eq!(report.weights_bytes(), fa[WEIGHTS_FILE].len() as u64);
    }
}

#[test]
fn config_files_round_trip_through_their_types() {
    for variant in TinyVariant::ALL {
        let (dir, _) = write(variant, 0);
        let config: TinyConfig = read_json(dir.path(), "config.json");
        assert_eq!(config, TinyConfig::new(variant), "{variant}");
        assert_eq!(config.text_config, variant.text_config());
        assert_eq!(config.vision_config, variant.vision_config());
        let generation: GenerationConfigFile = read_json(dir.path(), "generation_config.json");
        assert_eq!(generation, GenerationConfigFile::tiny());
        let processor: serde_json::Value = read_json(dir.path(), PROCESSOR_CONFIG_FILE);
        assert_eq!(processor, processor_config(variant));

        // Writing the parsed config again gives the same JSON value (no field lost or renamed).
        let raw: serde_json::Value = read_json(dir.path(), "config.json");
        assert_eq!(serde_json::to_value(&config).unwrap(), raw, "{variant}");
        // Fields the loaders key on, spelled as in the published configs.
        assert_eq!(raw["model_type"], "gemma4");
        assert_eq!(raw["quantization"], raw["quantization_config"]);
        assert_eq!(raw["quantization"]["mode"], "affine");
        assert!(raw["audio_config"].is_null());
        assert!(
            raw.get("torch_dtype").is_none(),
            "the converter drops torch_dtype"
        );
        assert_eq!(raw["text_config"]["sliding_window"], 16);
    }
}

#[test]
fn moe_router_is_an_8_bit_override_and_the_others_have_none() {
    let moe = TinyConfig::new(TinyVariant::Moe).quantization;
    let keys: Vec<&String> = moe.overrides.keys().collect();
    let want: Vec<String> = (0..6)
        .map(|i| format!("language_model.model.layers.{i}.router.proj"))
        .collect();
    assert_eq!(keys, want.iter().collect::<Vec<_>>());
    assert!(moe
        .overrides
        .values()
        .all(|o| o.bits == 8 && o.group_size == 64));
    let json = serde_json::to_value(&moe).unwrap();
    assert_eq!(
        json["language_model.model.layers.3.router.proj"],
        serde_json::json!({"group_size": 64, "bits": 8})
    );
    assert_eq!(moe.bits_for("language_model.model.layers.3.router.proj"), 8);
    assert_eq!(moe.bits_for("language_model.model.layers.3.mlp.up_proj"), 4);
    for variant in [TinyVariant::Dense, TinyVariant::Ple] {
        assert!(
            TinyConfig::new(variant).quantization.overrides.is_empty(),
            "{variant}"
        );
    }
}

#[test]
fn every_quantized_weight_has_scales_and_biases_of_the_right_shape() {
    for variant in TinyVariant::ALL {
        let (dir, report) = write(variant, 0);
        let config: TinyConfig = read_json(dir.path(), "config.json");
        let h = header(dir.path());
        assert_eq!(
            h.metadata,
            BTreeMap::from([("format".to_string(), "mlx".to_string())])
        );
        assert_eq!(h.tensors.len(), report.tensor_count, "{variant}");

        let mut quantized = 0;
        for (name, info) in &h.tensors {
            if info.dtype != "U32" {
                assert_eq!(info.dtype, "BF16", "{variant}: {name}");
                continue;
            }
            quantized += 1;
            let module = name
                .strip_suffix(".weight")
                .expect("packed tensors are weights");
            assert!(
                module.starts_with("language_model."),
                "{variant}: {module} must stay bf16"
            );
            let scales = &h.tensors[&format!("{module}.scales")];
            let biases = &h.tensors[&format!("{module}.biases")];
            assert_eq!(
                (scales.dtype.as_str(), biases.dtype.as_str()),
                ("BF16", "BF16"),
                "{module}"
            );
            assert_eq!(scales.shape, biases.shape, "{module}");
            let bits = config.quantization.bits_for(module) as usize;
            let rank = info.shape.len();
            assert_eq!(info.shape[..rank - 1], scales.shape[..rank - 1], "{module}");
            // One uint32 packs 32/bits values; one scale covers a group of 64 of them.
            let input_dim = info.shape[rank - 1] * 32 / bits;
            assert_eq!(
                scales.shape[rank - 1] * 64,
                input_dim,
                "{module} at {bits} bits"
            );
        }
        assert_eq!(quantized, report.quantized_modules, "{variant}");
        // Scales and biases belong to a packed weight; nothing else is named so.
        for name in h.tensors.keys() {
            if let Some(module) = name
                .strip_suffix(".scales")
                .or_else(|| name.strip_suffix(".biases"))
            {
                assert_eq!(
                    h.tensors[&format!("{module}.weight")].dtype,
                    "U32",
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn tensor_shapes_follow_the_written_config() {
    let (dir, _) = write(TinyVariant::Dense, 0);
    let config: TinyConfig = read_json(dir.path(), "config.json");
    let t = &config.text_config;
    let h = header(dir.path());
    // Logical [out, in] of a 4-bit weight: the packed last dim holds 8 values per uint32.
    let logical = |name: &str| {
        let s = &h.tensors[name].shape;
        vec![s[0], s[1] * 8]
    };
    let layer = |i: usize, rest: &str| format!("language_model.model.layers.{i}.{rest}");
    assert_eq!(
        logical("language_model.model.embed_tokens.weight"),
        [t.vocab_size, t.hidden_size]
    );
    for (i, kind) in t.layer_types.iter().enumerate() {
        let full = kind == "full_attention";
        let d = if full { t.global_head_dim } else { t.head_dim };
        let kv = if full {
            t.num_global_key_value_heads.unwrap()
        } else {
            t.num_key_value_heads
        };
        assert_eq!(
            logical(&layer(i, "self_attn.q_proj.weight")),
            [t.num_attention_heads * d, t.hidden_size]
        );
        assert_eq!(
            logical(&layer(i, "self_attn.k_proj.weight")),
            [kv * d, t.hidden_size]
        );
        assert_eq!(
            h.tensors.contains_key(&layer(i, "self_attn.v_proj.weight")),
            !full,
            "layer {i}"
        );
        assert_eq!(h.tensors[&layer(i, "self_attn.k_norm.weight")].shape, [d]);
        assert_eq!(
            logical(&layer(i, "mlp.down_proj.weight")),
            [t.hidden_size, t.intermediate_size]
        );
        assert_eq!(h.tensors[&layer(i, "layer_scalar")].shape, [1]);
    }
    let v = &config.vision_config;
    assert_eq!(
        h.tensors["vision_tower.patch_embedder.input_proj.weight"].shape,
        [v.hidden_size, 3 * v.patch_size * v.patch_size]
    );
    assert_eq!(
        h.tensors["embed_vision.embedding_projection.weight"].shape,
        [t.hidden_size, v.hidden_size]
    );
    assert!(
        !h.tensors.keys().any(|k| k.contains("lm_head")),
        "the LM head is tied"
    );
}

/// Loads one tensor as float32 (dequantizing packed weights).
fn load_f32(
    weights: &std::collections::HashMap<String, Array>,
    module_or_name: &str,
    bits: i32,
) -> Vec<f32> {
    let array = match weights.get(&format!("{module_or_name}.scales")) {
        Some(scales) => {
            let w = &weights[&format!("{module_or_name}.weight")];
            let b = &weights[&format!("{module_or_name}.biases")];
            dequantize(w, scales, b, 64, bits).unwrap()
        }
        None => weights[module_or_name].clone(),
    };
    array
        .as_dtype(Dtype::Float32)
        .unwrap()
        .as_slice::<f32>()
        .to_vec()
}

fn mean_std(v: &[f32]) -> (f32, f32) {
    let n = v.len() as f32;
    let mean = v.iter().sum::<f32>() / n;
    (
        mean,
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt(),
    )
}

#[test]
fn weights_are_random_with_the_intended_spread_and_not_degenerate() {
    let (dir, _) = write(TinyVariant::Ple, 0);
    let weights = Array::load_safetensors(dir.path().join(WEIGHTS_FILE)).unwrap();
    let near = |what: &str, got: (f32, f32), want: (f32, f32)| {
        assert!(
            (got.0 - want.0).abs() < 0.02 && (got.1 - want.1).abs() < 0.2 * want.1,
            "{what}: mean/std {got:?}, want about {want:?}"
        );
    };
    let q = load_f32(
        &weights,
        "language_model.model.layers.0.self_attn.q_proj",
        4,
    );
    near("q_proj", mean_std(&q), (0.0, 0.08));
    let e = load_f32(&weights, "language_model.model.embed_tokens", 4);
    near("embed_tokens", mean_std(&e), (0.0, 0.05));
    let n = load_f32(
        &weights,
        "language_model.model.layers.0.input_layernorm.weight",
        0,
    );
    near("input_layernorm", mean_std(&n), (1.0, 0.1));
    let pos = load_f32(
        &weights,
        "vision_tower.patch_embedder.position_embedding_table",
        0,
    );
    near("position table", mean_std(&pos), (0.0, 0.5));
    // Per-layer residual multipliers near 1 but not all 1 (one may round to 1.0 in bf16).
    let scalars: Vec<f32> = (0..8)
        .map(|i| {
            load_f32(
                &weights,
                &format!("language_model.model.layers.{i}.layer_scalar"),
                0,
            )[0]
        })
        .collect();
    assert!(scalars.iter().all(|s| (s - 1.0).abs() < 0.5), "{scalars:?}");
    assert!(
        scalars.iter().filter(|s| **s != 1.0).count() >= 6,
        "{scalars:?}"
    );
    // Clip bounds: lower below -1.5, upper above 1.5.
    let clip = "vision_tower.encoder.layers.0.mlp.up_proj";
    assert!(load_f32(&weights, &format!("{clip}.input_min"), 0)[0] <= -1.5);
    assert!(load_f32(&weights, &format!("{clip}.output_max"), 0)[0] >= 1.5);
    assert_eq!(weights[&format!("{clip}.input_min")].shape(), &[] as &[i32]);
}

#[test]
fn token_ids_in_the_config_are_those_of_the_written_tokenizer() {
    let (dir, _) = write(TinyVariant::Dense, 0);
    let tok = Tokenizer::from_dir(dir.path()).unwrap();
    let config: TinyConfig = read_json(dir.path(), "config.json");
    assert_eq!(tok.vocab_size(), config.text_config.vocab_size);
    let id = |t: &str| tok.token_id(t).unwrap();
    assert_eq!(config.image_token_id, id("<|image|>"));
    assert_eq!(
        (config.boi_token_id, config.eoi_token_id),
        (id("<|image>"), id("<image|>"))
    );
    assert_eq!(config.video_token_id, id("<|video|>"));
    assert_eq!(config.audio_token_id, id("<|audio|>"));
    assert_eq!(
        config.eos_token_id,
        [id("<eos>"), id("<turn|>"), id("<|tool_response>")]
    );
    assert_eq!(
        (config.bos_token_id, config.pad_token_id),
        (id("<bos>"), id("<pad>"))
    );
    // mlx-vlm's top-k filter needs top_k below the vocab.
    assert!((config.top_k as usize) < config.text_config.vocab_size);
}

#[test]
fn only_the_ple_variant_gets_the_small_model_generation_prompt() {
    for (variant, suffix) in [
        (
            TinyVariant::Dense,
            "<|turn>model\n<|channel>thought\n<channel|>",
        ),
        (TinyVariant::Ple, "<|turn>user\nHi<turn|>\n<|turn>model\n"),
    ] {
        let (dir, _) = write(variant, 0);
        let cfg = TokenizerConfig::load(dir.path()).unwrap();
        let template = ChatTemplate::load(dir.path(), &cfg).unwrap().unwrap();
        let prompt = template
            .render(
                &[ChatMessage::text("user", "Hi")],
                &RenderOptions::default(),
            )
            .unwrap();
        assert!(prompt.ends_with(suffix), "{variant}: {prompt:?}");
    }
}

#[test]
fn writing_where_a_file_blocks_the_folder_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = write_tiny_checkpoint(&blocker.join("sub"), TinyVariant::Dense, 0).unwrap_err();
    assert!(matches!(err, TinyError::CreateDir { .. }), "{err}");
    assert!(err.to_string().contains("file/sub"), "{err}");
}
