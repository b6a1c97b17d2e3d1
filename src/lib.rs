//! vlmbench: run vision-language models from 4-bit MLX checkpoints, reproduce the seed studies,
//! and report honest numbers. See README.md.

pub mod bench;
pub mod cli;
pub mod doctor;
pub mod engine;
pub mod eval;
pub mod model_source;
pub mod report;
pub mod tasks;
