//! Gemma 4 (mlx-vlm 0.7.10 `gemma4` / `gemma4_text`): configuration, text decoder, image processor and vision tower.

pub mod config;
pub mod cpu;
pub mod moe;
pub mod multimodal;
pub mod processor;
pub mod tensor_parallel;
pub mod text;
pub mod vision;

pub use config::{Config, LayerType, RopeParameters, TextConfig, VisionConfig};
pub use multimodal::{Gemma4Images, ImagesLoadError};
pub use processor::{
    expand_image_tokens, ImageProcessorConfig, ImageTokens, ProcessedImage, ProcessorError,
};
pub use text::{merge_token_features, Gemma4Text, Logits, TextInput, DEFAULT_PREFILL_STEP_SIZE};
pub use vision::Gemma4Vision;
