//! The notebook's COCO localization run: each sampled image, re-saved as the notebook did (Pillow's
//! quality-75 JPEG), through the model with its detection prompt (1024 tokens), the answer parsed
//! the notebook's way, scored against the image's ground truth, one log line per image.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use vlm_models::image_io::decode_image;
use vlm_models::model::LoadedModel;
use vlm_models::sampling::Sampler;

use super::datasets::CocoExample;
use super::detection::{ground_truth, parse_predictions, Categories, Detection, GtObject};
use super::matching::{evaluate, ImageEval};
use super::numpy_stats::mean;
use super::pillow_jpeg::jpeg_round_trip;
use super::progress::Progress;
use super::run_log::RunLog;
use super::shard::SampleRecord;
use super::vqa_run::timing_of;
use crate::engine::GenerateOptions;
use crate::tasks::coords::ImageSize;
use crate::tasks::prompts::COCO_DETECT;
use crate::tasks::run::ask;

/// One image's line in samples.jsonl.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CocoRecord {
    pub sample: usize,
    pub stream_index: usize,
    pub image_id: i64,
    /// The decoded image's size (the notebook's `img.size`), which predictions are scaled to.
    pub width: u32,
    pub height: u32,
    pub objects: Vec<GtObject>,
    pub response: String,
    pub ground_truth: Vec<Detection>,
    pub predictions: Vec<Detection>,
    pub eval: ImageEval,
}

/// Runs the images at `positions` (all of them, or one rank's share) not yet in `done`.
#[allow(clippy::too_many_arguments)]
pub fn run_coco(
    model: &LoadedModel,
    samples: &[CocoExample],
    positions: &[usize],
    categories: &Categories,
    mut done: Vec<CocoRecord>,
    log: &mut RunLog,
    sampler: &mut Sampler,
    options: &GenerateOptions,
    mut progress: Progress,
) -> Result<Vec<CocoRecord>> {
    for (k, r) in done.iter().enumerate() {
        let i = positions.get(k).copied().unwrap_or(usize::MAX);
        let ok = r.sample == i
            && samples
                .get(i)
                .is_some_and(|s| s.stream_index == r.stream_index && s.image_id == r.image_id);
        anyhow::ensure!(
            ok,
            "cannot resume: line {} of samples.jsonl does not match sample {i} of this dataset",
            k + 1
        );
    }
    progress.message(&running(&done));
    for &i in positions.iter().skip(done.len()) {
        let ex = &samples[i];
        let image = decode_image(&ex.image.bytes, Path::new(&ex.image.name))
            .with_context(|| format!("COCO sample {i} (image_id {})", ex.image_id))?;
        let size = ImageSize::new(image.width(), image.height());
        let gt = ground_truth(&ex.objects, categories);
        // The notebook saved each image as a quality-75 JPEG and gave the model that file.
        let model_input = jpeg_round_trip(&image, &ex.image.name)?;
        let answered = ask(model, &model_input, COCO_DETECT, sampler, options, |_| {
            Ok(())
        })
        .with_context(|| format!("COCO sample {i}"))?;
        let predictions = parse_predictions(&answered.text, size, categories);
        let eval = evaluate(&predictions, &gt);
        let record = CocoRecord {
            sample: i,
            stream_index: ex.stream_index,
            image_id: ex.image_id,
            width: size.width,
            height: size.height,
            objects: ex.objects.clone(),
            response: answered.text,
            ground_truth: gt,
            predictions,
            eval,
        };
        log.append(&record, &timing_of(i, &answered.stats))?;
        done.push(record);
        progress.advance(&running(&done));
        if done.len() % 5 == 0 {
            let (p, r, sr) = running_means(&done);
            progress.println(&format!(
                "  [{}/{}] coarse P/R={p:.2}/{r:.2} | strict R={sr:.2}",
                done.len(),
                positions.len()
            ));
        }
    }
    progress.finish();
    Ok(done)
}

fn running_means(done: &[CocoRecord]) -> (f64, f64, f64) {
    let m = |f: fn(&ImageEval) -> f64| mean(&done.iter().map(|r| f(&r.eval)).collect::<Vec<_>>());
    (m(|e| e.precision), m(|e| e.recall), m(|e| e.strict_recall))
}

fn running(done: &[CocoRecord]) -> String {
    if done.is_empty() {
        return String::new();
    }
    let (p, r, sr) = running_means(done);
    format!("coarse P/R={p:.2}/{r:.2} strict R={sr:.2}")
}

impl SampleRecord for CocoRecord {
    fn sample(&self) -> usize {
        self.sample
    }

    fn selection_key(&self) -> String {
        format!("{}:{}", self.stream_index, self.image_id)
    }
}

impl super::shard::SelectionKey for CocoExample {
    fn selection_key(&self) -> String {
        format!("{}:{}", self.stream_index, self.image_id)
    }
}
