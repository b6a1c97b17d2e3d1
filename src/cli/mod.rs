//! The command line: parse flags, call one function, print. Errors reach `main` as one line.

mod doctor;
mod make_tiny;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Run and benchmark vision-language models (Gemma 4, Moondream2) from 4-bit MLX checkpoints.
#[derive(Debug, Parser)]
#[command(name = "vlmbench", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Doctor(doctor::DoctorArgs),
    MakeTiny(make_tiny::MakeTinyArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Doctor(args) => doctor::run(&args),
        Command::MakeTiny(args) => make_tiny::run(&args),
    }
}
