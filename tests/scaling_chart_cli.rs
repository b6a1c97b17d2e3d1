//! `vlmbench chart` on `vlmbench bench -o json` files as a user makes them: the tiny checkpoint
//! benched by one process and by two tensor-parallel ranks of MLX's ring backend on loopback, then
//! both files charted into scaling.png and scaling_memory.png. Plus the one-line errors for bench
//! files that cannot be charted together.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use vlm_models::distributed::loopback::{run_ranks, write_loopback_hostfile};

#[allow(dead_code)] // each test crate uses part of the shared support
mod common;
use common::cli::text;

fn vlmbench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vlmbench"));
    // No rank variables inherited from whoever runs the tests.
    c.env_remove("MLX_RANK").env_remove("MLX_HOSTFILE");
    c
}

const BENCH: [&str; 13] = [
    "bench",
    "-p",
    "16",
    "-n",
    "4",
    "-r",
    "1",
    "--no-warmup",
    "--dtype",
    "float32",
    "-o",
    "json",
    "--model",
];

fn chart(files: &[&Path], out: &Path) -> Output {
    let mut c = vlmbench();
    c.arg("chart").args(files).arg("--out-dir").arg(out);
    c.output().unwrap()
}

fn assert_one_line_error(out: &Output, want: &str) {
    let line = common::cli::only_an_error_line(out);
    assert!(line.contains(want), "expected {want:?} in: {line}");
}

#[test]
fn one_process_and_two_ring_ranks_chart_as_scaling_and_per_rank_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    let made = vlmbench()
        .args(["make-tiny", model.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));

    let single = vlmbench().args(BENCH).arg(&model).output().unwrap();
    assert!(single.status.success(), "{}", text(&single.stderr));
    let single_json = tmp.path().join("single.json");
    std::fs::write(&single_json, &single.stdout).unwrap();

    let hostfile = tmp.path().join("hosts.json");
    write_loopback_hostfile(&hostfile, 2).unwrap();
    let ranks = (0..2)
        .map(|_| {
            let mut c = vlmbench();
            c.args(BENCH)
                .arg(&model)
                .args(["--tensor-parallel", "ring"]);
            c
        })
        .collect();
    let outputs =
        run_ranks(ranks, &hostfile, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    let rank0_json = tmp.path().join("rank0.json");
    std::fs::write(&rank0_json, &outputs[0].stdout).unwrap();

    // The tensor-parallel file first: the order of the files does not matter.
    let charts = tmp.path().join("charts");
    let out = chart(&[&rank0_json, &single_json], &charts);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    let want = [
        charts.join("scaling.png"),
        charts.join("scaling_memory.png"),
    ];
    assert_eq!(
        listed,
        want.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    );
    // Both tests (pp16, tg4) were measured at 1 and 2 processes: one 600 px panel each.
    for png in &want {
        let img = image::open(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert_eq!(
            (img.width(), img.height()),
            (1200, 540),
            "{}",
            png.display()
        );
        let colours: std::collections::HashSet<[u8; 3]> =
            img.to_rgb8().pixels().map(|p| p.0).collect();
        assert!(colours.len() > 20, "{} looks blank", png.display());
    }

    // The same run twice is refused rather than one of them picked.
    let again = tmp.path().join("again.json");
    std::fs::copy(&single_json, &again).unwrap();
    assert_one_line_error(
        &chart(&[&single_json, &again, &rank0_json], &charts),
        "both hold test pp16 at 1 process(es)",
    );
}

#[test]
fn bench_files_without_two_process_counts_or_of_another_shape_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let row = |test: &str| {
        format!(
            r#"{{"model": "m", "device": "cpu:0", "dtype": "float32", "test": "{test}", "tps_mean": 10.0, "peak_memory_bytes": 1024}}"#
        )
    };
    let a = tmp.path().join("a.json");
    std::fs::write(&a, format!("[{}]", row("pp16"))).unwrap();
    let b = tmp.path().join("b.json");
    let ranks = r#"[{"rank": 0, "tps_mean": 15.0, "peak_memory_bytes": 512}, {"rank": 1, "tps_mean": 15.0, "peak_memory_bytes": 512}]"#;
    std::fs::write(
        &b,
        format!(
            "[{}]",
            row("tg4").replace("}", &format!(r#", "ranks": {ranks}}}"#))
        ),
    )
    .unwrap();
    let charts = tmp.path().join("charts");
    assert_one_line_error(
        &chart(&[&a, &b], &charts),
        "no test was measured at two or more process counts",
    );
    assert!(!charts.join("scaling.png").exists());

    let lines = tmp.path().join("rows.jsonl");
    std::fs::write(&lines, format!("{}\n{}\n", row("pp16"), row("tg4"))).unwrap();
    assert_one_line_error(
        &chart(&[&a, &lines], &charts),
        "rows.jsonl is not a vlmbench results file (sweep, moondream-bench) or bench JSON",
    );
}
