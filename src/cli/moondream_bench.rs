use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use tabled::builder::Builder;
use tabled::settings::Style;
use vlm_models::dtype::DtypeChoice;

use super::sampling_args::SamplingArgs;
use crate::bench::moondream::{self, AnswerFn};
use crate::bench::results::{Measurement, ResultsFile};
use crate::bench::sweep::{run_info, run_info_for};
use crate::model_source;
use crate::sample_images::{image_or_sample, ASTRONAUT};
use crate::tasks::moondream_native::{self, moondream_dir, NativeMoondream};
use vlm_models::moondream2::sampling::TextSettings;
use vlm_models::sampling::Sampler;

/// Time the Moondream seed script's six tasks on one image: short caption, streamed caption (first
/// token and average token latency), full caption, visual query, detection, pointing, and the total.
#[derive(Debug, Args)]
pub struct MoondreamBenchArgs {
    /// Model: a checkpoint directory, a Hugging Face repo id, or omitted for the built-in tiny
    /// checkpoint (random weights, offline).
    #[arg(long, short)]
    pub model: Option<String>,
    /// The image (the seed uses a snowman figurine and a public speech; default: the built-in
    /// astronaut photo).
    #[arg(long, short, value_name = "PATH")]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Compute dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(DtypeChoice))]
    pub dtype: DtypeChoice,
    /// Save the results (for `vlmbench compare` and `vlmbench chart`); written after every task.
    #[arg(long, short, value_name = "JSON")]
    pub output: Option<PathBuf>,
    /// Series name in comparisons and charts (default: model name and backend), e.g. "M4".
    #[arg(long)]
    pub label: Option<String>,
    /// Moondream2 only: moondream/starmie-v1's tokenizer.json (default: starmie-v1/tokenizer.json,
    /// then tokenizer.json, beside the weights).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
}

/// The model under test: Moondream2 with its text settings, or a prompted model with its sampler.
enum Loaded {
    Native(Box<NativeMoondream>, PathBuf, TextSettings),
    Prompted(Box<model_source::Resolved>, Sampler),
}

pub fn run(args: &MoondreamBenchArgs) -> Result<()> {
    let (image, image_name) = image_or_sample(args.image.as_deref(), ASTRONAUT)?;
    let global_start = std::time::Instant::now();
    // Moondream2 answers natively; any other model through the task prompts.
    let mut loaded = match moondream_dir(args.model.as_deref())? {
        Some(dir) => {
            let model = NativeMoondream::load(&dir, args.tokenizer.as_deref(), args.dtype)?;
            let settings = args
                .sampling
                .moondream_settings(moondream_native::MAX_TOKENS)?;
            Loaded::Native(Box::new(model), dir, settings)
        }
        None if args.tokenizer.is_some() => bail!("--tokenizer is for Moondream2 checkpoints"),
        None => {
            let resolved = model_source::load(args.model.as_deref(), args.dtype)?;
            let sampler = args.sampling.sampler(&resolved.model)?;
            Loaded::Prompted(Box::new(resolved), sampler)
        }
    };
    let label = args.label.as_deref();
    let (info, spec, load_s, mut answer): (_, _, _, Box<AnswerFn>) = match &mut loaded {
        Loaded::Native(model, dir, settings) => {
            let (model, settings, image) = (&**model, &*settings, &image);
            let answer = Box::new(
                move |task: &_, on_piece: &mut dyn FnMut(&str) -> Result<()>| {
                    let (answered, output) = model.answer(image, task, settings, on_piece)?;
                    Ok((answered, Ok(output)))
                },
            );
            (
                run_info_for(dir, model.dtype, label)?,
                args.model.clone().unwrap_or_default(),
                model.load_s,
                answer,
            )
        }
        Loaded::Prompted(resolved, sampler) => {
            let info = run_info(&resolved.model, label)?;
            (
                info,
                resolved.spec.clone(),
                resolved.load_s,
                moondream::prompted(&resolved.model, &image, sampler),
            )
        }
    };
    println!(
        "Model: {} on {}, image {} ({}x{})\n",
        spec,
        info.device,
        image_name,
        image.width(),
        image.height()
    );
    let mut partial = ResultsFile {
        kind: crate::bench::results::ResultKind::TaskBench,
        run: info.clone(),
        measurements: vec![],
    };
    let mut out = std::io::stdout();
    let mut stream_started = false;

    let results = moondream::run(
        &mut *answer,
        info,
        |m| {
            let answer = m.answer.as_deref().unwrap_or("");
            match (m.stream_first_token_s, m.stream_avg_token_s) {
                (Some(first), Some(avg)) => {
                    println!("\n\n--- Benchmark Results ---");
                    println!("First token latency: {first:.3} sec");
                    println!("Average token latency: {avg:.3} sec");
                }
                _ => println!("{}:\n{answer}", m.label),
            }
            println!("[{} runtime: {:.3} sec]\n", m.label, m.total_s);
            if let Some(path) = &args.output {
                partial.measurements.push(m.clone());
                partial.save(path)?;
            }
            Ok(())
        },
        |piece| {
            if !std::mem::replace(&mut stream_started, true) {
                println!("Normal caption (streamed with timing):");
            }
            print!("{piece}");
            out.flush()?;
            Ok(())
        },
    )?;
    let total: f64 = results.measurements.iter().map(|m| m.total_s).sum();
    println!(
        "=== Total end-to-end runtime: {:.3} sec (tasks {total:.3} s, model load {:.3} s) ===\n",
        global_start.elapsed().as_secs_f64(),
        load_s
    );

    println!("{}", results_table(&results.measurements, total));
    if let Some(path) = &args.output {
        results.save(path)?;
        eprintln!("results written to {}", path.display());
    }
    Ok(())
}

/// The benchmark's closing table: each task's runtime, token counts, decode rate and time to
/// first token, and the total.
fn results_table(measurements: &[Measurement], total: f64) -> String {
    let mut table = Builder::default();
    table.push_record([
        "Task",
        "Runtime (s)",
        "Prompt tok",
        "Gen tok",
        "Gen tok/s",
        "TTFT (s)",
    ]);
    for m in measurements {
        table.push_record([
            m.label.clone(),
            format!("{:.2}", m.total_s),
            m.prompt_tokens.to_string(),
            m.gen_tokens.to_string(),
            format!("{:.1}", m.decode_tps),
            format!("{:.3}", m.time_to_first_token_s),
        ]);
    }
    table.push_record([
        "**Total runtime**".to_string(),
        format!("{total:.2}"),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    table.build().with(Style::markdown()).to_string()
}
