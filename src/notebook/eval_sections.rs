//! The notebook's evaluation sections (VQAv2, COCO), their summary rows and the summary chart.

use anyhow::Result;
use plotters::style::RGBColor;
use serde_json::{json, Value};

use super::options::Context;
use super::record::{NotebookRecord, Section};
use super::report::{percent, show, two};
use crate::report::eval_charts::{quantitative_summary, BarPanel};

/// Samples per evaluation: the notebook's, or a handful in `--quick` mode.
const VQA_SAMPLES: (usize, usize) = (50, 3);
const COCO_SAMPLES: (usize, usize) = (20, 2);

fn samples(ctx: &Context, (full, quick): (usize, usize)) -> usize {
    if ctx.options.quick {
        quick
    } else {
        full
    }
}

pub(super) fn vqa_section(ctx: &Context, _: &NotebookRecord) -> Result<Section> {
    let n = samples(ctx, VQA_SAMPLES);
    let Some(source) = super::eval_run::vqa_source(&ctx.options.eval)? else {
        return Ok(Section::skipped(
            "no VQAv2 data: pass --vqa-data DIR (a local copy of merve/vqav2-small) or --hub with network access",
        ));
    };
    super::eval_run::vqa(ctx, source, n)
}

pub(super) fn coco_section(ctx: &Context, _: &NotebookRecord) -> Result<Section> {
    let n = samples(ctx, COCO_SAMPLES);
    let Some(source) = super::eval_run::coco_source(&ctx.options.eval)? else {
        return Ok(Section::skipped(
            "no COCO data: pass --coco-data DIR (a local copy of detection-datasets/coco) or --hub with network access",
        ));
    };
    super::eval_run::coco(ctx, source, n)
}

/// The notebook's summary rows for the evaluations that ran.
pub(super) fn summary_rows(record: &NotebookRecord, rows: &mut Vec<(&'static str, Value)>) {
    if let Some(vqa) = record.section("vqa") {
        let d = &vqa.data;
        rows.push((
            "VQA Accuracy (VQAv2, exact match)",
            json!(format!(
                "{} (n={})",
                percent(&d["accuracy"]),
                show(&d["n_samples"])
            )),
        ));
    }
    if let Some(coco) = record.section("coco") {
        let d = &coco.data;
        let n = show(&d["n_images"]);
        rows.push((
            "Localization Precision @0.3 (COCO)",
            json!(format!("{} (n={n})", two(&d["precision"]))),
        ));
        rows.push((
            "Localization Recall @0.3 (COCO)",
            json!(format!("{} (n={n})", two(&d["recall"]))),
        ));
        rows.push((
            "Strict Recall @0.5 (COCO)",
            json!(format!("{} (n={n})", two(&d["strict_recall"]))),
        ));
        rows.push((
            "Mean strict TP IoU (COCO)",
            json!(format!("{} (n={n})", two(&d["mean_tp_iou"]))),
        ));
    }
}

/// The notebook's quantitative summary figure: VQA accuracy, and COCO precision, recall, strict
/// recall and mean TP IoU. None when neither evaluation ran.
pub(super) fn summary_chart(ctx: &Context, record: &NotebookRecord) -> Result<Option<String>> {
    let vqa = record
        .section("vqa")
        .and_then(|s| s.data["accuracy"].as_f64());
    let coco = record.section("coco").map(|s| {
        ["precision", "recall", "strict_recall", "mean_tp_iou"]
            .map(|k| s.data[k].as_f64().unwrap_or(0.0))
    });
    if vqa.is_none() && coco.is_none() {
        return Ok(None);
    }
    let count = |section: &str, key: &str| {
        record
            .section(section)
            .map_or("0".into(), |s| show(&s.data[key]))
    };
    let vqa = BarPanel {
        caption: format!("VQAv2 ({} samples)", count("vqa", "n_samples")),
        bars: vqa
            .map(|a| vec![("VQA Accuracy", a, RGBColor(0x2e, 0xcc, 0x71))])
            .unwrap_or_default(),
    };
    let coco = BarPanel {
        caption: format!(
            "COCO class-aware localization ({} images)",
            count("coco", "n_images")
        ),
        bars: coco
            .map(|[p, r, sr, iou]| {
                vec![
                    ("Precision @0.3", p, RGBColor(0x34, 0x98, 0xdb)),
                    ("Recall @0.3", r, RGBColor(0xe7, 0x4c, 0x3c)),
                    ("Strict Recall @0.5", sr, RGBColor(0x9b, 0x59, 0xb6)),
                    ("Mean TP IoU", iou, RGBColor(0xf3, 0x9c, 0x12)),
                ]
            })
            .unwrap_or_default(),
    };
    let file = "quantitative_summary.png";
    let title = format!("{} — quantitative results", record.model);
    quantitative_summary(&ctx.out.join(file), &title, &vqa, &coco)?;
    Ok(Some(file.to_string()))
}
