//! `vlmbench notebook gemma4`: the Gemma 4 notebook, section by section, into one output directory
//! (notebook.json with every figure, report.md rendered from it, and the PNGs).

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{json, Value};
use vlm_models::image_io::RgbImage;
use vlm_models::sampling::Sampler;

pub use super::options::NotebookOptions;
use super::options::{limit, Context};
use super::record::{NotebookRecord, Section, RECORD_FILE};
use super::report;
use super::research_data;
use crate::bench::results::{Measurement, ResultKind};
use crate::bench::sweep::{self, notebook_prompts, run_info, SweepOptions, SweepPrompt};
use crate::engine::GenerateOptions;
use crate::eval::numpy_rng::RandomState;
use crate::eval::numpy_stats;
use crate::model_source;
use crate::report::charts::{throughput_panels, ThroughputBar};
use crate::report::overlay::{Overlay, FP_RED, POLYGON_RED};
use crate::report::research_chart;
use crate::sample_images::{image_or_sample, ASTRONAUT, CHELSEA};
use crate::tasks::coords::ImageSize;
use crate::tasks::run::{ask, read_answer, Answered, Task, TaskOutput};
use crate::tasks::{prompts, prompts::SEGMENT_NOTEBOOK_TARGET};

/// What a run produced: the record, and whether this process wrote it into `--out` (false on the
/// non-zero ranks of a tensor-parallel group, whose record went to a scratch directory).
pub struct Outcome {
    pub record: NotebookRecord,
    pub wrote_out: bool,
}

/// Runs every section not already done (with `--resume`), saving the record and report after each.
pub fn run(options: &NotebookOptions, mut progress: impl FnMut(&str)) -> Result<Outcome> {
    // Every rank must run the same sections: resuming would let rank 0 skip what the others run.
    anyhow::ensure!(
        !(options.resume && options.tensor_parallel.is_some()),
        "--resume cannot be combined with --tensor-parallel: every rank must run every section (start afresh with another --out)"
    );
    let (resolved, group) = match options.tensor_parallel {
        Some(backend) => {
            let (resolved, group) = model_source::load_tensor_parallel(
                options.model.as_deref(),
                options.dtype,
                backend,
            )?;
            (resolved, Some(group))
        }
        None => (
            model_source::load(options.model.as_deref(), options.dtype)?,
            None,
        ),
    };
    // The non-zero ranks of a tensor-parallel group compute every section in step with rank 0 (their
    // collectives pair up) into a private scratch directory, and say nothing.
    let quiet = group.as_ref().is_some_and(|g| g.rank() != 0);
    let scratch = if quiet {
        Some(ScratchDir::new()?)
    } else {
        None
    };
    let out: &Path = scratch
        .as_ref()
        .map_or(options.out.as_path(), |s| s.0.as_path());
    let mut progress = |line: &str| {
        if !quiet {
            progress(line)
        }
    };
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create output directory {}: {e}", out.display()))?;
    let record_path = out.join(RECORD_FILE);
    let model = &resolved.model;
    let mut record = if options.resume && record_path.exists() {
        let previous = NotebookRecord::load(&record_path)?;
        anyhow::ensure!(
            previous.model == resolved.spec && previous.quick == options.quick,
            "--resume: {} holds a run of {} (quick: {}), not of {} (quick: {}): use another --out",
            record_path.display(),
            previous.model,
            previous.quick,
            resolved.spec,
            options.quick
        );
        previous
    } else {
        NotebookRecord {
            notebook: "gemma4".into(),
            model: resolved.spec.clone(),
            random_weights: resolved.random_weights,
            quick: options.quick,
            run: run_info(model, None)?,
            sections: Default::default(),
        }
    };
    if let (Some(g), false) = (&group, quiet) {
        progress(&format!(
            "tensor parallel: {} ranks ({} backend); the report is rank 0's",
            g.size(),
            g.backend()
        ));
    }

    let ctx = Context {
        options,
        resolved: &resolved,
        out,
        quiet,
    };
    let sections: [(&str, &str, SectionFn); 8] = [
        ("load", "Loading the model", load_section),
        ("scene", "Scene understanding", scene_section),
        ("chart", "Chart analysis", chart_section),
        ("segment", "Prompted polygon segmentation", segment_section),
        (
            "vqa",
            "VQAv2 exact match",
            super::eval_sections::vqa_section,
        ),
        (
            "coco",
            "COCO class-aware localization",
            super::eval_sections::coco_section,
        ),
        (
            "throughput",
            "Prompt length vs throughput",
            throughput_section,
        ),
        ("summary", "Summary", summary_section),
    ];
    for (name, title, section) in sections {
        if record.section(name).is_some() && name != "summary" {
            progress(&format!("{title}: done in a previous run (--resume)"));
            continue;
        }
        progress(&format!("{title}..."));
        let result = section(&ctx, &record)?;
        if let super::record::SectionStatus::Skipped { reason } = &result.status {
            progress(&format!("{title}: skipped ({reason})"));
        }
        record.sections.insert(name.to_string(), result);
        record.save(&record_path)?;
        report::write(&record, out)?;
    }
    Ok(Outcome {
        record,
        wrote_out: !quiet,
    })
}

/// A non-zero rank's private output directory, removed when the run ends.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("vlmbench-notebook-rank-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            anyhow::anyhow!("cannot create scratch directory {}: {e}", dir.display())
        })?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type SectionFn = fn(&Context, &NotebookRecord) -> Result<Section>;

fn load_section(ctx: &Context, _: &NotebookRecord) -> Result<Section> {
    let r = ctx.resolved;
    Ok(Section::done(
        json!({
            "load_s": r.load_s,
            "model_type": r.model.model_type,
            "model_dir": r.model.dir.display().to_string(),
            "random_weights": r.random_weights,
        }),
        vec![],
    ))
}

/// One task on one image with the notebook's token limit; the answer and its figures. Greedy, as
/// mlx-vlm 0.4.4's `generate` defaults to temperature 0, so that a run repeats.
fn ask_notebook(
    ctx: &Context,
    image: &RgbImage,
    task: &Task,
    notebook_limit: usize,
) -> Result<(Answered, Value)> {
    let model = &ctx.resolved.model;
    let mut sampler = Sampler::greedy();
    let options = GenerateOptions::until_stop(model, limit(ctx.options, notebook_limit));
    let answered = ask(model, image, &task.prompt(), &mut sampler, &options, |_| {
        Ok(())
    })?;
    let s = &answered.stats;
    let figures = json!({
        "prompt": answered.prompt,
        "response": answered.text,
        "prompt_tokens": s.prompt_tokens,
        "gen_tokens": s.generation_tokens,
        "prompt_tps": s.reference.prompt_tps,
        "gen_tps": s.reference.generation_tps,
        "time_s": s.total_s,
        "peak_memory_gb": s.reference.peak_memory_gb,
        "max_tokens": options.max_tokens,
    });
    Ok((answered, figures))
}

fn scene_section(ctx: &Context, _: &NotebookRecord) -> Result<Section> {
    let (image, name) = image_or_sample(ctx.options.scene_image.as_deref(), ASTRONAUT)?;
    let (_, mut figures) = ask_notebook(ctx, &image, &Task::Scene, prompts::SCENE_MAX_TOKENS)?;
    figures["image"] = json!(name);
    Ok(Section::done(figures, vec![]))
}

fn chart_section(ctx: &Context, _: &NotebookRecord) -> Result<Section> {
    let mut rng = RandomState::seed(42);
    let train_noise = rng.normal_n(0.0, 0.05, 20);
    let val_noise = rng.normal_n(0.0, 0.08, 20);
    let data = research_data::from_noise(&train_noise, &val_noise);
    let file = "research_plot.png";
    research_chart::draw(&ctx.out.join(file), &data)?;
    let image = vlm_models::image_io::load_image(&ctx.out.join(file))?;
    let (_, mut figures) = ask_notebook(ctx, &image, &Task::Chart, prompts::CHART_MAX_TOKENS)?;
    figures["val_loss_min_epoch"] = json!(numpy_stats::argmin(&data.val_loss).map(|i| i + 1));
    Ok(Section::done(figures, vec![file.into()]))
}

fn segment_section(ctx: &Context, _: &NotebookRecord) -> Result<Section> {
    let (image, name) = image_or_sample(ctx.options.segment_image.as_deref(), CHELSEA)?;
    let task = Task::Segment {
        object: SEGMENT_NOTEBOOK_TARGET.into(),
    };
    let (answered, mut figures) = ask_notebook(ctx, &image, &task, prompts::SEGMENT_MAX_TOKENS)?;
    figures["image"] = json!(name);
    let mut overlay = Overlay::from_image(&image)?;
    // As the notebook: a polygon when the answer can be read, else the parse error in its place.
    match read_answer(
        &task,
        &answered.text,
        ImageSize::new(image.width(), image.height()),
    ) {
        Ok(TaskOutput::Polygon { polygon, .. }) => {
            overlay.polygon(&polygon.pixel_points, POLYGON_RED, 0.35);
            figures["points"] = json!(polygon.points.len());
            figures["label"] = json!(polygon.label);
        }
        Ok(_) => unreachable!("segment answers are polygons"),
        Err(e) => {
            overlay.footer(&format!("Parse error: {e}"), FP_RED);
            figures["parse_error"] = json!(e.to_string());
        }
    }
    let file = "segmentation.png";
    overlay.save_png(&ctx.out.join(file))?;
    Ok(Section::done(figures, vec![file.into()]))
}

fn throughput_section(ctx: &Context, _: &NotebookRecord) -> Result<Section> {
    let model = &ctx.resolved.model;
    let (image, name) = image_or_sample(ctx.options.scene_image.as_deref(), ASTRONAUT)?;
    let prompts: Vec<(SweepPrompt, usize)> = notebook_prompts(&image)
        .into_iter()
        .map(|(p, max)| (p, limit(ctx.options, max)))
        .collect();
    let results_file = "throughput.json";
    let sweep_options = SweepOptions {
        label: None,
        seed: 0,
        ignore_eos: false,
    };
    let results = sweep::run(
        model,
        ResultKind::PromptTable,
        &prompts,
        &sweep_options,
        &ctx.out.join(results_file),
        ctx.options.resume,
        |_| {},
    )?;
    let bars: Vec<ThroughputBar> = results.measurements.iter().map(bar).collect();
    let chart = "throughput.png";
    let title = format!(
        "{} on {} — blue: text only, red: with image",
        ctx.resolved.spec, results.run.device
    );
    throughput_panels(&ctx.out.join(chart), &title, &bars)?;
    let rows: Vec<Value> = results.measurements.iter().map(throughput_row).collect();
    Ok(Section::done(
        json!({ "image": name, "rows": rows }),
        vec![results_file.into(), chart.into()],
    ))
}

fn bar(m: &Measurement) -> ThroughputBar {
    ThroughputBar {
        label: m.label.clone(),
        has_image: m.has_image,
        gen_tps: m.decode_tps,
        prompt_tps: m.prefill_tps,
        total_s: m.total_s,
    }
}

/// The notebook's table row, rounded as it rounds (one decimal; memory to the MB, so that small
/// models do not read 0).
fn throughput_row(m: &Measurement) -> Value {
    let round1 = |v: f64| (v * 10.0).round() / 10.0;
    json!({
        "Test": m.label,
        "Prompt tokens": m.prompt_tokens,
        "Gen tokens": m.gen_tokens,
        "Prompt tok/s": round1(m.reference_prompt_tps),
        "Gen tok/s": round1(m.reference_generation_tps),
        "Time (s)": round1(m.total_s),
        "Peak mem (GB)": (m.peak_memory_bytes as f64 / 1e6).round() / 1e3,
    })
}

fn summary_section(ctx: &Context, record: &NotebookRecord) -> Result<Section> {
    let r = ctx.resolved;
    let mut rows = vec![
        ("Model", json!(r.spec)),
        (
            "Framework",
            json!(format!(
                "vlmbench {} (mlx-rs 0.33, MLX {})",
                env!("CARGO_PKG_VERSION"),
                record.run.mlx_version
            )),
        ),
        (
            "Hardware",
            json!(format!("{} ({})", record.run.device, record.run.backend)),
        ),
    ];
    if let Some(t) = record.section("throughput") {
        let table = t.data["rows"].as_array().cloned().unwrap_or_default();
        let peak = table
            .iter()
            .filter_map(|row| row["Peak mem (GB)"].as_f64())
            .fold(0.0, f64::max);
        rows.push(("Peak Memory (GB)", json!(peak)));
        if let Some(text) = table.first() {
            rows.push(("Gen Speed (text, tok/s)", text["Gen tok/s"].clone()));
        }
        if let Some(vision) = table.get(3) {
            rows.push(("Gen Speed (vision, tok/s)", vision["Gen tok/s"].clone()));
        }
    }
    super::eval_sections::summary_rows(record, &mut rows);
    let mut files = vec![];
    if let Some(chart) = super::eval_sections::summary_chart(ctx, record)? {
        files.push(chart);
    }
    let table: Vec<Value> = rows
        .into_iter()
        .map(|(metric, value)| json!({"Metric": metric, "Value": value}))
        .collect();
    Ok(Section::done(json!({ "rows": table }), files))
}
