//! Shared helpers of the parity tests: locating the Python reference environment, building tiny
//! checkpoints with mlx-vlm's converter, and running the reference generation loop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// The Python interpreter of the reference environment (mlx 0.32.2 + mlx-vlm 0.7.10):
/// `$VLMBENCH_REFERENCE_PYTHON`, else `tools/reference/.venv/bin/python` in the workspace.
pub fn reference_python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("VLMBENCH_REFERENCE_PYTHON") {
        // Set (tools/test.sh always sets it): the parity tests must run, never skip.
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "VLMBENCH_REFERENCE_PYTHON={} does not exist",
            p.display()
        );
        return Some(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/reference/.venv/bin/python");
    p.exists().then_some(p)
}

/// Print why a parity test is skipped and return `None`, or the interpreter.
pub fn require_reference(test: &str) -> Option<PathBuf> {
    match reference_python() {
        Some(p) => Some(p),
        None => {
            eprintln!(
                "SKIPPED {test}: no reference Python environment (set VLMBENCH_REFERENCE_PYTHON to a python with \
                 mlx==0.32.2, mlx-cpu==0.32.2 and mlx-vlm==0.7.10, or create tools/reference/.venv with tools/reference/setup.sh)"
            );
            None
        }
    }
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

fn work_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gemma4-parity");
    std::fs::create_dir_all(&d).unwrap();
    d
}

static BUILD_LOCK: OnceLock<Mutex<()>> = OnceLock::new();

/// Build (once per target dir) the tiny 4-bit checkpoint of `variant` (dense | moe | ple).
pub fn tiny_checkpoint(python: &Path, variant: &str) -> PathBuf {
    let _g = BUILD_LOCK.get_or_init(|| Mutex::new(())).lock().unwrap();
    let script = scripts_dir().join("build_tiny_gemma4_text.py");
    let out = work_dir().join(format!("tiny-{variant}"));
    let q4 = out.join("q4");
    let stamp = out.join("built.stamp");
    let script_text = std::fs::read_to_string(&script).unwrap();
    let want = format!("{}", fxhash(&script_text));
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str())
        && q4.join("config.json").exists()
    {
        return q4;
    }
    let st = Command::new(python)
        .arg(&script)
        .arg(variant)
        .arg(&out)
        .status()
        .expect("run the checkpoint builder");
    assert!(
        st.success(),
        "building the tiny {variant} checkpoint failed"
    );
    std::fs::write(&stamp, want).unwrap();
    q4
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Result of a reference run.
pub struct Reference {
    pub tokens: Vec<i32>,
    pub logits: Vec<Vec<f32>>,
    pub image_features: Option<PathBuf>,
}

pub struct RefArgs<'a> {
    pub ids: &'a [i32],
    pub steps: usize,
    pub dtype: &'a str,
    pub prefill_step_size: i32,
    pub mm_token_type_ids: Option<&'a [i32]>,
    pub image_features: bool,
    pub tag: &'a str,
}

fn join(v: &[i32]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Run mlx-vlm's generation loop (greedy, no EOS stop) on the checkpoint.
pub fn run_reference(python: &Path, model: &Path, a: &RefArgs) -> Reference {
    let out = work_dir().join(format!("ref-{}.json", a.tag));
    let feats = work_dir().join(format!("feats-{}.safetensors", a.tag));
    let mut cmd = Command::new(python);
    cmd.arg(scripts_dir().join("gemma4_text_ref.py"))
        .arg("--model")
        .arg(model)
        .arg("--ids")
        .arg(join(a.ids))
        .arg("--steps")
        .arg(a.steps.to_string())
        .arg("--dtype")
        .arg(a.dtype)
        .arg("--prefill-step-size")
        .arg(a.prefill_step_size.to_string())
        .arg("--out")
        .arg(&out);
    if let Some(mm) = a.mm_token_type_ids {
        cmd.arg("--mm-token-type-ids").arg(join(mm));
    }
    if a.image_features {
        cmd.arg("--image-features-out").arg(&feats);
    }
    let o = cmd.output().expect("run the reference script");
    assert!(
        o.status.success(),
        "reference run failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let tokens = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap() as i32)
        .collect();
    let logits = v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    Reference {
        tokens,
        logits,
        image_features: a.image_features.then_some(feats),
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn argmax(v: &[f32]) -> i32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as i32
}
