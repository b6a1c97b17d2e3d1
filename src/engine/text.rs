//! Generation with the text decoded as it arrives, the way every user-facing command wants it.

use anyhow::Result;
use vlm_models::model::{LoadedModel, Prompt};
use vlm_models::sampling::Sampler;

use super::{generate_prompt, GenerateOptions, Generation};

/// A generation and its decoded text.
#[derive(Clone, Debug)]
pub struct TextGeneration {
    /// The decoded answer, without the stop token.
    pub text: String,
    pub generation: Generation,
}

/// Generates from `prompt` with `model`, decoding as it goes. `on_piece` sees each piece of text
/// as soon as it is generated (one call per token, the stop token excepted: it is counted but not
/// shown, as in mlx-vlm; a piece may be empty while a character's bytes are incomplete), then the
/// final piece if the detokenizer held one back.
pub fn generate_text(
    model: &LoadedModel,
    prompt: &Prompt,
    sampler: &mut Sampler,
    options: &GenerateOptions,
    mut on_piece: impl FnMut(&str) -> Result<()>,
) -> Result<TextGeneration> {
    let mut detokenizer = model.tokenizer.streaming_detokenizer();
    let mut text = String::new();
    let mut decoder = model.decoder(vlm_models::model::default_prefill_step_size());
    let generation = generate_prompt(decoder.as_mut(), prompt, sampler, options, |id| {
        if options.stop_ids.contains(&id) {
            return Ok(());
        }
        let piece = detokenizer.push(id)?;
        on_piece(&piece)?;
        text.push_str(&piece);
        Ok(())
    })?;
    let tail = detokenizer.finish()?;
    if !tail.is_empty() {
        on_piece(&tail)?;
    }
    text.push_str(&tail);
    Ok(TextGeneration { text, generation })
}
