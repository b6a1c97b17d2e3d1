//! Cross-checks of `write_tiny_checkpoint` against the Python reference (mlx-vlm 0.7.10 on the same
//! MLX): for each variant, the checkpoint equals the one `tools/reference/build_tiny_gemma4.py`
//! makes with mlx-vlm's converter for the same seed (tensor names, dtypes, shapes and bytes, and the
//! JSON files), and mlx-vlm loads it and generates from it (text prompts; an image prompt on dense).
//!
//! Runs when `VLMBENCH_REFERENCE_PYTHON` names the reference venv's python, which `tools/test.sh`
//! always sets; then any mismatch or Python failure fails the test. Without it, each test prints a
//! note that the cross-check did not run and passes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vlm_models::tiny_checkpoint::{
    read_safetensors_header, write_preset_checkpoint, write_tiny_checkpoint, Preset, TinyVariant,
    WEIGHTS_FILE,
};

const SEED: u64 = 7;
const MAX_TOKENS: usize = 6;

fn reference_python() -> Option<PathBuf> {
    match std::env::var_os("VLMBENCH_REFERENCE_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            // Straight to stderr: the test harness captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "NOTE: VLMBENCH_REFERENCE_PYTHON is not set, so the tiny-checkpoint cross-check against the \
                 Python builder and mlx-vlm did NOT run (tools/test.sh sets it)."
            );
            None
        }
    }
}

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/reference")
}

/// Runs a reference script; fails the test with its stderr if it fails.
fn python(py: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(py)
        .arg(reference_dir().join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", py.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{stderr}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(path: &Path) -> Value {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Data bytes of every tensor of a safetensors file.
fn tensor_bytes(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let header = read_safetensors_header(path).unwrap();
    let bytes = std::fs::read(path).unwrap();
    let start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    header
        .tensors
        .into_iter()
        .map(|(name, t)| {
            (
                name,
                bytes[start + t.data_offsets[0]..start + t.data_offsets[1]].to_vec(),
            )
        })
        .collect()
}

fn str_arg(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn cross_check(variant: TinyVariant) {
    let Some(py) = reference_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    write_tiny_checkpoint(&ours, variant, SEED).unwrap();
    let seed = SEED.to_string();
    python(
        &py,
        "build_tiny_gemma4.py",
        &[
            str_arg(&theirs),
            "--variant",
            variant.name(),
            "--seed",
            &seed,
            "--quiet",
        ],
    );

    compare_with_python_build(&py, variant, &ours, &theirs);
    generate_with_mlx_vlm(&py, variant, &ours, tmp.path());
}

fn compare_with_python_build(py: &Path, variant: TinyVariant, ours: &Path, theirs: &Path) {
    // Names, dtypes, shapes and metadata.
    let a = read_safetensors_header(&ours.join(WEIGHTS_FILE)).unwrap();
    let b = read_safetensors_header(&theirs.join(WEIGHTS_FILE)).unwrap();
    let layout = |h: &vlm_models::tiny_checkpoint::SafetensorsHeader| {
        h.tensors
            .iter()
            .map(|(k, t)| (k.clone(), (t.dtype.clone(), t.shape.clone())))
            .collect::<BTreeMap<_, _>>()
    };
    let (ours_layout, theirs_layout) = (layout(&a), layout(&b));
    // Name each difference (the full maps are hundreds of entries).
    let mut differences = Vec::new();
    for name in ours_layout.keys().chain(theirs_layout.keys()) {
        let (x, y) = (ours_layout.get(name), theirs_layout.get(name));
        if x != y && !differences.iter().any(|(n, _, _)| n == name) {
            differences.push((name.clone(), x.cloned(), y.cloned()));
        }
    }
    assert!(
        differences.is_empty(),
        "{variant}: {} tensors differ from the Python build in name, dtype or shape \
         (name, ours, theirs), e.g. {:?}",
        differences.len(),
        &differences[..differences.len().min(4)]
    );
    assert_eq!(a.metadata, b.metadata, "{variant}: safetensors metadata");

    // Values: both draw the same numbers with MLX's generator and quantize with MLX, so on the same
    // device every tensor is bit-identical. (Only the order of the data in the file differs: MLX's
    // writer lays it out in hash-map order.)
    let device = python_default_device(py);
    if device.contains("cpu") {
        let (a, b) = (
            tensor_bytes(&ours.join(WEIGHTS_FILE)),
            tensor_bytes(&theirs.join(WEIGHTS_FILE)),
        );
        let differing: Vec<&String> = a.keys().filter(|k| a[*k] != b[*k]).collect();
        assert!(
            differing.is_empty(),
            "{variant}: {} tensors differ in value, e.g. {:?}",
            differing.len(),
            &differing[..differing.len().min(5)]
        );
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: the Python reference runs on {device}, not the CPU: tensor values were not compared bit for bit"
        );
    }

    // The JSON files the converter writes, as values (formatting aside).
    for file in [
        "config.json",
        "generation_config.json",
        "processor_config.json",
        "model.safetensors.index.json",
        "tokenizer.json",
    ] {
        assert_eq!(
            json(&ours.join(file)),
            json(&theirs.join(file)),
            "{variant}: {file} differs from the Python build"
        );
    }
    // transformers adds bookkeeping keys (is_local, model_specific_special_tokens, ...) to
    // tokenizer_config.json; every key we write must carry the reference's value.
    let (ours_cfg, theirs_cfg) = (
        json(&ours.join("tokenizer_config.json")),
        json(&theirs.join("tokenizer_config.json")),
    );
    for (key, value) in ours_cfg.as_object().unwrap() {
        assert_eq!(
            Some(value),
            theirs_cfg.get(key),
            "{variant}: tokenizer_config.json {key}"
        );
    }
}

fn python_default_device(py: &Path) -> String {
    let out = Command::new(py)
        .args(["-c", "import mlx.core as mx; print(mx.default_device())"])
        .output()
        .expect("the reference python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_lowercase()
}

/// mlx-vlm loads our checkpoint and generates exactly `MAX_TOKENS` tokens (EOS ignored).
fn generate_with_mlx_vlm(py: &Path, variant: TinyVariant, ours: &Path, tmp: &Path) {
    let max = MAX_TOKENS.to_string();
    let text_out = tmp.join("text.json");
    python(
        py,
        "gemma4_run.py",
        &[
            "--model",
            str_arg(ours),
            "--prompt",
            "Hello there, what is the capital of France?",
            "--max-tokens",
            &max,
            "--ignore-eos",
            "--out",
            str_arg(&text_out),
        ],
    );
    let run = json(&text_out);
    check_run(variant, &run);
    let prompt = run["prompt"].as_str().unwrap();
    let generation_prompt = if variant.large_template() {
        "<|turn>model\n<|channel>thought\n<channel|>"
    } else {
        "<|turn>model\n"
    };
    assert!(
        prompt.ends_with(generation_prompt),
        "{variant}: prompt {prompt:?}"
    );

    if variant == TinyVariant::Dense {
        let image = tmp.join("image.png");
        python(py, "make_test_image.py", &[str_arg(&image)]);
        let image_out = tmp.join("image.json");
        python(
            py,
            "gemma4_run.py",
            &[
                "--model",
                str_arg(ours),
                "--prompt",
                "Describe this image.",
                "--image",
                str_arg(&image),
                "--max-tokens",
                &max,
                "--ignore-eos",
                "--out",
                str_arg(&image_out),
            ],
        );
        let run = json(&image_out);
        check_run(variant, &run);
        // 320x240 -> 192x144 pixels -> 12x9 patches -> 4x3 pooled soft tokens.
        assert_eq!(
            run["num_image_tokens"], 12,
            "{variant}: {}",
            run["num_image_tokens"]
        );
        let image_id = run["image_token_id"].as_u64().unwrap();
        let placed = run["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|id| id.as_u64() == Some(image_id))
            .count();
        assert_eq!(placed, 12, "{variant}: image tokens in the prompt");
    }
}

fn check_run(variant: TinyVariant, run: &Value) {
    let ids = run["generated_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("{variant}: no generated_ids in {run}"));
    assert_eq!(ids.len(), MAX_TOKENS, "{variant}: generated {ids:?}");
    assert!(
        ids.iter().all(|id| id.as_u64().is_some_and(|id| id < 384)),
        "{variant}: ids {ids:?}"
    );
    assert_eq!(run["finish_reason"], "length", "{variant}");
    assert_eq!(run["stats"]["generation_tokens"], MAX_TOKENS, "{variant}");
}

#[test]
fn dense_matches_the_python_build_and_runs_in_mlx_vlm() {
    cross_check(TinyVariant::Dense);
}

#[test]
fn moe_matches_the_python_build_and_runs_in_mlx_vlm() {
    cross_check(TinyVariant::Moe);
}

#[test]
fn ple_matches_the_python_build_and_runs_in_mlx_vlm() {
    cross_check(TinyVariant::Ple);
}

/// The sharded full-size layout (here at the 31B-mini's toy widths, several shards plus an index)
/// loads in mlx-vlm, which is how the GPU side-by-side runs the 31B-shaped checkpoint.
#[test]
fn the_sharded_31b_mini_preset_runs_in_mlx_vlm() {
    let Some(py) = reference_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("mini");
    let report =
        write_preset_checkpoint(&ours, Preset::Gemma4_31bMini, None, 3, |_, _, _| {}).unwrap();
    assert!(
        report
            .files
            .iter()
            .filter(|f| f.name.starts_with("model-"))
            .count()
            >= 3
    );
    let out = tmp.path().join("text.json");
    python(
        &py,
        "gemma4_run.py",
        &[
            "--model",
            str_arg(&ours),
            "--prompt",
            "Hello there",
            "--max-tokens",
            "4",
            "--ignore-eos",
            "--out",
            str_arg(&out),
        ],
    );
    let run = json(&out);
    let ids = run["generated_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 4, "{run}");
    assert!(
        ids.iter().all(|id| id.as_u64().is_some_and(|id| id < 4096)),
        "{ids:?}"
    );
    assert_eq!(run["finish_reason"], "length");
}
