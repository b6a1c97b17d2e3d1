//! The bridge from the notebook's evaluation sections to `src/eval`: each runs as `vlmbench eval`
//! would, into OUT/vqa or OUT/coco (per-sample lines, resumable), and its summary becomes the section.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::options::{limit, Context as NotebookContext};
use super::record::Section;
use super::EvalSources;
use crate::eval::run_log::{SAMPLES_FILE, SUMMARY_FILE};
use crate::eval::session::{eval_coco_on, eval_vqa_on, DataSource, EvalOptions, Host};
use crate::tasks::prompts::{COCO_DETECT_MAX_TOKENS, VQA_MAX_TOKENS};

/// Where the VQAv2 data comes from, or None when the section must be skipped.
pub(super) fn vqa_source(sources: &EvalSources) -> Result<Option<DataSource>> {
    Ok(source(sources.vqa_data.as_deref(), sources.hub))
}

pub(super) fn coco_source(sources: &EvalSources) -> Result<Option<DataSource>> {
    Ok(source(sources.coco_data.as_deref(), sources.hub))
}

fn source(dir: Option<&Path>, hub: bool) -> Option<DataSource> {
    match (dir, hub) {
        (Some(d), _) => Some(DataSource::Dir(d.to_path_buf())),
        (None, true) => Some(DataSource::Hub),
        (None, false) => None,
    }
}

fn options(
    ctx: &NotebookContext,
    data: DataSource,
    n: usize,
    name: &str,
    max_tokens: usize,
) -> Result<EvalOptions> {
    let out = ctx.out.join(name);
    // A notebook run that is not resumed starts its evaluations afresh.
    if !ctx.options.resume && out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    Ok(EvalOptions {
        model: ctx.options.model.clone(),
        dtype: ctx.options.dtype,
        data,
        n,
        out,
        resume: ctx.options.resume,
        max_tokens: limit(ctx.options, max_tokens),
        distributed: None,
    })
}

/// The evaluations run on the notebook's own model (one copy in memory; on a tensor-parallel
/// group, every rank's share), silently on the non-zero ranks.
fn host<'a>(ctx: &'a NotebookContext) -> Host<'a> {
    Host {
        model: Some(&ctx.resolved.model),
        quiet: ctx.quiet,
    }
}

fn read_summary(path: &Path) -> Result<Value> {
    let file: Value = crate::json_file::load(path, "an evaluation summary")?;
    Ok(file["summary"].clone())
}

pub(super) fn vqa(ctx: &NotebookContext, data: DataSource, n: usize) -> Result<Section> {
    let o = options(ctx, data, n, "vqa", VQA_MAX_TOKENS)?;
    let summary_path = eval_vqa_on(&o, host(ctx))?;
    let mut summary = read_summary(&summary_path)?;
    let records = read_samples(&o.out.join(SAMPLES_FILE))?;
    let example = |r: &Value| json!({"question": r["question"], "prediction": r["prediction"], "gt_answer": r["gt_answer"]});
    let correct = |r: &&Value| r["accuracy"].as_f64() == Some(1.0);
    summary["correct_examples"] = records
        .iter()
        .filter(correct)
        .take(5)
        .map(example)
        .collect();
    summary["incorrect_examples"] = records
        .iter()
        .filter(|r| !correct(r))
        .take(5)
        .map(example)
        .collect();
    Ok(Section::done(
        summary,
        vec![format!("vqa/{SAMPLES_FILE}"), format!("vqa/{SUMMARY_FILE}")],
    ))
}

pub(super) fn coco(ctx: &NotebookContext, data: DataSource, n: usize) -> Result<Section> {
    let o = options(ctx, data, n, "coco", COCO_DETECT_MAX_TOKENS)?;
    let summary_path = eval_coco_on(&o, host(ctx))?;
    let summary = read_summary(&summary_path)?;
    let mut files = vec![
        format!("coco/{SAMPLES_FILE}"),
        format!("coco/{SUMMARY_FILE}"),
    ];
    for figure in [
        "overlays.png",
        "localization_quality.png",
        "best_vs_worst.png",
    ] {
        if o.out.join("figures").join(figure).exists() {
            files.push(format!("coco/figures/{figure}"));
        }
    }
    Ok(Section::done(summary, files))
}

fn read_samples(path: &Path) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .with_context(|| format!("{} holds a line that is not JSON", path.display()))
        })
        .collect()
}
