use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use vlm_models::distributed::Backend;
use vlm_models::dtype::{dtype_name, DtypeChoice};
use vlm_models::image_io::load_image;

use super::sampling_args::SamplingArgs;
use crate::engine::{self, GenerateOptions, GenerationStats, TextGeneration, TokenLogprobs};
use crate::model_source;

/// Generate text from a prompt, streaming tokens and printing the statistics.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model: a checkpoint directory (mlx-community layout), a Hugging Face repo id such as
    /// mlx-community/gemma-4-31b-it-4bit (HF cache, HF_HUB_OFFLINE honoured), or omitted for the
    /// built-in tiny checkpoint (random weights, offline).
    #[arg(long, short)]
    pub model: Option<String>,
    /// The user message; it goes through the checkpoint's chat template (thinking off).
    #[arg(long, short)]
    pub prompt: String,
    /// An image file (PNG, JPEG, WebP) to put before the message; repeat for several, in order.
    #[arg(long = "image", value_name = "PATH")]
    pub images: Vec<PathBuf>,
    /// Most tokens to generate (the stop token counts).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Keep generating through stop tokens (exact lengths, for timing).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print text as it is generated.
    #[arg(long)]
    pub stream: bool,
    /// Compute dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(DtypeChoice))]
    pub dtype: DtypeChoice,
    /// Print one JSON object (text, token ids, statistics) instead of text.
    #[arg(long)]
    pub json: bool,
    /// With --json: each generated token's log-probability and the N (1-20) most likely tokens
    /// at its step as [id, logprob] pairs, most likely first ("logprobs"; natural log, before
    /// temperature and top-p/top-k, as mlx-vlm's logprobs).
    #[arg(long, value_name = "N", requires = "json",
          value_parser = clap::value_parser!(u16).range(1..=20))]
    pub logprobs: Option<u16>,
    /// Run as one rank of a tensor-parallel group (MLX distributed: ring, mpi, nccl or any;
    /// default any). Start every rank with the same arguments under MLX's launch conventions
    /// (docs/distributed.md); each holds its share of the decoder, all compute, rank 0 prints.
    #[arg(long, value_name = "BACKEND", num_args = 0..=1, default_missing_value = "any",
          value_parser = |s: &str| s.parse::<Backend>())]
    pub tensor_parallel: Option<Backend>,
}

#[derive(Serialize)]
struct GenerateReport<'a> {
    model: String,
    dtype: &'static str,
    load_s: f64,
    prompt: &'a str,
    /// Prompt token ids after image expansion.
    prompt_ids: &'a [u32],
    images: Vec<ImageReport>,
    text: String,
    token_ids: &'a [u32],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    logprobs: &'a [TokenLogprobs],
    stats: &'a GenerationStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    tensor_parallel: Option<TensorParallelReport>,
}

#[derive(Serialize)]
struct TensorParallelReport {
    backend: &'static str,
    ranks: i32,
}

#[derive(Serialize)]
struct ImageReport {
    path: String,
    /// `[3, height, width]` after the processor.
    pixel_shape: [u32; 3],
    soft_tokens: usize,
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    // Images first: a bad path fails in a second, before the model loads.
    let images = args
        .images
        .iter()
        .map(|p| load_image(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (resolved, group) = match args.tensor_parallel {
        Some(backend) => {
            let (resolved, group) =
                model_source::load_tensor_parallel(args.model.as_deref(), args.dtype, backend)?;
            (resolved, Some(group))
        }
        None => (model_source::load(args.model.as_deref(), args.dtype)?, None),
    };
    // Every rank computes; only rank 0 speaks.
    let quiet = group.as_ref().is_some_and(|g| g.rank() != 0);
    let (model, load_s, dtype) = (&resolved.model, resolved.load_s, resolved.model.dtype);

    let prompt = model.build_prompt(&args.prompt, &images)?;
    let mut sampler = args.sampling.sampler(model)?;
    let options = GenerateOptions {
        top_logprobs: args.logprobs.map_or(0, usize::from),
        ..GenerateOptions::with_eos(model, args.max_tokens, args.ignore_eos)
    };
    let stream = args.stream && !args.json && !quiet;
    let mut out = std::io::stdout().lock();
    let TextGeneration { text, generation } =
        engine::generate_text(model, &prompt, &mut sampler, &options, |piece| {
            if stream {
                write!(out, "{piece}")?;
                out.flush()?;
            }
            Ok(())
        })?;

    if quiet {
        return Ok(());
    }
    if args.json {
        let report = GenerateReport {
            model: model.dir.display().to_string(),
            dtype: dtype_name(dtype),
            load_s,
            prompt: &prompt.text,
            prompt_ids: &prompt.ids,
            images: args
                .images
                .iter()
                .zip(&prompt.images)
                .map(|(p, im)| ImageReport {
                    path: p.display().to_string(),
                    pixel_shape: [3, im.height, im.width],
                    soft_tokens: im.num_soft_tokens,
                })
                .collect(),
            text,
            token_ids: &generation.token_ids,
            logprobs: &generation.logprobs,
            stats: &generation.stats,
            tensor_parallel: group.as_ref().map(|g| TensorParallelReport {
                backend: g.backend().name(),
                ranks: g.size(),
            }),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        if stream {
            writeln!(out)?;
        } else {
            writeln!(out, "{text}")?;
        }
        eprint!(
            "{}",
            render_stats(&generation.stats, load_s, dtype_name(dtype))
        );
    }
    Ok(())
}

pub fn render_stats(s: &GenerationStats, load_s: f64, dtype: &str) -> String {
    format!(
        "==========\n\
         load: {load_s:.2} s ({dtype})\n\
         prompt: {} tokens, {:.1} tok/s prefill, time to first token {:.3} s (vision encoding {:.3} s)\n\
         generation: {} tokens, {:.1} tok/s decode ({}), {:.3} s\n\
         peak memory: {:.3} GB\n\
         mlx-vlm definitions: prompt_tps {:.1}, generation_tps {:.1}\n",
        s.prompt_tokens,
        s.prefill_tps,
        s.time_to_first_token_s,
        s.vision_encode_s,
        s.generation_tokens,
        s.decode_tps,
        match s.finish_reason {
            engine::FinishReason::Stop => "stopped at a stop token",
            engine::FinishReason::Length => "reached max tokens",
        },
        s.decode_s,
        s.reference.peak_memory_gb,
        s.reference.prompt_tps,
        s.reference.generation_tps,
    )
}
