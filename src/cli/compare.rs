use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::bench::compare;
use crate::bench::results::ResultsFile;

/// Compare two results files task by task: runtimes and B's speedup over A, with the total.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline results file.
    pub a: PathBuf,
    /// The results file compared against the baseline.
    pub b: PathBuf,
}

pub fn run(args: &CompareArgs) -> Result<()> {
    let a = ResultsFile::load(&args.a)?;
    let b = ResultsFile::load(&args.b)?;
    let (rows, total) = compare::compare(&a, &b)?;
    println!("A = {}", a.run.describe());
    println!("B = {}", b.run.describe());
    println!();
    println!("{}", compare::render(&a, &b, &rows, &total));
    println!();
    println!("{}", compare::render_figures(&a, &b));
    Ok(())
}
