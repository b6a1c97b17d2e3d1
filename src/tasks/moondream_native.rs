//! The task layer on the native Moondream2 model (`vlm_models::moondream2`): caption, query,
//! detect and point run the model's own templates, decode loops and region head instead of a
//! prompt, and come back in the same [`TaskOutput`] shapes (plus pixels) as the prompted path.
//!
//! A `--model` directory is Moondream2 when `vlm_models::model::Family` says so (`model_type:
//! moondream1`, the published checkpoint's). Its tokenizer is moondream/starmie-v1: the repository's own
//! `tokenizer.json` is a stale GPT-2 one, so `--tokenizer` (or `starmie-v1/tokenizer.json` next
//! to the weights) supplies it; the stale file is refused by name.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mlx_rs::Dtype;
use vlm_models::dtype::DtypeChoice;
use vlm_models::image_io::RgbImage;
use vlm_models::model::Family;
use vlm_models::moondream2::sampling::TextSettings;
use vlm_models::moondream2::tokenizer::load_starmie;
use vlm_models::moondream2::{self, EncodedImage, Generation, Moondream2};

use super::coords::{ImageSize, NormBox, NormPoint};
use super::prompts::CaptionLength;
use super::run::{Answered, DetectedObject, FoundPoint, Task, TaskOutput};
use crate::engine::{FinishReason, GenerationStats, Timings};
use crate::model_source;

/// The reference's `max_objects` default for detect and point.
pub const MAX_OBJECTS: usize = 50;
/// The reference's `max_tokens` default for caption and query.
pub const MAX_TOKENS: usize = 768;

/// The checkpoint directory of `spec` when it is a Moondream2 checkpoint, else `None` (Gemma
/// and the built-in model go through the prompted path).
pub fn moondream_dir(spec: Option<&str>) -> Result<Option<PathBuf>> {
    let Some(spec) = spec.filter(|s| *s != model_source::BUILT_IN) else {
        return Ok(None);
    };
    let (dir, _) = model_source::checkpoint_dir(Some(spec))?;
    Ok((Family::of_dir(&dir)? == Some(Family::Moondream2)).then_some(dir))
}

/// Moondream2 loaded with its tokenizer.
pub struct NativeMoondream {
    pub model: Moondream2,
    tokenizer: tokenizers::Tokenizer,
    pub dtype: Dtype,
    pub load_s: f64,
}

impl NativeMoondream {
    /// Loads the checkpoint in `dir`; the tokenizer is `tokenizer` or the first of
    /// `starmie-v1/tokenizer.json` and `tokenizer.json` beside the weights.
    pub fn load(dir: &Path, tokenizer: Option<&Path>, choice: DtypeChoice) -> Result<Self> {
        let dtype = choice.resolve(&mlx_rs::Device::try_default()?);
        let started = Instant::now();
        let model = Moondream2::load(dir, dtype)
            .with_context(|| format!("cannot load Moondream2 from {}", dir.display()))?;
        let path = match tokenizer {
            Some(path) => path.to_path_buf(),
            None => [dir.join("starmie-v1").join("tokenizer.json"), dir.join("tokenizer.json")]
                .into_iter()
                .find(|p| p.exists())
                .with_context(|| {
                    format!(
                        "{} has no tokenizer: pass --tokenizer PATH to moondream/starmie-v1's tokenizer.json \
                         (or put it in {}/starmie-v1/)",
                        dir.display(),
                        dir.display()
                    )
                })?,
        };
        let text = &model.config.text;
        let tokenizer = load_starmie(&path, model.config.tokenizer.eos_id, text.vocab_size)
            .with_context(|| {
                "--tokenizer: Moondream2 needs moondream/starmie-v1's tokenizer.json".to_string()
            })?;
        Ok(NativeMoondream {
            model,
            tokenizer,
            dtype,
            load_s: started.elapsed().as_secs_f64(),
        })
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| anyhow::anyhow!("cannot decode the model's tokens: {e}"))
    }

    /// Runs `task` on `image` (encoding it first, as the reference does on every call); `on_piece`
    /// receives the answer's text as tokens arrive (caption and query).
    pub fn answer(
        &self,
        image: &RgbImage,
        task: &Task,
        settings: &TextSettings,
        on_piece: impl FnMut(&str) -> Result<()>,
    ) -> Result<(Answered, TaskOutput)> {
        let size = ImageSize::new(image.width(), image.height());
        let started = Instant::now();
        let pixels =
            image::RgbImage::from_raw(image.width(), image.height(), image.as_bytes().to_vec())
                .context("image buffer")?;
        let encoded = self.model.encode_image(&pixels)?;
        let vision_encode_s = started.elapsed().as_secs_f64();
        match task {
            Task::Caption { .. } | Task::Query { .. } => self.answer_text(&encoded, task, settings, vision_encode_s, on_piece),
            Task::Detect { object } | Task::Point { object } => {
                self.answer_regions(&encoded, task, object, size, vision_encode_s)
            }
            other => bail!(
                "{} is a prompted Gemma task; Moondream2 runs caption, query, detect and point natively",
                other.name()
            ),
        }
    }

    /// Caption or query: tokens streamed to `on_piece` as they decode to whole characters.
    fn answer_text(
        &self,
        encoded: &EncodedImage,
        task: &Task,
        settings: &TextSettings,
        vision_encode_s: f64,
        mut on_piece: impl FnMut(&str) -> Result<()>,
    ) -> Result<(Answered, TaskOutput)> {
        // Text so far, to hand over only what each new token adds (a token can end inside a
        // multi-byte character, which decodes once complete).
        let mut ids = Vec::new();
        let mut shown = String::new();
        let mut failure = None;
        let mut on_token = |id: u32| {
            ids.push(id);
            if failure.is_some() {
                return;
            }
            match self.decode(&ids) {
                Ok(text)
                    if text.len() > shown.len()
                        && text.starts_with(&shown)
                        && !text.ends_with('\u{FFFD}') =>
                {
                    let piece = text[shown.len()..].to_string();
                    shown = text;
                    if let Err(e) = on_piece(&piece) {
                        failure = Some(e);
                    }
                }
                Ok(_) => {}
                Err(e) => failure = Some(e),
            }
        };
        let generation = match task {
            Task::Caption { length } => {
                self.model
                    .caption(encoded, native_length(*length), settings, &mut on_token)?
            }
            Task::Query { question } => {
                let ids = self.encode(question)?;
                self.model.query(encoded, &ids, settings, &mut on_token)?
            }
            other => bail!("{} is not a text task", other.name()),
        };
        if let Some(e) = failure {
            return Err(e);
        }
        let text = self.decode(&generation.tokens)?;
        // What was held back (an incomplete character at the end) goes out now.
        if let Some(rest) = text.strip_prefix(shown.as_str()).filter(|r| !r.is_empty()) {
            on_piece(rest)?;
        }
        let stats = text_stats(&generation, vision_encode_s, settings.max_tokens);
        let output = match task {
            Task::Caption { .. } => TaskOutput::Caption {
                caption: text.trim().to_string(),
            },
            _ => TaskOutput::Answer {
                answer: text.trim().to_string(),
            },
        };
        let answered = Answered {
            prompt: task.name().to_string(),
            text,
            token_ids: generation.tokens,
            stats,
        };
        Ok((answered, output))
    }

    /// Detect or point `object` through the region head. The raw answer is what Moondream
    /// returns: normalized coordinates only.
    fn answer_regions(
        &self,
        encoded: &EncodedImage,
        task: &Task,
        object: &str,
        size: ImageSize,
        vision_encode_s: f64,
    ) -> Result<(Answered, TaskOutput)> {
        let ids = self.encode(&format!(" {object}"))?;
        let (output, raw, steps, prompt_tokens, prefill, decode) = if matches!(
            task,
            Task::Detect { .. }
        ) {
            let r = self.model.detect(encoded, &ids, MAX_OBJECTS)?;
            let raw = serde_json::json!({"objects": r.items.iter()
                .map(|b| serde_json::json!({"x_min": b.x_min, "y_min": b.y_min, "x_max": b.x_max, "y_max": b.y_max}))
                .collect::<Vec<_>>()});
            let objects = r
                .items
                .iter()
                .map(|b| detected_object(b, object, size))
                .collect();
            let out = TaskOutput::Objects {
                objects,
                skipped: vec![],
                truncated: false,
            };
            (
                out,
                raw,
                r.steps,
                r.prompt_tokens,
                r.prefill_time,
                r.decode_time,
            )
        } else {
            let r = self.model.point(encoded, &ids, MAX_OBJECTS)?;
            let raw = serde_json::json!({"points": r.items.iter().map(|p| serde_json::json!({"x": p.x, "y": p.y})).collect::<Vec<_>>()});
            let points = r
                .items
                .iter()
                .map(|p| found_point(p, object, size))
                .collect();
            let out = TaskOutput::Points {
                points,
                skipped: vec![],
                truncated: false,
            };
            (
                out,
                raw,
                r.steps,
                r.prompt_tokens,
                r.prefill_time,
                r.decode_time,
            )
        };
        let t = timings(vision_encode_s, prefill, decode);
        // One "token" per region-head step, the prefill's decision included.
        let stats = GenerationStats::from_timings(
            prompt_tokens,
            steps + 1,
            t,
            peak_memory(),
            FinishReason::Stop,
        );
        let answered = Answered {
            prompt: task.name().to_string(),
            text: raw.to_string(),
            token_ids: vec![],
            stats,
        };
        Ok((answered, output))
    }
}

fn native_length(length: CaptionLength) -> moondream2::CaptionLength {
    match length {
        CaptionLength::Short => moondream2::CaptionLength::Short,
        CaptionLength::Normal => moondream2::CaptionLength::Normal,
        CaptionLength::Long => moondream2::CaptionLength::Long,
    }
}

fn detected_object(b: &moondream2::DetectedBox, label: &str, size: ImageSize) -> DetectedObject {
    let norm = NormBox {
        x_min: b.x_min,
        y_min: b.y_min,
        x_max: b.x_max,
        y_max: b.y_max,
    };
    DetectedObject {
        x_min: b.x_min,
        y_min: b.y_min,
        x_max: b.x_max,
        y_max: b.y_max,
        label: label.to_string(),
        pixel_box: norm.to_pixels(size).clipped(size).xyxy(),
    }
}

fn found_point(p: &moondream2::DetectedPoint, label: &str, size: ImageSize) -> FoundPoint {
    let px = NormPoint { x: p.x, y: p.y }.to_pixels(size);
    FoundPoint {
        x: p.x,
        y: p.y,
        label: label.to_string(),
        pixel: [px.x, px.y],
    }
}

/// Statistics of a caption/query: the prompt is the text template (BOS and the 729 image
/// positions are prefilled with the image, inside `vision_encode_s`).
fn text_stats(g: &Generation, vision_encode_s: f64, max_tokens: usize) -> GenerationStats {
    let t = timings(vision_encode_s, g.prefill_time, g.decode_time);
    let finish = if g.tokens.len() >= max_tokens {
        FinishReason::Length
    } else {
        FinishReason::Stop
    };
    // The stop token counts, as mlx-vlm counts it.
    let generated = g.tokens.len() + (finish == FinishReason::Stop) as usize;
    GenerationStats::from_timings(g.prompt_tokens, generated, t, peak_memory(), finish)
}

/// Clock readings from the image encoding, prefill and decode durations, in that order.
fn timings(vision_encode_s: f64, prefill: Duration, decode: Duration) -> Timings {
    let first = vision_encode_s + prefill.as_secs_f64();
    Timings {
        vision_encode_s,
        first_token_s: first,
        last_token_s: first + decode.as_secs_f64(),
        decode_host: Default::default(),
    }
}

fn peak_memory() -> u64 {
    mlx_rs::memory::peak_memory().unwrap_or(0) as u64
}
