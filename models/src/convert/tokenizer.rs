//! The checkpoint's tokenizer files: a Hugging Face `tokenizer.json` + `tokenizer_config.json`
//! supplied with the GGUF (a GGUF stores SentencePiece pieces and scores, not the BPE merges that
//! `tokenizer.json` needs), checked id by id against the GGUF's token list.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::{io, ConvertError, Result};
use crate::gguf::GgufFile;

/// How the supplied tokenizer compares with the GGUF vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabCheck {
    /// Ids compared (the GGUF's token count).
    pub compared: usize,
    /// Ids whose GGUF piece differs only in spelling spaces as ' ' where tokenizer.json has '▁'.
    pub space_spelling: usize,
    /// Ids the tokenizer has beyond the GGUF vocabulary (e.g. Gemma 3's `<image_soft_token>`).
    pub extra_in_tokenizer: usize,
}

const SPM_SPACE: char = '\u{2581}';

/// Compare a loaded tokenizer with the GGUF's `tokenizer.ggml.tokens`. Any id that differs other
/// than by the space spelling is an error naming the first such ids.
pub fn check_vocab(
    gguf: &GgufFile,
    tok: &tokenizers::Tokenizer,
    tok_path: &Path,
) -> Result<VocabCheck> {
    let tokens = gguf
        .require("tokenizer.ggml.tokens")?
        .as_array()
        .ok_or_else(|| ConvertError::Tokenizer {
            path: gguf.path().into(),
            reason: "metadata `tokenizer.ggml.tokens` is not an array".into(),
        })?;
    let size = tok.get_vocab_size(true);
    if size < tokens.len() {
        return Err(ConvertError::Tokenizer {
            path: tok_path.into(),
            reason: format!(
                "has {size} tokens but the GGUF vocabulary has {}",
                tokens.len()
            ),
        });
    }
    let mut space_spelling = 0;
    let mut bad = vec![];
    for (id, t) in tokens.iter().enumerate() {
        let g = t.as_str().unwrap_or("");
        let j = tok.id_to_token(id as u32).unwrap_or_default();
        if g == j {
            continue;
        }
        if g.replace(' ', &SPM_SPACE.to_string()) == j {
            space_spelling += 1;
        } else if bad.len() < 3 {
            bad.push(format!("id {id}: GGUF {g:?}, tokenizer.json {j:?}"));
        } else {
            bad.push(String::new());
        }
    }
    if !bad.is_empty() {
        let n = bad.len();
        bad.retain(|s| !s.is_empty());
        return Err(ConvertError::Tokenizer {
            path: tok_path.into(),
            reason: format!(
                "does not match the vocabulary of {} at {n} ids ({})",
                gguf.path().display(),
                bad.join("; ")
            ),
        });
    }
    Ok(VocabCheck {
        compared: tokens.len(),
        space_spelling,
        extra_in_tokenizer: size - tokens.len(),
    })
}

/// A GGUF token id's piece, for naming special tokens in tokenizer_config.json.
pub fn piece(gguf: &GgufFile, id: Option<i64>) -> Option<String> {
    let tokens = gguf.metadata.get("tokenizer.ggml.tokens")?.as_array()?;
    tokens
        .get(usize::try_from(id?).ok()?)?
        .as_str()
        .map(str::to_owned)
}

/// Locate `tokenizer.json` + `tokenizer_config.json`: in `dir` when given, else next to the GGUF.
pub fn find_dir(dir: Option<&Path>, gguf: &Path) -> Result<PathBuf> {
    let d = match dir {
        Some(d) => d.to_path_buf(),
        None => gguf.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        if !d.join(f).is_file() {
            return Err(ConvertError::Tokenizer {
                path: d.join(f),
                reason: format!(
                    "not found{}: pass --tokenizer DIR, a directory with the model's tokenizer.json and tokenizer_config.json",
                    if dir.is_none() { " next to the GGUF" } else { "" }
                ),
            });
        }
    }
    Ok(d)
}

/// The tokenizer_config.json to write: the supplied one with the special tokens the GGUF names,
/// its `add_bos_token`, and its chat template, or none when the GGUF has none (a base model: the
/// instruction template of a shared tokenizer package would make prompts it was not trained on).
pub fn tokenizer_config(
    gguf: &GgufFile,
    supplied: &Path,
    notes: &mut Vec<String>,
) -> Result<Value> {
    let text = std::fs::read_to_string(supplied).map_err(io(supplied))?;
    let mut v: Value = serde_json::from_str(&text).map_err(|e| ConvertError::Tokenizer {
        path: supplied.into(),
        reason: format!("invalid JSON: {e}"),
    })?;
    let obj = v.as_object_mut().ok_or_else(|| ConvertError::Tokenizer {
        path: supplied.into(),
        reason: "not a JSON object".into(),
    })?;
    for (field, key) in [
        ("bos_token", "bos_token_id"),
        ("eos_token", "eos_token_id"),
        ("pad_token", "padding_token_id"),
        ("unk_token", "unknown_token_id"),
    ] {
        if let Some(p) = piece(gguf, gguf.get_int(&format!("tokenizer.ggml.{key}"))?) {
            let old = obj.get(field).and_then(Value::as_str).map(str::to_owned);
            if old.as_deref() != Some(p.as_str()) {
                notes.push(format!(
                    "tokenizer_config.json: {field} {old:?} -> {p:?} (the GGUF's tokenizer.ggml.{key})"
                ));
                obj.insert(field.into(), Value::String(p));
            }
        }
    }
    if let Some(b) = gguf
        .metadata
        .get("tokenizer.ggml.add_bos_token")
        .and_then(|v| v.as_bool())
    {
        obj.insert("add_bos_token".into(), Value::Bool(b));
    }
    match gguf.get_str("tokenizer.chat_template")? {
        Some(t) => {
            obj.insert("chat_template".into(), Value::String(t.to_string()));
            notes.push("tokenizer_config.json: chat_template from the GGUF".into());
        }
        None => {
            if obj.remove("chat_template").is_some() {
                notes.push("tokenizer_config.json: chat_template removed (the GGUF has none: a base model takes plain prompts)".into());
            }
        }
    }
    Ok(v)
}
