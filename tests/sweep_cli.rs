//! `vlmbench sweep` on a tiny random checkpoint: the notebook's six throughput prompts (three with
//! the built-in photo), resume, charts; and the errors a user meets with bad flags and files.

use std::process::{Command, Output};

use serde_json::Value;

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::{text, vlmbench};

fn assert_one_line_error(out: &Output, want: &[&str]) {
    let line = common::cli::the_error_line(out);
    for w in want {
        assert!(line.contains(w), "expected {w:?} in: {line}");
    }
}

#[test]
fn notebook_sweep_measures_six_prompts_resumes_and_charts() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    assert!(vlmbench(&["make-tiny", model.to_str().unwrap()])
        .status
        .success());
    let out = tmp.path().join("nb.json");
    let charts = tmp.path().join("charts");
    let run = vlmbench(&[
        "sweep",
        "--notebook",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--chart-dir",
        charts.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let saved: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let rows = saved["measurements"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|m| m["label"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        [
            "Short text",
            "Medium text",
            "Long text",
            "Image + short",
            "Image + medium",
            "Image + long"
        ]
    );
    let with_image: Vec<bool> = rows
        .iter()
        .map(|m| m["has_image"].as_bool().unwrap())
        .collect();
    assert_eq!(with_image, [false, false, false, true, true, true]);
    // The notebook's max-token limits bound each row; image rows carry the image's soft tokens.
    for (m, limit) in rows.iter().zip([50, 300, 500, 50, 300, 500]) {
        assert!(m["gen_tokens"].as_u64().unwrap() <= limit, "{m}");
    }
    assert!(rows[3]["prompt_tokens"].as_u64() > rows[0]["prompt_tokens"].as_u64());
    assert!(rows[3]["vision_encode_s"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_dir(&charts).unwrap().count() >= 1);

    // Resuming a finished sweep measures nothing again.
    let before = std::fs::read(&out).unwrap();
    let again = vlmbench(&[
        "sweep",
        "--notebook",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
    ]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

#[test]
fn length_sweep_with_an_image_adds_one_image_point_after_the_lengths() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    assert!(vlmbench(&["make-tiny", model.to_str().unwrap()])
        .status
        .success());
    let out = tmp.path().join("sweep.json");
    let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/images/astronaut.jpg");
    let run = vlmbench(&[
        "sweep",
        "--model",
        model.to_str().unwrap(),
        "--lengths",
        "8,16",
        "--image",
        photo,
        "--gen",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let saved: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let rows = saved["measurements"].as_array().unwrap();
    let labels: Vec<&str> = rows.iter().map(|m| m["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["pp8", "pp16", "img+tg3"]);
    let image = &rows[2];
    assert_eq!(image["has_image"], true);
    assert_eq!(image["gen_tokens"], 3, "EOS is ignored: {image}");
    assert!(image["prompt_tokens"].as_u64().unwrap() > 16, "{image}");
    // The time to first token holds the vision encoding (and the prompt building before it).
    assert!(
        image["time_to_first_token_s"].as_f64().unwrap()
            > image["vision_encode_s"].as_f64().unwrap(),
        "{image}"
    );

    // The run records the kernel and prefill choices; a resume under another prefill refuses.
    assert_eq!(saved["run"]["kernels"], "vlmbench");
    let recorded = saved["run"]["prefill"].as_str().unwrap().to_owned();
    let other = if recorded == "paced" { "mlx" } else { "paced" };
    let args = [
        "sweep",
        "--model",
        model.to_str().unwrap(),
        "--lengths",
        "8,16,32",
    ];
    let resumed = Command::new(env!("CARGO_BIN_EXE_vlmbench"))
        .args(args)
        .args(["--out", out.to_str().unwrap(), "--resume"])
        .env("VLMBENCH_PREFILL", other)
        .output()
        .unwrap();
    assert_one_line_error(&resumed, &["--resume", &format!("prefill {recorded}")]);

    // --image belongs to length sweeps, not to the notebook's prompts.
    let bad = vlmbench(&[
        "sweep",
        "--model",
        model.to_str().unwrap(),
        "--notebook",
        "--image",
        photo,
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("--image") && text(&bad.stderr).contains("--notebook"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn bad_lengths_empty_prompt_files_and_foreign_results_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.json");
    let bad = vlmbench(&[
        "sweep",
        "--lengths",
        "64-abc",
        "--model",
        "/nonexistent",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&bad, &["--lengths"]);

    let empty = tmp.path().join("prompts.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let run = vlmbench(&[
        "sweep",
        "--prompts-file",
        empty.to_str().unwrap(),
        "--model",
        "/nonexistent",
    ]);
    assert_one_line_error(&run, &["prompts.txt", "has no prompts"]);

    let foreign = tmp.path().join("foreign.json");
    std::fs::write(&foreign, "[1, 2]").unwrap();
    let chart = vlmbench(&[
        "chart",
        foreign.to_str().unwrap(),
        "--out-dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert_one_line_error(&chart, &["foreign.json is not a vlmbench results file"]);
    let compare = vlmbench(&[
        "compare",
        foreign.to_str().unwrap(),
        tmp.path().join("missing.json").to_str().unwrap(),
    ]);
    assert_one_line_error(&compare, &["foreign.json"]);

    let flag = vlmbench(&["sweep", "--notebook-image", "x.jpg"]);
    assert_eq!(
        flag.status.code(),
        Some(2),
        "--notebook-image needs --notebook: {}",
        text(&flag.stderr)
    );
}
