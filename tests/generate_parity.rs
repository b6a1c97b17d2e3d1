//! `vlmbench generate` end to end against `mlx_vlm.generate` on the same checkpoint file: the chat
//! template, tokenizer, sampler, engine and model together must produce mlx-vlm's prompt, token ids,
//! text and finish reason; with `--image`, also the expanded prompt ids and pixel tensor shapes
//! (the image loader, processor and vision tower are compared in detail in
//! models/tests/gemma4_vision_parity.rs). Checkpoints come from `tools/reference/build_tiny_gemma4.py` (mlx-vlm's own
//! converter); the reference runs through `tools/reference/gemma4_run.py`.
//!
//! Every comparison also checks `--logprobs 5` against mlx-vlm's log-probabilities.
//!
//! Needs `VLMBENCH_REFERENCE_PYTHON` (tools/test.sh sets it); without it the tests say so and pass.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

const PROMPT: &str = "Hello there, what is the capital of France?";
/// On these tiny random checkpoints this prompt makes greedy decoding sample a stop token well
/// before 128 tokens (dense f32 stops after 87 tokens, moe bf16 after 21, ple bf16 after 28; found by trying prompts).
const STOPPING_PROMPT: &str = "Tell me a story.";
static BUILD: Mutex<()> = Mutex::new(());

fn reference_python() -> Option<PathBuf> {
    match std::env::var_os("VLMBENCH_REFERENCE_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("NOT RUN: set VLMBENCH_REFERENCE_PYTHON (tools/test.sh does) to compare with mlx-vlm");
            None
        }
    }
}

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/reference")
}

fn checkpoint(python: &Path, variant: &str) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("generate-parity")
        .join(variant);
    if !dir.join("model.safetensors").exists() {
        let status = Command::new(python)
            .arg(tools().join("build_tiny_gemma4.py"))
            .arg(&dir)
            .args(["--variant", variant, "--quiet"])
            .status()
            .unwrap();
        assert!(
            status.success(),
            "build_tiny_gemma4.py --variant {variant} failed"
        );
    }
    dir
}

fn json_of(output: std::process::Output, what: &str) -> Value {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{what}: bad JSON ({e})"))
}

fn compare(variant: &str, dtype: &str, prompt: &str, max_tokens: usize, ignore_eos: bool) -> Value {
    compare_with_images(variant, dtype, prompt, &[], max_tokens, ignore_eos)
}

/// The test images, made once: `synth` (make_test_image.py, 320x240), `chelsea` (451x300 photo
/// from the scikit-image wheel), `chelsea-exif6` (the photo stored sideways with EXIF
/// orientation 6, so 300x451 once transposed) and `chelsea-exif6-jpeg` (the same as a JPEG, q90 4:2:0).
fn test_image(python: &Path, name: &str) -> PathBuf {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("generate-parity")
        .join("images");
    let run = |args: &[&str]| {
        let out = Command::new(python).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let chelsea = dir.join("chelsea.png");
    let path = match name {
        "synth" => dir.join("synth.png"),
        "chelsea" => chelsea.clone(),
        "chelsea-exif6" => dir.join("samples").join("exif6.png"),
        "chelsea-exif6-jpeg" => dir.join("samples").join("exif6.jpg"),
        other => panic!("no test image {other}"),
    };
    if !path.exists() {
        let vision_ref = tools().join("gemma4_vision_ref.py");
        let vision_ref = vision_ref.to_str().unwrap();
        match name {
            "synth" => run(&[
                tools().join("make_test_image.py").to_str().unwrap(),
                path.to_str().unwrap(),
            ]),
            _ => {
                if !chelsea.exists() {
                    run(&[vision_ref, "photo", "--out", chelsea.to_str().unwrap()]);
                }
                if name != "chelsea" {
                    let samples = dir.join("samples");
                    run(&[
                        vision_ref,
                        "samples",
                        "--image",
                        chelsea.to_str().unwrap(),
                        "--out",
                        samples.to_str().unwrap(),
                    ]);
                }
            }
        }
    }
    path
}

/// `vlmbench generate` and `gemma4_run.py` on the same checkpoint, prompt and images (greedy):
/// the same templated prompt, expanded prompt ids, pixel tensor shapes, generated ids and text.
fn compare_with_images(
    variant: &str,
    dtype: &str,
    prompt: &str,
    images: &[&str],
    max_tokens: usize,
    ignore_eos: bool,
) -> Value {
    let Some(python) = reference_python() else {
        return Value::Null;
    };
    let model = checkpoint(&python, variant);
    let max = max_tokens.to_string();
    let image_paths: Vec<PathBuf> = images.iter().map(|n| test_image(&python, n)).collect();

    let mut reference = Command::new(&python);
    reference
        .arg(tools().join("gemma4_run.py"))
        .arg("--model")
        .arg(&model);
    reference.args(["--prompt", prompt, "--max-tokens", &max, "--dtype", dtype]);
    let mut ours = Command::new(env!("CARGO_BIN_EXE_vlmbench"));
    ours.arg("generate").arg("--model").arg(&model);
    ours.args([
        "--prompt",
        prompt,
        "--max-tokens",
        &max,
        "--dtype",
        dtype,
        "--temperature",
        "0",
        "--json",
        "--logprobs",
        "5",
    ]);
    for p in &image_paths {
        reference.arg("--image").arg(p);
        ours.arg("--image").arg(p);
    }
    if ignore_eos {
        reference.arg("--ignore-eos");
        ours.arg("--ignore-eos");
    }
    let reference = json_of(reference.output().unwrap(), "gemma4_run.py");
    let ours = json_of(ours.output().unwrap(), "vlmbench generate");

    let case = format!(
        "{variant} {dtype} images={images:?} max_tokens={max_tokens} ignore_eos={ignore_eos}"
    );
    if !images.is_empty() {
        assert_eq!(
            ours["prompt_ids"], reference["input_ids"],
            "{case}: expanded prompt ids"
        );
        let soft: u64 = ours["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["soft_tokens"].as_u64().unwrap())
            .sum();
        assert_eq!(
            soft,
            reference["num_image_tokens"].as_u64().unwrap(),
            "{case}: soft tokens"
        );
        // pixel_values: [N, 3, H, W] when all images share a size, else a list of [1, 3, H, W].
        let pv = &reference["pixel_values"];
        let ref_shapes: Vec<Vec<u64>> = match pv.as_array() {
            Some(list) => list
                .iter()
                .map(|r| {
                    r["shape"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_u64().unwrap())
                        .collect()
                })
                .collect(),
            None => {
                let s: Vec<u64> = pv["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                vec![s[1..].to_vec(); s[0] as usize]
            }
        };
        let our_shapes: Vec<Vec<u64>> = ours["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i["pixel_shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(our_shapes, ref_shapes, "{case}: pixel tensor shapes");
        assert!(
            ours["stats"]["vision_encode_s"].as_f64().unwrap() > 0.0,
            "{case}: vision_encode_s not reported"
        );
    }
    assert_eq!(ours["prompt"], reference["prompt"], "{case}: prompt string");
    assert_eq!(
        ours["stats"]["prompt_tokens"], reference["stats"]["prompt_tokens"],
        "{case}: prompt tokens"
    );
    assert_eq!(
        ours["token_ids"], reference["generated_ids"],
        "{case}: generated ids"
    );
    assert_eq!(
        ours["stats"]["finish_reason"], reference["finish_reason"],
        "{case}: finish reason"
    );
    assert_eq!(
        ours["stats"]["generation_tokens"], reference["stats"]["generation_tokens"],
        "{case}"
    );
    assert_eq!(ours["text"], reference["text"], "{case}: text");
    assert_same_logprobs(&ours, &reference, dtype, &case);
    ours
}

/// `--logprobs 5` against mlx-vlm's top-5 log-probabilities at every step: the sampled token's
/// value and the five largest values (compared as values, so that tied ids cannot matter), within
/// 1e-4 in float32 and two bfloat16 steps at the logprobs' size (0.125) in bfloat16.
fn assert_same_logprobs(ours: &Value, reference: &Value, dtype: &str, case: &str) {
    let tolerance = if dtype == "float32" { 1e-4 } else { 0.125 };
    let ours = ours["logprobs"].as_array().expect("logprobs in the JSON");
    let steps = reference["steps"].as_array().unwrap();
    assert_eq!(
        ours.len(),
        steps.len(),
        "{case}: one logprobs entry per token"
    );
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for (i, (o, r)) in ours.iter().zip(steps).enumerate() {
        let want = floats(&r["top5_logprobs"]);
        let top: Vec<f64> = o["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| pair[1].as_f64().unwrap())
            .collect();
        let chosen = o["logprob"].as_f64().unwrap();
        assert!(
            (chosen - want[0]).abs() <= tolerance
                && top.len() == want.len()
                && top
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| (a - b).abs() <= tolerance),
            "{case}: step {i}: logprob {chosen}, top {top:?}; mlx-vlm's top {want:?}"
        );
    }
}

/// Runs `compare` on a prompt that must end at a stop token, and checks that it did.
fn compare_stopping(variant: &str, dtype: &str) {
    let ours = compare(variant, dtype, STOPPING_PROMPT, 128, false);
    if !ours.is_null() {
        assert_eq!(
            ours["stats"]["finish_reason"], "stop",
            "{variant} {dtype}: expected a natural stop"
        );
    }
}

#[test]
fn dense_float32_matches_mlx_vlm_for_48_tokens() {
    compare("dense", "float32", PROMPT, 48, true);
}

#[test]
fn dense_float32_matches_mlx_vlm_including_where_it_stops() {
    compare_stopping("dense", "float32");
}

#[test]
fn moe_bfloat16_matches_mlx_vlm_including_where_it_stops() {
    compare_stopping("moe", "bfloat16");
}

#[test]
fn ple_bfloat16_matches_mlx_vlm_including_where_it_stops() {
    compare_stopping("ple", "bfloat16");
}

#[test]
fn ple_float32_matches_mlx_vlm_for_48_tokens() {
    compare("ple", "float32", PROMPT, 48, true);
}

const IMAGE_PROMPT: &str = "Describe this image.";

#[test]
fn dense_float32_synthetic_image_matches_mlx_vlm_for_40_tokens() {
    compare_with_images("dense", "float32", IMAGE_PROMPT, &["synth"], 40, true);
}

#[test]
fn dense_float32_photo_matches_mlx_vlm_for_40_tokens() {
    compare_with_images("dense", "float32", IMAGE_PROMPT, &["chelsea"], 40, true);
}

#[test]
fn dense_bfloat16_photo_matches_mlx_vlm_for_40_tokens() {
    compare_with_images("dense", "bfloat16", IMAGE_PROMPT, &["chelsea"], 40, true);
}

#[test]
fn ple_float32_photo_matches_mlx_vlm_for_40_tokens() {
    // E2B flags: clipped linears in the tower, no standardize, PLE with image ids masked.
    compare_with_images("ple", "float32", IMAGE_PROMPT, &["chelsea"], 40, true);
}

#[test]
fn moe_float32_synthetic_image_matches_mlx_vlm_for_40_tokens() {
    compare_with_images("moe", "float32", IMAGE_PROMPT, &["synth"], 40, true);
}

#[test]
fn two_images_of_one_size_match_mlx_vlm_for_40_tokens() {
    // Both become 192x144: one batch through the tower, two image blocks in the prompt.
    compare_with_images(
        "dense",
        "float32",
        "Compare these two images.",
        &["synth", "chelsea"],
        40,
        true,
    );
}

#[test]
fn two_images_of_different_sizes_match_mlx_vlm_for_40_tokens() {
    // The EXIF-rotated photo is 144x192 after the processor: the tower runs per image.
    compare_with_images(
        "dense",
        "float32",
        "Compare these two images.",
        &["chelsea", "chelsea-exif6"],
        40,
        true,
    );
}

#[test]
fn jpeg_photo_with_exif_orientation_matches_mlx_vlm_for_40_tokens() {
    compare_with_images(
        "dense",
        "float32",
        IMAGE_PROMPT,
        &["chelsea-exif6-jpeg"],
        40,
        true,
    );
}

#[test]
fn an_image_prompt_stops_where_mlx_vlm_stops() {
    let ours = compare_with_images("dense", "float32", IMAGE_PROMPT, &["chelsea"], 128, false);
    if !ours.is_null() {
        // Measured: both stop after 66 tokens on this checkpoint and photo.
        assert_eq!(
            ours["stats"]["finish_reason"], "stop",
            "expected a natural stop"
        );
    }
}
