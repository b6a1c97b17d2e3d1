use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use vlm_models::dtype::DtypeChoice;

use crate::bench::parse_lengths;
use crate::bench::results::ResultKind;
use crate::bench::sweep::{self, notebook_prompts, SweepOptions, SweepPrompt};
use crate::report::charts;
use crate::report::tables::measurements_table;
use crate::sample_images::{image_or_sample, ASTRONAUT};

/// Measure generation over many prompts: a prompt-length sweep, the notebook's throughput table,
/// or a file of prompts. Results are saved after every point (--resume continues a run).
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Model: a checkpoint directory (mlx-community layout), a Hugging Face repo id such as
    /// mlx-community/gemma-4-31b-it-4bit (HF cache, HF_HUB_OFFLINE honoured), or omitted for the
    /// built-in tiny checkpoint (random weights, offline).
    #[arg(long, short)]
    pub model: Option<String>,
    /// Prompt lengths of random prompts: a list (64,256) or a range (64-4096*2, 100-500+100).
    #[arg(long, conflicts_with_all = ["notebook", "prompts_file"])]
    pub lengths: Option<String>,
    /// The seed notebook's six throughput prompts and max-token limits (three with an image).
    #[arg(long, conflicts_with = "prompts_file")]
    pub notebook: bool,
    /// The image of the notebook's image prompts (default: the built-in astronaut photo, standing in
    /// for the notebook's classroom.jpg).
    #[arg(long, requires = "notebook", value_name = "PATH")]
    pub notebook_image: Option<PathBuf>,
    /// A file with one user prompt per line (through the chat template).
    #[arg(long)]
    pub prompts_file: Option<PathBuf>,
    /// Length sweeps: also measure one prompt with this image ("Describe this image.", --gen
    /// tokens, EOS ignored), labelled img+tgN: time to first token with an image, side by side
    /// with tools/reference/bench_reference.py --image.
    #[arg(long, conflicts_with_all = ["notebook", "prompts_file"], value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Tokens to generate per prompt (lengths and prompts-file; EOS ignored).
    #[arg(long, default_value_t = 32)]
    pub gen: usize,
    /// Results file (JSON), rewritten after every point.
    #[arg(long, short, default_value = "sweep.json")]
    pub out: PathBuf,
    /// Keep the points already in --out and measure only the rest.
    #[arg(long)]
    pub resume: bool,
    /// Series name in charts (default: model name and backend).
    #[arg(long)]
    pub label: Option<String>,
    /// Also draw the charts into this directory.
    #[arg(long)]
    pub chart_dir: Option<PathBuf>,
    /// Seed of the random prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(DtypeChoice))]
    pub dtype: DtypeChoice,
}

pub fn run(args: &SweepArgs) -> Result<()> {
    let (kind, prompts, ignore_eos) = if args.notebook {
        let (image, _) = image_or_sample(args.notebook_image.as_deref(), ASTRONAUT)?;
        (ResultKind::PromptTable, notebook_prompts(&image), false)
    } else if let Some(file) = &args.prompts_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read prompts file {}", file.display()))?;
        let prompts: Vec<_> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .enumerate()
            .map(|(i, l)| {
                (
                    SweepPrompt::Chat {
                        label: format!("prompt {}", i + 1),
                        text: l.to_owned(),
                        image: None,
                    },
                    args.gen,
                )
            })
            .collect();
        anyhow::ensure!(
            !prompts.is_empty(),
            "prompts file {} has no prompts",
            file.display()
        );
        (ResultKind::PromptTable, prompts, true)
    } else {
        let spec = args.lengths.as_deref().unwrap_or("64-1024*2");
        let lengths = parse_lengths(spec)
            .map_err(anyhow::Error::msg)
            .context("--lengths")?;
        let mut prompts: Vec<_> = lengths
            .into_iter()
            .map(|tokens| (SweepPrompt::Random { tokens }, args.gen))
            .collect();
        if let Some(path) = &args.image {
            let (image, _) = image_or_sample(Some(path), ASTRONAUT)?;
            prompts.push((
                SweepPrompt::Chat {
                    label: format!("img+tg{}", args.gen),
                    text: crate::bench::IMAGE_QUESTION.into(),
                    image: Some(image),
                },
                args.gen,
            ));
        }
        (ResultKind::PromptLengthSweep, prompts, true)
    };
    let resolved = crate::model_source::load(args.model.as_deref(), args.dtype)?;
    let model = &resolved.model;
    let options = SweepOptions {
        label: args.label.clone(),
        seed: args.seed,
        ignore_eos,
    };
    let results = sweep::run(
        model,
        kind,
        &prompts,
        &options,
        &args.out,
        args.resume,
        |m| {
            eprintln!(
                "{}: {} prompt tokens, {:.1} tok/s prefill, {:.1} tok/s decode",
                m.label, m.prompt_tokens, m.prefill_tps, m.decode_tps
            );
        },
    )?;
    println!("{}", measurements_table(&results.measurements));
    eprintln!("results: {}", args.out.display());
    if let Some(dir) = &args.chart_dir {
        for png in charts::chart_results(&[results], dir)? {
            eprintln!("chart: {}", png.display());
        }
    }
    Ok(())
}
