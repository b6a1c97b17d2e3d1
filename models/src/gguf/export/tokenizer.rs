//! The `tokenizer.ggml.*` metadata of llama.cpp's `gemma4` tokenizer (BPE over `▁`-spelled
//! pieces, with byte fallback), built from the checkpoint's `tokenizer.json` as llama.cpp's
//! `convert_hf_to_gguf.py` does for Gemma 4: every id's piece as `tokenizer.json` spells it, the
//! merges as `"left right"` strings, token types (byte pieces `<0xNN>`, control tokens, user
//! tokens) and the special ids.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::ExportError;
use crate::gguf::MetaValue;

/// GGUF token types (llama.cpp's `llama_token_type`).
pub const NORMAL: i32 = 1;
pub const CONTROL: i32 = 3;
pub const USER_DEFINED: i32 = 4;
pub const UNUSED: i32 = 5;
pub const BYTE: i32 = 6;

/// Tokens llama.cpp's converter marks user-defined so that their text is always rendered (the
/// chat parser reads them), although tokenizer.json lists them as special.
const VISIBLE: [&str; 7] = [
    "<|channel>",
    "<channel|>",
    "<|tool_call>",
    "<tool_call|>",
    "<|tool_response>",
    "<tool_response|>",
    "<|\"|>",
];

/// The vocabulary as llama.cpp reads it.
#[derive(Debug, Clone)]
pub struct Vocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    /// Ids beyond tokenizer.json (the embedding has more rows), written as `[PADn]`, unused.
    pub padded: usize,
    pub chat_template: Option<String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> ExportError {
    ExportError::Tokenizer {
        path: path.into(),
        reason: reason.into(),
    }
}

fn is_byte_piece(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 6
        && s.starts_with("<0x")
        && s.ends_with('>')
        && b[3].is_ascii_hexdigit()
        && b[4].is_ascii_hexdigit()
}

/// A special token of tokenizer_config.json: a string or `{"content": ...}`.
fn config_token(cfg: &Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(String::from),
        _ => None,
    }
}

fn first_id(v: Option<&Value>) -> Option<u32> {
    match v? {
        Value::Number(n) => n.as_u64().map(|x| x as u32),
        Value::Array(a) => a.first()?.as_u64().map(|x| x as u32),
        _ => None,
    }
}

/// Read `dir/tokenizer.json` (+ `tokenizer_config.json`, `chat_template.jinja` when present) for
/// a model with `n_vocab` embedding rows. `config` is the checkpoint's config.json.
pub fn read_vocab(dir: &Path, n_vocab: usize, config: &Value) -> Result<Vocab, ExportError> {
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ExportError::io(&path, e))?;
    let tj: Value = serde_json::from_str(&text).map_err(|e| bad(&path, e.to_string()))?;
    let model = tj
        .get("model")
        .ok_or_else(|| bad(&path, "no `model` object"))?;
    let kind = model.get("type").and_then(Value::as_str).unwrap_or("?");
    if kind != "BPE" {
        return Err(bad(
            &path,
            format!("model type `{kind}`: llama.cpp's gemma4 tokenizer is BPE"),
        ));
    }
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| bad(&path, "no `model.vocab` object"))?;
    let mut pieces: Vec<Option<String>> = vec![None; n_vocab];
    let mut types = vec![UNUSED; n_vocab];
    let mut place = |id: u64, piece: &str, ty: i32| -> Result<(), ExportError> {
        let slot = pieces.get_mut(id as usize).ok_or_else(|| {
            bad(
                &path,
                format!("token `{piece}` has id {id} but the embedding has {n_vocab} rows"),
            )
        })?;
        *slot = Some(piece.to_string());
        types[id as usize] = ty;
        Ok(())
    };
    for (piece, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| bad(&path, format!("token `{piece}`: id {id} is not an integer")))?;
        let ty = if is_byte_piece(piece) { BYTE } else { NORMAL };
        place(id, piece, ty)?;
    }
    let mut by_text: HashMap<String, u32> = vocab
        .iter()
        .filter_map(|(p, id)| Some((p.clone(), id.as_u64()? as u32)))
        .collect();
    for a in tj
        .get("added_tokens")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(content)) = (
            a.get("id").and_then(Value::as_u64),
            a.get("content").and_then(Value::as_str),
        ) else {
            return Err(bad(&path, format!("added token {a}: no id or content")));
        };
        let special = a.get("special").and_then(Value::as_bool).unwrap_or(false);
        let ty = if VISIBLE.contains(&content) || !special {
            USER_DEFINED
        } else if is_byte_piece(content) {
            BYTE
        } else {
            CONTROL
        };
        place(id, content, ty)?;
        by_text.insert(content.to_string(), id as u32);
    }
    let padded = pieces.iter().filter(|p| p.is_none()).count();
    let tokens: Vec<String> = pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.unwrap_or_else(|| format!("[PAD{i}]")))
        .collect();

    let merges = read_merges(model, &path)?;

    let tc_path = dir.join("tokenizer_config.json");
    let tc: Value = match std::fs::read_to_string(&tc_path) {
        Ok(s) => serde_json::from_str(&s).map_err(|e| bad(&tc_path, e.to_string()))?,
        Err(_) => Value::Null,
    };
    let text_cfg = config.get("text_config").unwrap_or(&Value::Null);
    let lookup = |key: &str, cfg_key: &str| -> Option<u32> {
        config_token(&tc, key)
            .and_then(|t| by_text.get(&t).copied())
            .or_else(|| first_id(config.get(cfg_key)))
            .or_else(|| first_id(text_cfg.get(cfg_key)))
            .filter(|&id| (id as usize) < n_vocab)
    };
    let chat_template = match std::fs::read_to_string(dir.join("chat_template.jinja")) {
        Ok(s) => Some(s),
        Err(_) => tc
            .get("chat_template")
            .and_then(Value::as_str)
            .map(String::from),
    };
    Ok(Vocab {
        bos: lookup("bos_token", "bos_token_id"),
        eos: lookup("eos_token", "eos_token_id"),
        unk: lookup("unk_token", "unk_token_id"),
        pad: lookup("pad_token", "pad_token_id"),
        eot: by_text.get("<turn|>").copied(),
        tokens,
        types,
        merges,
        padded,
        chat_template,
    })
}

/// `model.merges` as GGUF's `left right` strings (tokenizer.json writes `a b` or `[a, b]`).
fn read_merges(model: &Value, path: &Path) -> Result<Vec<String>, ExportError> {
    let mut merges = Vec::new();
    for m in model
        .get("merges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match m {
            Value::String(s) => merges.push(s.clone()),
            Value::Array(pair) if pair.len() == 2 => {
                let (Some(l), Some(r)) = (pair[0].as_str(), pair[1].as_str()) else {
                    return Err(bad(path, format!("merge {m} is not two strings")));
                };
                if l.contains(' ') || r.contains(' ') {
                    return Err(bad(
                        path,
                        format!("merge {m} holds a space, which GGUF's `left right` merge strings cannot carry"),
                    ));
                }
                merges.push(format!("{l} {r}"));
            }
            _ => return Err(bad(path, format!("merge {m} is neither `a b` nor [a, b]"))),
        }
    }
    if merges.is_empty() {
        return Err(bad(
            path,
            "no merges: llama.cpp's gemma4 tokenizer needs tokenizer.ggml.merges",
        ));
    }
    Ok(merges)
}

impl Vocab {
    /// The `tokenizer.*` key/values.
    pub fn metadata(&self) -> Vec<(String, MetaValue)> {
        let strings =
            |v: &[String]| MetaValue::Array(v.iter().cloned().map(MetaValue::String).collect());
        let mut m = vec![
            (
                "tokenizer.ggml.model".into(),
                MetaValue::String("gemma4".into()),
            ),
            (
                "tokenizer.ggml.pre".into(),
                MetaValue::String("gemma4".into()),
            ),
            ("tokenizer.ggml.tokens".into(), strings(&self.tokens)),
            (
                "tokenizer.ggml.scores".into(),
                MetaValue::Array(vec![MetaValue::F32(0.0); self.tokens.len()]),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                MetaValue::Array(self.types.iter().map(|&t| MetaValue::I32(t)).collect()),
            ),
            ("tokenizer.ggml.merges".into(), strings(&self.merges)),
        ];
        for (key, id) in [
            ("bos_token_id", self.bos),
            ("eos_token_id", self.eos),
            ("eot_token_id", self.eot),
            ("unknown_token_id", self.unk),
            ("padding_token_id", self.pad),
        ] {
            if let Some(id) = id {
                m.push((format!("tokenizer.ggml.{key}"), MetaValue::U32(id)));
            }
        }
        m.push(("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(true)));
        m.push((
            "tokenizer.ggml.add_space_prefix".into(),
            MetaValue::Bool(false),
        ));
        if let Some(t) = &self.chat_template {
            m.push((
                "tokenizer.chat_template".into(),
                MetaValue::String(t.clone()),
            ));
        }
        m
    }
}
