//! The checkpoint's `tokenizer.json`, loaded with the `tokenizers` crate (the engine behind the
//! Python `tokenizers` package that transformers uses), so encoding matches mlx-vlm id for id.
//!
//! Gemma chat templates write `<bos>` themselves, so prompts are encoded without the
//! post-processor's special tokens ([`Tokenizer::encode`]); [`Tokenizer::encode_with_specials`]
//! exists for mlx-vlm's no-template fallback, which tokenizes with `add_special_tokens=True`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::detokenizer::{Decode, DetokenizerKind, PieceTable, StreamingDetokenizer};

pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer file {path} not found")]
    Missing { path: PathBuf },
    #[error("cannot load tokenizer {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("token {token:?} is not in the vocabulary of {path}")]
    UnknownToken { token: String, path: PathBuf },
    #[error("token id {id} is outside the vocabulary of {path} ({vocab_size} entries)")]
    UnknownId {
        id: u32,
        vocab_size: usize,
        path: PathBuf,
    },
    #[error("cannot encode text with {path}: {message}")]
    Encode { path: PathBuf, message: String },
    #[error("cannot decode ids with {path}: {message}")]
    Decode { path: PathBuf, message: String },
}

/// A loaded `tokenizer.json`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    detokenizer_kind: DetokenizerKind,
    /// id -> piece table for streaming detokenization, built on first use (262k entries for Gemma).
    pieces: OnceLock<Arc<PieceTable>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("vocab_size", &self.vocab_size())
            .field("detokenizer_kind", &self.detokenizer_kind)
            .finish()
    }
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        Self::from_file(&dir.join(TOKENIZER_FILE))
    }

    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        if !path.is_file() {
            return Err(TokenizerError::Missing {
                path: path.to_path_buf(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Self::from_tokenizer(inner, path.to_path_buf()))
    }

    /// Wraps an already built tokenizer; `path` names it in error messages.
    pub fn from_tokenizer(inner: tokenizers::Tokenizer, path: PathBuf) -> Self {
        let decoder_json = inner
            .get_decoder()
            .and_then(|d| serde_json::to_value(d).ok());
        Self {
            detokenizer_kind: DetokenizerKind::for_decoder(decoder_json.as_ref()),
            inner,
            path,
            pieces: OnceLock::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Number of ids, added tokens included (Python `len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes `text` without adding special tokens (`add_special_tokens=False`): the chat
    /// template owns `<bos>`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with_specials(text, false)
    }

    /// Encodes `text`, adding the post-processor's special tokens when `add_special_tokens`.
    pub fn encode_with_specials(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let encoding =
            self.inner
                .encode(text, add_special_tokens)
                .map_err(|e| TokenizerError::Encode {
                    path: self.path.clone(),
                    message: e.to_string(),
                })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids to text, keeping special tokens (mlx-vlm's `skip_special_tokens=False`).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.decode_with(ids, false)
    }

    /// Decodes ids to text, optionally dropping special tokens.
    pub fn decode_with(
        &self,
        ids: &[u32],
        skip_special_tokens: bool,
    ) -> Result<String, TokenizerError> {
        let vocab_size = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(self.unknown_id(id));
        }
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    /// The id of a token string (special or not), e.g. `token_id("<|image|>")`.
    pub fn token_id(&self, token: &str) -> Result<u32, TokenizerError> {
        self.inner
            .token_to_id(token)
            .ok_or_else(|| TokenizerError::UnknownToken {
                token: token.to_string(),
                path: self.path.clone(),
            })
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Result<String, TokenizerError> {
        self.inner
            .id_to_token(id)
            .ok_or_else(|| self.unknown_id(id))
    }

    /// A fresh streaming detokenizer, of the kind mlx-vlm picks for this tokenizer's decoder.
    pub fn streaming_detokenizer(&self) -> StreamingDetokenizer<'_, Tokenizer> {
        let pieces = self
            .pieces
            .get_or_init(|| Arc::new(PieceTable::new(&self.inner.get_vocab(true))))
            .clone();
        StreamingDetokenizer::new(self, pieces, self.detokenizer_kind)
    }
}

impl Decode for Tokenizer {
    type Error = TokenizerError;

    fn decode_ids(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.decode(ids)
    }

    fn unknown_id(&self, id: u32) -> TokenizerError {
        TokenizerError::UnknownId {
            id,
            vocab_size: self.vocab_size(),
            path: self.path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_tokenizer::{tiny_tokenizer, TINY_SPECIAL_TOKENS};

    fn tiny() -> Tokenizer {
        Tokenizer::from_tokenizer(tiny_tokenizer(384).unwrap(), PathBuf::from("tiny"))
    }

    #[test]
    fn encode_does_not_add_bos_and_decode_round_trips() {
        let tok = tiny();
        let ids = tok.encode("Hello there").unwrap();
        assert_ne!(ids.first(), Some(&2), "the template owns <bos>");
        assert_eq!(tok.decode(&ids).unwrap(), "Hello there");
        // The tiny tokenizer's post-processor adds nothing, as in the Python build.
        assert_eq!(tok.encode_with_specials("Hello there", true).unwrap(), ids);
    }

    #[test]
    fn special_tokens_are_single_ids_inside_text() {
        let tok = tiny();
        let ids = tok.encode("<bos><|turn>user\nHi<turn|>").unwrap();
        assert_eq!(&ids[..2], &[2, 5]);
        assert_eq!(*ids.last().unwrap(), 6);
        assert_eq!(tok.decode(&ids).unwrap(), "<bos><|turn>user\nHi<turn|>");
        assert_eq!(tok.decode_with(&ids, true).unwrap(), "user\nHi");
    }

    #[test]
    fn token_lookup_both_ways() {
        let tok = tiny();
        for (id, name) in TINY_SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(tok.token_id(name).unwrap(), id as u32);
            assert_eq!(tok.id_to_token(id as u32).unwrap(), *name);
        }
        let err = tok.token_id("<|nope|>").unwrap_err();
        assert!(matches!(err, TokenizerError::UnknownToken { .. }));
        assert!(err.to_string().contains("<|nope|>"));
        assert!(matches!(
            tok.decode(&[1, 384]).unwrap_err(),
            TokenizerError::UnknownId { id: 384, .. }
        ));
    }

    #[test]
    fn missing_and_corrupt_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, TokenizerError::Missing { .. }));
        assert!(err.to_string().contains(TOKENIZER_FILE));
        std::fs::write(dir.path().join(TOKENIZER_FILE), "{\"model\": 3").unwrap();
        let err = Tokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, TokenizerError::Load { .. }));
        assert!(err.to_string().contains(TOKENIZER_FILE));
    }
}
