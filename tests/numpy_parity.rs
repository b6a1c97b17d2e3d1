//! vlmbench's reproductions of numpy (the notebook's sample selection and matching depend on them)
//! against a live numpy from the reference environment: the legacy generator's `random()` and
//! `normal()` bit for bit over thousands of draws and several seeds, and `np.argsort`'s order among
//! ties on its portable path.
//!
//! Needs `VLMBENCH_REFERENCE_PYTHON` (tools/test.sh sets it); without it the test says so and passes
//! (the unit tests in src/eval hold golden values that need no Python).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vlmbench::eval::argsort::argsort;
use vlmbench::eval::numpy_rng::RandomState;

fn reference_python() -> Option<PathBuf> {
    match std::env::var_os("VLMBENCH_REFERENCE_PYTHON") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!(
                "NOT RUN: set VLMBENCH_REFERENCE_PYTHON (tools/test.sh does) to compare with numpy"
            );
            None
        }
    }
}

fn reference() -> Option<Value> {
    let python = reference_python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/reference/numpy_parity.py");
    let out = Command::new(python)
        .arg(script)
        // numpy's AVX2/AVX-512 sorts order ties differently; compare with its portable introsort.
        .env("NPY_DISABLE_CPU_FEATURES", "X86_V4 X86_V3")
        .output()
        .expect("cannot start the reference python");
    assert!(
        out.status.success(),
        "numpy_parity.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("numpy_parity.py printed bad JSON"))
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn legacy_random_state_matches_numpy_bit_for_bit_and_argsort_orders_ties_like_numpy() {
    let Some(reference) = reference() else { return };
    let mut compared = 0;
    for case in reference["rng"].as_array().unwrap() {
        let seed = case["seed"].as_u64().unwrap() as u32;
        let mut rng = RandomState::seed(seed);
        let uniform: Vec<u64> = (0..2500).map(|_| rng.random().to_bits()).collect();
        assert_eq!(
            uniform,
            u64s(&case["uniform"]),
            "random() after seed({seed})"
        );
        let a: Vec<u64> = rng
            .normal_n(0.0, 0.05, 1001)
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(
            a,
            u64s(&case["normal_a"]),
            "normal(0, 0.05, 1001) after seed({seed})"
        );
        let b: Vec<u64> = rng
            .normal_n(1.5, 0.08, 999)
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(
            b,
            u64s(&case["normal_b"]),
            "normal(1.5, 0.08, 999) after seed({seed})"
        );
        let tail: Vec<u64> = (0..500).map(|_| rng.random().to_bits()).collect();
        assert_eq!(
            tail,
            u64s(&case["tail"]),
            "random() after the normals, seed({seed})"
        );
        compared += 2500 + 1001 + 999 + 500;
    }
    assert!(compared >= 25_000);

    for (k, case) in reference["argsort"].as_array().unwrap().iter().enumerate() {
        let values: Vec<f32> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let want: Vec<usize> = case["order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            argsort(&values),
            want,
            "argsort case {k} ({} values)",
            values.len()
        );
    }
}
