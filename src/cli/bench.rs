use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use vlm_models::distributed::Backend;
use vlm_models::dtype::DtypeChoice;
use vlm_models::image_io::load_image;

use crate::bench::{self, parse_lengths, BenchOptions, BenchTest, OutputFormat};

/// Measure prompt processing (ppN) and generation (tgN) speed, llama-bench style.
///
/// Prompts are random ordinary tokens from a seeded generator; EOS is ignored so every length is
/// exact; each test runs once to warm up, then --repetitions times (mean ± sd).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model: a checkpoint directory (mlx-community layout), a Hugging Face repo id such as
    /// mlx-community/gemma-4-31b-it-4bit (HF cache, HF_HUB_OFFLINE honoured), or omitted for the
    /// built-in tiny checkpoint (random weights, offline).
    #[arg(long, short)]
    pub model: Option<String>,
    /// Prompt lengths to prefill: a list (128,512) or a range (64-1024*2, 100-500+100).
    #[arg(short = 'p', long = "n-prompt", default_value = "512")]
    pub n_prompt: String,
    /// Generation lengths (after a 1-token prompt): a list or range as for -p. "0" runs none.
    #[arg(short = 'n', long = "n-gen", default_value = "128")]
    pub n_gen: String,
    /// An image: adds an img+tgN row per -n length (the image with a short question; rate = prompt
    /// tokens over time to first token, vision included).
    #[arg(long, value_name = "PATH")]
    pub image: Option<PathBuf>,
    /// Extra tests by name: pp512, tg128, pp512+tg128 (repeatable).
    #[arg(long = "test")]
    pub tests: Vec<BenchTest>,
    /// Measured runs per test.
    #[arg(short = 'r', long, default_value_t = 3)]
    pub repetitions: usize,
    /// Skip the warm-up run of each test.
    #[arg(long)]
    pub no_warmup: bool,
    /// Seed of the random prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(DtypeChoice))]
    pub dtype: DtypeChoice,
    /// Output format: md, csv, json, jsonl (jsonl prints each row as its test finishes).
    #[arg(short = 'o', long, default_value = "md", value_parser = clap::value_parser!(OutputFormat))]
    pub output: OutputFormat,
    /// Run as one rank of a tensor-parallel group (MLX distributed: ring, mpi, nccl or any;
    /// default any), as `generate --tensor-parallel`: every rank runs every test, rank 0 reports.
    #[arg(long, value_name = "BACKEND", num_args = 0..=1, default_missing_value = "any",
          value_parser = |s: &str| s.parse::<Backend>())]
    pub tensor_parallel: Option<Backend>,
}

fn lengths(spec: &str) -> Result<Vec<usize>> {
    if spec.trim() == "0" {
        return Ok(vec![]);
    }
    parse_lengths(spec).map_err(anyhow::Error::msg)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let mut tests: Vec<BenchTest> = lengths(&args.n_prompt)
        .context("-p")?
        .into_iter()
        .map(|n| BenchTest::Prompt { n })
        .collect();
    tests.extend(
        lengths(&args.n_gen)
            .context("-n")?
            .into_iter()
            .map(|n| BenchTest::Generate { n }),
    );
    let image = args.image.as_deref().map(load_image).transpose()?;
    if image.is_some() {
        let gens = lengths(&args.n_gen).context("-n")?;
        tests.extend(
            if gens.is_empty() { vec![1] } else { gens }
                .into_iter()
                .map(|gen| BenchTest::Image { gen }),
        );
    }
    tests.extend(args.tests.iter().copied());
    anyhow::ensure!(
        !tests.is_empty(),
        "nothing to run: -p 0 and -n 0 with no --test"
    );

    let (resolved, group) = match args.tensor_parallel {
        Some(backend) => {
            let (resolved, group) = crate::model_source::load_tensor_parallel(
                args.model.as_deref(),
                args.dtype,
                backend,
            )?;
            (resolved, Some(group))
        }
        None => (
            crate::model_source::load(args.model.as_deref(), args.dtype)?,
            None,
        ),
    };
    // Every rank runs the same tests in the same order (their collectives pair up); rank 0 reports.
    let quiet = group.as_ref().is_some_and(|g| g.rank() != 0);
    if let (Some(g), false) = (&group, quiet) {
        eprintln!(
            "tensor parallel: {} ranks ({} backend); rows are rank 0's, per-rank figures follow",
            g.size(),
            g.backend()
        );
    }
    let model = &resolved.model;
    let options = BenchOptions {
        tests,
        repetitions: args.repetitions,
        warmup: !args.no_warmup,
        seed: args.seed,
        image,
    };
    let mut out = std::io::stdout().lock();
    let jsonl = args.output == OutputFormat::Jsonl;
    let mut rows = bench::run(model, &options, |row| {
        if quiet {
            return Ok(());
        }
        eprintln!("{}: {:.2} ± {:.2} t/s", row.test, row.tps_mean, row.tps_sd);
        if jsonl {
            bench::write_jsonl_row(&mut out, row)?;
        }
        Ok(())
    })?;
    if let Some(g) = &group {
        bench::gather_rank_figures(g, &mut rows)?;
        if !quiet {
            for row in &rows {
                let ranks = row.ranks.as_deref().unwrap_or_default();
                let total: u64 = ranks.iter().map(|r| r.peak_memory_bytes).sum();
                let each: Vec<String> = ranks
                    .iter()
                    .map(|r| {
                        format!(
                            "rank {} {:.2} t/s, peak {:.2} GB",
                            r.rank,
                            r.tps_mean,
                            r.peak_memory_bytes as f64 / 1e9
                        )
                    })
                    .collect();
                eprintln!(
                    "{}: {}; all ranks: peak {:.2} GB",
                    row.test,
                    each.join(", "),
                    total as f64 / 1e9
                );
            }
        }
    }
    if !jsonl && !quiet {
        bench::write_rows(&mut out, args.output, &rows)?;
    }
    out.flush()?;
    Ok(())
}
