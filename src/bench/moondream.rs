//! The Moondream seed script as a benchmark: six timed tasks on one image (short caption, streamed
//! normal caption with first-token and average token latency, non-streamed normal caption, visual
//! query, detect, point) and the end-to-end total, on any model the task layer supports: Gemma
//! through prompts, Moondream2 natively (the caller passes how one task is answered).
//!
//! Each task's runtime is the wall time of the whole call, image preprocessing and encoding
//! included, as the seed's `time.time()` around `model.caption(...)` measures it. Streamed
//! latencies are per generated token, measured when its text is handed over (the seed's loop
//! times the chunks Moondream's streamer releases, which are words rather than tokens).

use std::time::Instant;

use anyhow::Result;
use vlm_models::image_io::RgbImage;
use vlm_models::model::LoadedModel;
use vlm_models::sampling::Sampler;

use super::results::{Measurement, ResultKind, ResultsFile, RunInfo};
use crate::engine::GenerateOptions;
use crate::tasks::coords::ImageSize;
use crate::tasks::prompts::CaptionLength;
use crate::tasks::run::{ask, read_answer, Answered, Task, TaskOutput};

/// The seed script's query, detect and point arguments.
pub const SEED_QUESTION: &str = "How many people are in the image?";
pub const SEED_DETECT: &str = "face";
pub const SEED_POINT: &str = "person";

/// The seed's tasks in its order: (row label, task, streamed).
pub fn seed_tasks() -> Vec<(&'static str, Task, bool)> {
    vec![
        (
            "Short caption",
            Task::Caption {
                length: CaptionLength::Short,
            },
            false,
        ),
        (
            "Normal caption (stream)",
            Task::Caption {
                length: CaptionLength::Normal,
            },
            true,
        ),
        (
            "Full caption (non-stream)",
            Task::Caption {
                length: CaptionLength::Normal,
            },
            false,
        ),
        (
            "Visual query",
            Task::Query {
                question: SEED_QUESTION.into(),
            },
            false,
        ),
        (
            "Object detection",
            Task::Detect {
                object: SEED_DETECT.into(),
            },
            false,
        ),
        (
            "Pointing",
            Task::Point {
                object: SEED_POINT.into(),
            },
            false,
        ),
    ]
}

/// Latencies of a streamed answer, over the arrivals of its tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamLatency {
    /// From the call to the first token.
    pub first_s: f64,
    /// Mean gap between consecutive tokens (0 with fewer than two).
    pub average_s: f64,
    /// From the call to the last token.
    pub total_s: f64,
    pub tokens: usize,
}

impl StreamLatency {
    /// From the arrival times of the chunks, in seconds since the call.
    pub fn from_arrivals(arrivals: &[f64]) -> Self {
        let Some((&first, &last)) = arrivals.first().zip(arrivals.last()) else {
            return Self::default();
        };
        let gaps = arrivals.len() - 1;
        let average_s = if gaps > 0 {
            (last - first) / gaps as f64
        } else {
            0.0
        };
        Self {
            first_s: first,
            average_s,
            total_s: last,
            tokens: arrivals.len(),
        }
    }
}

/// How one task is answered: the model's answer with its statistics, and the answer read into
/// the task's output (an `Err` text when it could not be read: timed all the same). The callback
/// streams the answer's text.
pub type AnswerFn<'a> = dyn FnMut(
        &Task,
        &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<(Answered, Result<TaskOutput, String>)>
    + 'a;

/// [`AnswerFn`] for a prompted model (Gemma): the task's prompt, then the answer parser.
pub fn prompted<'a>(
    model: &'a LoadedModel,
    image: &'a RgbImage,
    sampler: &'a mut Sampler,
) -> Box<AnswerFn<'a>> {
    let size = ImageSize::new(image.width(), image.height());
    Box::new(move |task, on_piece| {
        let options = GenerateOptions::until_stop(model, task.default_max_tokens());
        let answered = ask(model, image, &task.prompt(), sampler, &options, on_piece)?;
        let output = read_answer(task, &answered.text, size).map_err(|e| e.to_string());
        Ok((answered, output))
    })
}

/// Runs the six tasks in order; `on_row` sees each as soon as it is done (its `answer` is what
/// the seed prints: the caption, the answer, "Found N face(s)"), `on_piece` streams the streamed
/// caption's text.
pub fn run(
    answer: &mut AnswerFn<'_>,
    run_info: RunInfo,
    mut on_row: impl FnMut(&Measurement) -> Result<()>,
    mut on_piece: impl FnMut(&str) -> Result<()>,
) -> Result<ResultsFile> {
    let mut measurements = Vec::new();
    for (label, task, streamed) in seed_tasks() {
        let started = Instant::now();
        let mut arrivals = Vec::new();
        let (answered, output) = answer(&task, &mut |piece| {
            if streamed {
                arrivals.push(started.elapsed().as_secs_f64());
                on_piece(piece)?;
            }
            Ok(())
        })?;
        let runtime_s = started.elapsed().as_secs_f64();
        let shown = match output {
            Ok(TaskOutput::Caption { caption }) => caption,
            Ok(TaskOutput::Answer { answer }) => answer,
            Ok(TaskOutput::Objects { objects, .. }) => {
                format!("Found {} {}(s)", objects.len(), object_of(&task))
            }
            Ok(TaskOutput::Points { points, .. }) => {
                format!("Found {} {}(s)", points.len(), object_of(&task))
            }
            Ok(TaskOutput::Polygon { .. }) => unreachable!("the seed has no segmentation task"),
            // Timed all the same: the model answered, only not in a readable shape.
            Err(e) => format!("unreadable answer ({e})"),
        };
        let mut measurement = Measurement::from_stats(label, true, &answered.stats);
        measurement.total_s = runtime_s;
        measurement.answer = Some(shown);
        if streamed {
            let latency = StreamLatency::from_arrivals(&arrivals);
            measurement.stream_first_token_s = Some(latency.first_s);
            measurement.stream_avg_token_s = Some(latency.average_s);
        }
        on_row(&measurement)?;
        measurements.push(measurement);
    }
    Ok(ResultsFile {
        kind: ResultKind::TaskBench,
        run: run_info,
        measurements,
    })
}

fn object_of(task: &Task) -> &str {
    match task {
        Task::Detect { object } | Task::Point { object } => object,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_latency_is_first_chunk_and_mean_gap() {
        let s = StreamLatency::from_arrivals(&[0.5, 0.7, 0.8, 1.1]);
        assert_eq!(s.first_s, 0.5);
        assert!((s.average_s - 0.2).abs() < 1e-12);
        assert_eq!(s.total_s, 1.1);
        assert_eq!(s.tokens, 4);
        assert_eq!(StreamLatency::from_arrivals(&[0.3]).average_s, 0.0);
        assert_eq!(StreamLatency::from_arrivals(&[]), StreamLatency::default());
    }

    #[test]
    fn the_seed_tasks_in_its_order() {
        let labels: Vec<_> = seed_tasks().iter().map(|(l, _, _)| *l).collect();
        assert_eq!(
            labels,
            [
                "Short caption",
                "Normal caption (stream)",
                "Full caption (non-stream)",
                "Visual query",
                "Object detection",
                "Pointing"
            ]
        );
        assert_eq!(
            seed_tasks()
                .iter()
                .filter(|(_, _, streamed)| *streamed)
                .count(),
            1
        );
    }
}
