//! `vlmbench caption|query|detect|point|segment` end to end on a tiny random checkpoint and a real
//! photo: free-text tasks answer in Moondream's JSON shapes with statistics; structured tasks
//! either read the model's (random) answer or fail with one error line quoting it — never a panic.
//! Bad flags and files are one-line errors before any model loads.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::{text, vlmbench};

const PHOTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/images/chelsea.png");

fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny");
    let made = vlmbench(&[
        "make-tiny",
        model.to_str().unwrap(),
        "--variant",
        "dense",
        "--seed",
        "0",
    ]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    model
}

fn task(model: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        args[0],
        "--model",
        model.to_str().unwrap(),
        "--image",
        PHOTO,
        "--temperature",
        "0",
    ];
    all.extend(&args[1..]);
    vlmbench(&all)
}

fn assert_one_line_error(out: &Output, want: &[&str]) {
    let line = common::cli::the_error_line(out);
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.lines().last(),
        Some(line.as_str()),
        "the error is the last line: {stderr}"
    );
    for w in want {
        assert!(line.contains(w), "expected {w:?} in: {line}");
    }
}

#[test]
fn caption_and_query_answer_in_moondream_shapes_with_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    for (args, key) in [
        (
            vec![
                "caption",
                "--length",
                "short",
                "--max-tokens",
                "6",
                "--json",
            ],
            "caption",
        ),
        (
            vec![
                "query",
                "How many cats are there?",
                "--max-tokens",
                "6",
                "--json",
            ],
            "answer",
        ),
    ] {
        let out = task(&model, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(report[key].is_string(), "{report}");
        assert_eq!(report["task"], args[0]);
        assert_eq!(report["image"]["width"], 451);
        assert_eq!(report["image"]["height"], 300);
        assert!(
            report["stats"]["vision_encode_s"].as_f64().unwrap() > 0.0,
            "the image was encoded: {report}"
        );
        assert!(report["stats"]["generation_tokens"].as_u64().unwrap() <= 6);
        assert!(report["stats"]["time_to_first_token_s"].as_f64().unwrap() > 0.0);
    }
    let query = task(
        &model,
        &["query", "Is there a cat?", "--max-tokens", "4", "--json"],
    );
    let report: Value = serde_json::from_slice(&query.stdout).unwrap();
    assert_eq!(report["prompt"], "Is there a cat?");
}

#[test]
fn structured_tasks_read_or_reject_random_answers_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    for (args, key) in [
        (vec!["detect", "cat"], "objects"),
        (vec!["point", "cat"], "points"),
        (vec!["segment"], "polygon"),
    ] {
        let overlay = tmp.path().join(format!("{}.png", args[0]));
        let mut full = args.clone();
        full.extend([
            "--max-tokens",
            "24",
            "--json",
            "--overlay",
            overlay.to_str().unwrap(),
        ]);
        let out = task(&model, &full);
        if out.status.success() {
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(!report[key].is_null(), "{report}");
            assert!(std::fs::metadata(&overlay).unwrap().len() > 0);
        } else {
            assert_one_line_error(
                &out,
                &[&format!(
                    "the model's answer to {} could not be read",
                    args[0]
                )],
            );
            assert!(!overlay.exists(), "no overlay for an unreadable answer");
        }
    }
}

#[test]
fn bad_flags_and_files_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.jpg");
    let out = vlmbench(&[
        "detect",
        "cat",
        "--model",
        "/nonexistent",
        "--image",
        missing.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["missing.jpg", "not found"]);

    let out = vlmbench(&[
        "caption",
        "--model",
        "/nonexistent",
        "--image",
        PHOTO,
        "--overlay",
        "x.png",
    ]);
    assert_one_line_error(&out, &["--overlay", "detect, point or segment"]);

    let out = vlmbench(&["caption", "--image", PHOTO, "--length", "epic"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap rejects unknown values: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("short, normal, long"));

    let out = vlmbench(&["point", "--image", PHOTO]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("<OBJECT>"));
}

#[test]
fn draw_renders_a_saved_detection_and_rejects_text_results() {
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("detect.json");
    let result = serde_json::json!({
        "task": "detect", "object": "eye",
        "image": {"path": PHOTO, "width": 451, "height": 300},
        "raw_answer": "[{\"label\": \"eye\", \"box_2d\": [300, 300, 500, 460]}, {\"label\": \"x\", \"box_2d\": [5"
    });
    std::fs::write(&saved, result.to_string()).unwrap();
    let png = tmp.path().join("out.png");
    let out = vlmbench(&["draw", saved.to_str().unwrap(), "-o", png.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let drawn = image::open(&png).unwrap().to_rgb8();
    let original = image::open(PHOTO).unwrap().to_rgb8();
    // The box's left edge (x = 0.3 * 451) is painted; a pixel far from it is not.
    let x = (0.3f64 * 451.0).round() as u32;
    assert_ne!(drawn.get_pixel(x, 120), original.get_pixel(x, 120));
    assert_eq!(drawn.get_pixel(20, 280), original.get_pixel(20, 280));

    let caption = tmp.path().join("caption.json");
    std::fs::write(&caption, serde_json::json!({"task": "caption", "length": "short", "image": {"path": PHOTO, "width": 451, "height": 300}, "raw_answer": "A cat."}).to_string()).unwrap();
    let out = vlmbench(&[
        "draw",
        caption.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["caption.json", "only detect, point and segment"]);

    std::fs::write(&caption, "{}").unwrap();
    let out = vlmbench(&[
        "draw",
        caption.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
    ]);
    assert_one_line_error(&out, &["caption.json", "is not a task result"]);
}
