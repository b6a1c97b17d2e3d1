//! The notebook's VQAv2 run: each sampled question through the model with its prompt (20 tokens),
//! the first line of the answer scored by exact match, one log line per question.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use vlm_models::image_io::decode_image;
use vlm_models::model::LoadedModel;
use vlm_models::sampling::Sampler;

use super::datasets::VqaExample;
use super::numpy_stats::mean;
use super::progress::Progress;
use super::run_log::{RunLog, SampleTiming};
use super::summary::{vqa_exact_match, vqa_prediction};
use crate::engine::GenerateOptions;
use crate::tasks::prompts;
use crate::tasks::run::ask;

/// One question's line in samples.jsonl.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VqaRecord {
    /// Position in the sample (0-based).
    pub sample: usize,
    /// Position in the split's stream.
    pub stream_index: usize,
    pub question: String,
    pub gt_answer: String,
    /// The model's whole answer.
    pub response: String,
    /// Its first line, as the notebook scores it.
    pub prediction: String,
    pub accuracy: f64,
}

/// The notebook's `vqa_summary`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VqaSummary {
    pub accuracy: f64,
    pub n_samples: usize,
    pub n_correct: usize,
    pub avg_time_s: f64,
    pub avg_gen_tps: f64,
}

pub fn timing_of(sample: usize, stats: &crate::engine::GenerationStats) -> SampleTiming {
    SampleTiming {
        sample,
        time_s: stats.total_s,
        prompt_tokens: stats.prompt_tokens,
        generation_tokens: stats.generation_tokens,
        gen_tps: stats.reference.generation_tps,
        prompt_tps: stats.reference.prompt_tps,
    }
}

/// Answers the samples at `positions` (all of them, or one rank's share) not yet in `done` (a
/// resumed run), appending each as it finishes.
#[allow(clippy::too_many_arguments)]
pub fn run_vqa(
    model: &LoadedModel,
    samples: &[VqaExample],
    positions: &[usize],
    mut done: Vec<VqaRecord>,
    log: &mut RunLog,
    sampler: &mut Sampler,
    options: &GenerateOptions,
    mut progress: Progress,
) -> Result<Vec<VqaRecord>> {
    check_resumed(&done, samples, positions)?;
    progress.message(&running_accuracy(&done));
    for &i in positions.iter().skip(done.len()) {
        let ex = &samples[i];
        let image = decode_image(&ex.image.bytes, Path::new(&ex.image.name))
            .with_context(|| format!("VQA sample {i} (stream row {})", ex.stream_index))?;
        let answered = ask(
            model,
            &image,
            &prompts::vqa(&ex.question),
            sampler,
            options,
            |_| Ok(()),
        )
        .with_context(|| format!("VQA sample {i}"))?;
        let prediction = vqa_prediction(&answered.text);
        let accuracy = vqa_exact_match(&prediction, &ex.answer);
        let record = VqaRecord {
            sample: i,
            stream_index: ex.stream_index,
            question: ex.question.clone(),
            gt_answer: ex.answer.clone(),
            response: answered.text,
            prediction,
            accuracy,
        };
        log.append(&record, &timing_of(i, &answered.stats))?;
        done.push(record);
        progress.advance(&running_accuracy(&done));
        if done.len() % 10 == 0 {
            // The notebook's checkpoint print (over this rank's share in a sharded run).
            progress.println(&format!(
                "  [{}/{}] Running accuracy: {:.1}%",
                done.len(),
                positions.len(),
                100.0 * mean_accuracy(&done)
            ));
        }
    }
    progress.finish();
    Ok(done)
}

fn mean_accuracy(done: &[VqaRecord]) -> f64 {
    mean(&done.iter().map(|r| r.accuracy).collect::<Vec<_>>())
}

fn running_accuracy(done: &[VqaRecord]) -> String {
    if done.is_empty() {
        String::new()
    } else {
        format!("accuracy {:.1}%", 100.0 * mean_accuracy(done))
    }
}

fn check_resumed(done: &[VqaRecord], samples: &[VqaExample], positions: &[usize]) -> Result<()> {
    for (k, r) in done.iter().enumerate() {
        let i = positions.get(k).copied().unwrap_or(usize::MAX);
        let ok = r.sample == i
            && samples
                .get(i)
                .is_some_and(|s| s.stream_index == r.stream_index && s.question == r.question);
        anyhow::ensure!(
            ok,
            "cannot resume: line {} of samples.jsonl does not match sample {i} of this dataset",
            k + 1
        );
    }
    Ok(())
}

impl super::shard::SampleRecord for VqaRecord {
    fn sample(&self) -> usize {
        self.sample
    }

    fn selection_key(&self) -> String {
        format!("{}:{}", self.stream_index, self.question)
    }
}

impl super::shard::SelectionKey for VqaExample {
    fn selection_key(&self) -> String {
        format!("{}:{}", self.stream_index, self.question)
    }
}

pub fn vqa_summary(records: &[VqaRecord], timings: &[SampleTiming]) -> VqaSummary {
    VqaSummary {
        accuracy: mean_accuracy(records),
        n_samples: records.len(),
        n_correct: records.iter().filter(|r| r.accuracy > 0.0).count(),
        avg_time_s: mean(&timings.iter().map(|t| t.time_s).collect::<Vec<_>>()),
        avg_gen_tps: mean(&timings.iter().map(|t| t.gen_tps).collect::<Vec<_>>()),
    }
}
