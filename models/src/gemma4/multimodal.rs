//! Image prompts for Gemma 4 (mlx-vlm `Gemma4Processor` + `Model.get_input_embeddings`): the
//! processor settings and image-token strings of a checkpoint, prompt expansion, and the merged
//! input embeddings with their `mm_token_type_ids`.

use mlx_rs::{Array, Dtype};

use super::config::{Config, MultimodalTokens};
use super::processor::{
    expand_image_tokens, ImageProcessorConfig, ImageTokens, ProcessedImage, ProcessorError,
};
use super::text::{merge_token_features, Gemma4Text};
use super::vision::Gemma4Vision;
use crate::checkpoint::Checkpoint;
use crate::error::{ModelError, Result};
use crate::image_io::RgbImage;
use crate::tokenizer::{Tokenizer, TokenizerError};

/// Everything a Gemma 4 checkpoint needs to take images.
#[derive(Debug, Clone)]
pub struct Gemma4Images {
    pub tower: Gemma4Vision,
    pub processor: ImageProcessorConfig,
    pub ids: MultimodalTokens,
    pub tokens: ImageTokens,
}

/// Loading failures: the tower's weights, the processor config, or the image-token strings.
#[derive(Debug, thiserror::Error)]
pub enum ImagesLoadError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

impl Gemma4Images {
    /// `None` for checkpoints without a vision tower (`gemma4_text`, or no `vision_tower.*` tensors).
    pub fn load(
        ckpt: &Checkpoint,
        config: &Config,
        tokenizer: &Tokenizer,
        dtype: Dtype,
    ) -> std::result::Result<Option<Self>, ImagesLoadError> {
        let (Some(vc), Some(ids)) = (&config.vision, &config.tokens) else {
            return Ok(None);
        };
        let has_tower = ckpt.tensor_names().any(|n| n.contains("vision_tower."));
        if !has_tower {
            return Ok(None);
        }
        let tower = Gemma4Vision::load(ckpt, vc, config.text.hidden_size, dtype)?;
        let processor = ImageProcessorConfig::from_dir(ckpt.dir())?;
        let tokens = ImageTokens {
            image: tokenizer.id_to_token(ids.image_token_id as u32)?,
            begin: tokenizer.id_to_token(ids.boi_token_id as u32)?,
            end: tokenizer.id_to_token(ids.eoi_token_id as u32)?,
        };
        Ok(Some(Gemma4Images {
            tower,
            processor,
            ids: ids.clone(),
            tokens,
        }))
    }

    /// Processes `images` and expands each image placeholder of the templated `prompt` to its
    /// block of soft tokens. Returns the expanded text and the processed images.
    pub fn expand(
        &self,
        prompt: &str,
        images: &[RgbImage],
    ) -> std::result::Result<(String, Vec<ProcessedImage>), ProcessorError> {
        let processed = images
            .iter()
            .map(|i| self.processor.process(i))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let counts: Vec<usize> = processed.iter().map(|p| p.num_soft_tokens).collect();
        Ok((
            expand_image_tokens(prompt, &self.tokens, &counts)?,
            processed,
        ))
    }

    /// `mm_token_type_ids [1, L]`: 1 image, 2 video, 3 audio, 0 text (the processor's rule).
    pub fn mm_token_type_ids(&self, ids: &[u32]) -> Array {
        let t: Vec<i32> = ids
            .iter()
            .map(|&i| {
                let i = i as i32;
                if i == self.ids.audio_token_id {
                    3
                } else if Some(i) == self.ids.video_token_id {
                    2
                } else if i == self.ids.image_token_id {
                    1
                } else {
                    0
                }
            })
            .collect();
        Array::from_slice(&t, &[1, t.len() as i32])
    }

    /// Soft tokens of `images` (evaluated), checked against the image tokens of `ids`.
    pub fn encode(&self, ids: &[u32], images: &[ProcessedImage]) -> Result<Array> {
        let n_tokens = ids
            .iter()
            .filter(|&&i| i as i32 == self.ids.image_token_id)
            .count();
        let n_soft: usize = images.iter().map(|i| i.num_soft_tokens).sum();
        if n_tokens != n_soft {
            return Err(ModelError::Input(format!(
                "the prompt has {n_tokens} image tokens but its {} image(s) give {n_soft} soft tokens",
                images.len()
            )));
        }
        let features = self.tower.encode(images)?;
        features.eval()?;
        Ok(features)
    }

    /// Input embeddings with `features` written over the image tokens (not scaled), as
    /// `get_input_embeddings` does.
    pub fn merge(&self, text: &Gemma4Text, ids: &Array, features: &Array) -> Result<Array> {
        let embeds = text.embed(ids)?;
        merge_token_features(&embeds, ids, self.ids.image_token_id, features)
    }
}
