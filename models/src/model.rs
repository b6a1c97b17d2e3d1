//! The one entry point from a checkpoint directory to a model ready to generate: resolves
//! `model_type` to an architecture and loads its weights, tokenizer, chat template and stop ids.
//! Everything downstream (the engine, tasks, benchmarks) talks to [`LoadedModel`] and [`Decoder`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mlx_rs::{Array, Dtype};

use crate::cache::LayerCache;
use crate::chat_messages::ChatMessage;
use crate::chat_template::format_prompt;
use crate::chat_template::{ChatTemplate, ChatTemplateError, RenderOptions};
use crate::checkpoint::Checkpoint;
use crate::distributed::Group;
use crate::error::ModelError;
use crate::gemma3::cpu::CpuGemma3;
use crate::gemma3::Gemma3Text;
use crate::gemma4::cpu::CpuGemma4;
use crate::gemma4::{
    Config as Gemma4Config, Gemma4Images, Gemma4Text, ImagesLoadError, ProcessedImage,
    ProcessorError, DEFAULT_PREFILL_STEP_SIZE,
};
use crate::generation_config::{GenerationConfig, GenerationConfigError};
use crate::image_io::RgbImage;
use crate::kernels::cpu::on_workers;
use crate::kernels::cpu_ops::KvCache;
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::tokenizer_config::{TokenizerConfig, TokenizerConfigError};

/// Anything that can go wrong between a checkpoint directory and a ready model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    TokenizerConfig(#[from] TokenizerConfigError),
    #[error(transparent)]
    ChatTemplate(#[from] ChatTemplateError),
    #[error(transparent)]
    GenerationConfig(#[from] GenerationConfigError),
    #[error(transparent)]
    Images(#[from] ImagesLoadError),
    #[error("{dir}: model_type {model_type:?} is not supported (supported: {supported})")]
    UnsupportedModelType {
        dir: PathBuf,
        model_type: String,
        supported: String,
    },
    #[error("{dir}: tensor parallelism is implemented for Gemma 4 (gemma4, gemma4_text), not for model_type {model_type:?}")]
    TensorParallelUnsupported { dir: PathBuf, model_type: String },
}

/// The model families vlmbench runs: the one place that maps a checkpoint's `model_type` to code
/// and says what each can do. Tasks and the CLI ask here, never config.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `gemma4` (text decoder, vision tower) and `gemma4_text`: [`LoadedModel`].
    Gemma4,
    /// `gemma3` (its text model) and `gemma3_text`: [`LoadedModel`].
    Gemma3,
    /// `moondream1`, the published Moondream 2 checkpoint: [`crate::moondream2`], with its own
    /// caption, query, detect and point heads.
    Moondream2,
}

impl Family {
    /// Every family and the `model_type` values it answers to.
    pub const ALL: [(Family, &'static [&'static str]); 3] = [
        (Family::Gemma4, &["gemma4", "gemma4_text"]),
        (Family::Gemma3, &["gemma3", "gemma3_text"]),
        (Family::Moondream2, &[crate::moondream2::config::MODEL_TYPE]),
    ];

    /// The family of a `model_type`, if vlmbench runs it.
    pub fn of(model_type: &str) -> Option<Family> {
        Self::ALL
            .iter()
            .find(|(_, types)| types.contains(&model_type))
            .map(|(family, _)| *family)
    }

    /// The family the checkpoint in `dir` names in its config.json (`None`: no config.json, or
    /// a `model_type` vlmbench does not run).
    pub fn of_dir(dir: &Path) -> Result<Option<Family>, ModelError> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Ok(None);
        }
        let config = crate::checkpoint::read_json(&path)?;
        Ok(config
            .get("model_type")
            .and_then(serde_json::Value::as_str)
            .and_then(Family::of))
    }

    /// Whether the family runs through [`LoadedModel`] (the prompted, chat-templated path).
    pub fn loads_as_prompted(self) -> bool {
        self != Family::Moondream2
    }
}

/// The `model_type` values [`LoadedModel`] loads, for error messages.
fn prompted_model_types() -> String {
    Family::ALL
        .iter()
        .filter(|(family, _)| family.loads_as_prompted())
        .flat_map(|(_, types)| types.iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The architectures [`LoadedModel`] holds.
// One value per loaded model: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Architecture {
    /// `gemma4` and `gemma4_text`: the text decoder (the vision tower is in [`ImageSupport`]).
    Gemma4(Gemma4Text),
    /// `gemma3_text` and the text model of `gemma3` (mlx-lm semantics).
    Gemma3(Gemma3Text),
}

/// A model with everything needed to turn a prompt into tokens and tokens into text.
pub struct LoadedModel {
    pub dir: PathBuf,
    pub model_type: String,
    pub architecture: Architecture,
    pub tokenizer: Tokenizer,
    pub tokenizer_config: TokenizerConfig,
    pub chat_template: Option<ChatTemplate>,
    pub generation: GenerationConfig,
    /// The compute dtype every floating weight was cast to.
    pub dtype: Dtype,
    /// The vision tower and image processor, for checkpoints that take images.
    pub images: Option<ImageSupport>,
    /// The same text model as one CPU forward pass, when it runs there (see [`CpuModel`]).
    cpu: Option<CpuModel>,
}

/// A text model as one forward pass on the CPU ([`crate::gemma3::cpu`], [`crate::gemma4::cpu`]):
/// float32 models on a CPU stream unless `VLMBENCH_KERNELS=mlx`, whole models only (tensor-parallel
/// shards keep MLX's graph and its all-reduces).
enum CpuModel {
    Gemma3(CpuGemma3),
    Gemma4(CpuGemma4),
}

impl CpuModel {
    /// The CPU form of `architecture`, if it runs there; a model the CPU pass cannot take
    /// (experts, a weight's form) runs MLX's graph, said in one line.
    fn of(
        architecture: &Architecture,
        dtype: Dtype,
        whole: bool,
    ) -> Result<Option<Self>, ModelError> {
        if !whole || dtype != Dtype::Float32 || !crate::kernels::cpu::own_cpu_path()? {
            return Ok(None);
        }
        let built = match architecture {
            Architecture::Gemma3(m) => CpuGemma3::new(m).map(CpuModel::Gemma3),
            Architecture::Gemma4(m) => CpuGemma4::new(m).map(CpuModel::Gemma4),
        };
        Ok(built
            .inspect_err(|e| eprintln!("note: {e}; MLX's CPU operations run this model"))
            .ok())
    }
}

/// What a model needs to take images, by architecture.
pub enum ImageSupport {
    Gemma4(Gemma4Images),
}

/// A prompt ready for [`Decoder::prefill_prompt`]: the templated text, its token ids with every
/// image block expanded, and the processed images in prompt order.
#[derive(Debug, Clone, Default)]
pub struct Prompt {
    /// The chat-templated prompt before image expansion (mlx-vlm's `apply_chat_template` output).
    pub text: String,
    pub ids: Vec<u32>,
    pub images: Vec<ProcessedImage>,
}

/// Why a prompt could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error(transparent)]
    ChatTemplate(#[from] ChatTemplateError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    #[error("{dir}: this checkpoint ({model_type}) has no vision tower, so it cannot take images")]
    NoVision { dir: PathBuf, model_type: String },
}

/// What a prefill returns: the next-token logits `[1, V]` and the seconds spent encoding images.
pub struct Prefill {
    pub logits: Array,
    pub vision_encode_s: f64,
}

impl LoadedModel {
    /// Loads the checkpoint in `dir`, computing in `dtype`.
    pub fn load(dir: &Path, dtype: Dtype) -> Result<LoadedModel, LoadError> {
        Self::load_with(dir, dtype, None)
    }

    /// Loads this rank's tensor-parallel shard of the text decoder (the rest replicated); every
    /// rank of `group` must call it with the same checkpoint, then run the same generations.
    pub fn load_tensor_parallel(
        dir: &Path,
        dtype: Dtype,
        group: Arc<Group>,
    ) -> Result<LoadedModel, LoadError> {
        Self::load_with(dir, dtype, Some(group))
    }

    fn load_with(
        dir: &Path,
        dtype: Dtype,
        group: Option<Arc<Group>>,
    ) -> Result<LoadedModel, LoadError> {
        crate::kernels::check_choices()?;
        let checkpoint = Checkpoint::open(dir)?;
        let model_type = checkpoint.model_type().unwrap_or("").to_owned();
        let whole = group.is_none();
        let family = Family::of(&model_type).filter(|f| f.loads_as_prompted());
        let architecture = match (family, group) {
            (Some(Family::Gemma4), Some(group)) => {
                let config = Gemma4Config::from_checkpoint(&checkpoint)?;
                Architecture::Gemma4(Gemma4Text::load_tensor_parallel(
                    &checkpoint,
                    &config,
                    dtype,
                    group,
                )?)
            }
            (_, Some(_)) => {
                return Err(LoadError::TensorParallelUnsupported {
                    dir: dir.to_path_buf(),
                    model_type,
                });
            }
            (Some(Family::Gemma4), None) => {
                Architecture::Gemma4(Gemma4Text::load(&checkpoint, dtype)?)
            }
            (Some(Family::Gemma3), None) => {
                Architecture::Gemma3(Gemma3Text::load(&checkpoint, dtype)?)
            }
            _ => {
                return Err(LoadError::UnsupportedModelType {
                    dir: dir.to_path_buf(),
                    model_type,
                    supported: prompted_model_types(),
                })
            }
        };
        let cpu = CpuModel::of(&architecture, dtype, whole)?;
        let tokenizer = Tokenizer::from_dir(dir)?;
        let images = match model_type.as_str() {
            "gemma4" => Gemma4Images::load(
                &checkpoint,
                &Gemma4Config::from_checkpoint(&checkpoint)?,
                &tokenizer,
                dtype,
            )?
            .map(ImageSupport::Gemma4),
            _ => None,
        };
        let tokenizer_config = TokenizerConfig::load(dir)?;
        let chat_template = ChatTemplate::load(dir, &tokenizer_config)?;
        let generation = GenerationConfig::load(dir, &tokenizer, &tokenizer_config)?;
        Ok(LoadedModel {
            dir: dir.to_path_buf(),
            model_type,
            architecture,
            tokenizer,
            tokenizer_config,
            chat_template,
            generation,
            dtype,
            images,
            cpu,
        })
    }

    /// One user message with `images` (in order) as mlx-vlm prepares it: the chat template with
    /// one image part per image, each image processed, each placeholder expanded, tokenized.
    pub fn build_prompt(&self, text: &str, images: &[RgbImage]) -> Result<Prompt, PromptError> {
        let (formatted, add_specials) = self.format_user_prompt(text, images.len())?;
        if images.is_empty() {
            let ids = self.encode_prompt(&formatted, add_specials)?;
            return Ok(Prompt {
                text: formatted,
                ids,
                images: vec![],
            });
        }
        let Some(ImageSupport::Gemma4(support)) = &self.images else {
            return Err(PromptError::NoVision {
                dir: self.dir.clone(),
                model_type: self.model_type.clone(),
            });
        };
        let (expanded, processed) = support.expand(&formatted, images)?;
        let ids = self.encode_prompt(&expanded, add_specials)?;
        Ok(Prompt {
            text: formatted,
            ids,
            images: processed,
        })
    }

    /// The prompt string for one user message with `num_images` images, as mlx-vlm formats it
    /// (the checkpoint's chat template, thinking off), and whether the tokenizer must add specials.
    pub fn format_user_prompt(
        &self,
        text: &str,
        num_images: usize,
    ) -> Result<(String, bool), ChatTemplateError> {
        let messages = [ChatMessage::user_with_images(text, num_images)];
        let p = format_prompt(
            self.chat_template.as_ref(),
            &self.tokenizer_config,
            &messages,
            &RenderOptions::default(),
        )?;
        Ok((p.text, p.add_special_tokens))
    }

    /// Tokenizes a formatted prompt.
    pub fn encode_prompt(
        &self,
        prompt: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.tokenizer
            .encode_with_specials(prompt, add_special_tokens)
    }

    pub fn vocab_size(&self) -> i32 {
        match &self.architecture {
            Architecture::Gemma4(m) => m.config().vocab_size,
            Architecture::Gemma3(m) => m.config().vocab_size,
        }
    }

    /// A fresh generation state (empty caches). `prefill_step_size`: chunk length for long
    /// prompts (`None`: one pass), default [`DEFAULT_PREFILL_STEP_SIZE`] like mlx-vlm.
    pub fn decoder(&self, prefill_step_size: Option<i32>) -> Box<dyn Decoder + '_> {
        match &self.architecture {
            Architecture::Gemma4(model) => {
                let images = match &self.images {
                    Some(ImageSupport::Gemma4(i)) => Some(i),
                    _ => None,
                };
                let mlx = Gemma4Decoder {
                    model,
                    images,
                    cache: model.make_cache(),
                    prefill_step_size,
                };
                match &self.cpu {
                    Some(CpuModel::Gemma4(cpu)) => Box::new(CpuGemma4Decoder {
                        cache: cpu.make_cache(),
                        model: cpu,
                        mlx,
                        on_mlx: false,
                    }),
                    _ => Box::new(mlx),
                }
            }
            Architecture::Gemma3(model) => match &self.cpu {
                Some(CpuModel::Gemma3(cpu)) => Box::new(CpuGemma3Decoder {
                    cache: cpu.make_cache(),
                    model: cpu,
                }),
                _ => Box::new(Gemma3Decoder {
                    model,
                    cache: model.make_cache(),
                    prefill_step_size,
                }),
            },
        }
    }
}

/// One generation's state: feed a prompt, then one token at a time; get next-token logits.
pub trait Decoder {
    /// Runs the whole prompt; returns the logits `[1, V]` of its last position.
    fn prefill(&mut self, ids: &[u32]) -> Result<Array, ModelError>;
    /// Runs a prompt that may hold images: encodes them (timed separately), merges their soft
    /// tokens at the image tokens, and prefills. Text-only decoders refuse images.
    fn prefill_prompt(&mut self, prompt: &Prompt) -> Result<Prefill, ModelError> {
        if !prompt.images.is_empty() {
            return Err(ModelError::Input("this model does not take images".into()));
        }
        Ok(Prefill {
            logits: self.prefill(&prompt.ids)?,
            vision_encode_s: 0.0,
        })
    }
    /// Feeds one token `[1, 1]` (possibly not yet evaluated); returns logits `[1, V]`.
    fn step(&mut self, token: &Array) -> Result<Array, ModelError>;
    /// The sampled token every process goes on with (lazy). In a tensor-parallel group it is rank
    /// 0's draw, so ranks whose samplers disagree (unseeded sampling) still feed the same tokens
    /// and stop at the same step; a single process keeps its own.
    fn agree_on_token(&self, token: Array) -> Result<Array, ModelError> {
        Ok(token)
    }
    /// Tokens in the cache so far.
    fn offset(&self) -> i32;
    /// Whether `step` runs the forward pass before it returns (on the host) instead of queueing
    /// a graph: nothing overlaps then, so a token is best read before the next step is asked for.
    fn steps_eagerly(&self) -> bool {
        false
    }
}

pub fn default_prefill_step_size() -> Option<i32> {
    Some(DEFAULT_PREFILL_STEP_SIZE)
}

struct Gemma4Decoder<'m> {
    model: &'m Gemma4Text,
    images: Option<&'m Gemma4Images>,
    cache: Vec<LayerCache>,
    prefill_step_size: Option<i32>,
}

/// Prompt ids as the `[1, L]` int32 array the models take.
pub fn ids_array(ids: &[u32]) -> Array {
    let ids: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
    Array::from_slice(&ids, &[1, ids.len() as i32])
}

impl Decoder for Gemma4Decoder<'_> {
    fn prefill(&mut self, ids: &[u32]) -> Result<Array, ModelError> {
        self.cache = self.model.make_cache();
        self.model.prefill(
            &ids_array(ids),
            None,
            None,
            &mut self.cache,
            self.prefill_step_size,
        )
    }

    fn prefill_prompt(&mut self, prompt: &Prompt) -> Result<Prefill, ModelError> {
        if prompt.images.is_empty() {
            return Ok(Prefill {
                logits: self.prefill(&prompt.ids)?,
                vision_encode_s: 0.0,
            });
        }
        let images = self
            .images
            .ok_or_else(|| ModelError::Input("this checkpoint has no vision tower".into()))?;
        let started = std::time::Instant::now();
        let features = images.encode(&prompt.ids, &prompt.images)?;
        let vision_encode_s = started.elapsed().as_secs_f64();
        let ids = ids_array(&prompt.ids);
        let embeds = images.merge(self.model, &ids, &features)?;
        let mm = images.mm_token_type_ids(&prompt.ids);
        self.cache = self.model.make_cache();
        let logits = self.model.prefill(
            &ids,
            Some(&embeds),
            Some(&mm),
            &mut self.cache,
            self.prefill_step_size,
        )?;
        Ok(Prefill {
            logits,
            vision_encode_s,
        })
    }

    fn step(&mut self, token: &Array) -> Result<Array, ModelError> {
        self.model.decode_step(token, &mut self.cache)
    }

    fn agree_on_token(&self, token: Array) -> Result<Array, ModelError> {
        match self.model.group() {
            Some(group) => Ok(group.broadcast_from_rank0(&token)?),
            None => Ok(token),
        }
    }

    fn offset(&self) -> i32 {
        self.cache.first().map_or(0, LayerCache::offset)
    }
}

struct Gemma3Decoder<'m> {
    model: &'m Gemma3Text,
    cache: Vec<LayerCache>,
    prefill_step_size: Option<i32>,
}

impl Decoder for Gemma3Decoder<'_> {
    fn prefill(&mut self, ids: &[u32]) -> Result<Array, ModelError> {
        self.cache = self.model.make_cache();
        self.model
            .prefill(&ids_array(ids), &mut self.cache, self.prefill_step_size)
    }

    fn step(&mut self, token: &Array) -> Result<Array, ModelError> {
        self.model.decode_step(token, &mut self.cache)
    }

    fn offset(&self) -> i32 {
        self.cache.first().map_or(0, LayerCache::offset)
    }
}

/// A Gemma 3 generation on the CPU forward pass ([`crate::gemma3::cpu`]).
struct CpuGemma3Decoder<'m> {
    model: &'m CpuGemma3,
    cache: KvCache,
}

/// Logits as the `[1, V]` array the decoders return.
fn logits_array(values: Vec<f32>) -> Array {
    let n = values.len() as i32;
    Array::from_slice(&values, &[1, n])
}

impl Decoder for CpuGemma3Decoder<'_> {
    fn prefill(&mut self, ids: &[u32]) -> Result<Array, ModelError> {
        check_prompt_ids(ids, self.model.vocab())?;
        self.cache = self.model.make_cache();
        let (model, cache) = (self.model, &mut self.cache);
        Ok(logits_array(on_workers(|| model.forward(ids, cache))))
    }

    fn step(&mut self, token: &Array) -> Result<Array, ModelError> {
        let id = token_id(token, self.model.vocab())?;
        let (model, cache) = (self.model, &mut self.cache);
        Ok(logits_array(on_workers(|| model.forward(&[id], cache))))
    }

    fn offset(&self) -> i32 {
        self.cache.len as i32
    }

    fn steps_eagerly(&self) -> bool {
        true
    }
}

/// A Gemma 4 generation on the CPU forward pass ([`crate::gemma4::cpu`]); a prompt with images
/// runs MLX's graph (vision tower, merged features, bidirectional image blocks), and so does the
/// rest of that generation.
struct CpuGemma4Decoder<'m> {
    model: &'m CpuGemma4,
    cache: KvCache,
    mlx: Gemma4Decoder<'m>,
    on_mlx: bool,
}

impl Decoder for CpuGemma4Decoder<'_> {
    fn prefill(&mut self, ids: &[u32]) -> Result<Array, ModelError> {
        check_prompt_ids(ids, self.model.vocab())?;
        self.on_mlx = false;
        self.cache = self.model.make_cache();
        let (model, cache) = (self.model, &mut self.cache);
        Ok(logits_array(on_workers(|| model.forward(ids, cache, true))))
    }

    fn prefill_prompt(&mut self, prompt: &Prompt) -> Result<Prefill, ModelError> {
        if prompt.images.is_empty() {
            return Ok(Prefill {
                logits: self.prefill(&prompt.ids)?,
                vision_encode_s: 0.0,
            });
        }
        self.on_mlx = true;
        self.mlx.prefill_prompt(prompt)
    }

    fn step(&mut self, token: &Array) -> Result<Array, ModelError> {
        if self.on_mlx {
            return self.mlx.step(token);
        }
        let id = token_id(token, self.model.vocab())?;
        let (model, cache) = (self.model, &mut self.cache);
        Ok(logits_array(on_workers(|| {
            model.forward(&[id], cache, false)
        })))
    }

    fn offset(&self) -> i32 {
        if self.on_mlx {
            self.mlx.offset()
        } else {
            self.cache.len as i32
        }
    }

    fn steps_eagerly(&self) -> bool {
        !self.on_mlx
    }
}

/// A prompt's ids: at least one, each within the vocabulary.
fn check_prompt_ids(ids: &[u32], vocab: usize) -> Result<(), ModelError> {
    if ids.is_empty() {
        return Err(ModelError::Input("the prompt has no tokens".into()));
    }
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(ModelError::Input(format!(
            "token id {bad} is outside the vocabulary [0, {vocab})"
        )));
    }
    Ok(())
}

/// The id of a sampled token `[1, 1]`, checked against the vocabulary.
fn token_id(token: &Array, vocab: usize) -> Result<u32, ModelError> {
    token.eval()?;
    let id = token.as_dtype(mlx_rs::Dtype::Int64)?.as_slice::<i64>()[0];
    if id < 0 || id as usize >= vocab {
        return Err(ModelError::Input(format!(
            "token id {id} is outside the vocabulary [0, {vocab})"
        )));
    }
    Ok(id as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_model_type_names_one_family_and_an_unknown_one_none() {
        for (family, types) in Family::ALL {
            for t in types {
                assert_eq!(Family::of(t), Some(family), "{t}");
            }
        }
        assert_eq!(Family::of("llama"), None);
        assert_eq!(
            prompted_model_types(),
            "gemma4, gemma4_text, gemma3, gemma3_text"
        );
    }

    #[test]
    fn a_directory_is_classified_by_its_config_json() {
        let dir = std::env::temp_dir().join(format!("vlmbench-family-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Family::of_dir(&dir).unwrap(), None, "no config.json");
        std::fs::write(dir.join("config.json"), r#"{"model_type": "moondream1"}"#).unwrap();
        assert_eq!(Family::of_dir(&dir).unwrap(), Some(Family::Moondream2));
        std::fs::write(dir.join("config.json"), "{").unwrap();
        assert!(
            Family::of_dir(&dir).is_err(),
            "broken JSON is an error, not a guess"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
