//! `vlmbench caption|query|detect|point|segment`: one task on one image, printed as text or JSON
//! (Moondream's shapes), optionally drawn onto the image.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use vlm_models::dtype::{dtype_name, DtypeChoice};
use vlm_models::image_io::load_image;

use super::generate::render_stats;
use super::sampling_args::SamplingArgs;
use crate::engine::{GenerateOptions, GenerationStats};
use crate::model_source;
use crate::report::overlay::{class_color, LabeledBox, Overlay, POLYGON_RED};
use crate::tasks::coords::ImageSize;
use crate::tasks::moondream_native::{self, moondream_dir, NativeMoondream};
use crate::tasks::prompts::{CaptionLength, SEGMENT_NOTEBOOK_TARGET};
use crate::tasks::run::{ask, read_answer, Task, TaskOutput};

/// Flags every task shares.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// Model: a checkpoint directory, a Hugging Face repo id, or omitted for the built-in tiny
    /// checkpoint (random weights, offline).
    #[arg(long, short)]
    pub model: Option<String>,
    /// The image (PNG, JPEG, WebP).
    #[arg(long, short, value_name = "PATH")]
    pub image: PathBuf,
    /// Most tokens to generate. Default: the task's (the notebook's limit for its prompts).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Compute dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(DtypeChoice))]
    pub dtype: DtypeChoice,
    /// Print one JSON object: the result in Moondream's shape, pixel coordinates, raw answer, statistics.
    #[arg(long)]
    pub json: bool,
    /// Draw the result onto the image and write it as PNG (detect, point, segment).
    #[arg(long, value_name = "PNG")]
    pub overlay: Option<PathBuf>,
    /// Moondream2 only: moondream/starmie-v1's tokenizer.json (the checkpoint's own is a stale
    /// GPT-2 one). Default: starmie-v1/tokenizer.json, then tokenizer.json, beside the weights.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
}

/// Caption the image.
#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// Caption length, as Moondream's.
    #[arg(long, value_enum, default_value = "normal")]
    pub length: CaptionLength,
    /// Print the caption as it is generated.
    #[arg(long)]
    pub stream: bool,
    #[command(flatten)]
    pub common: TaskArgs,
}

/// Ask a free-form question about the image.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The question, e.g. "How many people are in the image?".
    pub question: String,
    /// Print the answer as it is generated.
    #[arg(long)]
    pub stream: bool,
    #[command(flatten)]
    pub common: TaskArgs,
}

/// Find every instance of a named thing: boxes (detect) or points (point).
#[derive(Debug, Args)]
pub struct ObjectArgs {
    /// What to look for, e.g. "face" or "person".
    pub object: String,
    #[command(flatten)]
    pub common: TaskArgs,
}

/// Outline one object with a polygon (the notebook's prompted segmentation).
#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// What to segment; the notebook's prompt says "main animal".
    #[arg(default_value = SEGMENT_NOTEBOOK_TARGET)]
    pub object: String,
    #[command(flatten)]
    pub common: TaskArgs,
}

#[derive(Serialize)]
struct TaskReport<'a> {
    #[serde(flatten)]
    task: &'a Task,
    model: &'a str,
    dtype: &'static str,
    load_s: f64,
    image: ImageInfo,
    prompt: &'a str,
    raw_answer: &'a str,
    /// The generated token ids (empty for Moondream2's region head, which decodes coordinates).
    token_ids: &'a [u32],
    /// "moondream2" when the native model answered (its raw answer is Moondream's JSON, not a
    /// prompted answer that `draw` could read again).
    #[serde(skip_serializing_if = "Option::is_none")]
    native: Option<&'static str>,
    #[serde(flatten)]
    output: &'a TaskOutput,
    stats: &'a GenerationStats,
}

#[derive(Serialize, serde::Deserialize)]
struct ImageInfo {
    path: String,
    width: u32,
    height: u32,
}

pub fn caption(args: &CaptionArgs) -> Result<()> {
    run(
        &Task::Caption {
            length: args.length,
        },
        &args.common,
        args.stream,
    )
}

pub fn query(args: &QueryArgs) -> Result<()> {
    run(
        &Task::Query {
            question: args.question.clone(),
        },
        &args.common,
        args.stream,
    )
}

pub fn detect(args: &ObjectArgs) -> Result<()> {
    run(
        &Task::Detect {
            object: args.object.clone(),
        },
        &args.common,
        false,
    )
}

pub fn point(args: &ObjectArgs) -> Result<()> {
    run(
        &Task::Point {
            object: args.object.clone(),
        },
        &args.common,
        false,
    )
}

pub fn segment(args: &SegmentArgs) -> Result<()> {
    run(
        &Task::Segment {
            object: args.object.clone(),
        },
        &args.common,
        false,
    )
}

fn run(task: &Task, args: &TaskArgs, stream: bool) -> Result<()> {
    if args.overlay.is_some()
        && !matches!(
            task,
            Task::Detect { .. } | Task::Point { .. } | Task::Segment { .. }
        )
    {
        bail!("--overlay draws boxes, points or polygons: use it with detect, point or segment, not {}", task.name());
    }
    // The image first: a bad path fails in a second, before the model loads.
    let image = load_image(&args.image)?;
    let size = ImageSize::new(image.width(), image.height());
    let stream = stream && !args.json;
    let mut out = std::io::stdout().lock();
    let mut on_piece = |piece: &str| -> Result<()> {
        if stream {
            write!(out, "{piece}")?;
            out.flush()?;
        }
        Ok(())
    };
    let native_dir = moondream_dir(args.model.as_deref())?;
    let native = native_dir.is_some();
    let (answered, output, spec, dtype, load_s) = if let Some(dir) = native_dir {
        // Moondream2: its own templates, decode loops and region head (no prompt to read back).
        let native = NativeMoondream::load(&dir, args.tokenizer.as_deref(), args.dtype)?;
        let settings = args
            .sampling
            .moondream_settings(args.max_tokens.unwrap_or(moondream_native::MAX_TOKENS))?;
        let (answered, output) = native.answer(&image, task, &settings, &mut on_piece)?;
        (
            answered,
            output,
            args.model.clone().unwrap_or_default(),
            native.dtype,
            native.load_s,
        )
    } else {
        if args.tokenizer.is_some() {
            bail!(
                "--tokenizer is for Moondream2 checkpoints; {} is not one",
                args.model.as_deref().unwrap_or(model_source::BUILT_IN)
            );
        }
        let resolved = model_source::load(args.model.as_deref(), args.dtype)?;
        let model = &resolved.model;
        let mut sampler = args.sampling.sampler(model)?;
        let options = GenerateOptions::until_stop(
            model,
            args.max_tokens.unwrap_or_else(|| task.default_max_tokens()),
        );
        let answered = ask(
            model,
            &image,
            &task.prompt(),
            &mut sampler,
            &options,
            &mut on_piece,
        )?;
        let output = read_answer(task, &answered.text, size).with_context(|| {
            format!(
                "the model's answer to {} could not be read ({})",
                task.name(),
                preview(&answered.text)
            )
        })?;
        (
            answered,
            output,
            resolved.spec,
            model.dtype,
            resolved.load_s,
        )
    };

    if let Some(path) = &args.overlay {
        draw(&image, &output, path)?;
    }
    if args.json {
        let report = TaskReport {
            task,
            model: &spec,
            dtype: dtype_name(dtype),
            load_s,
            image: ImageInfo {
                path: args.image.display().to_string(),
                width: size.width,
                height: size.height,
            },
            prompt: &answered.prompt,
            raw_answer: &answered.text,
            token_ids: &answered.token_ids,
            native: native.then_some("moondream2"),
            output: &output,
            stats: &answered.stats,
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    if stream {
        writeln!(out)?;
    } else {
        write!(out, "{}", render_output(&output))?;
    }
    if let Some(path) = &args.overlay {
        eprintln!("overlay written to {}", path.display());
    }
    eprint!(
        "{}",
        render_stats(&answered.stats, load_s, dtype_name(dtype))
    );
    Ok(())
}

/// The first characters of an answer, for error messages.
fn preview(text: &str) -> String {
    const MAX: usize = 80;
    if text.trim().is_empty() {
        return "it was empty".into();
    }
    let mut shown: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        shown.push('…');
    }
    format!("it began {shown:?}")
}

/// Human-readable result: the text, or one line per box/point with normalized and pixel coordinates.
fn render_output(output: &TaskOutput) -> String {
    let mut s = String::new();
    let notes = |s: &mut String, skipped: &[crate::tasks::answer::Skipped], truncated: bool| {
        for skip in skipped {
            s.push_str(&format!(
                "skipped element {}: {}\n",
                skip.index, skip.reason
            ));
        }
        if truncated {
            s.push_str(
                "the answer was cut off at the token limit; its complete elements are shown\n",
            );
        }
    };
    match output {
        TaskOutput::Caption { caption: text } | TaskOutput::Answer { answer: text } => {
            s = format!("{text}\n")
        }
        TaskOutput::Objects {
            objects,
            skipped,
            truncated,
        } => {
            s.push_str(&format!("found {} object(s)\n", objects.len()));
            for o in objects {
                let [x0, y0, x1, y1] = o.pixel_box;
                s.push_str(&format!(
                    "  {}: x {:.3}-{:.3}, y {:.3}-{:.3}  (pixels {x0:.0},{y0:.0} to {x1:.0},{y1:.0})\n",
                    o.label, o.x_min, o.x_max, o.y_min, o.y_max
                ));
            }
            notes(&mut s, skipped, *truncated);
        }
        TaskOutput::Points {
            points,
            skipped,
            truncated,
        } => {
            s.push_str(&format!("found {} point(s)\n", points.len()));
            for p in points {
                s.push_str(&format!(
                    "  {}: x {:.3}, y {:.3}  (pixel {:.0},{:.0})\n",
                    p.label, p.x, p.y, p.pixel[0], p.pixel[1]
                ));
            }
            notes(&mut s, skipped, *truncated);
        }
        TaskOutput::Polygon {
            polygon,
            skipped,
            truncated,
        } => {
            s.push_str(&format!(
                "polygon of {} points — {}\n",
                polygon.points.len(),
                polygon.label
            ));
            notes(&mut s, skipped, *truncated);
        }
    }
    s
}

/// Draw a saved task result onto its image.
#[derive(Debug, Args)]
pub struct DrawArgs {
    /// A result written by `detect|point|segment --json` (its image path, task and raw answer are read).
    pub result: PathBuf,
    /// Where to write the PNG.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Draw on this image instead of the one the result names.
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
}

/// What `draw` reads back from a `--json` task report.
#[derive(serde::Deserialize)]
struct SavedResult {
    #[serde(flatten)]
    task: Task,
    image: ImageInfo,
    raw_answer: String,
    #[serde(default)]
    native: Option<String>,
}

/// Re-reads the saved raw answer (the same parser as the live run) and draws it.
pub fn draw_saved(args: &DrawArgs) -> Result<()> {
    let bytes = std::fs::read(&args.result)
        .with_context(|| format!("cannot read {}", args.result.display()))?;
    let saved: SavedResult = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a task result written by --json",
            args.result.display()
        )
    })?;
    if let Some(model) = &saved.native {
        bail!(
            "{} holds a native {model} result, which draw cannot read back: pass --overlay PNG when running the task",
            args.result.display()
        );
    }
    let path = args
        .image
        .clone()
        .unwrap_or_else(|| PathBuf::from(&saved.image.path));
    let image = load_image(&path)?;
    let output = read_answer(
        &saved.task,
        &saved.raw_answer,
        ImageSize::new(image.width(), image.height()),
    )
    .with_context(|| {
        format!(
            "the answer saved in {} could not be read",
            args.result.display()
        )
    })?;
    if matches!(
        output,
        TaskOutput::Caption { .. } | TaskOutput::Answer { .. }
    ) {
        bail!(
            "{} holds a {} result: only detect, point and segment results can be drawn",
            args.result.display(),
            saved.task.name()
        );
    }
    draw(&image, &output, &args.output)?;
    eprintln!("overlay written to {}", args.output.display());
    Ok(())
}

fn draw(
    image: &vlm_models::image_io::RgbImage,
    output: &TaskOutput,
    path: &std::path::Path,
) -> Result<()> {
    let mut overlay = Overlay::from_image(image)?;
    match output {
        TaskOutput::Objects { objects, .. } => {
            let boxes: Vec<LabeledBox> = objects
                .iter()
                .map(|o| LabeledBox {
                    pixels: o.pixels(),
                    label: o.label.clone(),
                    color: class_color(&o.label),
                })
                .collect();
            overlay.boxes(&boxes);
        }
        TaskOutput::Points { points, .. } => {
            let pixels: Vec<[f64; 2]> = points.iter().map(|p| p.pixel).collect();
            let labels: Vec<String> = points.iter().map(|p| p.label.clone()).collect();
            overlay.points(&pixels, &labels, POLYGON_RED);
        }
        TaskOutput::Polygon { polygon, .. } => {
            overlay.polygon(&polygon.pixel_points, POLYGON_RED, 0.35);
        }
        TaskOutput::Caption { .. } | TaskOutput::Answer { .. } => {}
    }
    overlay.save_png(path)
}
