//! report.md, rendered from the notebook record alone, so its numbers are the record's numbers.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::record::{NotebookRecord, Section, SectionStatus};

pub const REPORT_FILE: &str = "report.md";

/// The sections in the notebook's order, with their headings.
pub const SECTIONS: [(&str, &str); 8] = [
    ("load", "Model"),
    ("scene", "Part 1 — Scene understanding"),
    ("chart", "Part 1 — Chart analysis"),
    ("segment", "Part 1 — Segmentation"),
    ("vqa", "Part 2 — VQA: VQAv2 subset"),
    ("coco", "Part 2 — Class-aware localization on COCO"),
    ("throughput", "Part 3 — Prompt length vs throughput"),
    ("summary", "Summary"),
];

pub fn write(record: &NotebookRecord, out: &Path) -> Result<()> {
    let path = out.join(REPORT_FILE);
    std::fs::write(&path, render(record))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A JSON number or string as the report shows it (numbers with up to 3 decimals, as stored).
pub fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format_float(f),
            _ => n.to_string(),
        },
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

/// Three decimals, trailing zeros dropped: what the JSON holds, readably.
pub fn format_float(f: f64) -> String {
    let s = format!("{f:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

pub fn render(record: &NotebookRecord) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Gemma 4 notebook, reproduced by vlmbench\n");
    let _ = writeln!(
        md,
        "Model `{}` on {} ({}, {}), MLX {}, vlmbench {}{}.{}\n",
        record.model,
        record.run.device,
        record.run.backend,
        record.run.dtype,
        record.run.mlx_version,
        record.run.vlmbench_version,
        if record.run.kernels.is_empty() {
            String::new()
        } else {
            format!(
                " (kernels {}, prefill {})",
                record.run.kernels, record.run.prefill
            )
        },
        if record.quick {
            " **Quick mode**: token limits and sample counts cut down; figures only check the pipeline."
        } else {
            ""
        }
    );
    if record.random_weights {
        let _ = writeln!(md, "> **Random weights.** This run used the built-in tiny checkpoint: answers are gibberish and timings say nothing about real models. Pass `--model mlx-community/gemma-4-31b-it-4bit` for the real thing.\n");
    }
    for (name, heading) in SECTIONS {
        let _ = writeln!(md, "## {heading}\n");
        match record.sections.get(name) {
            None => {
                let _ = writeln!(md, "_Not run yet._\n");
            }
            Some(Section {
                status: SectionStatus::Skipped { reason },
                ..
            }) => {
                let _ = writeln!(md, "_Skipped: {reason}_\n");
            }
            Some(section) => render_section(&mut md, name, section),
        }
    }
    md
}

fn render_section(md: &mut String, name: &str, section: &Section) {
    let d = &section.data;
    match name {
        "load" => {
            let _ = writeln!(
                md,
                "Model loaded in {} s. Model type: {}.\n",
                show(&d["load_s"]),
                show(&d["model_type"])
            );
        }
        "scene" | "chart" | "segment" => {
            if let Some(image) = d.get("image") {
                let _ = writeln!(md, "Image: {}\n", show(image));
            }
            let _ = writeln!(md, "Prompt:\n\n```text\n{}\n```\n", show(&d["prompt"]));
            let _ = writeln!(
                md,
                "**{} s | {} tok | {} tok/s** (prompt {} tokens at {} tok/s, limit {} tokens)\n",
                show(&d["time_s"]),
                show(&d["gen_tokens"]),
                show(&d["gen_tps"]),
                show(&d["prompt_tokens"]),
                show(&d["prompt_tps"]),
                show(&d["max_tokens"])
            );
            let _ = writeln!(md, "Answer:\n\n```text\n{}\n```\n", show(&d["response"]));
            if name == "segment" {
                match d.get("parse_error") {
                    Some(e) => {
                        let _ = writeln!(md, "Parse error: {}\n", show(e));
                    }
                    None => {
                        let _ = writeln!(
                            md,
                            "{} points — {}\n",
                            show(&d["points"]),
                            show(&d["label"])
                        );
                    }
                }
            }
        }
        "throughput" | "summary" => {
            if let Some(image) = d.get("image") {
                let _ = writeln!(md, "Image prompts use {}.\n", show(image));
            }
            let columns: &[&str] = if name == "summary" {
                &["Metric", "Value"]
            } else {
                &THROUGHPUT_COLUMNS
            };
            table(
                md,
                columns,
                d["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]),
            );
        }
        _ => render_eval(md, name, d),
    }
    for file in &section.files {
        if file.ends_with(".png") {
            let _ = writeln!(md, "![{file}]({file})\n");
        } else {
            let _ = writeln!(md, "Data: [{file}]({file})\n");
        }
    }
}

/// A markdown table of `columns` from rows of JSON objects.
pub fn table(md: &mut String, columns: &[&str], rows: &[Value]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "| {} |", columns.join(" | "));
    let _ = writeln!(
        md,
        "|{}|",
        columns.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| show(&row[*c]).replace('|', "\\|"))
            .collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md.push('\n');
}

/// The notebook's throughput table columns.
pub const THROUGHPUT_COLUMNS: [&str; 7] = [
    "Test",
    "Prompt tokens",
    "Gen tokens",
    "Prompt tok/s",
    "Gen tok/s",
    "Time (s)",
    "Peak mem (GB)",
];

pub(super) fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or("—".into(), |f| format!("{:.1}%", f * 100.0))
}

pub(super) fn two(v: &Value) -> String {
    v.as_f64().map_or("—".into(), |f| format!("{f:.2}"))
}

/// The evaluation sections in report.md: the notebook's printed summary lines and examples.
fn render_eval(md: &mut String, name: &str, d: &Value) {
    match name {
        "vqa" => {
            let _ = writeln!(
                md,
                "VQA Accuracy: {} ({} samples, {} correct). Avg time per question: {} s. Avg generation speed: {} tok/s.\n",
                percent(&d["accuracy"]),
                show(&d["n_samples"]),
                show(&d["n_correct"]),
                show(&d["avg_time_s"]),
                show(&d["avg_gen_tps"])
            );
            for (title, key) in [
                ("Sample correct predictions", "correct_examples"),
                ("Sample incorrect predictions", "incorrect_examples"),
            ] {
                let examples = d[key].as_array().map(Vec::as_slice).unwrap_or(&[]);
                if examples.is_empty() {
                    continue;
                }
                let _ = writeln!(md, "**{title}**\n");
                for e in examples {
                    let _ = writeln!(
                        md,
                        "- Q: {} — Pred: {} | GT: {}",
                        show(&e["question"]),
                        show(&e["prediction"]),
                        show(&e["gt_answer"])
                    );
                }
                md.push('\n');
            }
        }
        "coco" => {
            let _ = writeln!(
                md,
                "{} images, GT boxes >= 1024 px².\n\n- Coarse P/R/F1 @0.3: {} / {} / {}\n- Strict P/R/F1 @0.5: {} / {} / {}\n- Mean strict TP IoU: {}\n- Predictions by status: TP={}, near={}, class mismatch={}, FP={}\n- Avg time/image: {} s\n",
                show(&d["n_images"]),
                two(&d["precision"]),
                two(&d["recall"]),
                two(&d["f1"]),
                two(&d["strict_precision"]),
                two(&d["strict_recall"]),
                two(&d["strict_f1"]),
                two(&d["mean_tp_iou"]),
                show(&d["status_totals"][0]),
                show(&d["status_totals"][1]),
                show(&d["status_totals"][2]),
                show(&d["status_totals"][3]),
                d["avg_time_s"].as_f64().map_or("—".into(), format_float),
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_show_as_stored_to_three_decimals() {
        assert_eq!(show(&json!(17.6)), "17.6");
        assert_eq!(show(&json!(0.123456)), "0.123");
        assert_eq!(show(&json!(54)), "54");
        assert_eq!(show(&json!(2.0)), "2");
        assert_eq!(show(&json!("x")), "x");
    }

    #[test]
    fn tables_follow_the_given_columns_and_escape_pipes() {
        let mut md = String::new();
        table(
            &mut md,
            &["Test", "Gen tok/s"],
            &[json!({"Gen tok/s": 1.5, "Test": "a|b"})],
        );
        assert_eq!(md, "| Test | Gen tok/s |\n|---|---|\n| a\\|b | 1.5 |\n\n");
    }
}
