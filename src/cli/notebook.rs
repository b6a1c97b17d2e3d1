use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use vlm_models::distributed::Backend;
use vlm_models::dtype::DtypeChoice;

use super::moondream_bench::{self, MoondreamBenchArgs};
use crate::notebook::gemma4::{self, NotebookOptions};
use crate::notebook::report::REPORT_FILE;
use crate::notebook::EvalSources;

/// Reproduce a seed study end to end: every section, with its report, tables and charts.
#[derive(Debug, Args)]
pub struct NotebookArgs {
    #[command(subcommand)]
    pub notebook: Notebook,
}

#[derive(Debug, Subcommand)]
pub enum Notebook {
    /// The Gemma 4 notebook: scene, chart and segmentation demos, VQAv2 and COCO evaluations,
    /// throughput table and charts, summary; written to OUT/report.md with notebook.json and PNGs.
    Gemma4(Gemma4Args),
    /// The Moondream benchmark script: six timed tasks and the total.
    Moondream(MoondreamBenchArgs),
}

#[derive(Debug, Args)]
pub struct Gemma4Args {
    /// Model: a checkpoint directory, a Hugging Face repo id (the notebook's is
    /// mlx-community/gemma-4-31b-it-4bit), or omitted for the built-in tiny checkpoint (random
    /// weights, offline).
    #[arg(long, short)]
    pub model: Option<String>,
    /// Output directory for report.md, notebook.json and the PNGs.
    #[arg(long, short, default_value = "notebook-gemma4")]
    pub out: PathBuf,
    /// Cut token limits (24) and sample counts (VQA 3, COCO 2): checks the whole pipeline quickly.
    #[arg(long)]
    pub quick: bool,
    /// Keep the sections already in OUT/notebook.json and run only the rest.
    #[arg(long)]
    pub resume: bool,
    /// A local copy of merve/vqav2-small (its parquet files); without it and without --hub the VQA
    /// section is skipped.
    #[arg(long, value_name = "DIR")]
    pub vqa_data: Option<PathBuf>,
    /// A local copy of detection-datasets/coco (its parquet files); without it and without --hub
    /// the COCO section is skipped.
    #[arg(long, value_name = "DIR")]
    pub coco_data: Option<PathBuf>,
    /// Stream the datasets from the Hugging Face hub when no local copy is given.
    #[arg(long)]
    pub hub: bool,
    /// Photo for scene understanding and the image throughput prompts (default: built-in astronaut).
    #[arg(long, value_name = "PATH")]
    pub scene_image: Option<PathBuf>,
    /// Photo for "Segment the main animal" (default: built-in cat photo).
    #[arg(long, value_name = "PATH")]
    pub segment_image: Option<PathBuf>,
    /// Compute dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(DtypeChoice))]
    pub dtype: DtypeChoice,
    /// Run as one rank of a tensor-parallel group (MLX distributed: ring, mpi, nccl or any;
    /// default any), as `generate --tensor-parallel`: every rank runs every section on its share
    /// of the decoder, rank 0 writes the report. Not with --resume.
    #[arg(long, value_name = "BACKEND", num_args = 0..=1, default_missing_value = "any",
          value_parser = |s: &str| s.parse::<Backend>())]
    pub tensor_parallel: Option<Backend>,
}

pub fn run(args: &NotebookArgs) -> Result<()> {
    match &args.notebook {
        Notebook::Gemma4(a) => run_gemma4(a),
        Notebook::Moondream(a) => moondream_bench::run(a),
    }
}

fn run_gemma4(args: &Gemma4Args) -> Result<()> {
    let options = NotebookOptions {
        model: args.model.clone(),
        dtype: args.dtype,
        out: args.out.clone(),
        quick: args.quick,
        resume: args.resume,
        scene_image: args.scene_image.clone(),
        segment_image: args.segment_image.clone(),
        eval: EvalSources {
            vqa_data: args.vqa_data.clone(),
            coco_data: args.coco_data.clone(),
            hub: args.hub,
        },
        tensor_parallel: args.tensor_parallel,
    };
    // On a tensor-parallel group only rank 0 writes the report.
    if gemma4::run(&options, |line| eprintln!("{line}"))?.wrote_out {
        println!("report: {}", args.out.join(REPORT_FILE).display());
    }
    Ok(())
}
