use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use vlm_models::distributed::Backend;
use vlm_models::dtype::DtypeChoice;

use crate::eval::datasets::{COCO_DEFAULT_N, VQA_DEFAULT_N};
use crate::eval::session::{eval_coco, eval_vqa, DataSource, EvalOptions};
use crate::tasks::prompts::{COCO_DETECT_MAX_TOKENS, VQA_MAX_TOKENS};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EvalTask {
    /// VQAv2 exact match (merve/vqav2-small, validation): 50 questions sampled as the notebook does.
    Vqa,
    /// Class-aware COCO localization (detection-datasets/coco, val): the first 20 images with 2+ objects of known classes.
    Coco,
}

/// Reproduce the notebook's evaluations: one JSON line per sample in --out as it finishes
/// (samples.jsonl; --resume continues), then summary.json, tables and (COCO) figures.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["data", "hub"])))]
pub struct EvalArgs {
    pub task: EvalTask,
    /// Model: a checkpoint directory, a Hugging Face repo id, or omitted for the built-in tiny
    /// checkpoint (random weights: the numbers mean nothing).
    #[arg(long, short)]
    pub model: Option<String>,
    /// A local copy of the dataset: a directory of parquet shards (data/<split>-*.parquet or *.parquet).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Stream the notebook's dataset from the Hugging Face hub (cache, HF_HUB_OFFLINE honoured).
    #[arg(long)]
    pub hub: bool,
    /// Number of samples (default: the notebook's, 50 VQA / 20 COCO).
    #[arg(short = 'n', long)]
    pub n: Option<usize>,
    /// Run directory (default: eval-runs/<task>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in --out, skipping finished samples.
    #[arg(long)]
    pub resume: bool,
    /// Most tokens per answer (default: the notebook's, 20 VQA / 1024 COCO).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Compute dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.
    #[arg(long, default_value = "auto", value_parser = clap::value_parser!(DtypeChoice))]
    pub dtype: DtypeChoice,
    /// Run as one rank of an MLX distributed group (ring, mpi, nccl or any; default any): every
    /// rank is started with the same arguments under MLX's launch conventions (docs/distributed.md),
    /// runs samples i with i % ranks == rank into --out/shards/, and rank 0 merges them into --out
    /// as one process would have written it. --out must be the same directory for every rank.
    #[arg(long, value_name = "BACKEND", num_args = 0..=1, default_missing_value = "any",
          value_parser = |s: &str| s.parse::<Backend>())]
    pub distributed: Option<Backend>,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let (name, n, max_tokens) = match args.task {
        EvalTask::Vqa => ("vqa", VQA_DEFAULT_N, VQA_MAX_TOKENS),
        EvalTask::Coco => ("coco", COCO_DEFAULT_N, COCO_DETECT_MAX_TOKENS),
    };
    let options = EvalOptions {
        model: args.model.clone(),
        dtype: args.dtype,
        data: match &args.data {
            Some(dir) => DataSource::Dir(dir.clone()),
            None => DataSource::Hub,
        },
        n: args.n.unwrap_or(n),
        out: args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("eval-runs").join(name)),
        resume: args.resume,
        max_tokens: args.max_tokens.unwrap_or(max_tokens),
        distributed: args.distributed,
    };
    anyhow::ensure!(options.n > 0, "-n must be at least 1");
    anyhow::ensure!(options.max_tokens > 0, "--max-tokens must be at least 1");
    match args.task {
        EvalTask::Vqa => eval_vqa(&options)?,
        EvalTask::Coco => eval_coco(&options)?,
    };
    Ok(())
}
