//! vlmbench's own CPU paths never change what a user gets: `vlmbench generate` in float32 on the
//! CPU prints the same 64 greedy tokens with the default kernel choice as with MLX's stock kernels
//! (`VLMBENCH_KERNELS=mlx`)
//! - on each tiny Gemma 4 variant: dense and per-layer-input (KV-sharing) ones run as one CPU
//!   forward pass (models/src/gemma4/cpu.rs), the mixture-of-experts one in MLX's graph with the
//!   quantized products of models/src/kernels/cpu_quant.rs;
//! - on tiny Gemma 3 checkpoints run by the CPU forward pass (models/src/gemma3/cpu.rs): the
//!   lossless import of a GGUF with every block type (4-, 5- and 8-bit codes, Q6_K recovered
//!   into groups of 16, dense float16 projections) and MLX re-quantizations of 2 to 8 bits in
//!   groups of 32, 64 and 128; 64 steps pass the tiny model's 8-token sliding window many times.
//!
//! The prompt's prefill runs the many-row path, every decode step the one-row path.
//! And `vlmbench kernels --device cpu` checks the products against MLX per shape.

use std::path::Path;
use std::process::Command;

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::text;

const STEPS: usize = 64;

fn make_tiny(dir: &Path, variant: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_vlmbench"))
        .args(["make-tiny", "--variant", variant, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Greedy token ids of a float32 CPU run with `VLMBENCH_KERNELS=kernels` (`None`: unset, the
/// default), and what the run printed on stderr.
fn greedy_run(model: &Path, kernels: Option<&str>) -> (Vec<u64>, String) {
    let steps = STEPS.to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_vlmbench"));
    match kernels {
        Some(k) => command.env("VLMBENCH_KERNELS", k),
        None => command.env_remove("VLMBENCH_KERNELS"),
    };
    let out = command
        .args(["generate", "--model", model.to_str().unwrap()])
        .args([
            "--prompt",
            "Describe the picture in one sentence, then list every object in it.",
        ])
        .args(["--max-tokens", &steps, "--ignore-eos", "--temperature", "0"])
        .args(["--dtype", "float32", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "VLMBENCH_KERNELS={kernels:?}: {}",
        text(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    (
        serde_json::from_value(v["token_ids"].clone()).unwrap(),
        text(&out.stderr),
    )
}

fn greedy_tokens(model: &Path, kernels: Option<&str>) -> Vec<u64> {
    greedy_run(model, kernels).0
}

fn convert_tiny_gemma3(gguf: &Path, out: &Path, how: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_vlmbench"))
        .arg("convert")
        .arg("--from-gguf")
        .arg(gguf)
        .arg("--out")
        .arg(out)
        .args(how)
        .output()
        .unwrap();
    assert!(o.status.success(), "{how:?}: {}", text(&o.stderr));
}

#[test]
fn the_gemma3_cpu_forward_pass_gives_the_stock_greedy_tokens_for_every_quantization() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = vlm_models::gguf::tiny_gemma3::write_tiny_gemma3(tmp.path(), 5).unwrap();
    let imports: [&[&str]; 7] = [
        &["--keep-gguf-quantization"],
        &["--bits", "4", "--group-size", "32"],
        &["--bits", "5", "--group-size", "64"],
        &["--bits", "8", "--group-size", "128"],
        &["--bits", "6", "--group-size", "32"],
        &["--bits", "3", "--group-size", "64"],
        &["--bits", "2", "--group-size", "128"],
    ];
    for (i, how) in imports.iter().enumerate() {
        let model = tmp.path().join(format!("mlx-{i}"));
        convert_tiny_gemma3(&gguf, &model, how);
        let stock = greedy_tokens(&model, Some("mlx"));
        let (ours, stderr) = greedy_run(&model, None);
        assert!(
            !stderr.contains("MLX's CPU operations run this model"),
            "{how:?}: the CPU forward pass did not take the model: {stderr}"
        );
        assert_eq!(stock.len(), STEPS, "{how:?}: {stock:?}");
        assert_eq!(
            ours, stock,
            "{how:?}: greedy tokens differ from MLX's stock kernels"
        );
    }
}

#[test]
fn own_cpu_products_give_the_stock_greedy_tokens_on_every_tiny_variant() {
    let tmp = tempfile::tempdir().unwrap();
    for variant in ["dense", "moe", "ple"] {
        let model = tmp.path().join(variant);
        make_tiny(&model, variant);
        let stock = greedy_tokens(&model, Some("mlx"));
        let (ours, stderr) = greedy_run(&model, None);
        // Dense models run the CPU forward pass (models/src/gemma4/cpu.rs); experts stay on
        // MLX's graph with vlmbench's products, and say so.
        let on_mlx = stderr.contains("MLX's CPU operations run this model");
        assert_eq!(on_mlx, variant == "moe", "{variant}: {stderr}");
        assert_eq!(stock.len(), STEPS, "{variant}: {stock:?}");
        assert_eq!(
            ours, stock,
            "{variant}: greedy tokens differ from MLX's stock kernels"
        );
    }
}

#[test]
fn kernels_command_checks_the_cpu_products_against_mlx_and_refuses_bfloat16_and_other_widths_on_the_cpu(
) {
    let out = Command::new(env!("CARGO_BIN_EXE_vlmbench"))
        .args([
            "kernels",
            "--device",
            "cpu",
            "--shapes",
            "256x96,128x200",
            "--rows",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reports: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r["m"], 3);
        assert_eq!(r["passed"], true, "{r}");
        let err = r["vlmbench_relative_error"].as_f64().unwrap();
        assert!(err < 1e-5, "{r}");
        assert!(
            r["vlmbench_us"].as_f64().unwrap() > 0.0 && r["mlx_us"].as_f64().unwrap() > 0.0,
            "{r}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vlmbench"))
        .args(["kernels", "--device", "cpu", "--dtype", "bfloat16"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--dtype") && err.contains("float32"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_vlmbench"))
        .args(["kernels", "--device", "cpu", "--bits", "5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--bits 5") && err.contains("[4, 8]"), "{err}");
}
