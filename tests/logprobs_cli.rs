//! `vlmbench generate --json --logprobs N`: one entry per generated token, the sampled token's
//! log-probability among the N most likely, most likely first. (Values against mlx-vlm's:
//! tests/generate_parity.rs.)

use serde_json::Value;

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::{text, vlmbench};

#[test]
fn greedy_tokens_come_with_their_log_probabilities_most_likely_first() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    let model = model.to_str().unwrap();
    assert!(vlmbench(&["make-tiny", model]).status.success());
    let out = vlmbench(&[
        "generate",
        "-m",
        model,
        "-p",
        "Hello",
        "--max-tokens",
        "6",
        "--ignore-eos",
        "--temperature",
        "0",
        "--json",
        "--logprobs",
        "4",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = v["token_ids"].as_array().unwrap();
    let logprobs = v["logprobs"].as_array().unwrap();
    assert_eq!(logprobs.len(), ids.len());
    for (entry, id) in logprobs.iter().zip(ids) {
        assert_eq!(&entry["id"], id);
        let top = entry["top"].as_array().unwrap();
        assert_eq!(top.len(), 4);
        let values: Vec<f64> = top.iter().map(|p| p[1].as_f64().unwrap()).collect();
        // Greedy: the sampled token is the most likely one.
        assert_eq!(&top[0][0], id, "{entry}");
        assert_eq!(entry["logprob"].as_f64().unwrap(), values[0]);
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "{entry}");
        assert!(values.iter().all(|&lp| lp <= 0.0), "{entry}");
        let mass: f64 = values.iter().map(|lp| lp.exp()).sum();
        assert!(mass <= 1.0 + 1e-4, "{entry}: top-4 probability mass {mass}");
    }
}

#[test]
fn logprobs_need_json_and_at_most_twenty() {
    for args in [&["--logprobs", "3"][..], &["--json", "--logprobs", "21"]] {
        let out = vlmbench(&[&["generate", "-p", "hi"], args].concat());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--logprobs") || stderr.contains("--json"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
