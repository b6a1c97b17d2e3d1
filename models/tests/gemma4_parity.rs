//! Parity of the Rust Gemma 4 text decoder with mlx-vlm 0.7.10 on tiny random 4-bit checkpoints
//! made by mlx-vlm's own converter (variants: dense = 31B flags, moe = 26B-A4B flags,
//! ple = E2B flags). Both sides load the same files and run mlx-vlm's generation procedure
//! (chunked prefill, last prompt token alone, then one token per step), greedy, never stopping at
//! EOS; greedy = argmax of `logits - logsumexp(logits)` as mlx-vlm's sampler computes it. Sliding window 16, prompt 24 + 40 generated tokens: the rotating cache wraps several times.
//!
//! Skipped (with a printed reason) when no reference Python environment is available.

mod common;

use common::*;
use mlx_rs::{Array, Dtype};
use vlm_models::cache::LayerCache;
use vlm_models::checkpoint::Checkpoint;
use vlm_models::gemma4::{merge_token_features, Gemma4Text};

const STEPS: usize = 40;

/// float32: the same MLX kernels run on both sides; the measured differences are 0 or a few ulps
/// of logits of magnitude ~1-10. 1e-4 leaves room for reduction-order changes between builds.
const TOL_F32: f32 = 1e-4;
/// bfloat16: logits are bf16 (8 bits of mantissa); one ulp at |logit| in [4, 8) is 0.03.
/// Both sides should still agree to rounding; allow two ulps at the top of the logit range.
const TOL_BF16: f32 = 0.0625;

fn prompt() -> Vec<i32> {
    // <bos> <|turn> then 22 ordinary tokens: 24 tokens, longer than the 16-token window.
    let mut v = vec![2, 5];
    v.extend((0..22).map(|i| 100 + (i * 37) % 250));
    v
}

struct Case<'a> {
    variant: &'a str,
    dtype: Dtype,
    prefill_step_size: i32,
    ids: Vec<i32>,
    mm: Option<Vec<i32>>,
    image_features: bool,
    tag: String,
}

fn rust_run(
    model: &Gemma4Text,
    c: &Case,
    feats: Option<&Array>,
    steps: usize,
) -> (Vec<i32>, Vec<Vec<f32>>) {
    let ids = Array::from_slice(&c.ids, &[1, c.ids.len() as i32]);
    let mm =
        c.mm.as_ref()
            .map(|m| Array::from_slice(m, &[1, m.len() as i32]));
    let mut cache: Vec<LayerCache> = model.make_cache();
    let embeds = match feats {
        Some(f) => {
            let e = model.embed(&ids).unwrap();
            Some(merge_token_features(&e, &ids, 9, f).unwrap())
        }
        None => None,
    };
    let mut logits = model
        .prefill(
            &ids,
            embeds.as_ref(),
            mm.as_ref(),
            &mut cache,
            Some(c.prefill_step_size),
        )
        .unwrap();
    let mut toks = vec![];
    let mut all = vec![];
    for _ in 0..steps {
        let row: Vec<f32> = logits
            .as_dtype(Dtype::Float32)
            .unwrap()
            .as_slice::<f32>()
            .to_vec();
        // mlx-vlm's greedy sampler takes the argmax of the log-probabilities
        // `logits - logsumexp(logits)` computed in the compute dtype; in bf16 that subtraction can
        // round two different logits to the same value, and the first index then wins.
        let lse = logits.logsumexp_axis(-1, true).unwrap();
        let logprobs = logits.subtract(&lse).unwrap();
        let t = argmax(logprobs.as_dtype(Dtype::Float32).unwrap().as_slice::<f32>());
        toks.push(t);
        all.push(row);
        let tok = Array::from_slice(&[t], &[1, 1]);
        logits = model.decode_step(&tok, &mut cache).unwrap();
    }
    (toks, all)
}

/// The dense checkpoint rewritten as a bare `gemma4_text` checkpoint (text config at the top
/// level, only the `language_model.*` tensors), which mlx-vlm runs through its `gemma4_text` module.
fn bare_text_checkpoint(dense: &std::path::Path) -> std::path::PathBuf {
    let dir = dense
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("tiny-gemma4-text");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dense.join("config.json")).unwrap()).unwrap();
    let mut text = cfg["text_config"].clone();
    text["model_type"] = "gemma4_text".into();
    text["quantization"] = cfg["quantization"].clone();
    text["quantization_config"] = cfg["quantization"].clone();
    std::fs::write(dir.join("config.json"), text.to_string()).unwrap();
    let w = Array::load_safetensors(dense.join("model.safetensors")).unwrap();
    let meta = std::collections::HashMap::from([("format".to_string(), "mlx".to_string())]);
    Array::save_safetensors(
        w.iter().filter(|(k, _)| k.starts_with("language_model.")),
        &meta,
        dir.join("model.safetensors"),
    )
    .unwrap();
    dir
}

fn check(case: Case) {
    let Some(py) = require_reference(&case.tag) else {
        return;
    };
    let dir = match case.variant {
        "gemma4_text" => bare_text_checkpoint(&tiny_checkpoint(&py, "dense")),
        v => tiny_checkpoint(&py, v),
    };
    let dtype_name = if case.dtype == Dtype::Float32 {
        "float32"
    } else {
        "bfloat16"
    };
    let r = run_reference(
        &py,
        &dir,
        &RefArgs {
            ids: &case.ids,
            steps: STEPS,
            dtype: dtype_name,
            prefill_step_size: case.prefill_step_size,
            mm_token_type_ids: case.mm.as_deref(),
            image_features: case.image_features,
            tag: &case.tag,
        },
    );
    let ckpt = Checkpoint::open(&dir).unwrap();
    let model = Gemma4Text::load(&ckpt, case.dtype).unwrap();
    let feats = r.image_features.as_ref().map(|p| {
        Array::load_safetensors(p)
            .unwrap()
            .remove("features")
            .unwrap()
    });
    let (toks, logits) = rust_run(&model, &case, feats.as_ref(), STEPS);
    let first = max_abs_diff(&logits[0], &r.logits[0]);
    let same = toks
        .iter()
        .zip(&r.tokens)
        .take_while(|(a, b)| a == b)
        .count();
    let worst = (0..same)
        .map(|i| max_abs_diff(&logits[i], &r.logits[i]))
        .fold(0.0, f32::max);
    eprintln!(
        "[{}] first-step max|logit diff| = {first:.3e}; max over the {same} matching steps = {worst:.3e}",
        case.tag
    );
    if same < toks.len() {
        eprintln!(
            "[{}] first mismatch at step {same}: max|logit diff| there = {:.3e}",
            case.tag,
            max_abs_diff(&logits[same], &r.logits[same])
        );
    }
    assert_eq!(
        toks, r.tokens,
        "[{}] greedy tokens differ (ref vs rust)",
        case.tag
    );
    let tol = if case.dtype == Dtype::Float32 {
        TOL_F32
    } else {
        TOL_BF16
    };
    assert!(
        first <= tol,
        "[{}] first-step logits differ by {first} > {tol}",
        case.tag
    );
}

fn text_case(variant: &str, dtype: Dtype, step: i32) -> Case<'_> {
    Case {
        variant,
        dtype,
        prefill_step_size: step,
        ids: prompt(),
        mm: None,
        image_features: false,
        tag: format!(
            "{variant}-{}-text-step{step}",
            if dtype == Dtype::Float32 {
                "f32"
            } else {
                "bf16"
            }
        ),
    }
}

/// An image-like prompt: `<|image>` + 6 image tokens (id 9) + `<image|>` inside text, with
/// `mm_token_type_ids` and injected random image features (mlx-vlm's cached-features path).
fn image_case(variant: &str, dtype: Dtype) -> Case<'_> {
    let mut ids = vec![2, 5, 120, 121, 7];
    let mut mm = vec![0; ids.len()];
    for _ in 0..6 {
        ids.push(9);
        mm.push(1);
    }
    ids.extend([
        8, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141,
    ]);
    mm.resize(ids.len(), 0);
    Case {
        variant,
        dtype,
        prefill_step_size: 2048,
        ids,
        mm: Some(mm),
        image_features: true,
        tag: format!(
            "{variant}-{}-image",
            if dtype == Dtype::Float32 {
                "f32"
            } else {
                "bf16"
            }
        ),
    }
}

/// 300-token prompt: the full-attention KV cache grows past its first 256-slot block, both in one
/// 299-token chunk and in chunks of 100 (a growth at an offset that is not a multiple of 256).
fn long_case(variant: &str, step: i32) -> Case<'_> {
    let mut ids = vec![2, 5];
    ids.extend((0..298).map(|i| 24 + (i * 37) % 350));
    Case {
        variant,
        dtype: Dtype::Float32,
        prefill_step_size: step,
        ids,
        mm: None,
        image_features: false,
        tag: format!("{variant}-f32-long-step{step}"),
    }
}

#[test]
fn dense_f32_long() {
    check(long_case("dense", 2048));
    check(long_case("dense", 100));
}

#[test]
fn moe_f32_long() {
    check(long_case("moe", 100));
}

#[test]
fn ple_f32_long() {
    check(long_case("ple", 100));
}

#[test]
fn bare_gemma4_text_f32_and_bf16() {
    check(text_case("gemma4_text", Dtype::Float32, 2048));
    check(text_case("gemma4_text", Dtype::Bfloat16, 2048));
}

#[test]
fn dense_f32_text() {
    check(text_case("dense", Dtype::Float32, 2048));
}

#[test]
fn dense_f32_text_chunked() {
    check(text_case("dense", Dtype::Float32, 5));
}

#[test]
fn dense_bf16_text() {
    check(text_case("dense", Dtype::Bfloat16, 2048));
}

#[test]
fn dense_f32_image() {
    check(image_case("dense", Dtype::Float32));
}

#[test]
fn moe_f32_text() {
    check(text_case("moe", Dtype::Float32, 2048));
}

#[test]
fn moe_f32_text_chunked() {
    check(text_case("moe", Dtype::Float32, 5));
}

#[test]
fn moe_bf16_text() {
    check(text_case("moe", Dtype::Bfloat16, 2048));
}

#[test]
fn moe_f32_image() {
    check(image_case("moe", Dtype::Float32));
}

#[test]
fn ple_f32_text() {
    check(text_case("ple", Dtype::Float32, 2048));
}

#[test]
fn ple_f32_text_chunked() {
    check(text_case("ple", Dtype::Float32, 5));
}

#[test]
fn ple_bf16_text() {
    check(text_case("ple", Dtype::Bfloat16, 2048));
}

#[test]
fn ple_f32_image() {
    check(image_case("ple", Dtype::Float32));
}
