//! Gemma 4 (mlx-vlm 0.7.10 `gemma4` / `gemma4_text`): configuration, text decoder and image processor.

pub mod config;
pub mod moe;
pub mod processor;
pub mod text;

pub use config::{Config, LayerType, RopeParameters, TextConfig, VisionConfig};
pub use processor::{
    expand_image_tokens, ImageProcessorConfig, ImageTokens, ProcessedImage, ProcessorError,
};
pub use text::{merge_token_features, Gemma4Text, Logits, TextInput, DEFAULT_PREFILL_STEP_SIZE};
