//! Cross-check against the project's reference tooling (`tools/reference/`: its own tiny
//! checkpoint builder and `gemma4_run.py`, which calls `mlx_vlm.generate`), on its dense / moe /
//! ple variants, in float32 and bfloat16: identical greedy ids for 40 steps (EOS ignored) and the
//! first-step logits within the tolerances of `gemma4_parity.rs`.
//!
//! Uses `$VLMBENCH_REF_TOOLS` (default `<workspace>/tools/reference`) and the interpreter from
//! `$VLMBENCH_REFERENCE_PYTHON` (default `<tools>/.venv/bin/python`); skipped with a printed reason when
//! either is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{argmax, max_abs_diff};
use mlx_rs::{Array, Dtype};
use serde_json::Value;
use vlm_models::checkpoint::Checkpoint;
use vlm_models::gemma4::Gemma4Text;

const STEPS: usize = 40;

fn tools() -> Option<(PathBuf, PathBuf)> {
    let dir = std::env::var("VLMBENCH_REF_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/reference"));
    let required = std::env::var_os("VLMBENCH_REFERENCE_PYTHON").is_some();
    let py = std::env::var("VLMBENCH_REFERENCE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.join(".venv/bin/python"));
    // tools/test.sh always sets VLMBENCH_REFERENCE_PYTHON: then this must run, never skip.
    assert!(
        !required || py.exists(),
        "VLMBENCH_REFERENCE_PYTHON={} does not exist",
        py.display()
    );
    if dir.join("gemma4_run.py").exists()
        && dir.join("build_tiny_gemma4.py").exists()
        && py.exists()
    {
        Some((dir, py))
    } else {
        eprintln!(
            "SKIPPED: tools/reference scripts or their venv not found ({} / {}); run tools/reference/setup.sh \
             or set VLMBENCH_REF_TOOLS and VLMBENCH_REFERENCE_PYTHON",
            dir.display(),
            py.display()
        );
        None
    }
}

fn run(variant: &str, dtype: Dtype) {
    let Some((dir, py)) = tools() else { return };
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gemma4-ref-tools");
    std::fs::create_dir_all(&work).unwrap();
    let ckpt_dir = work.join(variant);
    if !ckpt_dir.join("config.json").exists() {
        let st = Command::new(&py)
            .arg(dir.join("build_tiny_gemma4.py"))
            .arg(&ckpt_dir)
            .arg("--variant")
            .arg(variant)
            .arg("--quiet")
            .status()
            .unwrap();
        assert!(st.success(), "build_tiny_gemma4.py {variant} failed");
    }
    let mut ids = vec![2, 5];
    ids.extend((0..30).map(|i| 30 + (i * 53) % 340));
    let dname = if dtype == Dtype::Float32 {
        "float32"
    } else {
        "bfloat16"
    };
    let out = work.join(format!("{variant}-{dname}.json"));
    let o = Command::new(&py)
        .arg(dir.join("gemma4_run.py"))
        .arg("--model")
        .arg(&ckpt_dir)
        .arg("--prompt-ids")
        .arg(ids.iter().map(i32::to_string).collect::<Vec<_>>().join(","))
        .arg("--max-tokens")
        .arg(STEPS.to_string())
        .arg("--ignore-eos")
        .arg("--dtype")
        .arg(dname)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "gemma4_run.py failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let ref_ids: Vec<i32> = r["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i32)
        .collect();
    let ref_first: Vec<f32> = r["first_step_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();

    let ckpt = Checkpoint::open(&ckpt_dir).unwrap();
    let model = Gemma4Text::load(&ckpt, dtype).unwrap();
    let ids_a = Array::from_slice(&ids, &[1, ids.len() as i32]);
    let mut cache = model.make_cache();
    let mut logits = model
        .prefill(&ids_a, None, None, &mut cache, Some(2048))
        .unwrap();
    let mut toks = vec![];
    let mut first = None;
    for _ in 0..STEPS {
        if first.is_none() {
            first = Some(
                logits
                    .as_dtype(Dtype::Float32)
                    .unwrap()
                    .as_slice::<f32>()
                    .to_vec(),
            );
        }
        let lp = logits
            .subtract(logits.logsumexp_axis(-1, true).unwrap())
            .unwrap();
        let t = argmax(lp.as_dtype(Dtype::Float32).unwrap().as_slice::<f32>());
        toks.push(t);
        logits = model
            .decode_step(&Array::from_slice(&[t], &[1, 1]), &mut cache)
            .unwrap();
    }
    let d = max_abs_diff(&first.unwrap(), &ref_first);
    eprintln!("[tools {variant} {dname}] first-step max|logit diff| = {d:.3e}");
    assert_eq!(
        toks, ref_ids,
        "[tools {variant} {dname}] greedy ids differ (rust vs ref)"
    );
    let tol = if dtype == Dtype::Float32 {
        1e-4
    } else {
        0.0625
    };
    assert!(
        d <= tol,
        "[tools {variant} {dname}] first-step logits differ by {d}"
    );
}

#[test]
fn tools_dense() {
    run("dense", Dtype::Float32);
    run("dense", Dtype::Bfloat16);
}

#[test]
fn tools_moe() {
    run("moe", Dtype::Float32);
    run("moe", Dtype::Bfloat16);
}

#[test]
fn tools_ple() {
    run("ple", Dtype::Float32);
    run("ple", Dtype::Bfloat16);
}
