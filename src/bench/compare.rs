//! `vlmbench compare A.json B.json`: per-task runtimes side by side with B's speedup over A, and
//! the total, like the Moondream seed's "M2 vs M4" tables.

use anyhow::Result;
use tabled::builder::Builder;
use tabled::settings::Style;

use super::results::ResultsFile;

#[derive(Debug, Clone, PartialEq)]
pub struct ComparedTask {
    pub task: String,
    pub a_s: f64,
    pub b_s: f64,
    /// `a_s / b_s`: how many times faster B is.
    pub speedup: f64,
}

/// Tasks present in both files, in A's order, then the total over them.
pub fn compare(a: &ResultsFile, b: &ResultsFile) -> Result<(Vec<ComparedTask>, ComparedTask)> {
    let rows: Vec<ComparedTask> = a
        .measurements
        .iter()
        .filter_map(|ma| {
            let mb = b.measurements.iter().find(|mb| mb.label == ma.label)?;
            Some(ComparedTask {
                task: ma.label.clone(),
                a_s: ma.total_s,
                b_s: mb.total_s,
                speedup: ratio(ma.total_s, mb.total_s),
            })
        })
        .collect();
    anyhow::ensure!(
        !rows.is_empty(),
        "the two results files share no task labels ({} vs {}): compare runs of the same sweep",
        a.run.label,
        b.run.label
    );
    let (a_total, b_total) = rows
        .iter()
        .fold((0.0, 0.0), |(x, y), r| (x + r.a_s, y + r.b_s));
    let total = ComparedTask {
        task: "Total runtime".into(),
        a_s: a_total,
        b_s: b_total,
        speedup: ratio(a_total, b_total),
    };
    Ok((rows, total))
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

pub fn render(
    a: &ResultsFile,
    b: &ResultsFile,
    rows: &[ComparedTask],
    total: &ComparedTask,
) -> String {
    let mut builder = Builder::default();
    builder.push_record([
        "Task".to_owned(),
        format!("{} runtime (s)", a.run.label),
        format!("{} runtime (s)", b.run.label),
        "Speedup".to_owned(),
    ]);
    for r in rows {
        builder.push_record([
            r.task.clone(),
            format!("{:.2}", r.a_s),
            format!("{:.2}", r.b_s),
            format!("{:.2}x", r.speedup),
        ]);
    }
    builder.push_record([
        format!("**{}**", total.task),
        format!("{:.2}", total.a_s),
        format!("{:.2}", total.b_s),
        format!("**{:.2}x**", total.speedup),
    ]);
    let mut table = builder.build();
    table.with(Style::markdown());
    table.to_string()
}

/// Per task: prefill tok/s, decode tok/s, time to first token and peak memory of both runs, each
/// with B/A (for tok/s above 1 means B is faster; for TTFT and memory below 1 means B is better).
pub fn render_figures(a: &ResultsFile, b: &ResultsFile) -> String {
    let mut builder = Builder::default();
    let (la, lb) = (&a.run.label, &b.run.label);
    builder.push_record([
        "Task".to_owned(),
        format!("prefill tok/s {la}"),
        format!("prefill tok/s {lb}"),
        "B/A".to_owned(),
        format!("decode tok/s {la}"),
        format!("decode tok/s {lb}"),
        "B/A".to_owned(),
        format!("TTFT s {la}"),
        format!("TTFT s {lb}"),
        "B/A".to_owned(),
        format!("peak GB {la}"),
        format!("peak GB {lb}"),
        "B/A".to_owned(),
    ]);
    for ma in &a.measurements {
        let Some(mb) = b.measurements.iter().find(|mb| mb.label == ma.label) else {
            continue;
        };
        let gb = |bytes: u64| bytes as f64 / 1e9;
        let mut record = vec![ma.label.clone()];
        for (x, y, precision) in [
            (ma.prefill_tps, mb.prefill_tps, 1),
            (ma.decode_tps, mb.decode_tps, 1),
            (ma.time_to_first_token_s, mb.time_to_first_token_s, 3),
            (gb(ma.peak_memory_bytes), gb(mb.peak_memory_bytes), 3),
        ] {
            record.push(format!("{x:.precision$}"));
            record.push(format!("{y:.precision$}"));
            record.push(format!("{:.2}", ratio(y, x)));
        }
        builder.push_record(record);
    }
    let mut table = builder.build();
    table.with(Style::markdown());
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::results::{Measurement, ResultKind, RunInfo};

    fn file(label: &str, times: &[(&str, f64)]) -> ResultsFile {
        let m = |task: &str, t: f64| Measurement {
            label: task.into(),
            has_image: false,
            prompt_tokens: 10,
            gen_tokens: 10,
            prefill_tps: 1.0,
            decode_tps: 1.0,
            time_to_first_token_s: 0.1,
            vision_encode_s: 0.0,
            total_s: t,
            peak_memory_bytes: 0,
            reference_prompt_tps: 1.0,
            reference_generation_tps: 1.0,
            stream_first_token_s: None,
            stream_avg_token_s: None,
            answer: None,
        };
        ResultsFile {
            kind: ResultKind::PromptTable,
            run: RunInfo {
                label: label.into(),
                model: "m".into(),
                backend: "cpu".into(),
                device: "cpu:0".into(),
                dtype: "float32".into(),
                mlx_version: "0.32.2".into(),
                vlmbench_version: "0.1.0".into(),
                kernels: "gemv".into(),
                prefill: "mlx".into(),
            },
            measurements: times.iter().map(|&(task, t)| m(task, t)).collect(),
        }
    }

    #[test]
    fn speedup_is_a_over_b_per_task_and_in_total() {
        let a = file(
            "M2",
            &[
                ("Short caption", 13.37),
                ("Pointing", 12.67),
                ("only in A", 1.0),
            ],
        );
        let b = file("M4", &[("Pointing", 3.36), ("Short caption", 4.44)]);
        let (rows, total) = compare(&a, &b).unwrap();
        assert_eq!(rows.len(), 2, "tasks in both files only");
        assert_eq!(rows[0].task, "Short caption");
        assert!((rows[0].speedup - 13.37 / 4.44).abs() < 1e-12);
        assert!((total.a_s - 26.04).abs() < 1e-9 && (total.b_s - 7.80).abs() < 1e-9);
        let table = render(&a, &b, &rows, &total);
        assert!(
            table.contains("M2 runtime (s)") && table.contains("**3.34x**"),
            "{table}"
        );
    }

    #[test]
    fn figures_table_gives_b_over_a_for_each_figure() {
        let a = file("mlx-vlm", &[("pp64", 1.0)]);
        let mut b = file("vlmbench", &[("pp64", 0.5)]);
        b.measurements[0].prefill_tps = 3.0;
        b.measurements[0].decode_tps = 1.5;
        let table = render_figures(&a, &b);
        let row = table.lines().find(|l| l.contains("pp64")).unwrap();
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[4], "3.00", "prefill B/A: {row}");
        assert_eq!(cells[7], "1.50", "decode B/A: {row}");
        assert_eq!(cells[10], "1.00", "TTFT B/A: {row}");
    }

    #[test]
    fn files_without_common_tasks_are_an_error() {
        let err = compare(&file("a", &[("x", 1.0)]), &file("b", &[("y", 1.0)])).unwrap_err();
        assert!(err.to_string().contains("share no task labels"));
    }
}
