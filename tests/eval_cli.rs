//! `vlmbench eval vqa|coco` end to end on the built-in tiny model, over parquet fixtures written in
//! the published schemas of merve/vqav2-small (question, multiple_choice_answer, image) and
//! detection-datasets/coco (image_id, image, width, height, objects {bbox_id, category, bbox, area},
//! ClassLabel names in the `huggingface` metadata), sharded as `data/<split>-0000K-of-00002.parquet`,
//! with real CC0/public-domain photos (assets/images) and hand-made annotations; and over the
//! synthetic scenes `vlmbench make-scenes` writes in the same layouts.
//! Also: a run killed with SIGKILL mid-way and resumed ends with the same samples.jsonl bytes as an
//! uninterrupted run (timings live in timings.jsonl, outside the compared file).

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use common::cli::text;
use common::dataset_fixtures::{coco_fixture, vqa_fixture, vqa_row};
use serde_json::{json, Value};

/// The tiny model's cache and the CPU are shared: one CLI run at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("eval-cli-cache")
}

fn vlmbench(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vlmbench"));
    c.args(args)
        .env("VLMBENCH_CACHE_DIR", cache_dir())
        .env("HF_HUB_OFFLINE", "1");
    c
}

fn run(args: &[&str]) -> Output {
    let out = vlmbench(args).output().unwrap();
    assert!(
        out.status.success(),
        "vlmbench {args:?} failed: {}",
        text(&out.stderr)
    );
    out
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn eval_vqa_draws_the_notebooks_rows_and_scores_every_answer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vqav2-small");
    vqa_fixture(&data);
    let out_dir = tmp.path().join("run");
    let out = run(&[
        "eval",
        "vqa",
        "--data",
        s(&data),
        "-n",
        "4",
        "--out",
        s(&out_dir),
    ]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Loaded 4 VQA samples"), "{stderr}");
    assert!(
        stderr.contains("Example: Q='What is in the cup? (row 10)', A='coffee'"),
        "{stderr}"
    );

    let records = lines(&out_dir.join("samples.jsonl"));
    let rows: Vec<u64> = records
        .iter()
        .map(|r| r["stream_index"].as_u64().unwrap())
        .collect();
    // numpy: np.random.seed(42); rows where np.random.random() < 0.05 -> 10, 29, 42, 58 (across both shards).
    assert_eq!(rows, vec![10, 29, 42, 58]);
    let mut correct = 0.0;
    for (k, r) in records.iter().enumerate() {
        let row = rows[k] as usize;
        let (q, a, _) = vqa_row(row);
        assert_eq!(r["sample"], k);
        assert_eq!(r["question"], format!("{q} (row {row})"));
        assert_eq!(r["gt_answer"], a);
        let first_line = r["response"]
            .as_str()
            .unwrap()
            .trim()
            .split('\n')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(r["prediction"], first_line);
        let acc = r["accuracy"].as_f64().unwrap();
        assert_eq!(
            acc,
            if first_line
                .trim()
                .to_lowercase()
                .trim_end_matches('.')
                .trim()
                == a
            {
                1.0
            } else {
                0.0
            }
        );
        correct += acc;
    }
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["summary"]["n_samples"], 4);
    assert_eq!(
        summary["summary"]["accuracy"].as_f64().unwrap(),
        correct / 4.0
    );
    assert_eq!(summary["timings"].as_array().unwrap().len(), 4);
    assert!(
        stdout.contains(&format!(
            "VQA Accuracy: {:.1}% (4 samples)",
            100.0 * correct / 4.0
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("| Question") && stdout.contains("Sample incorrect predictions"),
        "{stdout}"
    );

    // The same directory again without --resume: one error line, nothing touched.
    let again = vlmbench(&[
        "eval",
        "vqa",
        "--data",
        s(&data),
        "-n",
        "4",
        "--out",
        s(&out_dir),
    ])
    .output()
    .unwrap();
    assert_eq!(again.status.code(), Some(1));
    let err = text(&again.stderr);
    assert!(
        err.trim().lines().count() == 1 && err.contains("--resume"),
        "{err}"
    );
    // --resume on a finished run: no model needed, same records, summary rewritten.
    let resumed = run(&[
        "eval",
        "vqa",
        "--data",
        s(&data),
        "-n",
        "4",
        "--out",
        s(&out_dir),
        "--resume",
    ]);
    assert!(
        !text(&resumed.stderr).contains("built-in tiny"),
        "a finished run loaded the model"
    );
    assert_eq!(lines(&out_dir.join("samples.jsonl")), records);
    // Other settings cannot resume this run.
    let other = vlmbench(&[
        "eval",
        "vqa",
        "--data",
        s(&data),
        "-n",
        "5",
        "--out",
        s(&out_dir),
        "--resume",
    ])
    .output()
    .unwrap();
    assert!(text(&other.stderr).contains("different settings"));
}

#[test]
fn eval_coco_selects_images_with_two_known_objects_and_scores_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("coco");
    coco_fixture(&data);
    let out_dir = tmp.path().join("run");
    let out = run(&[
        "eval",
        "coco",
        "--data",
        s(&data),
        "-n",
        "3",
        "--out",
        s(&out_dir),
        "--max-tokens",
        "24",
    ]);
    let stdout = text(&out.stdout);
    let records = lines(&out_dir.join("samples.jsonl"));
    // Stream rows 1 (coffee), 2 (astronaut), 4 (coffee, second shard); the chelsea rows have one object.
    let rows: Vec<u64> = records
        .iter()
        .map(|r| r["stream_index"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, vec![1, 2, 4]);
    assert_eq!(
        (records[0]["width"].as_u64(), records[0]["height"].as_u64()),
        (Some(600), Some(400))
    );
    let names = |r: &Value, key: &str| -> Vec<String> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["class_name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&records[0], "ground_truth"),
        vec!["cup", "spoon", "dining table"]
    );
    // Category 80 is not one of the dataset's 80 names: not scored.
    assert_eq!(
        names(&records[1], "ground_truth"),
        vec!["person", "airplane"]
    );
    assert_eq!(
        records[1]["ground_truth"][0]["xyxy"],
        json!([18.0, 14.0, 363.0, 512.0])
    );
    for r in &records {
        let e = &r["eval"];
        assert_eq!(
            e["n_gt"].as_u64().unwrap() as usize,
            r["ground_truth"].as_array().unwrap().len()
        );
        assert_eq!(
            e["n_pred"].as_u64().unwrap() as usize,
            r["predictions"].as_array().unwrap().len()
        );
    }
    let summary: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["summary"]["n_images"], 3);
    assert_eq!(summary["summary"]["total_gt"], 8);
    let per_class: Vec<&str> = summary["summary"]["per_class_recall"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        per_class,
        vec!["cup", "spoon", "dining table", "person", "airplane"]
    );
    assert!(
        stdout.contains("--- COCO Localization (3 images, GT boxes ≥ 1024px²) ---"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Coarse P/R/F1 @0.3:") && stdout.contains("Worst image — GT classes:"),
        "{stdout}"
    );
    for f in [
        "localization_quality.png",
        "overlays.png",
        "best_vs_worst.png",
    ] {
        let img =
            image::open(out_dir.join("figures").join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(
            img.width() > 800 && img.height() > 400,
            "{f} is {}x{}",
            img.width(),
            img.height()
        );
    }
}

#[test]
fn make_scenes_writes_datasets_both_evaluations_read_as_they_are() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("scenes");
    run(&["make-scenes", s(&data), "--scenes", "40", "--seed", "2"]);
    let again = vlmbench(&["make-scenes", s(&data)]).output().unwrap();
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("is not empty"),
        "{}",
        text(&again.stderr)
    );
    let scenes = lines(&data.join("scenes.jsonl"));
    assert_eq!(scenes.len(), 40);
    let asked: Vec<(String, String)> = scenes
        .iter()
        .flat_map(|sc| sc["questions"].as_array().unwrap().clone())
        .map(|q| {
            (
                q["question"].as_str().unwrap().into(),
                q["answer"].as_str().unwrap().into(),
            )
        })
        .collect();

    let vqa_out = tmp.path().join("vqa-run");
    let vqa = data.join("vqa");
    run(&[
        "eval",
        "vqa",
        "--data",
        s(&vqa),
        "-n",
        "2",
        "--out",
        s(&vqa_out),
        "--max-tokens",
        "8",
    ]);
    let records = lines(&vqa_out.join("samples.jsonl"));
    assert_eq!(records.len(), 2);
    for r in &records {
        let pair = (
            r["question"].as_str().unwrap().into(),
            r["gt_answer"].as_str().unwrap().into(),
        );
        assert!(
            asked.contains(&pair),
            "{pair:?} is not one of the scenes' questions"
        );
    }

    let coco_out = tmp.path().join("coco-run");
    let coco = data.join("coco");
    run(&[
        "eval",
        "coco",
        "--data",
        s(&coco),
        "-n",
        "2",
        "--out",
        s(&coco_out),
        "--max-tokens",
        "24",
    ]);
    let records = lines(&coco_out.join("samples.jsonl"));
    assert_eq!(records.len(), 2);
    for r in &records {
        let i = r["stream_index"].as_u64().unwrap() as usize;
        let shapes: Vec<&str> = scenes[i]["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["shape"].as_str().unwrap())
            .collect();
        let gt: Vec<&str> = r["ground_truth"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["class_name"].as_str().unwrap())
            .collect();
        assert_eq!(
            gt, shapes,
            "scene {i}: the COCO shard's classes are the scene's shapes"
        );
    }
}

#[test]
fn a_run_killed_mid_way_and_resumed_ends_with_the_uninterrupted_runs_samples_file() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vqav2-small");
    vqa_fixture(&data);
    let n = "6";
    let whole = tmp.path().join("whole");
    run(&[
        "eval",
        "vqa",
        "--data",
        s(&data),
        "-n",
        n,
        "--out",
        s(&whole),
    ]);

    let killed = tmp.path().join("killed");
    let mut child = vlmbench(&[
        "eval",
        "vqa",
        "--data",
        s(&data),
        "-n",
        n,
        "--out",
        s(&killed),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Wait for the first finished sample, then SIGKILL (Child::kill) mid-run.
    let samples = killed.join("samples.jsonl");
    loop {
        if std::fs::read_to_string(&samples).is_ok_and(|t| t.lines().count() >= 1) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before any sample was written"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = std::fs::read_to_string(&samples).unwrap().lines().count();
    assert!(
        at_kill < 6,
        "the run finished before it was killed: nothing was interrupted"
    );

    run(&[
        "eval",
        "vqa",
        "--data",
        s(&data),
        "-n",
        n,
        "--out",
        s(&killed),
        "--resume",
    ]);
    assert_eq!(
        std::fs::read(&samples).unwrap(),
        std::fs::read(whole.join("samples.jsonl")).unwrap()
    );
    assert_eq!(
        lines(&killed.join("timings.jsonl"))
            .iter()
            .map(|t| t["sample"].as_u64().unwrap())
            .max(),
        Some(5)
    );
}

#[test]
fn bad_data_gets_one_clear_error_line() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = vlmbench(&[
        "eval",
        "coco",
        "--data",
        s(&empty),
        "--out",
        s(&tmp.path().join("r")),
    ])
    .output()
    .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.trim().lines().count() == 1 && err.contains("holds no parquet files for split \"val\""),
        "{err}"
    );

    let not_parquet = tmp.path().join("junk");
    std::fs::create_dir_all(not_parquet.join("data")).unwrap();
    std::fs::write(
        not_parquet.join("data/validation-00000-of-00001.parquet"),
        b"not a parquet file",
    )
    .unwrap();
    let out = vlmbench(&[
        "eval",
        "vqa",
        "--data",
        s(&not_parquet),
        "--out",
        s(&tmp.path().join("r2")),
    ])
    .output()
    .unwrap();
    let err = text(&out.stderr);
    assert!(
        err.trim().lines().count() == 1 && err.contains("is not a readable parquet file"),
        "{err}"
    );

    // VQA data where COCO is expected: the missing column is named.
    let vqa = tmp.path().join("vqa");
    vqa_fixture(&vqa);
    std::fs::rename(
        vqa.join("data/validation-00000-of-00002.parquet"),
        vqa.join("data/val-00000-of-00001.parquet"),
    )
    .unwrap();
    let out = vlmbench(&[
        "eval",
        "coco",
        "--data",
        s(&vqa),
        "--out",
        s(&tmp.path().join("r3")),
    ])
    .output()
    .unwrap();
    let err = text(&out.stderr);
    assert!(
        err.trim().lines().count() == 1
            && (err.contains("no ClassLabel names") || err.contains("has no column")),
        "{err}"
    );

    let neither = vlmbench(&["eval", "vqa"]).output().unwrap();
    assert!(!neither.status.success());
}

#[test]
fn fixtures_written_by_hf_datasets_evaluate_exactly_like_ours() {
    // The `datasets` library's own parquet (its schema, huggingface metadata, pyarrow's encodings)
    // against our writer's: the same rows must give the same samples.jsonl, byte for byte.
    let Some(python) = std::env::var_os("VLMBENCH_REFERENCE_PYTHON") else {
        eprintln!("NOT RUN: set VLMBENCH_REFERENCE_PYTHON (tools/test.sh does) to write fixtures with HF datasets");
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let written = Command::new(python)
        .arg(root.join("tools/reference/write_eval_fixtures.py"))
        .arg(tmp.path().join("hf"))
        .arg(root.join("assets/images"))
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "write_eval_fixtures.py failed: {}",
        text(&written.stderr)
    );
    vqa_fixture(&tmp.path().join("ours/vqav2-small"));
    coco_fixture(&tmp.path().join("ours/coco"));
    for (task, dataset, extra) in [
        ("vqa", "vqav2-small", vec!["-n", "4"]),
        ("coco", "coco", vec!["-n", "3", "--max-tokens", "24"]),
    ] {
        let mut results = Vec::new();
        for writer in ["hf", "ours"] {
            let out_dir = tmp.path().join(format!("run-{task}-{writer}"));
            let data = tmp.path().join(writer).join(dataset);
            let mut args = vec!["eval", task, "--data", s(&data), "--out", s(&out_dir)];
            args.extend(&extra);
            run(&args);
            results.push(std::fs::read(out_dir.join("samples.jsonl")).unwrap());
        }
        assert!(!results[0].is_empty());
        assert_eq!(
            results[0], results[1],
            "{task}: HF-written and our fixtures evaluate differently"
        );
    }
}

#[test]
fn hub_datasets_come_from_the_hf_cache_when_offline() {
    // --hub with HF_HUB_OFFLINE=1: the cached snapshot of merve/vqav2-small (hub cache layout:
    // datasets--merve--vqav2-small/refs/main -> snapshots/<commit>/data/validation-*.parquet).
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = hub.join("datasets--merve--vqav2-small");
    vqa_fixture(&repo.join("snapshots").join(commit));
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let out_dir = tmp.path().join("run");
    let out = vlmbench(&["eval", "vqa", "--hub", "-n", "2", "--out", s(&out_dir)])
        .env("HF_HUB_CACHE", &hub)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<u64> = lines(&out_dir.join("samples.jsonl"))
        .iter()
        .map(|r| r["stream_index"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, vec![10, 29]);
    let run: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["data"], "hub:merve/vqav2-small");

    // Not cached: one line naming the dataset.
    let out = vlmbench(&["eval", "coco", "--hub", "--out", s(&tmp.path().join("r2"))])
        .env("HF_HUB_CACHE", &hub)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        err.trim().lines().count() == 1
            && err.contains("detection-datasets/coco is not in the hub cache"),
        "{err}"
    );
}
