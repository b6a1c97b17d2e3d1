//! `vlmbench caption|query|detect|point|moondream-bench --model <Moondream2 dir>` dispatch to the
//! native Moondream2 model: on a make-tiny --arch moondream2 checkpoint, each task's --json output
//! has Moondream's shapes and equals what the library computes for the same image directly
//! (greedy tokens, boxes and points), so the CLI path cannot mangle results unnoticed. A missing
//! tokenizer and a prompted-only task are one-line errors.

use std::path::{Path, PathBuf};

use mlx_rs::Dtype;
use serde_json::Value;
use vlm_models::moondream2::sampling::TextSettings;
use vlm_models::moondream2::tokenizer::load_starmie;
use vlm_models::moondream2::{CaptionLength, Moondream2};

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::{text, vlmbench};

/// A tiny Moondream2 checkpoint and a small image (one crop: fast in debug builds).
fn fixture(dir: &Path) -> (PathBuf, PathBuf, image::RgbImage) {
    let model = dir.join("md");
    let made = vlmbench(&[
        "make-tiny",
        "--arch",
        "moondream2",
        model.to_str().unwrap(),
        "--seed",
        "1",
    ]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let img = image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x + y) % 256) as u8])
    });
    let path = dir.join("img.png");
    img.save(&path).unwrap();
    (model, path, img)
}

fn run_json(model: &Path, image: &Path, args: &[&str]) -> Value {
    let mut all = vec![
        args[0],
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
    ];
    all.extend(["--temperature", "0", "--dtype", "float32", "--json"]);
    all.extend(&args[1..]);
    let out = vlmbench(&all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

fn ids(v: &Value) -> Vec<u32> {
    v["token_ids"]
        .as_array()
        .expect("token_ids")
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn every_task_matches_the_library_on_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, image_path, img) = fixture(dir.path());
    let model = Moondream2::load(&model_dir, Dtype::Float32).unwrap();
    let tok = load_starmie(&model_dir.join("tokenizer.json"), 0, 1024).unwrap();
    let enc = model.encode_image(&img).unwrap();
    let greedy = TextSettings::greedy(8);

    let caption = run_json(
        &model_dir,
        &image_path,
        &["caption", "--length", "short", "--max-tokens", "8"],
    );
    let want = model
        .caption(&enc, CaptionLength::Short, &greedy, &mut |_| {})
        .unwrap();
    assert_eq!(ids(&caption), want.tokens);
    assert_eq!(
        caption["caption"].as_str().unwrap(),
        tok.decode(&want.tokens, true).unwrap().trim()
    );

    let query = run_json(
        &model_dir,
        &image_path,
        &["query", "What is this?", "--max-tokens", "8"],
    );
    let q_ids = tok
        .encode("What is this?", false)
        .unwrap()
        .get_ids()
        .to_vec();
    let want = model.query(&enc, &q_ids, &greedy, &mut |_| {}).unwrap();
    assert_eq!(ids(&query), want.tokens);
    assert!(query["answer"].is_string());

    let object_ids = tok.encode(" face", false).unwrap().get_ids().to_vec();
    let detect = run_json(&model_dir, &image_path, &["detect", "face"]);
    let want = model.detect(&enc, &object_ids, 50).unwrap();
    let objects = detect["objects"].as_array().unwrap();
    assert_eq!(objects.len(), want.items.len());
    // serde_json reads floats back within an ulp or so, not always exactly.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
    for (got, want) in objects.iter().zip(&want.items) {
        assert!(close(got["x_min"].as_f64().unwrap(), want.x_min), "{got}");
        assert!(close(got["y_max"].as_f64().unwrap(), want.y_max), "{got}");
        assert_eq!(got["label"], "face");
        // Pixels: the normalized box on the 96 x 64 image, clipped to it.
        let px = got["pixel_box"].as_array().unwrap();
        assert!(
            close(
                px[0].as_f64().unwrap(),
                (want.x_min * 96.0).clamp(0.0, 96.0)
            ),
            "{px:?}"
        );
        assert!(
            close(
                px[3].as_f64().unwrap(),
                (want.y_max * 64.0).clamp(0.0, 64.0)
            ),
            "{px:?}"
        );
    }

    // draw cannot read a native result back (its raw answer is Moondream's JSON): one line.
    let saved = dir.path().join("detect.json");
    std::fs::write(&saved, detect.to_string()).unwrap();
    let drawn = vlmbench(&[
        "draw",
        saved.to_str().unwrap(),
        "-o",
        dir.path().join("d.png").to_str().unwrap(),
    ]);
    let stderr = text(&drawn.stderr);
    assert_eq!(drawn.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("native moondream2 result") && stderr.contains("--overlay"),
        "{stderr}"
    );

    let point = run_json(&model_dir, &image_path, &["point", "face"]);
    let want = model.point(&enc, &object_ids, 50).unwrap();
    let points = point["points"].as_array().unwrap();
    assert_eq!(points.len(), want.items.len());
    for (got, want) in points.iter().zip(&want.items) {
        assert!(
            close(got["x"].as_f64().unwrap(), want.x) && close(got["y"].as_f64().unwrap(), want.y),
            "{got}"
        );
    }
}

#[test]
fn moondream_bench_times_the_six_seed_tasks_natively() {
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, image_path, _) = fixture(dir.path());
    let results = dir.path().join("bench.json");
    let out = vlmbench(&[
        "moondream-bench",
        "--model",
        model_dir.to_str().unwrap(),
        "--image",
        image_path.to_str().unwrap(),
        "--temperature",
        "0",
        "-o",
        results.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let saved: Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    let rows = saved["measurements"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|m| m["label"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "Short caption",
            "Normal caption (stream)",
            "Full caption (non-stream)",
            "Visual query",
            "Object detection",
            "Pointing"
        ]
    );
    assert!(rows[1]["stream_first_token_s"].as_f64().unwrap() > 0.0);
    assert!(
        rows[4]["answer"].as_str().unwrap().starts_with("Found "),
        "{}",
        rows[4]["answer"]
    );
}

#[test]
fn a_missing_tokenizer_and_a_prompted_task_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, image_path, _) = fixture(dir.path());
    let segment = vlmbench(&[
        "segment",
        "--model",
        model_dir.to_str().unwrap(),
        "--image",
        image_path.to_str().unwrap(),
    ]);
    let stderr = text(&segment.stderr);
    assert_eq!(segment.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("segment is a prompted Gemma task") && !stderr.contains("panicked"),
        "{stderr}"
    );

    std::fs::remove_file(model_dir.join("tokenizer.json")).unwrap();
    let caption = vlmbench(&[
        "caption",
        "--model",
        model_dir.to_str().unwrap(),
        "--image",
        image_path.to_str().unwrap(),
    ]);
    let line = common::cli::the_error_line(&caption);
    assert!(
        line.contains("has no tokenizer") && line.contains("--tokenizer"),
        "{line}"
    );
}
