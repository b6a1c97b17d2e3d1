//! `tokenizer_config.json`: the named special tokens (`bos_token`, `eos_token`, `image_token`, ...)
//! and, in older checkpoints, the chat template.
//!
//! transformers 5 treats as a named special token every standard attribute (`bos_token`, `eos_token`,
//! `unk_token`, `sep_token`, `pad_token`, `cls_token`, `mask_token`, given as a string or an
//! AddedToken object) and every other top-level key ending in `_token` whose value is a string
//! (plus the entries of `extra_special_tokens` when that is an object). These become tokenizer
//! attributes that the processor reads and the chat template sees as variables, so we collect them
//! the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::JsonFileError;

pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// The attributes transformers always recognises, whatever their key looks like.
const STANDARD_TOKEN_ATTRIBUTES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// Why `tokenizer_config.json` cannot be used.
pub type TokenizerConfigError = JsonFileError;

/// What a checkpoint's `tokenizer_config.json` says about special tokens and templates.
#[derive(Debug, Clone, Default)]
pub struct TokenizerConfig {
    /// Where it was read from; `None` when the checkpoint has no such file.
    pub path: Option<PathBuf>,
    /// Named special tokens, e.g. `bos_token -> "<bos>"`, `image_token -> "<|image|>"`.
    pub named_tokens: BTreeMap<String, String>,
    /// Unnamed extra special tokens (`extra_special_tokens` / `additional_special_tokens` lists).
    pub extra_special_tokens: Vec<String>,
    /// The `chat_template` entry (a string, or the `default` entry of a list of named templates).
    pub chat_template: Option<String>,
}

impl TokenizerConfig {
    /// Reads `dir/tokenizer_config.json`. A missing file gives an empty config (transformers also
    /// loads a tokenizer without one); an unreadable or malformed file is an error.
    pub fn load(dir: &Path) -> Result<Self, TokenizerConfigError> {
        let path = dir.join(TOKENIZER_CONFIG_FILE);
        if !path.exists() {
            return Ok(Self::default());
        }
        let json = JsonFileError::read(&path)?;
        Self::from_json(&json, path)
    }

    /// Builds the config from parsed JSON; `path` is only used in error messages.
    pub fn from_json(json: &Value, path: PathBuf) -> Result<Self, TokenizerConfigError> {
        let field_error = |field: &str, problem: &str| JsonFileError::field(&path, field, problem);
        let obj = json
            .as_object()
            .ok_or_else(|| field_error("<root>", "must be a JSON object"))?;

        let mut named_tokens = BTreeMap::new();
        for (key, value) in obj {
            let token = if STANDARD_TOKEN_ATTRIBUTES.contains(&key.as_str()) {
                token_content(value).ok_or_else(|| {
                    field_error(key, "must be a token string or an object with `content`")
                })?
            } else if key.ends_with("_token") {
                // Other `*_token` keys count only when they hold a plain string (as in transformers).
                value.as_str().map(str::to_string)
            } else {
                None
            };
            if let Some(token) = token {
                named_tokens.insert(key.clone(), token);
            }
        }

        let mut extra_special_tokens = Vec::new();
        for key in ["extra_special_tokens", "additional_special_tokens"] {
            match obj.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        let token = token_content(item).flatten().ok_or_else(|| {
                            field_error(key, "must list token strings or AddedToken objects")
                        })?;
                        if !extra_special_tokens.contains(&token) {
                            extra_special_tokens.push(token);
                        }
                    }
                }
                Some(Value::Object(map)) => {
                    for (name, item) in map {
                        let token = item
                            .as_str()
                            .ok_or_else(|| field_error(key, "must map names to token strings"))?;
                        named_tokens.insert(name.clone(), token.to_string());
                    }
                }
                Some(_) => return Err(field_error(key, "must be a list or an object")),
            }
        }

        let chat_template = match obj.get("chat_template") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(entries)) => {
                Some(default_named_template(entries).ok_or_else(|| {
                    field_error(
                    "chat_template",
                    "is a list without a `default` entry of the form {\"name\":..,\"template\":..}",
                )
                })?)
            }
            Some(_) => return Err(field_error("chat_template", "must be a string or a list")),
        };

        Ok(Self {
            path: Some(path),
            named_tokens,
            extra_special_tokens,
            chat_template,
        })
    }

    /// A named special token, e.g. `token("image_token")`.
    pub fn token(&self, name: &str) -> Option<&str> {
        self.named_tokens.get(name).map(String::as_str)
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.token("bos_token")
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.token("eos_token")
    }
}

/// `"<bos>"` or `{"__type": "AddedToken", "content": "<bos>", ...}` -> `Some(Some("<bos>"))`;
/// `null` -> `Some(None)` (attribute unset); anything else -> `None` (malformed).
fn token_content(value: &Value) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        Value::Object(map) => map
            .get("content")
            .and_then(Value::as_str)
            .map(|s| Some(s.to_string())),
        _ => None,
    }
}

/// transformers stores several templates as `[{"name": "default", "template": ...}, ...]`;
/// `apply_chat_template` without a template name uses the `default` one.
fn default_named_template(entries: &[Value]) -> Option<String> {
    entries.iter().find_map(|entry| {
        let name = entry.get("name")?.as_str()?;
        let template = entry.get("template")?.as_str()?;
        (name == "default").then(|| template.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<TokenizerConfig, TokenizerConfigError> {
        TokenizerConfig::from_json(&v, PathBuf::from("tokenizer_config.json"))
    }

    #[test]
    fn collects_standard_and_model_specific_tokens() {
        let cfg = parse(json!({
            "bos_token": "<bos>",
            "eos_token": {"__type": "AddedToken", "content": "<eos>", "special": true},
            "pad_token": null,
            "image_token": "<|image|>",
            "boi_token": "<|image>",
            "not_a_token_key": "<x>",
            "weird_token": {"content": "<y>"},
            "extra_special_tokens": ["<|video|>"],
            "padding_side": "left"
        }))
        .unwrap();
        assert_eq!(cfg.bos_token(), Some("<bos>"));
        assert_eq!(cfg.eos_token(), Some("<eos>"));
        assert_eq!(cfg.token("image_token"), Some("<|image|>"));
        assert_eq!(cfg.token("boi_token"), Some("<|image>"));
        // transformers ignores non-string custom `*_token` values and keys without the suffix.
        assert_eq!(cfg.token("weird_token"), None);
        assert_eq!(cfg.token("not_a_token_key"), None);
        assert_eq!(cfg.token("pad_token"), None);
        assert_eq!(cfg.extra_special_tokens, vec!["<|video|>".to_string()]);
        assert_eq!(cfg.chat_template, None);
    }

    #[test]
    fn extra_special_tokens_object_adds_named_tokens() {
        let cfg = parse(json!({"extra_special_tokens": {"image_token": "<img>"}})).unwrap();
        assert_eq!(cfg.token("image_token"), Some("<img>"));
    }

    #[test]
    fn chat_template_string_or_default_entry() {
        let cfg = parse(json!({"chat_template": "{{ bos_token }}"})).unwrap();
        assert_eq!(cfg.chat_template.as_deref(), Some("{{ bos_token }}"));
        let cfg = parse(json!({"chat_template": [
            {"name": "tool_use", "template": "T"},
            {"name": "default", "template": "D"}
        ]}))
        .unwrap();
        assert_eq!(cfg.chat_template.as_deref(), Some("D"));
        let err = parse(json!({"chat_template": [{"name": "tool_use", "template": "T"}]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("chat_template"), "{err}");
    }

    #[test]
    fn malformed_fields_name_the_field() {
        let err = parse(json!({"bos_token": 5})).unwrap_err().to_string();
        assert!(
            err.contains("`bos_token`") && err.contains("tokenizer_config.json"),
            "{err}"
        );
        let err = parse(json!({"extra_special_tokens": 3}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`extra_special_tokens`"), "{err}");
        let err = parse(json!([1, 2])).unwrap_err().to_string();
        assert!(err.contains("JSON object"), "{err}");
    }

    #[test]
    fn load_missing_is_empty_and_corrupt_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TokenizerConfig::load(dir.path()).unwrap();
        assert!(cfg.path.is_none() && cfg.named_tokens.is_empty());
        std::fs::write(dir.path().join(TOKENIZER_CONFIG_FILE), "{not json").unwrap();
        let err = TokenizerConfig::load(dir.path()).unwrap_err();
        assert!(matches!(err, TokenizerConfigError::Parse { .. }));
        assert!(err.to_string().contains(TOKENIZER_CONFIG_FILE));
    }
}
