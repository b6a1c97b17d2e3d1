//! `vlmbench moondream-bench` on a tiny random checkpoint: the seed's six tasks in its order,
//! each timed and saved as it finishes, the streamed row with its latencies; the results feed
//! `compare` and `chart`.

use serde_json::Value;

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::{text, vlmbench};

const PHOTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/images/astronaut.jpg");

#[test]
fn runs_the_seed_tasks_in_order_and_saves_results_for_compare_and_chart() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    let made = vlmbench(&["make-tiny", model.to_str().unwrap()]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let results = tmp.path().join("md.json");
    let run = vlmbench(&[
        "moondream-bench",
        "--model",
        model.to_str().unwrap(),
        "--image",
        PHOTO,
        "--temperature",
        "0",
        "--label",
        "tiny",
        "-o",
        results.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    for line in [
        "[Short caption runtime:",
        "First token latency:",
        "Average token latency:",
        "=== Total end-to-end runtime:",
        "| **Total runtime**",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }

    let saved: Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    assert_eq!(saved["kind"], "task_bench");
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
    for m in rows {
        assert!(
            m["total_s"].as_f64().unwrap() >= m["time_to_first_token_s"].as_f64().unwrap(),
            "{m}"
        );
        assert!(m["answer"].is_string(), "{m}");
    }
    assert!(rows[1]["stream_first_token_s"].as_f64().unwrap() > 0.0);
    assert!(rows[0].get("stream_first_token_s").is_none());
    // Greedy: the streamed and the non-streamed normal caption are the same text.
    assert_eq!(rows[1]["answer"], rows[2]["answer"]);
    for detect in &rows[4..] {
        let answer = detect["answer"].as_str().unwrap();
        assert!(
            answer.starts_with("Found ") || answer.starts_with("unreadable answer ("),
            "{answer}"
        );
    }

    let compare = vlmbench(&[
        "compare",
        results.to_str().unwrap(),
        results.to_str().unwrap(),
    ]);
    assert!(compare.status.success(), "{}", text(&compare.stderr));
    assert!(
        text(&compare.stdout).contains("| Object detection"),
        "{}",
        text(&compare.stdout)
    );
    let charts = tmp.path().join("charts");
    let chart = vlmbench(&[
        "chart",
        results.to_str().unwrap(),
        "--out-dir",
        charts.to_str().unwrap(),
    ]);
    assert!(chart.status.success(), "{}", text(&chart.stderr));
    assert!(std::fs::read_dir(&charts).unwrap().count() >= 1);
}
