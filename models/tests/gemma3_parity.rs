//! Parity of the Rust Gemma 3 text model with mlx-lm 0.32 (same MLX) on tiny random checkpoints
//! made by `vlmbench convert` from a tiny random Gemma 3 GGUF: both load the same files and run
//! mlx-lm's generation procedure (prompt in chunks, last prompt token alone, one token per step),
//! greedy, 40 steps past a 20-token prompt with a sliding window of 8 (the rotating caches wrap
//! and the sliding layers get explicit masks), plus a one-pass scoring of the prompt.
//!
//! Skipped (with a printed reason) when no reference Python environment is available; fails when
//! `VLMBENCH_REFERENCE_PYTHON` is set and anything goes wrong.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mlx_rs::{Array, Dtype};
use vlm_models::checkpoint::{Checkpoint, QuantParams};
use vlm_models::convert::{convert_gguf, ConvertOptions, QuantMode};
use vlm_models::gemma3::Gemma3Text;
use vlm_models::gguf::tiny_gemma3::write_tiny_gemma3;

const STEPS: usize = 40;

/// Logprob tolerances, as in the Gemma 4 parity tests: float32 runs the same MLX kernels on both
/// sides (measured differences are 0 or a few ulps); bfloat16 allows two ulps at |x| in [4, 8).
const TOL_F32: f32 = 1e-4;
const TOL_BF16: f32 = 0.0625;

fn work() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gemma3-parity");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn checkpoint(name: &str, quant: QuantMode) -> PathBuf {
    let dir = work().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let gguf = write_tiny_gemma3(&dir.join("gguf"), 5).unwrap();
    let out = dir.join("mlx");
    convert_gguf(
        &gguf,
        &out,
        &ConvertOptions {
            quant,
            dtype: Dtype::Float32,
            tokenizer_dir: None,
            overwrite: false,
        },
    )
    .unwrap();
    out
}

fn prompt() -> Vec<i32> {
    let mut v = vec![2];
    v.extend((0..19).map(|i| 30 + (i * 53) % 340));
    v
}

/// Greedy as mlx-lm: argmax of `logits - logsumexp(logits)` in the compute dtype (first index on ties).
fn logprobs(logits: &Array) -> Vec<f32> {
    let lse = logits.logsumexp_axis(-1, true).unwrap();
    logits
        .subtract(&lse)
        .unwrap()
        .as_dtype(Dtype::Float32)
        .unwrap()
        .as_slice::<f32>()
        .to_vec()
}

fn check(python: &Path, model_dir: &Path, dtype: Dtype, tag: &str) {
    let name = if dtype == Dtype::Float32 {
        "float32"
    } else {
        "bfloat16"
    };
    let ids = prompt();
    let prompts = work().join(format!("{tag}-prompts.json"));
    std::fs::write(&prompts, serde_json::to_string(&vec![ids.clone()]).unwrap()).unwrap();
    let (out_json, out_t) = (
        work().join(format!("{tag}.json")),
        work().join(format!("{tag}.safetensors")),
    );
    let o = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/gemma3_lm_ref.py"))
        .args([
            "--model",
            model_dir.to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
        ])
        .args([
            "--steps",
            &STEPS.to_string(),
            "--dtype",
            name,
            "--prefill-step-size",
            "5",
        ])
        .args([
            "--out-json",
            out_json.to_str().unwrap(),
            "--out-tensors",
            out_t.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mlx-lm reference failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    let want: Vec<i32> = v["tokens"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i32)
        .collect();
    let t = Array::load_safetensors(&out_t).unwrap();

    let model = Gemma3Text::load(&Checkpoint::open(model_dir).unwrap(), dtype).unwrap();
    let tol = if dtype == Dtype::Float32 {
        TOL_F32
    } else {
        TOL_BF16
    };
    let mut cache = model.make_cache();
    let mut logits = model
        .prefill(
            &Array::from_slice(&ids, &[1, ids.len() as i32]),
            &mut cache,
            Some(5),
        )
        .unwrap();
    let ref_lp = t["logprobs_0"].as_slice::<f32>().to_vec();
    let vocab = model.config().vocab_size as usize;
    let mut worst = 0f32;
    let mut got = vec![];
    for step in 0..STEPS {
        let lp = logprobs(&logits);
        worst = worst.max(max_abs_diff(&lp, &ref_lp[step * vocab..(step + 1) * vocab]));
        let tok = argmax(&lp);
        got.push(tok);
        logits = model
            .decode_step(&Array::from_slice(&[tok], &[1, 1]), &mut cache)
            .unwrap();
    }
    eprintln!("{tag}: {STEPS} tokens, max |logprob diff| {worst:e}");
    assert_eq!(got, want, "{tag}: greedy tokens differ from mlx-lm");
    assert!(worst <= tol, "{tag}: max |logprob diff| {worst} > {tol}");

    let all = model
        .forward_all(&Array::from_slice(&ids, &[1, ids.len() as i32]))
        .unwrap();
    let score = logprobs(&all);
    let d = max_abs_diff(&score, t["score_0"].as_slice::<f32>());
    eprintln!("{tag}: one-pass scoring, max |logprob diff| {d:e}");
    assert!(d <= tol, "{tag}: scoring differs by {d}");
}

#[test]
fn lossless_import_matches_mlx_lm_f32_and_bf16() {
    let Some(py) = require_reference("gemma3 parity") else {
        return;
    };
    let dir = checkpoint("keep", QuantMode::KeepGguf);
    check(&py, &dir, Dtype::Float32, "keep-f32");
    check(&py, &dir, Dtype::Bfloat16, "keep-bf16");
}

#[test]
fn requantized_4bit_matches_mlx_lm() {
    let Some(py) = require_reference("gemma3 parity") else {
        return;
    };
    let dir = checkpoint(
        "q4",
        QuantMode::Affine(QuantParams {
            bits: 4,
            group_size: 64,
        }),
    );
    check(&py, &dir, Dtype::Float32, "q4-f32");
}
