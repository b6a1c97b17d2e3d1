//! Scaling over processes from saved `vlmbench bench -o json` files: each file is one run, on one
//! process (rows without `ranks`) or on `ranks.len()` tensor-parallel processes. Rows are grouped by
//! test and process count; every test measured at two or more process counts gets its tok/s,
//! speedup and ideal linear tok/s at each count, and every process's peak memory. Pure: the charts
//! (src/report/scaling_charts.rs) only draw what this returns.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Result};
use serde::Deserialize;

use super::RankFigures;

/// The fields of a saved [`super::BenchRow`] that scaling needs (the others are ignored, so
/// files from older binaries and newer ones read alike).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SavedBenchRow {
    pub model: String,
    pub device: String,
    #[serde(default)]
    pub dtype: String,
    pub test: String,
    pub tps_mean: f64,
    pub peak_memory_bytes: u64,
    #[serde(default)]
    pub ranks: Option<Vec<RankFigures>>,
}

impl SavedBenchRow {
    /// 1 for a single-process run, the rank count for a tensor-parallel one.
    pub fn processes(&self) -> usize {
        self.ranks.as_ref().map_or(1, Vec::len)
    }

    /// Every process's peak memory, in rank order (the row's own for a single process).
    pub fn peak_memory_per_process(&self) -> Vec<u64> {
        match &self.ranks {
            Some(ranks) => {
                let mut ranks: Vec<&RankFigures> = ranks.iter().collect();
                ranks.sort_by_key(|r| r.rank);
                ranks.iter().map(|r| r.peak_memory_bytes).collect()
            }
            None => vec![self.peak_memory_bytes],
        }
    }
}

/// One `vlmbench bench -o json` file.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchFile {
    pub path: PathBuf,
    pub rows: Vec<SavedBenchRow>,
}

/// One test at one process count.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingPoint {
    pub processes: usize,
    /// The run's tok/s (tensor-parallel ranks work on the same tokens, so this is the group's rate).
    pub tps: f64,
    /// `tps` over the baseline point's.
    pub speedup: f64,
    /// The baseline's tok/s scaled linearly to this process count.
    pub ideal_tps: f64,
    /// Every process's peak memory, rank order.
    pub peak_memory_per_process: Vec<u64>,
    /// The file this point came from (for messages and legends).
    pub file: PathBuf,
}

/// One test measured at several process counts; `points` ascend by process count and the first
/// is the baseline (1 process when a single-process run is among the files).
#[derive(Clone, Debug, PartialEq)]
pub struct TestScaling {
    pub test: String,
    pub points: Vec<ScalingPoint>,
}

/// Groups every file's rows by test and process count, in the order tests first appear. Tests
/// measured at only one process count are left out; two rows of one test at one process count
/// (two files of the same world size, or one file naming a test twice) are an error, since
/// picking one would silently hide the other.
pub fn scaling(files: &[BenchFile]) -> Result<Vec<TestScaling>> {
    let mut tests: Vec<(String, Vec<(&Path, &SavedBenchRow)>)> = Vec::new();
    for file in files {
        for row in &file.rows {
            ensure!(
                row.ranks.as_ref().is_none_or(|r| !r.is_empty()),
                "{}: test {} has an empty ranks list",
                file.path.display(),
                row.test
            );
            match tests.iter_mut().find(|(t, _)| *t == row.test) {
                Some((_, rows)) => rows.push((&file.path, row)),
                None => tests.push((row.test.clone(), vec![(&file.path, row)])),
            }
        }
    }
    let mut out = Vec::new();
    for (test, mut rows) in tests {
        rows.sort_by_key(|(_, row)| row.processes());
        if let Some(pair) = rows
            .windows(2)
            .find(|w| w[0].1.processes() == w[1].1.processes())
        {
            let (a, b) = (pair[0].0, pair[1].0);
            let processes = pair[0].1.processes();
            if a == b {
                bail!(
                    "{} holds test {test} twice at {processes} process(es): keep one row per test",
                    a.display()
                );
            }
            // Bench files from binaries older than per-rank figures lack `ranks`, so their
            // tensor-parallel runs read as single-process ones: say so where that may be the cause.
            let hint = if processes == 1 {
                " (a tensor-parallel run's file without `ranks` counts as 1 process)"
            } else {
                ""
            };
            bail!(
                "{} and {} both hold test {test} at {processes} process(es): chart one run per process count{hint}",
                a.display(),
                b.display()
            );
        }
        if rows.len() < 2 {
            continue;
        }
        let (base_file, base) = rows[0];
        ensure!(
            base.tps_mean.is_finite() && base.tps_mean > 0.0,
            "{}: test {test} has no throughput to scale from (tps_mean {})",
            base_file.display(),
            base.tps_mean
        );
        let points = rows
            .iter()
            .map(|(file, row)| ScalingPoint {
                processes: row.processes(),
                tps: row.tps_mean,
                speedup: row.tps_mean / base.tps_mean,
                ideal_tps: base.tps_mean * row.processes() as f64 / base.processes() as f64,
                peak_memory_per_process: row.peak_memory_per_process(),
                file: file.to_path_buf(),
            })
            .collect();
        out.push(TestScaling { test, points });
    }
    ensure!(
        !out.is_empty(),
        "no test was measured at two or more process counts in {}: give bench files of runs on different numbers of processes",
        files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(test: &str, tps: f64, peak: u64, ranks: Option<&[(f64, u64)]>) -> SavedBenchRow {
        SavedBenchRow {
            model: "gemma-4-31b-random".into(),
            device: "gpu:0 NVIDIA H200".into(),
            dtype: "bfloat16".into(),
            test: test.into(),
            tps_mean: tps,
            peak_memory_bytes: peak,
            ranks: ranks.map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(rank, &(tps_mean, peak_memory_bytes))| RankFigures {
                        rank,
                        tps_mean,
                        peak_memory_bytes,
                    })
                    .collect()
            }),
        }
    }

    fn file(name: &str, rows: Vec<SavedBenchRow>) -> BenchFile {
        BenchFile {
            path: PathBuf::from(name),
            rows,
        }
    }

    #[test]
    fn speedup_and_ideal_line_are_relative_to_the_single_process_run() {
        let single = file(
            "single.json",
            vec![
                row("pp512", 1000.0, 24 << 30, None),
                row("tg128", 60.0, 18 << 30, None),
            ],
        );
        let tp2 = file(
            "rank0.json",
            vec![
                row(
                    "pp512",
                    1650.0,
                    13 << 30,
                    Some(&[(1650.0, 13 << 30), (1649.0, 12 << 30)]),
                ),
                row(
                    "tg128",
                    99.0,
                    10 << 30,
                    Some(&[(99.0, 10 << 30), (98.0, 9 << 30)]),
                ),
            ],
        );
        // The tensor-parallel file first: the points still ascend by process count.
        let s = scaling(&[tp2, single]).unwrap();
        assert_eq!(
            s.iter().map(|t| t.test.as_str()).collect::<Vec<_>>(),
            ["pp512", "tg128"]
        );
        let pp = &s[0].points;
        assert_eq!(pp.iter().map(|p| p.processes).collect::<Vec<_>>(), [1, 2]);
        assert!((pp[1].speedup - 1.65).abs() < 1e-12, "{}", pp[1].speedup);
        assert_eq!(pp[0].speedup, 1.0);
        assert_eq!((pp[0].ideal_tps, pp[1].ideal_tps), (1000.0, 2000.0));
        assert_eq!(pp[1].tps, 1650.0);
        assert_eq!(pp[1].file, PathBuf::from("rank0.json"));
        let tg = &s[1].points;
        assert!((tg[1].speedup - 1.65).abs() < 1e-12);
        assert_eq!(tg[0].peak_memory_per_process, [18 << 30]);
        assert_eq!(tg[1].peak_memory_per_process, [10 << 30, 9 << 30]);
    }

    #[test]
    fn a_test_missing_from_one_file_is_skipped() {
        let single = file(
            "single.json",
            vec![row("pp512", 1000.0, 1, None), row("tg128", 60.0, 1, None)],
        );
        let tp2 = file(
            "rank0.json",
            vec![row("pp512", 1800.0, 1, Some(&[(1800.0, 1), (1800.0, 1)]))],
        );
        let s = scaling(&[single, tp2]).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].test, "pp512");
        assert!((s[0].points[1].speedup - 1.8).abs() < 1e-12);
    }

    #[test]
    fn the_smallest_process_count_is_the_baseline_when_no_single_process_run_is_given() {
        let tp2 = file(
            "tp2.json",
            vec![row("tg128", 100.0, 1, Some(&[(100.0, 1), (100.0, 1)]))],
        );
        let tp4 = file(
            "tp4.json",
            vec![row("tg128", 150.0, 1, Some(&[(150.0, 1); 4]))],
        );
        let s = scaling(&[tp4, tp2]).unwrap();
        let p = &s[0].points;
        assert_eq!(p.iter().map(|p| p.processes).collect::<Vec<_>>(), [2, 4]);
        assert_eq!((p[1].speedup, p[1].ideal_tps), (1.5, 200.0));
        assert_eq!(p[1].peak_memory_per_process.len(), 4);
    }

    #[test]
    fn two_files_of_one_process_count_and_test_are_an_error_naming_both() {
        // Files from binaries older than per-rank figures have no ranks, so a tensor-parallel
        // rank 0 file looks like a second single-process run: refuse rather than pick one.
        // Two runs of 2 processes are refused alike, without the hint about `ranks`.
        let a = file("single.json", vec![row("pp512", 1000.0, 1, None)]);
        let b = file("old-rank0.json", vec![row("pp512", 1650.0, 1, None)]);
        let err = scaling(&[a, b]).unwrap_err().to_string();
        assert!(
            err.contains("single.json and old-rank0.json both hold test pp512 at 1 process(es)"),
            "{err}"
        );
        assert!(err.contains("without `ranks` counts as 1 process"), "{err}");
        let tp = |name: &str| {
            file(
                name,
                vec![row("pp512", 1650.0, 1, Some(&[(1650.0, 1), (1650.0, 1)]))],
            )
        };
        let err = scaling(&[tp("a.json"), tp("b.json")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.json and b.json both hold test pp512 at 2 process(es)")
                && !err.contains("ranks"),
            "{err}"
        );
    }

    #[test]
    fn one_file_naming_a_test_twice_is_an_error() {
        let a = file(
            "twice.json",
            vec![row("tg128", 60.0, 1, None), row("tg128", 61.0, 1, None)],
        );
        let b = file(
            "tp2.json",
            vec![row("tg128", 100.0, 1, Some(&[(100.0, 1), (100.0, 1)]))],
        );
        let err = scaling(&[a, b]).unwrap_err().to_string();
        assert!(err.contains("twice.json holds test tg128 twice"), "{err}");
    }

    #[test]
    fn nothing_measured_at_two_process_counts_is_an_error_not_an_empty_chart() {
        let a = file("single.json", vec![row("pp512", 1000.0, 1, None)]);
        let b = file(
            "rank0.json",
            vec![row("tg128", 100.0, 1, Some(&[(100.0, 1), (100.0, 1)]))],
        );
        let err = scaling(&[a, b]).unwrap_err().to_string();
        assert!(
            err.contains(
                "no test was measured at two or more process counts in single.json, rank0.json"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_zero_baseline_or_empty_ranks_are_errors_not_infinite_speedups() {
        let zero = file("zero.json", vec![row("pp512", 0.0, 1, None)]);
        let tp2 = file(
            "tp2.json",
            vec![row("pp512", 100.0, 1, Some(&[(100.0, 1), (100.0, 1)]))],
        );
        let err = scaling(&[zero, tp2.clone()]).unwrap_err().to_string();
        assert!(
            err.contains("zero.json: test pp512 has no throughput to scale from"),
            "{err}"
        );
        let empty = file("empty.json", vec![row("pp512", 100.0, 1, Some(&[]))]);
        let err = scaling(&[empty, tp2]).unwrap_err().to_string();
        assert!(
            err.contains("empty.json: test pp512 has an empty ranks list"),
            "{err}"
        );
    }

    #[test]
    fn peak_memory_follows_rank_order_whatever_the_saved_order() {
        let mut r = row("pp512", 1.0, 0, Some(&[(1.0, 10), (1.0, 20)]));
        r.ranks.as_mut().unwrap().reverse();
        assert_eq!(r.peak_memory_per_process(), [10, 20]);
        assert_eq!(r.processes(), 2);
    }
}
