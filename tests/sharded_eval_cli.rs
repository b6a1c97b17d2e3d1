//! `vlmbench eval vqa|coco --distributed ring` as a user runs it: two processes on this machine join
//! MLX's ring backend over loopback (MLX_RANK + MLX_HOSTFILE, as `mlx.launch` sets them), each runs
//! its share of the built-in tiny model's evaluation over the parquet fixtures, and rank 0 merges.
//!
//! "Byte-identical" covers what does not depend on the clock: run.json, samples.jsonl, the COCO
//! figures, summary.json without its wall-clock fields (`timings`, `summary.avg_time_s`,
//! `summary.avg_gen_tps`), timings.jsonl without its clock fields (same samples, same token counts),
//! and rank 0's stdout without the lines that print those averages.

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use common::cli::text;
use common::dataset_fixtures::{coco_fixture, vqa_fixture};
use serde_json::Value;
use vlm_models::distributed::loopback::{
    run_ranks, write_loopback_hostfile, LaunchError, RankOutput,
};

/// The tiny model's cache and the CPU are shared: one evaluation at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sharded-eval-cache")
}

fn vlmbench(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vlmbench"));
    c.args(args)
        .env("VLMBENCH_CACHE_DIR", cache_dir())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("MLX_RANK")
        .env_remove("MLX_HOSTFILE");
    c
}

fn args(task: &str, data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "eval",
        task,
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn single(args: &[String]) -> Output {
    let out = vlmbench(args).output().unwrap();
    assert!(
        out.status.success(),
        "vlmbench {args:?} failed: {}",
        text(&out.stderr)
    );
    out
}

fn launch(tmp: &Path, per_rank: [Vec<String>; 2]) -> Result<Vec<RankOutput>, LaunchError> {
    let hostfile = tmp.join("hosts.json");
    write_loopback_hostfile(&hostfile, 2).unwrap();
    let commands = per_rank.iter().map(|a| vlmbench(a)).collect();
    run_ranks(commands, &hostfile, Duration::from_secs(300))
}

fn sharded(tmp: &Path, args: &[String]) -> Vec<RankOutput> {
    let mut a = args.to_vec();
    a.extend(["--distributed".to_string(), "ring".to_string()]);
    launch(tmp, [a.clone(), a]).unwrap_or_else(|e| panic!("{e}"))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// summary.json without the fields measured by the clock.
fn summary_without_clock(dir: &Path) -> String {
    let mut v: Value = serde_json::from_slice(&read(&dir.join("summary.json"))).unwrap();
    let o = v.as_object_mut().unwrap();
    assert!(o.remove("timings").is_some());
    let s = o["summary"].as_object_mut().unwrap();
    for clock in ["avg_time_s", "avg_gen_tps"] {
        s.remove(clock);
    }
    serde_json::to_string_pretty(&v).unwrap()
}

/// timings.jsonl reduced to what does not depend on the clock.
fn timings_without_clock(dir: &Path) -> Vec<(u64, u64, u64)> {
    String::from_utf8(read(&dir.join("timings.jsonl")))
        .unwrap()
        .lines()
        .map(|l| {
            let t: Value = serde_json::from_str(l).unwrap();
            let n = |k: &str| t[k].as_u64().unwrap();
            (n("sample"), n("prompt_tokens"), n("generation_tokens"))
        })
        .collect()
}

/// Rank 0's stdout without the wall-clock averages, with the run directory named alike.
fn stdout_without_clock(stdout: &str, out: &Path) -> String {
    stdout
        .replace(out.to_str().unwrap(), "OUT")
        .lines()
        .filter(|l| !l.starts_with("Avg time") && !l.starts_with("Avg generation speed"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_same_results(one: &Path, merged: &Path, files: &[&str]) {
    for f in ["run.json", "samples.jsonl"].iter().chain(files) {
        assert!(
            read(&one.join(f)) == read(&merged.join(f)),
            "{f} differs between one process and the merged 2-rank run"
        );
    }
    assert_eq!(summary_without_clock(one), summary_without_clock(merged));
    assert_eq!(timings_without_clock(one), timings_without_clock(merged));
}

/// Every rank that exited by itself (not killed by the supervisor once the first one failed) said
/// exactly one line, containing `needle`.
fn each_exited_rank_said_one_line(outputs: &[RankOutput], needle: &str) {
    let exited: Vec<&RankOutput> = outputs.iter().filter(|o| o.status.is_some()).collect();
    assert!(!exited.is_empty());
    for o in exited {
        assert!(!o.success(), "rank {} succeeded", o.rank);
        let line = o.stderr.trim();
        assert_eq!(line.lines().count(), 1, "rank {}: {line}", o.rank);
        assert!(line.contains(needle), "rank {}: {line}", o.rank);
        assert!(o.stdout.is_empty(), "rank {} printed: {}", o.rank, o.stdout);
    }
}

fn sample_ids(path: &Path) -> Vec<u64> {
    String::from_utf8(read(path))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["sample"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_two_rank_vqa_eval_merges_into_the_single_process_files() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vqav2-small");
    vqa_fixture(&data);
    let (one, merged) = (tmp.path().join("one"), tmp.path().join("merged"));
    let alone = single(&args("vqa", &data, &one, &["-n", "5"]));
    let ranks = sharded(tmp.path(), &args("vqa", &data, &merged, &["-n", "5"]));

    assert_same_results(&one, &merged, &[]);
    assert_eq!(
        sample_ids(&merged.join("samples.jsonl")),
        vec![0, 1, 2, 3, 4]
    );
    // Each rank ran its own share: i % 2 == rank.
    assert_eq!(
        sample_ids(&merged.join("shards/rank-0-of-2/samples.jsonl")),
        vec![0, 2, 4]
    );
    assert_eq!(
        sample_ids(&merged.join("shards/rank-1-of-2/samples.jsonl")),
        vec![1, 3]
    );
    assert_eq!(
        stdout_without_clock(&ranks[0].stdout, &merged),
        stdout_without_clock(&text(&alone.stdout), &one)
    );
    assert!(
        ranks[0].stdout.contains("VQA Accuracy:"),
        "{}",
        ranks[0].stdout
    );
    assert!(
        ranks[1].stdout.is_empty(),
        "rank 1 printed on stdout: {}",
        ranks[1].stdout
    );
    assert!(
        ranks[1].stderr.is_empty(),
        "rank 1 printed on stderr: {}",
        ranks[1].stderr
    );
}

#[test]
fn a_two_rank_coco_eval_merges_into_the_single_process_files_and_figures() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coco");
    coco_fixture(&data);
    let (one, merged) = (tmp.path().join("one"), tmp.path().join("merged"));
    let extra = ["-n", "3", "--max-tokens", "24"];
    let alone = single(&args("coco", &data, &one, &extra));
    let ranks = sharded(tmp.path(), &args("coco", &data, &merged, &extra));

    let figures = [
        "figures/localization_quality.png",
        "figures/overlays.png",
        "figures/best_vs_worst.png",
    ];
    assert_same_results(&one, &merged, &figures);
    assert_eq!(
        sample_ids(&merged.join("shards/rank-1-of-2/samples.jsonl")),
        vec![1]
    );
    assert_eq!(
        stdout_without_clock(&ranks[0].stdout, &merged),
        stdout_without_clock(&text(&alone.stdout), &one)
    );
    assert!(
        ranks[0].stdout.contains("--- COCO Localization (3 images"),
        "{}",
        ranks[0].stdout
    );
    assert!(
        ranks[1].stdout.is_empty(),
        "rank 1 printed on stdout: {}",
        ranks[1].stdout
    );
}

#[test]
fn an_interrupted_sharded_run_resumes_each_rank_where_it_stopped() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vqav2-small");
    vqa_fixture(&data);
    let (one, merged) = (tmp.path().join("one"), tmp.path().join("merged"));
    single(&args("vqa", &data, &one, &["-n", "4"]));
    sharded(tmp.path(), &args("vqa", &data, &merged, &["-n", "4"]));

    // As if rank 1 had died after its first sample and nothing had been merged: its last line is
    // gone, half of a line is left, and the merged files do not exist yet.
    let rank1 = merged.join("shards/rank-1-of-2");
    let text = String::from_utf8(read(&rank1.join("samples.jsonl"))).unwrap();
    let first = text.lines().next().unwrap();
    std::fs::write(
        rank1.join("samples.jsonl"),
        format!("{first}\n{{\"sample\":3,\"stre"),
    )
    .unwrap();
    for f in ["run.json", "samples.jsonl", "timings.jsonl", "summary.json"] {
        std::fs::remove_file(merged.join(f)).unwrap();
    }
    let timing_lines = |dir: &Path| {
        String::from_utf8(read(&dir.join("timings.jsonl")))
            .unwrap()
            .lines()
            .count()
    };
    let (rank0_timings, rank1_timings) = (
        timing_lines(&merged.join("shards/rank-0-of-2")),
        timing_lines(&rank1),
    );

    // Without --resume: refused, one line naming the option.
    let mut a = args("vqa", &data, &merged, &["-n", "4", "--distributed", "ring"]);
    let err = launch(tmp.path(), [a.clone(), a.clone()]).unwrap_err();
    let LaunchError::Failed { outputs, .. } = err else {
        panic!("expected a failed rank")
    };
    each_exited_rank_said_one_line(&outputs, "--resume");

    a.push("--resume".into());
    launch(tmp.path(), [a.clone(), a]).unwrap_or_else(|e| panic!("{e}"));
    assert_same_results(&one, &merged, &[]);
    // Only the lost sample was run again: rank 0 ran nothing, rank 1 one sample.
    assert_eq!(
        timing_lines(&merged.join("shards/rank-0-of-2")),
        rank0_timings
    );
    assert_eq!(timing_lines(&rank1), rank1_timings + 1);
}

#[test]
fn ranks_started_with_different_arguments_stop_with_one_line() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vqav2-small");
    vqa_fixture(&data);
    let out = tmp.path().join("run");
    let r0 = args("vqa", &data, &out, &["-n", "4", "--distributed", "ring"]);
    let r1 = args("vqa", &data, &out, &["-n", "5", "--distributed", "ring"]);
    let err = launch(tmp.path(), [r0, r1]).unwrap_err();
    let LaunchError::Failed { outputs, .. } = err else {
        panic!("expected a failed rank")
    };
    each_exited_rank_said_one_line(
        &outputs,
        "rank 1 of 2 was started with other arguments than rank 0",
    );
    assert!(!out.join("samples.jsonl").exists());
}

#[test]
fn a_process_started_without_a_launcher_gets_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vqav2-small");
    vqa_fixture(&data);
    let out = vlmbench(&args(
        "vqa",
        &data,
        &tmp.path().join("r"),
        &["--distributed", "ring"],
    ))
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--distributed: this process cannot join its group")
            && stderr.contains("MLX_RANK"),
        "{stderr}"
    );
}

#[test]
fn a_rank_whose_resumed_lines_do_not_match_the_dataset_stops_every_rank_with_one_line() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vqav2-small");
    vqa_fixture(&data);
    let merged = tmp.path().join("merged");
    sharded(tmp.path(), &args("vqa", &data, &merged, &["-n", "4"]));
    // Rank 1's first line now names another dataset row; rank 1 has nothing left to run, so only
    // the check of its resumed lines can catch it.
    let path = merged.join("shards/rank-1-of-2/samples.jsonl");
    let text = String::from_utf8(read(&path)).unwrap();
    let mut first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    first["stream_index"] = Value::from(1);
    let rest: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, format!("{first}\n{rest}")).unwrap();
    let before = read(&merged.join("samples.jsonl"));

    let a = args(
        "vqa",
        &data,
        &merged,
        &["-n", "4", "--distributed", "ring", "--resume"],
    );
    let err = launch(tmp.path(), [a.clone(), a]).unwrap_err();
    let LaunchError::Failed { outputs, .. } = err else {
        panic!("expected a failed rank")
    };
    for o in outputs.iter().filter(|o| o.status.is_some()) {
        let line = o.stderr.trim();
        assert_eq!(line.lines().count(), 1, "rank {}: {line}", o.rank);
        let want = if o.rank == 1 {
            "cannot resume: line 1 of"
        } else {
            "rank 1 of 2 failed preparing its shard"
        };
        assert!(line.contains(want), "rank {}: {line}", o.rank);
    }
    assert_eq!(
        read(&merged.join("samples.jsonl")),
        before,
        "nothing is merged after a failure"
    );
}
