use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::bench::results::ResultsFile;
use crate::report::charts;

/// Draw PNG charts from saved results (sweep and moondream-bench files); several files become several series.
#[derive(Debug, Args)]
pub struct ChartArgs {
    /// Results files written by `vlmbench sweep` or `vlmbench moondream-bench`.
    #[arg(required = true)]
    pub results: Vec<PathBuf>,
    /// Directory for the PNGs.
    #[arg(long, short, default_value = "charts")]
    pub out_dir: PathBuf,
}

pub fn run(args: &ChartArgs) -> Result<()> {
    let files = args
        .results
        .iter()
        .map(|p| ResultsFile::load(p))
        .collect::<Result<Vec<_>>>()?;
    for png in charts::chart_results(&files, &args.out_dir)? {
        println!("{}", png.display());
    }
    Ok(())
}
