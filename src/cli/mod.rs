//! The command line: parse flags, call one function, print. Errors reach `main` as one line.

mod bench;
mod chart;
mod compare;
mod convert;
mod doctor;
mod eval;
mod generate;
mod kernels;
mod make_scenes;
mod make_tiny;
mod moondream_bench;
mod notebook;
mod sampling_args;
mod sweep;
mod task;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Run and benchmark vision-language models (Gemma 4, Moondream2) from 4-bit MLX checkpoints.
#[derive(Debug, Parser)]
#[command(name = "vlmbench", version, about, long_about = None)]
pub struct Cli {
    /// Never touch the network: models come from local directories or the HF cache only
    /// (same as HF_HUB_OFFLINE=1).
    #[arg(long, global = true)]
    pub offline: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Convert(convert::ConvertArgs),
    Doctor(doctor::DoctorArgs),
    Kernels(kernels::KernelsArgs),
    Eval(eval::EvalArgs),
    Bench(bench::BenchArgs),
    Sweep(sweep::SweepArgs),
    Chart(chart::ChartArgs),
    Compare(compare::CompareArgs),
    Generate(generate::GenerateArgs),
    Caption(task::CaptionArgs),
    Query(task::QueryArgs),
    /// Find every instance of a named thing and box it (Moondream's detect).
    Detect(task::ObjectArgs),
    /// Find every instance of a named thing and point at it (Moondream's point).
    Point(task::ObjectArgs),
    Segment(task::SegmentArgs),
    Draw(task::DrawArgs),
    MoondreamBench(moondream_bench::MoondreamBenchArgs),
    Notebook(notebook::NotebookArgs),
    MakeTiny(make_tiny::MakeTinyArgs),
    MakeScenes(make_scenes::MakeScenesArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    if cli.offline {
        // Read by hub::ResolveOptions::from_env; set before any thread starts.
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }
    match cli.command {
        Command::Convert(args) => convert::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Kernels(args) => kernels::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Chart(args) => chart::run(&args),
        Command::Compare(args) => compare::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Caption(args) => task::caption(&args),
        Command::Query(args) => task::query(&args),
        Command::Detect(args) => task::detect(&args),
        Command::Point(args) => task::point(&args),
        Command::Segment(args) => task::segment(&args),
        Command::Draw(args) => task::draw_saved(&args),
        Command::MoondreamBench(args) => moondream_bench::run(&args),
        Command::Notebook(args) => notebook::run(&args),
        Command::MakeTiny(args) => make_tiny::run(&args),
        Command::MakeScenes(args) => make_scenes::run(&args),
    }
}

/// An error and its causes as one line: "what failed: why: why". Error types that already print
/// their source in their own message would repeat it; a cause already contained in the line is skipped.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(text.trim()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text.trim());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read x.json: {source}")]
    struct Repeats {
        source: std::io::Error,
    }

    #[test]
    fn one_line_skips_causes_already_in_the_message_and_joins_the_rest() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Repeats { source: io }).context("cannot load model m");
        assert_eq!(
            one_line(&e),
            "cannot load model m: cannot read x.json: no such file"
        );
        let multi = anyhow::anyhow!("line one\nline two").context("outer");
        assert_eq!(one_line(&multi), "outer: line one line two");
    }
}
