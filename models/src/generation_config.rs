//! Stop tokens and sampling defaults of a checkpoint, resolved as mlx-vlm 0.7.10 does.
//!
//! * `load_config` reads config.json, then copies `eos_token_id`, `temperature`, `top_p`, `top_k`
//!   and `do_sample` from generation_config.json over it (a key present there wins, even `null`).
//!   Only the top-level keys count: Gemma 4's `ModelConfig` ignores `text_config.eos_token_id`.
//! * Stopping: `resolve_eos_token_ids` = that `eos_token_id` (int or list), then the tokenizer's
//!   `eos_token` id, without duplicates, in that order. `generate(eos_tokens=[...])` appends more;
//!   a string is encoded as `" " + s` and its last id is used.
//! * Sampling (`resolve_sampling_defaults`): an explicit argument wins; else `do_sample: false`
//!   means temperature 0; else the config values; else the library defaults T=0, top_p=1, top_k=0.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::JsonFileError;
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::tokenizer_config::TokenizerConfig;

pub const CONFIG_FILE: &str = "config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// mlx-vlm's library defaults (`generate/common.py`).
pub const DEFAULT_TEMPERATURE: f64 = 0.0;
pub const DEFAULT_TOP_P: f64 = 1.0;
pub const DEFAULT_TOP_K: u32 = 0;
pub const DEFAULT_MIN_P: f64 = 0.0;

const MERGED_KEYS: [&str; 5] = ["eos_token_id", "temperature", "top_p", "top_k", "do_sample"];

#[derive(Debug, thiserror::Error)]
pub enum GenerationConfigError {
    #[error(transparent)]
    File(#[from] JsonFileError),
    #[error("eos token {token:?} from {path} is not in the tokenizer vocabulary")]
    UnknownEosToken { token: String, path: PathBuf },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// Sampling values a caller sets explicitly; `None` defers to the checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SamplingOverrides {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
}

/// Fully resolved sampling parameters (input of [`crate::sampling::Sampler`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy. Positive values below 0.01 are raised to 0.01 by the sampler.
    pub temperature: f64,
    /// Nucleus mass; only `0 < top_p < 1` filters.
    pub top_p: f64,
    /// Keep the `top_k` most likely tokens; 0 disables. Must be below the vocabulary size.
    pub top_k: u32,
    /// Minimum probability relative to the best token; 0 disables.
    pub min_p: f64,
    /// Tokens min_p never removes.
    pub min_tokens_to_keep: u32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: DEFAULT_TEMPERATURE,
            top_p: DEFAULT_TOP_P,
            top_k: DEFAULT_TOP_K,
            min_p: DEFAULT_MIN_P,
            min_tokens_to_keep: 1,
        }
    }
}

/// Stop ids and checkpoint sampling defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// The stop set, in mlx-vlm's order (config ids first, then the tokenizer's eos).
    pub eos_token_ids: Vec<u32>,
    /// Checkpoint values after the generation_config merge; `None` when absent or null.
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub do_sample: Option<bool>,
}

impl GenerationConfig {
    /// Reads `config.json` (required), `generation_config.json` (optional) and the tokenizer's
    /// eos token from `tokenizer_config`.
    pub fn load(
        dir: &Path,
        tokenizer: &Tokenizer,
        tokenizer_config: &TokenizerConfig,
    ) -> Result<Self, GenerationConfigError> {
        let config_path = dir.join(CONFIG_FILE);
        let config = read_json(&config_path)?;
        let generation_path = dir.join(GENERATION_CONFIG_FILE);
        let generation = if generation_path.exists() {
            Some((read_json(&generation_path)?, generation_path))
        } else {
            None
        };
        let tokenizer_eos = match tokenizer_config.eos_token() {
            Some(token) => Some(tokenizer.token_id(token).map_err(|_| {
                GenerationConfigError::UnknownEosToken {
                    token: token.to_string(),
                    path: tokenizer_config
                        .path
                        .clone()
                        .unwrap_or_else(|| dir.join("tokenizer_config.json")),
                }
            })?),
            None => None,
        };
        Self::from_json(
            (&config, &config_path),
            generation.as_ref().map(|(v, p)| (v, p.as_path())),
            tokenizer_eos,
        )
    }

    /// Resolves from parsed files; the paths only name them in errors.
    pub fn from_json(
        config: (&Value, &Path),
        generation: Option<(&Value, &Path)>,
        tokenizer_eos_id: Option<u32>,
    ) -> Result<Self, GenerationConfigError> {
        let (config_json, config_path) = config;
        let mut merged: Map<String, Value> = Map::new();
        let mut source: Vec<(&str, &Path)> = Vec::new();
        let config_obj = as_object(config_json, config_path)?;
        for key in MERGED_KEYS {
            if let Some(v) = config_obj.get(key) {
                merged.insert(key.to_string(), v.clone());
                source.push((key, config_path));
            }
        }
        if let Some((gen_json, gen_path)) = generation {
            let gen_obj = as_object(gen_json, gen_path)?;
            for key in MERGED_KEYS {
                if let Some(v) = gen_obj.get(key) {
                    merged.insert(key.to_string(), v.clone());
                    source.retain(|(k, _)| *k != key);
                    source.push((key, gen_path));
                }
            }
        }
        let path_of = |key: &str| -> PathBuf {
            source
                .iter()
                .find(|(k, _)| *k == key)
                .map_or_else(|| config_path.to_path_buf(), |(_, p)| p.to_path_buf())
        };
        let field_error = |key: &str, problem: &str| -> GenerationConfigError {
            JsonFileError::field(&path_of(key), key, problem).into()
        };

        let mut eos_token_ids = Vec::new();
        match merged.get("eos_token_id") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let id = token_id(item)
                        .ok_or_else(|| field_error("eos_token_id", "must list token ids"))?;
                    push_unique(&mut eos_token_ids, id);
                }
            }
            Some(item) => {
                let id = token_id(item).ok_or_else(|| {
                    field_error("eos_token_id", "must be a token id or a list of token ids")
                })?;
                push_unique(&mut eos_token_ids, id);
            }
        }
        if let Some(id) = tokenizer_eos_id {
            push_unique(&mut eos_token_ids, id);
        }

        let number = |key: &str| -> Result<Option<f64>, GenerationConfigError> {
            match merged.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| field_error(key, "must be a number")),
            }
        };
        let temperature = number("temperature")?;
        let top_p = number("top_p")?;
        let top_k = match merged.get("top_k") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| field_error("top_k", "must be an integer"))?,
            ),
        };
        let do_sample = match merged.get("do_sample") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_bool()
                    .ok_or_else(|| field_error("do_sample", "must be true or false"))?,
            ),
        };

        Ok(Self {
            eos_token_ids,
            temperature,
            top_p,
            top_k,
            do_sample,
        })
    }

    /// Whether `id` ends generation (the stop token itself is counted but not printed).
    pub fn is_stop(&self, id: u32) -> bool {
        self.eos_token_ids.contains(&id)
    }

    /// Adds an extra stop id (`generate(eos_tokens=[id])`).
    pub fn add_stop_id(&mut self, id: u32) {
        push_unique(&mut self.eos_token_ids, id);
    }

    /// Adds an extra stop string as mlx-vlm does: the last id of `encode(" " + s)`.
    pub fn add_stop_str(&mut self, tokenizer: &Tokenizer, s: &str) -> Result<u32, TokenizerError> {
        let ids = tokenizer.encode(&format!(" {s}"))?;
        let id = *ids.last().ok_or_else(|| TokenizerError::UnknownToken {
            token: s.to_string(),
            path: tokenizer.path().to_path_buf(),
        })?;
        self.add_stop_id(id);
        Ok(id)
    }

    /// mlx-vlm's `resolve_sampling_defaults`, with its `min_p` default.
    pub fn sampling(&self, explicit: SamplingOverrides) -> SamplingParams {
        let temperature = explicit
            .temperature
            .unwrap_or(if self.do_sample == Some(false) {
                0.0
            } else {
                self.temperature.unwrap_or(DEFAULT_TEMPERATURE)
            });
        // A negative top_k never filters in mlx-vlm (`if top_k > 0`); 0 says the same here.
        let config_top_k = self.top_k.map_or(DEFAULT_TOP_K, |k| {
            u32::try_from(k.max(0)).unwrap_or(u32::MAX)
        });
        SamplingParams {
            temperature,
            top_p: explicit
                .top_p
                .unwrap_or(self.top_p.unwrap_or(DEFAULT_TOP_P)),
            top_k: explicit.top_k.unwrap_or(config_top_k),
            ..SamplingParams::default()
        }
    }
}

fn read_json(path: &Path) -> Result<Value, GenerationConfigError> {
    Ok(JsonFileError::read(path)?)
}

fn as_object<'a>(
    v: &'a Value,
    path: &Path,
) -> Result<&'a Map<String, Value>, GenerationConfigError> {
    v.as_object()
        .ok_or_else(|| JsonFileError::field(path, "<root>", "must be a JSON object").into())
}

fn token_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|id| u32::try_from(id).ok())
}

fn push_unique(ids: &mut Vec<u32>, id: u32) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve(config: Value, generation: Option<Value>, tok_eos: Option<u32>) -> GenerationConfig {
        try_resolve(config, generation, tok_eos).unwrap()
    }

    fn try_resolve(
        config: Value,
        generation: Option<Value>,
        tok_eos: Option<u32>,
    ) -> Result<GenerationConfig, GenerationConfigError> {
        GenerationConfig::from_json(
            (&config, Path::new("config.json")),
            generation
                .as_ref()
                .map(|g| (g, Path::new("generation_config.json"))),
            tok_eos,
        )
    }

    #[test]
    fn gemma4_it_checkpoint_samples_by_default() {
        // HF config + generation_config of a Gemma 4 IT model.
        let cfg = resolve(
            json!({"eos_token_id": [1, 106], "text_config": {"eos_token_id": 1}}),
            Some(
                json!({"eos_token_id": [1, 106, 50], "do_sample": true, "temperature": 1.0, "top_k": 64, "top_p": 0.95}),
            ),
            Some(1),
        );
        assert_eq!(cfg.eos_token_ids, vec![1, 106, 50]);
        assert!(cfg.is_stop(50) && cfg.is_stop(106) && !cfg.is_stop(2));
        let p = cfg.sampling(SamplingOverrides::default());
        assert_eq!(
            (p.temperature, p.top_p, p.top_k, p.min_p),
            (1.0, 0.95, 64, 0.0)
        );
        // Explicit values win one by one.
        let p = cfg.sampling(SamplingOverrides {
            temperature: Some(0.0),
            top_k: Some(5),
            ..Default::default()
        });
        assert_eq!((p.temperature, p.top_p, p.top_k), (0.0, 0.95, 5));
    }

    #[test]
    fn generation_config_keys_replace_config_keys() {
        // A key in generation_config.json replaces config.json's, as mlx-vlm's merge does.
        let cfg = resolve(
            json!({"eos_token_id": [7, 8], "top_k": 3}),
            Some(json!({"eos_token_id": 9})),
            Some(1),
        );
        assert_eq!(cfg.eos_token_ids, vec![9, 1]);
        assert_eq!(cfg.top_k, Some(3));
        // ... also with null.
        let cfg = resolve(
            json!({"eos_token_id": 7}),
            Some(json!({"eos_token_id": null})),
            Some(1),
        );
        assert_eq!(cfg.eos_token_ids, vec![1]);
        // Only the top level counts (Gemma 4's ModelConfig drops text_config.eos_token_id).
        let cfg = resolve(json!({"text_config": {"eos_token_id": 5}}), None, None);
        assert!(cfg.eos_token_ids.is_empty());
    }

    #[test]
    fn eos_union_dedups_in_order() {
        let cfg = resolve(json!({"eos_token_id": [6, 1, 6]}), None, Some(1));
        assert_eq!(cfg.eos_token_ids, vec![6, 1]);
        let cfg = resolve(json!({"eos_token_id": 6}), None, Some(2));
        assert_eq!(cfg.eos_token_ids, vec![6, 2]);
    }

    #[test]
    fn do_sample_false_means_greedy_unless_explicit() {
        let cfg = resolve(
            json!({}),
            Some(json!({"do_sample": false, "temperature": 0.7, "top_p": 0.9})),
            None,
        );
        let p = cfg.sampling(SamplingOverrides::default());
        assert_eq!((p.temperature, p.top_p), (0.0, 0.9));
        let p = cfg.sampling(SamplingOverrides {
            temperature: Some(0.5),
            ..Default::default()
        });
        assert_eq!(p.temperature, 0.5);
    }

    #[test]
    fn library_defaults_without_config_values() {
        let cfg = resolve(json!({"temperature": null}), None, None);
        assert_eq!(
            cfg.sampling(SamplingOverrides::default()),
            SamplingParams::default()
        );
        let p = SamplingParams::default();
        assert_eq!(
            (p.temperature, p.top_p, p.top_k, p.min_p),
            (0.0, 1.0, 0, 0.0)
        );
        // A negative top_k never filters in mlx-vlm.
        let cfg = resolve(json!({"top_k": -1}), None, None);
        assert_eq!(cfg.sampling(SamplingOverrides::default()).top_k, 0);
    }

    #[test]
    fn bad_fields_name_file_and_field() {
        let err = try_resolve(json!({}), Some(json!({"eos_token_id": "x"})), None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("generation_config.json") && text.contains("`eos_token_id`"),
            "{text}"
        );
        let err = try_resolve(json!({"top_k": 1.5}), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("`top_k`"),
            "{err}"
        );
        let err = try_resolve(json!({"eos_token_id": [-1]}), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`eos_token_id`"), "{err}");
        let err = try_resolve(json!({"do_sample": "yes"}), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`do_sample`"), "{err}");
    }

    #[test]
    fn load_reads_files_and_tokenizer_eos() {
        use crate::tiny_tokenizer::write_tiny_tokenizer;
        let dir = tempfile::tempdir().unwrap();
        write_tiny_tokenizer(dir.path(), 384).unwrap();
        let tok = Tokenizer::from_dir(dir.path()).unwrap();
        let tcfg = TokenizerConfig::load(dir.path()).unwrap();

        let err = GenerationConfig::load(dir.path(), &tok, &tcfg).unwrap_err();
        assert!(
            matches!(err, GenerationConfigError::File(JsonFileError::Read { .. }))
                && err.to_string().contains(CONFIG_FILE)
        );

        std::fs::write(dir.path().join(CONFIG_FILE), r#"{"eos_token_id": [1, 6]}"#).unwrap();
        std::fs::write(
            dir.path().join(GENERATION_CONFIG_FILE),
            r#"{"eos_token_id": [1, 6, 21], "do_sample": true, "temperature": 1.0, "top_k": 64, "top_p": 0.95}"#,
        )
        .unwrap();
        let mut cfg = GenerationConfig::load(dir.path(), &tok, &tcfg).unwrap();
        assert_eq!(cfg.eos_token_ids, vec![1, 6, 21]);
        // eos_tokens=["the"]: " the" encodes to the single merged piece "▁the" (377).
        assert_eq!(cfg.add_stop_str(&tok, "the").unwrap(), 377);
        assert!(cfg.is_stop(377));

        std::fs::write(dir.path().join(GENERATION_CONFIG_FILE), "{oops").unwrap();
        let err = GenerationConfig::load(dir.path(), &tok, &tcfg).unwrap_err();
        assert!(matches!(
            err,
            GenerationConfigError::File(JsonFileError::Parse { .. })
        ));
        assert!(err.to_string().contains(GENERATION_CONFIG_FILE));
    }
}
