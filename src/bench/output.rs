//! Bench results as markdown (llama-bench's table), CSV, a JSON array, or JSON lines.

use std::io::Write;
use std::str::FromStr;

use anyhow::Result;
use tabled::settings::Style;
use tabled::{Table, Tabled};

use super::BenchRow;
use crate::report::human_bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Md,
    Csv,
    Json,
    Jsonl,
}

impl FromStr for OutputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "md" => Ok(OutputFormat::Md),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            "jsonl" => Ok(OutputFormat::Jsonl),
            _ => Err(format!(
                "unknown output format {s:?}: use md, csv, json or jsonl"
            )),
        }
    }
}

#[derive(Tabled)]
struct MdRow {
    model: String,
    size: String,
    backend: String,
    dtype: String,
    test: String,
    #[tabled(rename = "t/s")]
    tps: String,
    #[tabled(rename = "ttft s")]
    ttft: String,
    #[tabled(rename = "peak mem")]
    peak: String,
}

fn md_row(r: &BenchRow) -> MdRow {
    MdRow {
        model: r.model.clone(),
        size: human_bytes(r.model_size_bytes),
        backend: r.backend.to_owned(),
        dtype: r.dtype.to_owned(),
        test: r.test.clone(),
        tps: format!("{:.2} ± {:.2}", r.tps_mean, r.tps_sd),
        ttft: r
            .ttft_s_mean
            .map(|t| format!("{t:.3}"))
            .unwrap_or_else(|| "-".into()),
        peak: human_bytes(r.peak_memory_bytes),
    }
}

const CSV_HEADER: &str = "model,model_size_bytes,backend,device,dtype,test,n_prompt,n_gen,tps_mean,tps_sd,ttft_s_mean,peak_memory_bytes,mlx_version,kernels,prefill";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_line(r: &BenchRow) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{:.4},{:.4},{},{},{},{},{}",
        csv_field(&r.model),
        r.model_size_bytes,
        r.backend,
        csv_field(&r.device),
        r.dtype,
        r.test,
        r.n_prompt,
        r.n_gen,
        r.tps_mean,
        r.tps_sd,
        r.ttft_s_mean.map(|t| format!("{t:.4}")).unwrap_or_default(),
        r.peak_memory_bytes,
        r.mlx_version,
        r.kernels,
        r.prefill
    )
}

/// Writes all rows at once (md, csv, json). For jsonl use [`write_jsonl_row`] as rows arrive.
pub fn write_rows(out: &mut impl Write, format: OutputFormat, rows: &[BenchRow]) -> Result<()> {
    match format {
        OutputFormat::Md => {
            let mut table = Table::new(rows.iter().map(md_row));
            table.with(Style::markdown());
            writeln!(out, "{table}")?;
        }
        OutputFormat::Csv => {
            writeln!(out, "{CSV_HEADER}")?;
            for r in rows {
                writeln!(out, "{}", csv_line(r))?;
            }
        }
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        OutputFormat::Jsonl => {
            for r in rows {
                write_jsonl_row(out, r)?;
            }
        }
    }
    Ok(())
}

pub fn write_jsonl_row(out: &mut impl Write, row: &BenchRow) -> Result<()> {
    writeln!(out, "{}", serde_json::to_string(row)?)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::row_for_tests;

    fn render(format: OutputFormat) -> String {
        let rows = vec![
            row_for_tests("pp512", vec![100.0, 110.0]),
            row_for_tests("tg128", vec![20.0]),
        ];
        let mut buf = Vec::new();
        write_rows(&mut buf, format, &rows).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn markdown_has_llama_bench_columns_and_mean_sd() {
        let md = render(OutputFormat::Md);
        let lines: Vec<&str> = md.lines().collect();
        assert!(
            lines[0].contains("| test") && lines[0].contains("t/s"),
            "{md}"
        );
        assert!(md.contains("105.00 ± 7.07"), "{md}");
        assert!(md.contains("20.00 ± 0.00"), "{md}");
        assert_eq!(lines.len(), 4, "header, rule, two rows: {md}");
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_row() {
        let csv = render(OutputFormat::Csv);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("tiny,1048576,cpu,cpu:0,float32,pp512,512,0,105.0000,"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with(",0.32.2,gemv,mlx"), "{}", lines[1]);
    }

    #[test]
    fn json_and_jsonl_parse_back_to_the_same_rows() {
        let array: Vec<serde_json::Value> =
            serde_json::from_str(&render(OutputFormat::Json)).unwrap();
        let lines: Vec<serde_json::Value> = render(OutputFormat::Jsonl)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(array, lines);
        assert_eq!(array[1]["test"], "tg128");
    }

    #[test]
    fn unknown_format_is_named_in_the_error() {
        assert!("xml"
            .parse::<OutputFormat>()
            .unwrap_err()
            .contains("\"xml\""));
    }
}
