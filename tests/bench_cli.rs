//! `vlmbench bench` on a tiny random checkpoint: llama-bench rows including the image row, in JSON;
//! bad lengths and images are one-line errors.

use serde_json::Value;

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::{text, vlmbench};

const PHOTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/images/chelsea.png");

#[test]
fn rows_for_prompt_generation_and_image_tests() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    assert!(vlmbench(&["make-tiny", model.to_str().unwrap()])
        .status
        .success());
    let out = vlmbench(&[
        "bench",
        "--model",
        model.to_str().unwrap(),
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "2",
        "--image",
        PHOTO,
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let tests: Vec<&str> = rows.iter().map(|r| r["test"].as_str().unwrap()).collect();
    assert_eq!(tests, ["pp16", "tg4", "img+tg4"]);
    // Rows that decode carry the host time per decode step; prompt-only rows do not.
    assert!(rows[0].get("decode_host_ms").is_none(), "{}", rows[0]);
    for row in &rows[1..] {
        let host = &row["decode_host_ms"];
        assert!(host["build"].as_f64().unwrap() > 0.0, "{row}");
        assert!(host["submit"].as_f64().unwrap() >= 0.0, "{row}");
    }
    let image = &rows[2];
    assert!(
        image["n_prompt"].as_u64().unwrap() > 16,
        "the image's soft tokens are in the prompt: {image}"
    );
    assert_eq!(image["n_gen"], 4);
    assert_eq!(image["tps_samples"].as_array().unwrap().len(), 2);
    let ttft = image["ttft_s_mean"].as_f64().unwrap();
    let expected = image["n_prompt"].as_f64().unwrap() / ttft;
    // The rate is prompt tokens over time to first token (mean of rates vs rate of mean: close, not equal).
    assert!(
        (image["tps_mean"].as_f64().unwrap() / expected - 1.0).abs() < 0.5,
        "{image}"
    );
}

#[test]
fn bad_lengths_and_images_are_one_line_errors() {
    let out = vlmbench(&["bench", "-p", "12x", "--model", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: -p"), "{stderr}");
    let out = vlmbench(&[
        "bench",
        "--image",
        "/nonexistent/photo.jpg",
        "--model",
        "/nonexistent",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("photo.jpg") && stderr.lines().count() == 1,
        "{stderr}"
    );
}
