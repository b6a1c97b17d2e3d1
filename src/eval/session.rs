//! One `vlmbench eval` invocation: pick the samples, open (or resume) the run directory, run the
//! model over what is left, then write the summary, print the notebook's tables and draw its figures.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use vlm_models::image_io::decode_image;
use vlm_models::model::LoadedModel;
use vlm_models::sampling::Sampler;

use super::coco_run::{run_coco, CocoRecord};
use super::datasets::{
    self, category_names, sample_coco, sample_vqa, CocoExample, VqaExample, COCO_COLUMNS,
    VQA_COLUMNS,
};
use super::detection::{Categories, MIN_GT_AREA};
use super::hub_source::hub_shards;
use super::options::with_model;
pub use super::options::{DataSource, EvalOptions, Host};
use super::parquet_rows::{huggingface_metadata, BatchStream};
use super::progress::Progress;
use super::run_log::{RunLog, SampleTiming};
use super::shard::Shard;
use super::sharded_run::run_sharded;
use super::summary::{coco_summary, CocoSummary, ScoredImage};
use super::vqa_run::{run_vqa, vqa_summary, VqaRecord, VqaSummary};
use crate::engine::GenerateOptions;
use crate::model_source;
use crate::report::eval_charts::{localization_chart, LocalizationChart};
use crate::report::eval_overlays::{best_vs_worst, linspace_indices, overlay_grid, EvaluatedImage};
use crate::report::eval_tables;

/// What a run was asked to do; a resumed run must match it.
#[derive(Serialize)]
struct RunSettings<'a> {
    task: &'a str,
    model: String,
    data: String,
    split: &'a str,
    n: usize,
    max_tokens: usize,
    sampling: &'a str,
}

fn settings<'a>(task: &'a str, split: &'a str, o: &EvalOptions, repo: &str) -> RunSettings<'a> {
    RunSettings {
        task,
        model: o
            .model
            .clone()
            .unwrap_or_else(|| model_source::BUILT_IN.to_string()),
        data: match &o.data {
            DataSource::Dir(d) => d.display().to_string(),
            DataSource::Hub => format!("hub:{repo}"),
        },
        split,
        n: o.n,
        max_tokens: o.max_tokens,
        sampling: "greedy",
    }
}

fn shards(
    o: &EvalOptions,
    repo: &str,
    split: &str,
) -> Result<Box<dyn Iterator<Item = Result<PathBuf>>>> {
    match &o.data {
        DataSource::Dir(dir) => Ok(Box::new(
            datasets::local_shards(dir, split)?.into_iter().map(Ok),
        )),
        DataSource::Hub => hub_shards(repo, split),
    }
}

/// `println!` on the process that speaks for the run.
macro_rules! say {
    ($speaks:expr, $($t:tt)*) => {
        if $speaks {
            println!($($t)*);
        }
    };
}

#[derive(Serialize)]
struct SummaryFile<'a, S: Serialize> {
    task: &'a str,
    run: &'a RunSettings<'a>,
    summary: S,
    timings: &'a [SampleTiming],
}

pub fn eval_vqa(o: &EvalOptions) -> Result<PathBuf> {
    eval_vqa_on(o, Host::default())
}

/// [`eval_vqa`] on the host's model.
pub fn eval_vqa_on(o: &EvalOptions, host: Host) -> Result<PathBuf> {
    let run = settings("vqa", datasets::VQA_SPLIT, o, datasets::VQA_REPO);
    let shard = o.distributed.map(Shard::join).transpose()?;
    let leader = shard.as_ref().is_none_or(Shard::is_leader);
    let speaks = leader && !host.quiet;
    let selected = (|| -> Result<Vec<VqaExample>> {
        RunLog::preflight(&o.out, &run, o.resume)?;
        let stream = BatchStream::lazy(
            shards(o, datasets::VQA_REPO, datasets::VQA_SPLIT)?,
            VQA_COLUMNS,
        );
        let samples = sample_vqa(stream, o.n)?;
        anyhow::ensure!(!samples.is_empty(), "the dataset gave no VQA samples");
        Ok(samples)
    })();
    let announce = |samples: &[VqaExample]| {
        eprintln!("Loaded {} VQA samples", samples.len());
        if samples.len() < o.n {
            eprintln!("note: the split ran out before {} samples were drawn", o.n);
        }
        eprintln!(
            "Example: Q='{}', A='{}'",
            samples[0].question, samples[0].answer
        );
    };
    // A sharded run announces after the ranks agreed, so that a failed rank 0 says one line.
    if let (true, None, Ok(samples)) = (speaks, &shard, &selected) {
        announce(samples);
    }
    let run_shard = |model: &LoadedModel,
                     samples: &[VqaExample],
                     positions: &[usize],
                     done,
                     log: &mut RunLog,
                     sampler: &mut Sampler,
                     options: &GenerateOptions,
                     progress| {
        run_vqa(
            model, samples, positions, done, log, sampler, options, progress,
        )
    };
    let (log, records) = match &shard {
        None => {
            let samples = selected?;
            let (mut log, done) = RunLog::open::<_, VqaRecord>(&o.out, &run, o.resume)?;
            let records = if done.len() < samples.len() {
                let positions: Vec<usize> = (0..samples.len()).collect();
                let progress = if speaks {
                    Progress::new(samples.len(), done.len(), "VQA")
                } else {
                    Progress::silent()
                };
                with_model(
                    host, o, speaks, &samples, &positions, done, &mut log, progress, run_shard,
                )?
            } else {
                done
            };
            (log, records)
        }
        Some(shard) => match run_sharded(shard, o, &run, selected, announce, "VQA", run_shard)? {
            Some((log, records, _)) => (log, records),
            None => return Ok(shard.dir(&o.out)),
        },
    };
    let timings = log.timings()?;
    let summary: VqaSummary = vqa_summary(&records, &timings);
    let path = log.save_summary(&SummaryFile {
        task: "vqa",
        run: &run,
        summary: &summary,
        timings: &timings,
    })?;

    say!(
        speaks,
        "\nVQA Accuracy: {:.1}% ({} samples)",
        100.0 * summary.accuracy,
        summary.n_samples
    );
    say!(speaks, "Avg time per question: {:.1}s", summary.avg_time_s);
    say!(
        speaks,
        "Avg generation speed: {:.1} tok/s",
        summary.avg_gen_tps
    );
    say!(
        speaks,
        "\n{} correct, {} incorrect",
        summary.n_correct,
        summary.n_samples - summary.n_correct
    );
    say!(
        speaks,
        "\nSample correct predictions\n{}",
        eval_tables::vqa_examples(&records, true, 5)
    );
    say!(
        speaks,
        "\nSample incorrect predictions\n{}",
        eval_tables::vqa_examples(&records, false, 5)
    );
    say!(
        speaks,
        "\nper-sample results: {}\nsummary: {}",
        log.dir().join(super::run_log::SAMPLES_FILE).display(),
        path.display()
    );
    Ok(path)
}

/// The categories from the first shard's `huggingface` metadata.
fn coco_categories(first_shard: &Path) -> Result<Categories> {
    let meta = huggingface_metadata(first_shard)?.with_context(|| {
        format!(
            "{} has no huggingface metadata: cannot name the COCO categories",
            first_shard.display()
        )
    })?;
    let names = category_names(&meta).with_context(|| {
        format!(
            "{}: the huggingface metadata has no ClassLabel names for objects.category",
            first_shard.display()
        )
    })?;
    Ok(Categories::new(names))
}

pub fn eval_coco(o: &EvalOptions) -> Result<PathBuf> {
    eval_coco_on(o, Host::default())
}

/// [`eval_coco`] on the host's model.
pub fn eval_coco_on(o: &EvalOptions, host: Host) -> Result<PathBuf> {
    let run = settings("coco", datasets::COCO_SPLIT, o, datasets::COCO_REPO);
    let shard = o.distributed.map(Shard::join).transpose()?;
    let leader = shard.as_ref().is_none_or(Shard::is_leader);
    let speaks = leader && !host.quiet;
    let selected = (|| -> Result<(Vec<CocoExample>, Categories)> {
        RunLog::preflight(&o.out, &run, o.resume)?;
        let mut files = shards(o, datasets::COCO_REPO, datasets::COCO_SPLIT)?;
        let first = files.next().context("the dataset has no shards")??;
        let categories = coco_categories(&first)?;
        let stream = BatchStream::lazy(
            Box::new(std::iter::once(Ok(first)).chain(files)),
            COCO_COLUMNS,
        );
        let samples = sample_coco(stream, &categories, o.n)?;
        anyhow::ensure!(
            !samples.is_empty(),
            "the dataset gave no COCO images with two or more known objects"
        );
        Ok((samples, categories))
    })();
    let announce = |samples: &[CocoExample]| eprintln!("Loaded {} COCO images", samples.len());
    if let (true, None, Ok((samples, _))) = (speaks, &shard, &selected) {
        announce(samples);
    }
    let (selected, categories) = match selected {
        Ok((samples, categories)) => (Ok(samples), Some(categories)),
        Err(e) => (Err(e), None),
    };
    let run_shard = |model: &LoadedModel,
                     samples: &[CocoExample],
                     positions: &[usize],
                     done,
                     log: &mut RunLog,
                     sampler: &mut Sampler,
                     options: &GenerateOptions,
                     progress| {
        let categories = categories
            .as_ref()
            .expect("categories come with the samples");
        run_coco(
            model, samples, positions, categories, done, log, sampler, options, progress,
        )
    };
    let (log, records, samples) = match &shard {
        None => {
            let samples = selected?;
            let (mut log, done) = RunLog::open::<_, CocoRecord>(&o.out, &run, o.resume)?;
            let records = if done.len() < samples.len() {
                let positions: Vec<usize> = (0..samples.len()).collect();
                let progress = if speaks {
                    Progress::new(samples.len(), done.len(), "COCO")
                } else {
                    Progress::silent()
                };
                with_model(
                    host, o, speaks, &samples, &positions, done, &mut log, progress, run_shard,
                )?
            } else {
                done
            };
            (log, records, samples)
        }
        Some(shard) => match run_sharded(shard, o, &run, selected, announce, "COCO", run_shard)? {
            Some(merged) => merged,
            None => return Ok(shard.dir(&o.out)),
        },
    };
    let timings = log.timings()?;
    let time_of = |i: usize| {
        timings
            .iter()
            .find(|t| t.sample == i)
            .map_or(f64::NAN, |t| t.time_s)
    };
    let scored: Vec<ScoredImage> = records
        .iter()
        .map(|r| ScoredImage {
            eval: &r.eval,
            ground_truth: &r.ground_truth,
            time_s: time_of(r.sample),
        })
        .collect();
    let summary: CocoSummary = coco_summary(&scored);
    let path = log.save_summary(&SummaryFile {
        task: "coco",
        run: &run,
        summary: &summary,
        timings: &timings,
    })?;

    if speaks {
        print_coco_summary(&summary, &records);
    }
    let figures = draw_coco_figures(&o.out, &samples, &records, &summary)?;
    for f in &figures {
        say!(speaks, "figure: {}", f.display());
    }
    say!(
        speaks,
        "per-sample results: {}\nsummary: {}",
        log.dir().join(super::run_log::SAMPLES_FILE).display(),
        path.display()
    );
    Ok(path)
}

/// The notebook's printed COCO results: totals, the per-image and per-class tables, the worst
/// image.
fn print_coco_summary(summary: &CocoSummary, records: &[CocoRecord]) {
    let [tp, near, class, fp] = summary.status_totals;
    println!(
        "\n--- COCO Localization ({} images, GT boxes ≥ {}px²) ---",
        summary.n_images, MIN_GT_AREA
    );
    println!(
        "Coarse P/R/F1 @0.3: {:.2} / {:.2} / {:.2}",
        summary.precision, summary.recall, summary.f1
    );
    println!(
        "Strict P/R/F1 @0.5: {:.2} / {:.2} / {:.2}",
        summary.strict_precision, summary.strict_recall, summary.strict_f1
    );
    println!("Mean strict TP IoU: {:.2}", summary.mean_tp_iou);
    println!("Predictions by status: TP={tp}, near={near}, class mismatch={class}, FP={fp}");
    println!("Avg time/image: {:.1}s", summary.avg_time_s);
    println!("\n{}", eval_tables::coco_images(records));
    println!(
        "\nPer-class coarse recall (top 10 by GT count)\n{}",
        eval_tables::per_class(&summary.per_class_recall)
    );
    if let Some(w) = summary.worst_index {
        print_worst(&records[w]);
    }
}

/// The notebook's closing prints about the worst image (Counter dicts in first-seen order).
fn first_seen_counts<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(&'a str, usize)> {
    let mut c: Vec<(&str, usize)> = Vec::new();
    for n in names {
        match c.iter_mut().find(|(k, _)| *k == n) {
            Some(e) => e.1 += 1,
            None => c.push((n, 1)),
        }
    }
    c
}

fn print_worst(r: &CocoRecord) {
    let show = |c: &[(&str, usize)]| {
        format!(
            "{{{}}}",
            c.iter()
                .map(|(k, v)| format!("'{k}': {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let gt = first_seen_counts(r.ground_truth.iter().map(|d| d.class_name.as_str()));
    let pred = first_seen_counts(r.predictions.iter().map(|d| d.class_name.as_str()));
    let [tp, near, class, fp] = r.eval.status_counts;
    println!("\nWorst image — GT classes:   {}", show(&gt));
    println!("Worst image — Pred classes: {}", show(&pred));
    println!(
        "Worst image — status counts: {{'tp': {tp}, 'near': {near}, 'class': {class}, 'fp': {fp}}}"
    );
    let missed: Vec<&str> = gt
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !pred.iter().any(|(p, _)| p == k))
        .collect();
    if !missed.is_empty() {
        println!(
            "Missed entirely: {{{}}}",
            missed
                .iter()
                .map(|m| format!("'{m}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn draw_coco_figures(
    out: &Path,
    samples: &[datasets::CocoExample],
    records: &[CocoRecord],
    summary: &CocoSummary,
) -> Result<Vec<PathBuf>> {
    let dir = out.join("figures");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let per_image: Vec<(f64, f64)> = records
        .iter()
        .map(|r| (r.eval.recall, r.eval.precision))
        .collect();
    let strict_tp_ious: Vec<f64> = records
        .iter()
        .flat_map(|r| {
            r.eval
                .tp_ious
                .iter()
                .zip(&r.eval.strict_tp_mask)
                .filter(|(_, &m)| m)
                .map(|(&v, _)| f64::from(v))
        })
        .collect();
    let quality = dir.join("localization_quality.png");
    localization_chart(
        &quality,
        "Localization quality analysis",
        &LocalizationChart {
            per_image: &per_image,
            mean_precision: summary.precision,
            mean_recall: summary.recall,
            strict_tp_ious: &strict_tp_ious,
            per_class: &summary.per_class_recall,
        },
    )?;
    let images = records
        .iter()
        .map(|r| {
            let ex = &samples[r.sample];
            decode_image(&ex.image.bytes, Path::new(&ex.image.name))
                .with_context(|| format!("COCO sample {}", r.sample))
        })
        .collect::<Result<Vec<_>>>()?;
    let evaluated: Vec<EvaluatedImage> = records
        .iter()
        .zip(&images)
        .map(|(r, image)| EvaluatedImage {
            image,
            ground_truth: &r.ground_truth,
            predictions: &r.predictions,
            eval: &r.eval,
        })
        .collect();
    let overlays = dir.join("overlays.png");
    overlay_grid(&overlays, &evaluated, &linspace_indices(evaluated.len(), 6))?;
    let mut made = vec![quality, overlays];
    if let (Some(b), Some(w)) = (summary.best_index, summary.worst_index) {
        let path = dir.join("best_vs_worst.png");
        best_vs_worst(&path, &evaluated[b], &evaluated[w])?;
        made.push(path);
    }
    Ok(made)
}
