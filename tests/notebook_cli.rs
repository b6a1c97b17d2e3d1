//! `vlmbench notebook gemma4 --quick` on a tiny random checkpoint: every section runs or says why
//! it was skipped, every file it names exists and is not empty, report.md shows the record's own
//! numbers, and `--resume` keeps finished sections.

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::{text, vlmbench};

use std::path::Path;
use std::process::Output;

use serde_json::Value;

/// The report's rendering of a JSON number: three decimals at most, trailing zeros dropped.
fn shown(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => {
            let s = format!("{:.3}", n.as_f64().unwrap());
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        other => other
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| other.to_string()),
    }
}

fn run_quick(model: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "notebook",
        "gemma4",
        "--quick",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    vlmbench(&args)
}

#[test]
fn quick_notebook_writes_every_section_file_and_number() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    assert!(vlmbench(&["make-tiny", model.to_str().unwrap()])
        .status
        .success());
    let out = tmp.path().join("nb");
    let run = run_quick(&model, &out, &[]);
    assert!(run.status.success(), "{}", text(&run.stderr));

    let record: Value =
        serde_json::from_slice(&std::fs::read(out.join("notebook.json")).unwrap()).unwrap();
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let sections = record["sections"].as_object().unwrap();
    for name in [
        "load",
        "scene",
        "chart",
        "segment",
        "vqa",
        "coco",
        "throughput",
        "summary",
    ] {
        let section = &sections[name];
        match section["status"].as_str().unwrap() {
            "done" => {}
            "skipped" => {
                let reason = section["reason"].as_str().unwrap();
                assert!(
                    report.contains(&format!("_Skipped: {reason}_")),
                    "{name}'s reason is in the report"
                );
            }
            other => panic!("{name}: status {other}"),
        }
        for file in section["files"].as_array().unwrap() {
            let file = file.as_str().unwrap();
            let len = std::fs::metadata(out.join(file))
                .map(|m| m.len())
                .unwrap_or(0);
            assert!(len > 0, "{name}: {file} is missing or empty");
            assert!(
                report.contains(&format!("({file})")),
                "{file} is linked from the report"
            );
        }
    }
    for name in ["load", "scene", "chart", "segment", "throughput", "summary"] {
        assert_eq!(sections[name]["status"], "done", "{name} runs offline");
    }
    // Without datasets the evaluations say what to pass.
    assert!(sections["vqa"]["reason"]
        .as_str()
        .unwrap()
        .contains("--vqa-data"));

    // The report's numbers are the record's.
    let load_s = shown(&sections["load"]["data"]["load_s"]);
    assert!(
        report.contains(&format!("Model loaded in {load_s} s")),
        "{load_s}"
    );
    for name in ["scene", "chart", "segment"] {
        let d = &sections[name]["data"];
        let header = format!(
            "**{} s | {} tok | {} tok/s**",
            shown(&d["time_s"]),
            shown(&d["gen_tokens"]),
            shown(&d["gen_tps"])
        );
        assert!(report.contains(&header), "{name}: {header}");
        assert!(
            d["gen_tokens"].as_u64().unwrap() <= 24,
            "quick mode caps tokens"
        );
    }
    let rows = sections["throughput"]["data"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for row in rows {
        let cells: Vec<String> = [
            "Test",
            "Prompt tokens",
            "Gen tokens",
            "Prompt tok/s",
            "Gen tok/s",
            "Time (s)",
            "Peak mem (GB)",
        ]
        .iter()
        .map(|c| shown(&row[*c]))
        .collect();
        let line = format!("| {} |", cells.join(" | "));
        assert!(
            report.contains(&line),
            "throughput row {line} in the report"
        );
    }
    let summary = sections["summary"]["data"]["rows"].as_array().unwrap();
    let gen_text = summary
        .iter()
        .find(|r| r["Metric"] == "Gen Speed (text, tok/s)")
        .unwrap();
    assert_eq!(gen_text["Value"], rows[0]["Gen tok/s"]);
    assert!(report.contains(&format!(
        "| Gen Speed (text, tok/s) | {} |",
        shown(&gen_text["Value"])
    )));
    assert!(
        report.contains("Random weights"),
        "a tiny run says its weights are random"
    );

    // Resume: finished sections are kept as they are.
    let again = run_quick(&model, &out, &["--resume"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stderr).contains("Scene understanding: done in a previous run"));
    let resumed: Value =
        serde_json::from_slice(&std::fs::read(out.join("notebook.json")).unwrap()).unwrap();
    for name in ["load", "scene", "chart", "segment", "throughput"] {
        assert_eq!(
            resumed["sections"][name], record["sections"][name],
            "{name} kept on resume"
        );
    }

    // A resume against another run's directory is refused.
    let other = run_quick(&model, &out, &["--resume", "--dtype", "float32"]);
    assert!(other.status.success(), "same model and mode: fine");
    let full = vlmbench(&[
        "notebook",
        "gemma4",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
    ]);
    assert_eq!(full.status.code(), Some(1));
    assert!(
        text(&full.stderr).contains("use another --out"),
        "{}",
        text(&full.stderr)
    );
}

#[test]
fn quick_notebook_runs_the_evaluations_on_local_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    assert!(vlmbench(&["make-tiny", model.to_str().unwrap()])
        .status
        .success());
    let (vqa, coco) = (tmp.path().join("vqa-data"), tmp.path().join("coco-data"));
    common::dataset_fixtures::vqa_fixture(&vqa);
    common::dataset_fixtures::coco_fixture(&coco);
    let out = tmp.path().join("nb");
    let run = run_quick(
        &model,
        &out,
        &[
            "--vqa-data",
            vqa.to_str().unwrap(),
            "--coco-data",
            coco.to_str().unwrap(),
        ],
    );
    assert!(run.status.success(), "{}", text(&run.stderr));

    let record: Value =
        serde_json::from_slice(&std::fs::read(out.join("notebook.json")).unwrap()).unwrap();
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    let vqa = &record["sections"]["vqa"];
    assert_eq!(vqa["status"], "done", "{vqa}");
    assert_eq!(vqa["data"]["n_samples"], 3, "quick mode draws 3 questions");
    let accuracy = vqa["data"]["accuracy"].as_f64().unwrap();
    assert!(
        report.contains(&format!(
            "VQA Accuracy: {:.1}% (3 samples",
            accuracy * 100.0
        )),
        "{report}"
    );
    let coco = &record["sections"]["coco"];
    assert_eq!(coco["status"], "done", "{coco}");
    let d = &coco["data"];
    let line = format!(
        "Coarse P/R/F1 @0.3: {:.2} / {:.2} / {:.2}",
        d["precision"].as_f64().unwrap(),
        d["recall"].as_f64().unwrap(),
        d["f1"].as_f64().unwrap()
    );
    assert!(report.contains(&line), "{line}");
    for section in [vqa, coco] {
        for file in section["files"].as_array().unwrap() {
            let file = file.as_str().unwrap();
            assert!(
                std::fs::metadata(out.join(file)).unwrap().len() > 0,
                "{file}"
            );
        }
    }
    assert!(coco["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "coco/figures/overlays.png"));
    let summary = record["sections"]["summary"]["data"]["rows"]
        .as_array()
        .unwrap();
    assert!(summary
        .iter()
        .any(|r| r["Metric"] == "VQA Accuracy (VQAv2, exact match)"));
    assert!(record["sections"]["summary"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "quantitative_summary.png"));
}
