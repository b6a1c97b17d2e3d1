//! Checkpoint loading: the happy paths (single file, shards, per-module quantization entries)
//! and every error path, on small checkpoints written by the test itself (no Python needed).

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::{Array, Dtype};
use serde_json::{json, Value};
use vlm_models::checkpoint::Checkpoint;
use vlm_models::error::ModelError;
use vlm_models::gemma4::{Config, Gemma4Text, Logits};

const H: i32 = 64;
const V: i32 = 64;
const HD: i32 = 32;
const GHD: i32 = 32;

fn text_config() -> Value {
    json!({
        "model_type": "gemma4_text",
        "hidden_size": H, "intermediate_size": 64, "num_hidden_layers": 2,
        "layer_types": ["sliding_attention", "full_attention"],
        "num_attention_heads": 2, "num_key_value_heads": 1, "num_global_key_value_heads": 1,
        "head_dim": HD, "global_head_dim": GHD, "attention_k_eq_v": true, "sliding_window": 8,
        "vocab_size": V, "vocab_size_per_layer_input": V, "hidden_size_per_layer_input": 0,
        "num_kv_shared_layers": 0, "use_double_wide_mlp": false, "enable_moe_block": false,
        "final_logit_softcapping": 30.0, "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6,
        "use_bidirectional_attention": "vision",
        "rope_parameters": {
            "full_attention": {"partial_rotary_factor": 0.25, "rope_theta": 1000000.0, "rope_type": "proportional"},
            "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}
        },
        "tie_word_embeddings": true, "attention_bias": false
    })
}

fn config() -> Value {
    json!({
        "model_type": "gemma4",
        "text_config": text_config(),
        "vision_config": {"hidden_size": 64},
        "audio_config": null,
        "image_token_id": 9, "eos_token_id": [1, 6],
        "quantization": {"group_size": 64, "bits": 4, "mode": "affine"},
        "quantization_config": {"group_size": 64, "bits": 4, "mode": "affine"}
    })
}

fn det(shape: &[i32], seed: u32, scale: f32) -> Array {
    let n: i32 = shape.iter().product();
    Array::from_iter(
        (0..n).map(|i| ((i as f32 + 1.0) * (0.61 + seed as f32 * 0.13)).sin() * scale),
        shape,
    )
}

type Tensors = HashMap<String, Array>;

fn add_quantized(t: &mut Tensors, path: &str, out: i32, inp: i32, seed: u32, bits: i32) {
    let w = det(&[out, inp], seed, 0.08);
    let (q, s, b) = mlx_rs::ops::quantize(&w, 64, bits).unwrap();
    t.insert(format!("{path}.weight"), q);
    t.insert(
        format!("{path}.scales"),
        s.as_dtype(Dtype::Bfloat16).unwrap(),
    );
    t.insert(
        format!("{path}.biases"),
        b.as_dtype(Dtype::Bfloat16).unwrap(),
    );
}

fn add_norm(t: &mut Tensors, name: &str, dim: i32, seed: u32) {
    let w = det(&[dim], seed, 0.1).add(Array::from_f32(1.0)).unwrap();
    t.insert(
        format!("{name}.weight"),
        w.as_dtype(Dtype::Bfloat16).unwrap(),
    );
}

/// All text tensors of the 2-layer model above, 4-bit g64, bf16 elsewhere.
fn tensors() -> Tensors {
    let p = "language_model.model";
    let mut t = Tensors::new();
    add_quantized(&mut t, &format!("{p}.embed_tokens"), V, H, 1, 4);
    add_norm(&mut t, &format!("{p}.norm"), H, 2);
    for i in 0..2 {
        let l = format!("{p}.layers.{i}");
        let full = i == 1;
        let d = if full { GHD } else { HD };
        let s = 10 * (i as u32 + 1);
        add_quantized(&mut t, &format!("{l}.self_attn.q_proj"), 2 * d, H, s, 4);
        add_quantized(&mut t, &format!("{l}.self_attn.k_proj"), d, H, s + 1, 4);
        if !full {
            add_quantized(&mut t, &format!("{l}.self_attn.v_proj"), d, H, s + 2, 4);
        }
        add_quantized(&mut t, &format!("{l}.self_attn.o_proj"), H, 2 * d, s + 3, 4);
        add_norm(&mut t, &format!("{l}.self_attn.q_norm"), d, s + 4);
        add_norm(&mut t, &format!("{l}.self_attn.k_norm"), d, s + 5);
        add_quantized(&mut t, &format!("{l}.mlp.gate_proj"), 64, H, s + 6, 4);
        add_quantized(&mut t, &format!("{l}.mlp.up_proj"), 64, H, s + 7, 4);
        add_quantized(&mut t, &format!("{l}.mlp.down_proj"), H, 64, s + 8, 4);
        for (k, n) in [
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ]
        .iter()
        .enumerate()
        {
            add_norm(&mut t, &format!("{l}.{n}"), H, s + 20 + k as u32);
        }
        t.insert(
            format!("{l}.layer_scalar"),
            Array::from_slice(&[1.0f32], &[1])
                .as_dtype(Dtype::Bfloat16)
                .unwrap(),
        );
    }
    t
}

fn write(dir: &Path, cfg: &Value, t: &Tensors) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(cfg).unwrap(),
    )
    .unwrap();
    Array::save_safetensors(t.iter(), None, dir.join("model.safetensors")).unwrap();
}

fn load(dir: &Path) -> Result<Gemma4Text, ModelError> {
    let ckpt = Checkpoint::open(dir)?;
    Gemma4Text::load(&ckpt, Dtype::Float32)
}

fn logits(m: &Gemma4Text) -> Vec<f32> {
    let ids = Array::from_slice(&[2, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37], &[1, 11]);
    let mut cache = m.make_cache();
    let l = m
        .forward(&ids, None, None, &mut cache, Logits::All)
        .unwrap();
    l.as_dtype(Dtype::Float32)
        .unwrap()
        .as_slice::<f32>()
        .to_vec()
}

fn err_string(r: Result<Gemma4Text, ModelError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            eprintln!("error: {e}");
            e.to_string()
        }
    }
}

#[test]
fn loads_single_file_and_runs() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &config(), &tensors());
    let m = load(d.path()).unwrap();
    let l = logits(&m);
    assert_eq!(l.len(), 11 * V as usize);
    assert!(l.iter().all(|x| x.is_finite() && x.abs() <= 30.0));
}

#[test]
fn sharded_checkpoint_matches_single_file() {
    let single = tempfile::tempdir().unwrap();
    write(single.path(), &config(), &tensors());
    let reference = logits(&load(single.path()).unwrap());

    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.json"), config().to_string()).unwrap();
    let t = tensors();
    let mut names: Vec<&String> = t.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", a),
        ("model-00002-of-00002.safetensors", b),
    ] {
        Array::save_safetensors(
            part.iter().map(|n| (n.as_str(), &t[*n])),
            None,
            d.path().join(file),
        )
        .unwrap();
        for n in part {
            map.insert((*n).clone(), json!(file));
        }
    }
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    let ckpt = Checkpoint::open(d.path()).unwrap();
    assert_eq!(ckpt.len(), t.len());
    assert_eq!(
        logits(&Gemma4Text::load(&ckpt, Dtype::Float32).unwrap()),
        reference
    );

    // The index names a tensor that its shard does not hold.
    let mut bad = map.clone();
    bad.insert(
        "language_model.model.extra".into(),
        json!("model-00001-of-00002.safetensors"),
    );
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        json!({"weight_map": bad}).to_string(),
    )
    .unwrap();
    let e = Checkpoint::open(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("language_model.model.extra") && e.contains("model-00001-of-00002.safetensors"),
        "{e}"
    );

    // The index names a shard that does not exist.
    let mut bad = map.clone();
    bad.insert("x".into(), json!("model-00003-of-00003.safetensors"));
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        json!({"weight_map": bad}).to_string(),
    )
    .unwrap();
    let e = Checkpoint::open(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("model-00003-of-00003.safetensors") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn duplicate_tensor_across_files() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &config(), &tensors());
    let t = tensors();
    let n = "language_model.model.norm.weight";
    Array::save_safetensors([(n, &t[n])], None, d.path().join("extra.safetensors")).unwrap();
    let e = Checkpoint::open(d.path()).unwrap_err();
    assert!(matches!(e, ModelError::DuplicateTensor { .. }), "{e}");
    assert!(e.to_string().contains(n));
}

#[test]
fn missing_config_and_weights() {
    let d = tempfile::tempdir().unwrap();
    let e = Checkpoint::open(d.path()).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");

    std::fs::write(d.path().join("config.json"), "{ not json").unwrap();
    let e = Checkpoint::open(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("config.json") && e.contains("invalid JSON"),
        "{e}"
    );

    std::fs::write(d.path().join("config.json"), config().to_string()).unwrap();
    let e = Checkpoint::open(d.path()).unwrap_err();
    assert!(matches!(e, ModelError::NoWeights { .. }), "{e}");
}

#[test]
fn missing_tensor() {
    let d = tempfile::tempdir().unwrap();
    let mut t = tensors();
    t.remove("language_model.model.layers.1.self_attn.k_norm.weight");
    write(d.path(), &config(), &t);
    let e = err_string(load(d.path()));
    assert!(
        e.contains("missing tensor `language_model.model.layers.1.self_attn.k_norm.weight`"),
        "{e}"
    );
}

#[test]
fn wrong_shape() {
    let d = tempfile::tempdir().unwrap();
    let mut t = tensors();
    t.insert(
        "language_model.model.layers.0.input_layernorm.weight".into(),
        det(&[32], 3, 1.0).as_dtype(Dtype::Bfloat16).unwrap(),
    );
    write(d.path(), &config(), &t);
    let e = err_string(load(d.path()));
    assert!(
        e.contains("language_model.model.layers.0.input_layernorm.weight")
            && e.contains("expected shape [64], found [32]")
            && e.contains("model.safetensors"),
        "{e}"
    );

    // A quantized projection with the wrong number of output rows.
    let mut t = tensors();
    add_quantized(
        &mut t,
        "language_model.model.layers.0.self_attn.q_proj",
        32,
        H,
        5,
        4,
    );
    write(d.path(), &config(), &t);
    let e = err_string(load(d.path()));
    assert!(
        e.contains("self_attn.q_proj.weight")
            && e.contains("expected shape [64, 8], found [32, 8]"),
        "{e}"
    );
}

#[test]
fn wrong_bits() {
    let d = tempfile::tempdir().unwrap();
    // Packed at 8 bits, but the config says 4.
    let mut t = tensors();
    add_quantized(
        &mut t,
        "language_model.model.layers.0.mlp.up_proj",
        64,
        H,
        5,
        8,
    );
    write(d.path(), &config(), &t);
    let e = err_string(load(d.path()));
    assert!(
        e.contains("language_model.model.layers.0.mlp.up_proj.weight")
            && e.contains("bits=4")
            && e.contains("expected [64, 8]")
            && e.contains("[64, 16]"),
        "{e}"
    );
}

#[test]
fn per_module_quantization_entries() {
    let d = tempfile::tempdir().unwrap();
    // An 8-bit module declared by a per-module entry loads (like mlx-vlm's router.proj).
    let mut t = tensors();
    add_quantized(
        &mut t,
        "language_model.model.layers.0.mlp.up_proj",
        64,
        H,
        5,
        8,
    );
    let mut cfg = config();
    cfg["quantization"]["language_model.model.layers.0.mlp.up_proj"] =
        json!({"group_size": 64, "bits": 8});
    write(d.path(), &cfg, &t);
    let ckpt = Checkpoint::open(d.path()).unwrap();
    let q = ckpt
        .module_quantization("language_model.model.layers.0.mlp.up_proj")
        .unwrap()
        .unwrap();
    assert_eq!((q.bits, q.group_size), (8, 64));
    let m = Gemma4Text::load(&ckpt, Dtype::Float32).unwrap();
    assert!(logits(&m).iter().all(|x| x.is_finite()));

    // `false` leaves a module unquantized: a dense weight loads ...
    let mut t = tensors();
    for s in ["weight", "scales", "biases"] {
        t.remove(&format!("language_model.model.layers.1.mlp.gate_proj.{s}"));
    }
    t.insert(
        "language_model.model.layers.1.mlp.gate_proj.weight".into(),
        det(&[64, H], 9, 0.08).as_dtype(Dtype::Bfloat16).unwrap(),
    );
    let mut cfg = config();
    cfg["quantization"]["language_model.model.layers.1.mlp.gate_proj"] = json!(false);
    write(d.path(), &cfg, &t);
    let ckpt = Checkpoint::open(d.path()).unwrap();
    assert_eq!(
        ckpt.module_quantization("language_model.model.layers.1.mlp.gate_proj")
            .unwrap(),
        None
    );
    Gemma4Text::load(&ckpt, Dtype::Float32).unwrap();

    // ... but `false` with quantized tensors present is an error naming the entry.
    let mut cfg = config();
    cfg["quantization"]["language_model.model.layers.0.mlp.up_proj"] = json!(false);
    write(d.path(), &cfg, &tensors());
    let e = err_string(load(d.path()));
    assert!(
        e.contains("quantization.language_model.model.layers.0.mlp.up_proj") && e.contains("false"),
        "{e}"
    );

    // Quantized tensors without any quantization block.
    let mut cfg = config();
    cfg.as_object_mut().unwrap().remove("quantization");
    cfg.as_object_mut().unwrap().remove("quantization_config");
    write(d.path(), &cfg, &tensors());
    let e = err_string(load(d.path()));
    assert!(e.contains("quantization") && e.contains(".scales"), "{e}");

    // A dtype error: packed weights must be uint32.
    let mut t = tensors();
    t.insert(
        "language_model.model.layers.0.mlp.up_proj.weight".into(),
        det(&[64, 8], 1, 1.0),
    );
    write(d.path(), &config(), &t);
    let e = err_string(load(d.path()));
    assert!(
        e.contains("mlp.up_proj.weight") && e.contains("uint32"),
        "{e}"
    );
}

#[test]
fn corrupt_and_truncated_safetensors() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &config(), &tensors());
    let f = d.path().join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();

    std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
    let e = Checkpoint::open(d.path()).unwrap_err();
    assert!(matches!(e, ModelError::CorruptSafetensors { .. }), "{e}");
    let s = e.to_string();
    assert!(
        s.contains("model.safetensors") && s.contains("truncated"),
        "{s}"
    );

    std::fs::write(&f, &bytes[..4]).unwrap();
    let s = Checkpoint::open(d.path()).unwrap_err().to_string();
    assert!(
        s.contains("model.safetensors") && s.contains("8-byte"),
        "{s}"
    );

    let mut garbage = bytes.clone();
    garbage[8] = b'#';
    std::fs::write(&f, &garbage).unwrap();
    let s = Checkpoint::open(d.path()).unwrap_err().to_string();
    assert!(
        s.contains("model.safetensors") && s.contains("not valid JSON"),
        "{s}"
    );

    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(&f, &huge).unwrap();
    let s = Checkpoint::open(d.path()).unwrap_err().to_string();
    assert!(
        s.contains("model.safetensors") && s.contains("exceeds the file size"),
        "{s}"
    );
}

#[test]
fn unsupported_model_type() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg["model_type"] = json!("llama");
    write(d.path(), &cfg, &tensors());
    let e = err_string(load(d.path()));
    assert!(
        e.contains("config.json")
            && e.contains("unsupported model_type `llama`")
            && e.contains("gemma4_text"),
        "{e}"
    );

    let mut cfg = config();
    cfg.as_object_mut().unwrap().remove("model_type");
    write(d.path(), &cfg, &tensors());
    let e = err_string(load(d.path()));
    assert!(e.contains("model_type") && e.contains("missing"), "{e}");
}

fn config_error(mutate: impl FnOnce(&mut Value)) -> String {
    let mut cfg = config();
    mutate(&mut cfg);
    let e = Config::from_json(&cfg, Path::new("/x/config.json")).unwrap_err();
    assert!(matches!(e, ModelError::Config { .. }), "{e}");
    eprintln!("error: {e}");
    e.to_string()
}

#[test]
fn unsupported_fields() {
    let e = config_error(|c| c["text_config"]["hidden_activation"] = json!("silu"));
    assert!(
        e.contains("/x/config.json")
            && e.contains("text_config.hidden_activation")
            && e.contains("silu"),
        "{e}"
    );
    let e = config_error(|c| {
        c["text_config"]["rope_parameters"]["full_attention"]["rope_type"] = json!("yarn")
    });
    assert!(
        e.contains("text_config.rope_parameters.full_attention.rope_type") && e.contains("yarn"),
        "{e}"
    );
    let e = config_error(|c| c["text_config"]["attention_bias"] = json!(true));
    assert!(e.contains("text_config.attention_bias"), "{e}");
    let e = config_error(|c| c["text_config"]["layer_types"] = json!(["sliding_attention"]));
    assert!(
        e.contains("text_config.layer_types") && e.contains("num_hidden_layers is 2"),
        "{e}"
    );
    let e = config_error(|c| {
        c["text_config"]["layer_types"] = json!(["sliding_attention", "chunked_attention"])
    });
    assert!(
        e.contains("text_config.layer_types[1]") && e.contains("chunked_attention"),
        "{e}"
    );
    let e = config_error(|c| c["text_config"]["use_bidirectional_attention"] = json!("all"));
    assert!(e.contains("text_config.use_bidirectional_attention"), "{e}");
    let e = config_error(|c| {
        c["text_config"]["enable_moe_block"] = json!(true);
        c["text_config"]["num_experts"] = json!(8);
    });
    assert!(e.contains("text_config.top_k_experts"), "{e}");
    let e = config_error(|c| c["text_config"]["hidden_size"] = json!("wide"));
    assert!(
        e.contains("text_config.hidden_size") && e.contains("wide"),
        "{e}"
    );

    // Quantization block problems are reported when the checkpoint is opened.
    let d = tempfile::tempdir().unwrap();
    for (patch, field) in [
        (
            json!({"group_size": 64, "bits": 4, "mode": "mxfp4"}),
            "quantization.mode",
        ),
        (json!({"group_size": 64, "bits": 7}), "quantization.bits"),
        (
            json!({"group_size": 48, "bits": 4}),
            "quantization.group_size",
        ),
        (
            json!({"group_size": 64, "bits": 4, "quant_method": "awq"}),
            "quantization.quant_method",
        ),
    ] {
        let mut cfg = config();
        cfg["quantization"] = patch;
        write(d.path(), &cfg, &tensors());
        let e = Checkpoint::open(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains(field),
            "{field}: {e}"
        );
    }
}

#[test]
fn config_defaults_and_layer_types() {
    // layer_types is read, never derived, when present.
    let mut cfg = config();
    cfg["text_config"]["layer_types"] = json!(["full_attention", "sliding_attention"]);
    cfg["text_config"]["sliding_window_pattern"] = json!(2);
    let c = Config::from_json(&cfg, Path::new("config.json")).unwrap();
    assert_eq!(
        c.text.layer_types(),
        vec![
            vlm_models::gemma4::LayerType::Full,
            vlm_models::gemma4::LayerType::Sliding
        ]
    );
    // mlx-vlm defaults (E2B values) for absent fields.
    let c = Config::from_json(
        &json!({"model_type": "gemma4", "text_config": {}}),
        Path::new("config.json"),
    )
    .unwrap();
    let t = &c.text;
    assert_eq!(
        (t.hidden_size, t.num_hidden_layers, t.intermediate_size),
        (1536, 35, 6144)
    );
    assert_eq!(
        (
            t.num_key_value_heads,
            t.num_kv_shared_layers,
            t.hidden_size_per_layer_input
        ),
        (1, 20, 256)
    );
    assert!(
        t.use_double_wide_mlp && !t.attention_k_eq_v && t.final_logit_softcapping == Some(30.0)
    );
    assert_eq!(t.layer_types().len(), 35);
    assert_eq!(t.layer_types()[4], vlm_models::gemma4::LayerType::Full);
    assert_eq!(
        t.rope_for(vlm_models::gemma4::LayerType::Full)
            .partial_rotary_factor,
        1.0
    );
    let tok = c.tokens.unwrap();
    assert_eq!(
        (tok.image_token_id, tok.boi_token_id, tok.eoi_token_id),
        (258880, 255999, 258882)
    );
    // KV sharing: shared layers take the last non-shared layer of their type.
    let src = t.kv_source_layers();
    assert_eq!(t.first_kv_shared_layer(), 15);
    assert_eq!(src[15], 13); // sliding
    assert_eq!(src[19], 14); // full
    assert_eq!(t.mlp_width(15), 12288);
    assert_eq!(t.mlp_width(14), 6144);
    // A bare gemma4_text config.
    let c = Config::from_json(&text_config(), Path::new("config.json")).unwrap();
    assert!(c.vision.is_none() && c.tokens.is_none());
    assert_eq!(c.text.attention_shape(1).n_kv_heads, 1);
    assert!(c.text.attention_shape(1).k_eq_v && !c.text.attention_shape(0).k_eq_v);
}

#[test]
fn bare_gemma4_text_checkpoint_loads() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = text_config();
    cfg["quantization"] = json!({"group_size": 64, "bits": 4});
    write(d.path(), &cfg, &tensors());
    let bare = logits(&load(d.path()).unwrap());
    let d2 = tempfile::tempdir().unwrap();
    write(d2.path(), &config(), &tensors());
    assert_eq!(bare, logits(&load(d2.path()).unwrap()));
}

#[test]
fn bad_prompt_inputs_are_errors() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &config(), &tensors());
    let m = load(d.path()).unwrap();
    let mut cache = m.make_cache();
    let ids = Array::from_slice(&[2, 5, V], &[1, 3]);
    let e = m
        .prefill(&ids, None, None, &mut cache, Some(2048))
        .unwrap_err()
        .to_string();
    assert!(e.contains("token id 64") && e.contains("[0, 64)"), "{e}");
    let ids = Array::from_slice(&[2, 5, 7], &[1, 3]);
    let mm = Array::from_slice(&[0, 0], &[1, 2]);
    let e = m
        .prefill(&ids, None, Some(&mm), &mut cache, Some(2048))
        .unwrap_err()
        .to_string();
    assert!(e.contains("mm_token_type_ids"), "{e}");
    let emb = Array::zeros::<f32>(&[1, 2, H]).unwrap();
    let e = m
        .prefill(&ids, Some(&emb), None, &mut cache, Some(2048))
        .unwrap_err()
        .to_string();
    assert!(e.contains("embeddings"), "{e}");
    let mut short = Vec::new();
    let e = m.decode_step(&ids, &mut short).unwrap_err().to_string();
    assert!(e.contains("cache has 0 entries"), "{e}");
}
