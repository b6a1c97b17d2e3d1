//! Gemma 4 (mlx-vlm 0.7.10 `gemma4` / `gemma4_text`): configuration and text decoder.

pub mod config;
pub mod moe;
pub mod text;

pub use config::{Config, LayerType, RopeParameters, TextConfig, VisionConfig};
pub use text::{merge_token_features, Gemma4Text, Logits, TextInput, DEFAULT_PREFILL_STEP_SIZE};
