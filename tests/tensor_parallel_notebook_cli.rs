//! `vlmbench notebook gemma4 --quick --tensor-parallel ring` in two processes on loopback: every
//! generation section (scene, chart, segmentation, the VQA evaluation over the parquet fixture,
//! the throughput prompts) gives the single-process answers, token for token; rank 0 alone writes
//! the report and prints.

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::text;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::dataset_fixtures::vqa_fixture;
use serde_json::Value;
use vlm_models::distributed::loopback::{run_ranks, write_loopback_hostfile};

fn vlmbench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vlmbench"));
    c.env_remove("MLX_RANK").env_remove("MLX_HOSTFILE");
    c
}

fn notebook_args(model: &Path, vqa: &Path, out: &Path) -> Vec<String> {
    [
        "notebook",
        "gemma4",
        "--quick",
        "--dtype",
        "float32",
        "--model",
        model.to_str().unwrap(),
    ]
    .into_iter()
    .chain([
        "--vqa-data",
        vqa.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .map(String::from)
    .collect()
}

fn record(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("notebook.json")).unwrap()).unwrap()
}

#[test]
fn a_two_rank_tensor_parallel_notebook_gives_the_single_process_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    let made: Output = vlmbench()
        .args(["make-tiny", model.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let vqa = tmp.path().join("vqav2-small");
    vqa_fixture(&vqa);

    let (one, tp) = (tmp.path().join("one"), tmp.path().join("tp"));
    let alone = vlmbench()
        .args(notebook_args(&model, &vqa, &one))
        .output()
        .unwrap();
    assert!(alone.status.success(), "{}", text(&alone.stderr));

    let hostfile = tmp.path().join("hosts.json");
    write_loopback_hostfile(&hostfile, 2).unwrap();
    let ranks = (0..2)
        .map(|_| {
            let mut c = vlmbench();
            c.args(notebook_args(&model, &vqa, &tp))
                .args(["--tensor-parallel", "ring"]);
            c
        })
        .collect();
    let outputs =
        run_ranks(ranks, &hostfile, Duration::from_secs(480)).unwrap_or_else(|e| panic!("{e}"));

    let (want, got) = (record(&one), record(&tp));
    for section in ["scene", "chart", "segment"] {
        let (w, g) = (
            &want["sections"][section]["data"],
            &got["sections"][section]["data"],
        );
        assert_eq!(
            g["response"], w["response"],
            "{section}: the tensor-parallel answer differs"
        );
        assert_eq!(g["gen_tokens"], w["gen_tokens"], "{section}");
        assert!(w["gen_tokens"].as_u64().unwrap() > 0);
    }
    let tokens = |r: &Value| -> Vec<(Value, Value, Value)> {
        r["sections"]["throughput"]["data"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row["Test"].clone(),
                    row["Prompt tokens"].clone(),
                    row["Gen tokens"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(tokens(&got), tokens(&want));
    assert_eq!(got["sections"]["vqa"]["status"], "done");
    assert_eq!(
        std::fs::read(tp.join("vqa/samples.jsonl")).unwrap(),
        std::fs::read(one.join("vqa/samples.jsonl")).unwrap(),
        "the VQA section's answers differ on the tensor-parallel model"
    );

    assert!(
        outputs[0].stdout.contains("report: "),
        "{}",
        outputs[0].stdout
    );
    assert!(
        outputs[0]
            .stderr
            .contains("tensor parallel: 2 ranks (ring backend)"),
        "{}",
        outputs[0].stderr
    );
    assert!(
        outputs[1].stdout.is_empty() && outputs[1].stderr.is_empty(),
        "rank 1 spoke: {} {}",
        outputs[1].stdout,
        outputs[1].stderr
    );
}

#[test]
fn resume_is_refused_with_tensor_parallel_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = vlmbench()
        .args([
            "notebook",
            "gemma4",
            "--quick",
            "--resume",
            "--tensor-parallel",
            "ring",
            "--out",
        ])
        .arg(tmp.path().join("nb"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--resume cannot be combined with --tensor-parallel"),
        "{stderr}"
    );
}
