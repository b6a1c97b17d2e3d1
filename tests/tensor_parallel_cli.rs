//! `vlmbench generate --tensor-parallel` as a user runs it: two processes on this machine join
//! MLX's ring backend over loopback (free ports, MLX_RANK + MLX_HOSTFILE as `mlx.launch` sets
//! them), each loads its half of the tiny dense checkpoint, and rank 0 prints the same greedy
//! tokens as one process running the whole model, for 32 steps. Plus the one-line errors of a
//! process that cannot join a group.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use vlm_models::distributed::loopback::{run_ranks, write_loopback_hostfile};

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::text;

const STEPS: usize = 32;

fn vlmbench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vlmbench"));
    // No rank variables inherited from whoever runs the tests.
    c.env_remove("MLX_RANK").env_remove("MLX_HOSTFILE");
    c
}

fn make_tiny(dir: &Path) {
    let out = vlmbench()
        .args(["make-tiny", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn generate_args(model: &Path) -> Vec<String> {
    [
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "Describe the picture in one sentence.",
        "--max-tokens",
        &STEPS.to_string(),
        "--ignore-eos",
        "--temperature",
        "0",
        "--dtype",
        "float32",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn token_ids(stdout: &str) -> Vec<u64> {
    let v: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    serde_json::from_value(v["token_ids"].clone()).unwrap()
}

#[test]
fn two_ring_ranks_generate_the_single_process_greedy_tokens_and_only_rank_0_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    make_tiny(&model);

    let single: Output = vlmbench().args(generate_args(&model)).output().unwrap();
    assert!(single.status.success(), "{}", text(&single.stderr));
    let want = token_ids(&text(&single.stdout));
    assert_eq!(want.len(), STEPS);

    let hostfile = tmp.path().join("hosts.json");
    write_loopback_hostfile(&hostfile, 2).unwrap();
    let ranks = (0..2)
        .map(|_| {
            let mut c = vlmbench();
            c.args(generate_args(&model))
                .args(["--tensor-parallel", "ring"]);
            c
        })
        .collect();
    let outputs =
        run_ranks(ranks, &hostfile, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    let rank0 = outputs[0].stdout.clone();
    assert_eq!(
        token_ids(&rank0),
        want,
        "rank 0 of 2 generated other tokens than one process"
    );
    let report: serde_json::Value = serde_json::from_str(&rank0).unwrap();
    assert_eq!(
        report["tensor_parallel"],
        serde_json::json!({ "backend": "ring", "ranks": 2 })
    );
    assert!(
        outputs[1].stdout.is_empty(),
        "rank 1 printed: {}",
        outputs[1].stdout
    );
    assert!(!text(&single.stdout).contains("tensor_parallel"));
}

#[test]
fn a_process_started_without_a_launcher_gets_one_line_naming_mlx_rank_and_hostfile() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    make_tiny(&model);
    let out = vlmbench()
        .args(generate_args(&model))
        .args(["--tensor-parallel", "ring"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: --tensor-parallel: this process cannot join its group"),
        "{stderr}"
    );
    assert!(
        stderr.contains("MLX_RANK") && stderr.contains("MLX_HOSTFILE"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn an_unknown_backend_is_refused_by_name() {
    let out = vlmbench()
        .args(["generate", "--prompt", "hi", "--tensor-parallel", "tcp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown distributed backend \"tcp\": expected ring, mpi, nccl or any"),
        "{stderr}"
    );
}

#[test]
fn two_ring_ranks_bench_together_and_only_rank_0_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    make_tiny(&model);
    let hostfile = tmp.path().join("hosts.json");
    write_loopback_hostfile(&hostfile, 2).unwrap();
    let ranks = (0..2)
        .map(|_| {
            let mut c = vlmbench();
            c.args([
                "bench",
                "--model",
                model.to_str().unwrap(),
                "-p",
                "16",
                "-n",
                "4",
                "-r",
                "1",
                "--no-warmup",
            ])
            .args([
                "--dtype",
                "float32",
                "-o",
                "json",
                "--tensor-parallel",
                "ring",
            ]);
            c
        })
        .collect();
    let outputs =
        run_ranks(ranks, &hostfile, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    let rows: serde_json::Value = serde_json::from_str(&outputs[0].stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", outputs[0].stdout));
    let tests: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["test"].as_str().unwrap())
        .collect();
    assert_eq!(tests, ["pp16", "tg4"]);
    // Per-rank figures, gathered by rank 0: both ranks, in order, with their own tok/s and memory;
    // rank 0's entry is the row's own figure.
    for row in rows.as_array().unwrap() {
        let ranks = row["ranks"]
            .as_array()
            .unwrap_or_else(|| panic!("no per-rank figures: {row}"));
        assert_eq!(
            ranks
                .iter()
                .map(|r| r["rank"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            [0, 1],
            "{row}"
        );
        assert!(
            ranks.iter().all(|r| r["tps_mean"].as_f64().unwrap() > 0.0
                && r["peak_memory_bytes"].as_u64().unwrap() > 0),
            "{row}"
        );
        let own = row["tps_mean"].as_f64().unwrap();
        assert!(
            (ranks[0]["tps_mean"].as_f64().unwrap() - own).abs() <= own * 1e-6,
            "{row}"
        );
    }
    assert!(
        outputs[0]
            .stderr
            .contains("tensor parallel: 2 ranks (ring backend)"),
        "{}",
        outputs[0].stderr
    );
    assert!(
        outputs[0].stderr.contains("tg4: rank 0 ") && outputs[0].stderr.contains("all ranks: peak"),
        "{}",
        outputs[0].stderr
    );
    assert!(
        outputs[1].stdout.is_empty() && outputs[1].stderr.is_empty(),
        "rank 1 reported: {} {}",
        outputs[1].stdout,
        outputs[1].stderr
    );
}
