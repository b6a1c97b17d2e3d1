//! `vlmbench sweep`: generations over a list of prompt lengths (random prompts) or over named
//! prompts (the seed notebook's throughput table), saved after every point and resumable.

use std::path::Path;

use anyhow::Result;
use vlm_models::dtype::dtype_name;
use vlm_models::image_io::RgbImage;
use vlm_models::model::{default_prefill_step_size, LoadedModel, Prompt};
use vlm_models::runtime;
use vlm_models::sampling::Sampler;

use super::results::{Measurement, ResultKind, ResultsFile, RunInfo};
use super::PromptIds;
use crate::engine::{self, GenerateOptions};

/// One prompt to measure: random ids of a length, or a user message (with an image or not)
/// through the chat template.
#[derive(Clone, Debug)]
pub enum SweepPrompt {
    Random {
        tokens: usize,
    },
    Chat {
        label: String,
        text: String,
        image: Option<RgbImage>,
    },
}

impl SweepPrompt {
    pub fn label(&self) -> String {
        match self {
            SweepPrompt::Random { tokens } => format!("pp{tokens}"),
            SweepPrompt::Chat { label, .. } => label.clone(),
        }
    }

    pub fn has_image(&self) -> bool {
        matches!(self, SweepPrompt::Chat { image: Some(_), .. })
    }
}

/// The seed notebook's six throughput prompts and max-token limits, verbatim (Part 3, "Prompt
/// Length vs Throughput"); `image` takes the place of its `classroom.jpg`.
pub fn notebook_prompts(image: &RgbImage) -> Vec<(SweepPrompt, usize)> {
    let chat = |label: &str, text: &str| SweepPrompt::Chat {
        label: label.into(),
        text: text.into(),
        image: None,
    };
    let with_image = |label: &str, text: &str| SweepPrompt::Chat {
        label: label.into(),
        text: text.into(),
        image: Some(image.clone()),
    };
    vec![
        (chat("Short text", "What is 2+2?"), 50),
        (chat("Medium text", "Explain the transformer architecture in detail, covering attention, positional encoding, and training."), 300),
        (chat("Long text", "Write a detailed tutorial on building a CNN for image classification in PyTorch. Cover data loading, model architecture with conv/pool/fc layers, training loop, evaluation, and common pitfalls. Include code snippets."), 500),
        (with_image("Image + short", "What is this?"), 50),
        (with_image("Image + medium", "Describe everything you see in this image in detail."), 300),
        (with_image("Image + long", "Analyze this image. Describe the setting, count all people, describe their activities, identify all objects, estimate the time of day, and suggest what event is taking place. Be thorough."), 500),
    ]
}

pub struct SweepOptions {
    pub label: Option<String>,
    pub seed: u64,
    /// Generate exactly the max tokens (ignore EOS); the notebook's table stops at EOS.
    pub ignore_eos: bool,
}

pub fn run_info(model: &LoadedModel, label: Option<&str>) -> Result<RunInfo> {
    run_info_for(&model.dir, model.dtype, label)
}

/// [`run_info`] for a model given by its checkpoint directory and compute dtype.
pub fn run_info_for(
    dir: &std::path::Path,
    dtype: mlx_rs::Dtype,
    label: Option<&str>,
) -> Result<RunInfo> {
    let (kernels, prefill) = super::kernel_choices()?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let device = super::device_description();
    Ok(RunInfo {
        label: label
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{name} ({})", runtime::backend())),
        model: name,
        backend: runtime::backend().to_owned(),
        device,
        dtype: dtype_name(dtype).to_owned(),
        mlx_version: runtime::mlx_version(),
        vlmbench_version: env!("CARGO_PKG_VERSION").to_owned(),
        kernels: kernels.to_owned(),
        prefill: prefill.to_owned(),
    })
}

/// A recorded kernel or prefill choice matches, or was not recorded (older files).
fn same_choice(recorded: &str, now: &str) -> bool {
    recorded.is_empty() || recorded == now
}

fn ids_prompt(ids: Vec<u32>) -> Prompt {
    Prompt {
        ids,
        ..Default::default()
    }
}

/// Measures each `(prompt, max_tokens)` not already in `out` (when resuming), saving after each.
pub fn run(
    model: &LoadedModel,
    kind: ResultKind,
    prompts: &[(SweepPrompt, usize)],
    options: &SweepOptions,
    out: &Path,
    resume: bool,
    mut on_point: impl FnMut(&Measurement),
) -> Result<ResultsFile> {
    anyhow::ensure!(
        !prompts.is_empty(),
        "the sweep is empty: give at least one prompt length or prompt"
    );
    let run = run_info(model, options.label.as_deref())?;
    let mut results = if resume && out.exists() {
        let previous = ResultsFile::load(out)?;
        anyhow::ensure!(
            previous.kind == kind
                && previous.run.model == run.model
                && previous.run.dtype == run.dtype
                && same_choice(&previous.run.kernels, &run.kernels)
                && same_choice(&previous.run.prefill, &run.prefill),
            "--resume: {} holds a different run ({:?}, model {}, {}, kernels {}, prefill {}): use another --out",
            out.display(),
            previous.kind,
            previous.run.model,
            previous.run.dtype,
            previous.run.kernels,
            previous.run.prefill
        );
        previous
    } else {
        ResultsFile {
            kind,
            run,
            measurements: vec![],
        }
    };
    let mut ids = PromptIds::new(model, options.seed);
    let stop_ids = if options.ignore_eos {
        vec![]
    } else {
        model.generation.eos_token_ids.clone()
    };
    let measure = |prompt: &Prompt, max_tokens: usize| -> Result<crate::engine::GenerationStats> {
        let _ = mlx_rs::memory::reset_peak_memory();
        let mut sampler = Sampler::greedy();
        let options = GenerateOptions {
            max_tokens,
            stop_ids: stop_ids.clone(),
            top_logprobs: 0,
        };
        let mut decoder = model.decoder(default_prefill_step_size());
        Ok(
            engine::generate_prompt(decoder.as_mut(), prompt, &mut sampler, &options, |_| Ok(()))?
                .stats,
        )
    };
    let chat_prompt = |text: &str, image: &Option<RgbImage>| -> Result<Prompt> {
        Ok(model.build_prompt(text, image.as_slice())?)
    };
    // Warm-up (kernel compilation, allocator growth), as tools/reference/bench_reference.py does:
    // the first point's shape with other ids, not measured.
    if results.measurements.len() < prompts.len() {
        let (first, max_tokens) = &prompts[0];
        let warm = match first {
            SweepPrompt::Random { tokens } => {
                ids_prompt(PromptIds::new(model, options.seed + 1).next(*tokens))
            }
            SweepPrompt::Chat { text, image, .. } => chat_prompt(text, image)?,
        };
        measure(&warm, *max_tokens)?;
    }
    for (prompt, max_tokens) in prompts {
        // Draw ids even for points we skip, so a resumed sweep measures the same prompts.
        let random_ids = match prompt {
            SweepPrompt::Random { tokens } => ids.next(*tokens),
            SweepPrompt::Chat { .. } => Vec::new(),
        };
        let label = prompt.label();
        if results.measurements.iter().any(|m| m.label == label) {
            continue;
        }
        // A chat prompt's time to first token includes building it (chat template, tokenizing,
        // image resize and normalization), as mlx-vlm's stream_generate counts its own.
        let (built, build_s) = match prompt {
            SweepPrompt::Random { .. } => (ids_prompt(random_ids), 0.0),
            SweepPrompt::Chat { text, image, .. } => {
                let building = std::time::Instant::now();
                let built = chat_prompt(text, image)?;
                (built, building.elapsed().as_secs_f64())
            }
        };
        // sweep --image: warm the vision tower's kernels first, as bench_reference.py --image does.
        if kind == ResultKind::PromptLengthSweep && prompt.has_image() {
            measure(&built, *max_tokens)?;
        }
        let mut stats = measure(&built, *max_tokens)?;
        stats.time_to_first_token_s += build_s;
        stats.total_s += build_s;
        let m = Measurement::from_stats(&label, prompt.has_image(), &stats);
        on_point(&m);
        results.measurements.push(m);
        results.save(out)?;
    }
    Ok(results)
}
