//! vlmbench: run vision-language models from 4-bit MLX checkpoints, reproduce the seed studies,
//! and report honest numbers. See README.md.

pub mod bench;
pub mod cli;
pub mod doctor;
pub mod engine;
pub mod eval;
pub mod json_file;
pub mod model_source;
pub mod notebook;
pub mod report;
pub mod sample_images;
pub mod tasks;
