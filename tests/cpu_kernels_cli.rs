//! vlmbench's own CPU 4-bit products (models/src/kernels/cpu_matmul.rs) never change what a user
//! gets: `vlmbench generate` in float32 on the CPU prints the same 64 greedy tokens with the
//! default kernel choice as with MLX's stock kernels (`VLMBENCH_KERNELS=mlx`), on each tiny Gemma 4
//! variant. The prompt's prefill runs the many-row path, every decode step the one-row path.
//! And `vlmbench kernels --device cpu` checks them against MLX per shape.

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

/// Greedy token ids of a float32 CPU run with `VLMBENCH_KERNELS=kernels` (`None`: unset, the default).
fn greedy_tokens(model: &Path, kernels: Option<&str>) -> Vec<u64> {
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
    serde_json::from_value(v["token_ids"].clone()).unwrap()
}

#[test]
fn own_cpu_products_give_the_stock_greedy_tokens_on_every_tiny_variant() {
    let tmp = tempfile::tempdir().unwrap();
    for variant in ["dense", "moe", "ple"] {
        let model = tmp.path().join(variant);
        make_tiny(&model, variant);
        let stock = greedy_tokens(&model, Some("mlx"));
        let ours = greedy_tokens(&model, None);
        assert_eq!(stock.len(), STEPS, "{variant}: {stock:?}");
        assert_eq!(
            ours, stock,
            "{variant}: greedy tokens differ from MLX's stock kernels"
        );
    }
}

#[test]
fn kernels_command_checks_the_cpu_products_against_mlx_and_refuses_bfloat16_on_the_cpu() {
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
}
