//! Gemma 3 text models (mlx-lm 0.32 `gemma3_text`, and the text model of `gemma3` checkpoints).

pub mod config;
pub mod cpu;
pub mod text;

pub use config::{Config, TextConfig};
pub use text::{Gemma3Text, DEFAULT_PREFILL_STEP_SIZE};
