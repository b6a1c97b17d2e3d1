use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::report::chart_input::ChartInput;
use crate::report::{charts, scaling_charts};

/// Draw PNG charts from saved results (sweep and moondream-bench files; several files become
/// several series) and from `vlmbench bench -o json` files of runs on different numbers of
/// processes (scaling.png, scaling_memory.png).
#[derive(Debug, Args)]
pub struct ChartArgs {
    /// Results files written by `vlmbench sweep` or `vlmbench moondream-bench`, or `vlmbench bench -o json` output.
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// Directory for the PNGs.
    #[arg(long, short, default_value = "charts")]
    pub out_dir: PathBuf,
}

pub fn run(args: &ChartArgs) -> Result<()> {
    let (mut results, mut bench) = (Vec::new(), Vec::new());
    for path in &args.results {
        match ChartInput::load(path)? {
            ChartInput::Results(file) => results.push(file),
            ChartInput::Bench(file) => bench.push(file),
        }
    }
    let mut written = Vec::new();
    if !results.is_empty() {
        written.extend(charts::chart_results(&results, &args.out_dir)?);
    }
    if !bench.is_empty() {
        written.extend(scaling_charts::chart_scaling(&bench, &args.out_dir)?);
    }
    for png in written {
        println!("{}", png.display());
    }
    Ok(())
}
