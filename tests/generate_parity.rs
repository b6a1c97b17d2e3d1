//! `vlmbench generate` end to end against `mlx_vlm.generate` on the same checkpoint file: the chat
//! template, tokenizer, sampler, engine and model together must produce mlx-vlm's prompt, token ids,
//! text and finish reason. Checkpoints come from `tools/reference/build_tiny_gemma4.py` (mlx-vlm's own
//! converter); the reference runs through `tools/reference/gemma4_run.py`.
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
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("generate-parity").join(variant);
    if !dir.join("model.safetensors").exists() {
        let status = Command::new(python)
            .arg(tools().join("build_tiny_gemma4.py"))
            .arg(&dir)
            .args(["--variant", variant, "--quiet"])
            .status()
            .unwrap();
        assert!(status.success(), "build_tiny_gemma4.py --variant {variant} failed");
    }
    dir
}

fn json_of(output: std::process::Output, what: &str) -> Value {
    assert!(output.status.success(), "{what} failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{what}: bad JSON ({e})"))
}

fn compare(variant: &str, dtype: &str, prompt: &str, max_tokens: usize, ignore_eos: bool) -> Value {
    let Some(python) = reference_python() else { return Value::Null };
    let model = checkpoint(&python, variant);
    let max = max_tokens.to_string();

    let mut reference = Command::new(&python);
    reference.arg(tools().join("gemma4_run.py")).arg("--model").arg(&model);
    reference.args(["--prompt", prompt, "--max-tokens", &max, "--dtype", dtype]);
    if ignore_eos {
        reference.arg("--ignore-eos");
    }
    let reference = json_of(reference.output().unwrap(), "gemma4_run.py");

    let mut ours = Command::new(env!("CARGO_BIN_EXE_vlmbench"));
    ours.arg("generate").arg("--model").arg(&model);
    ours.args(["--prompt", prompt, "--max-tokens", &max, "--dtype", dtype, "--temperature", "0", "--json"]);
    if ignore_eos {
        ours.arg("--ignore-eos");
    }
    let ours = json_of(ours.output().unwrap(), "vlmbench generate");

    let case = format!("{variant} {dtype} max_tokens={max_tokens} ignore_eos={ignore_eos}");
    assert_eq!(ours["prompt"], reference["prompt"], "{case}: prompt string");
    assert_eq!(ours["stats"]["prompt_tokens"], reference["stats"]["prompt_tokens"], "{case}: prompt tokens");
    assert_eq!(ours["token_ids"], reference["generated_ids"], "{case}: generated ids");
    assert_eq!(ours["stats"]["finish_reason"], reference["finish_reason"], "{case}: finish reason");
    assert_eq!(ours["stats"]["generation_tokens"], reference["stats"]["generation_tokens"], "{case}");
    assert_eq!(ours["text"], reference["text"], "{case}: text");
    ours
}

/// Runs `compare` on a prompt that must end at a stop token, and checks that it did.
fn compare_stopping(variant: &str, dtype: &str) {
    let ours = compare(variant, dtype, STOPPING_PROMPT, 128, false);
    if !ours.is_null() {
        assert_eq!(ours["stats"]["finish_reason"], "stop", "{variant} {dtype}: expected a natural stop");
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
