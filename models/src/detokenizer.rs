//! Streaming detokenization: text pieces as generated ids arrive, the way mlx-vlm 0.7.10
//! (`tokenizer_utils.py`) produces them, so the streamed text and its chunks match the reference.
//!
//! mlx-vlm picks the detokenizer from the `decoder` of tokenizer.json:
//! * SentencePiece-style decoders (`Replace("▁"→" ") + ByteFallback + Fuse`, optionally `+ Strip`),
//!   i.e. Gemma: an SPM detokenizer that releases text a word at a time (when a piece starting
//!   with `▁` arrives) and collects byte-fallback pieces (`<0xNN>`) until a non-byte piece, so a
//!   multi-byte UTF-8 character is never cut in half.
//! * anything else: the "naive" detokenizer, which re-decodes the pending ids with the tokenizer
//!   and commits them at each newline.
//!
//! In both, a piece of text is released only when it does not end in U+FFFD (an incomplete
//! character), exactly like mlx-vlm's `last_segment`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

const SPM_SPACE: char = '\u{2581}';
const REPLACEMENT_CHAR: char = '\u{FFFD}';

/// Which of mlx-vlm's detokenizers a tokenizer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetokenizerKind {
    /// SPM decoder ending in `Strip(" ", 1, 0)`: the leading space of the text is dropped.
    SpmTrimSpace,
    /// SPM decoder without `Strip` (Gemma 3/4).
    Spm,
    /// Any other decoder.
    Naive,
}

impl DetokenizerKind {
    /// mlx-vlm's `load_tokenizer` test: exact structural match of the decoder JSON.
    pub fn for_decoder(decoder: Option<&Value>) -> Self {
        let base = vec![
            json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
            json!({"type": "ByteFallback"}),
            json!({"type": "Fuse"}),
        ];
        let mut with_strip = base.clone();
        with_strip.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        let sequence = |decoders: Vec<Value>| json!({"type": "Sequence", "decoders": decoders});
        match decoder {
            Some(d) if *d == sequence(with_strip) => Self::SpmTrimSpace,
            Some(d) if *d == sequence(base) => Self::Spm,
            _ => Self::Naive,
        }
    }
}

/// id -> piece string, with the byte value of `<0xNN>` pieces.
#[derive(Debug)]
pub struct PieceTable {
    pieces: Vec<Option<Piece>>,
}

#[derive(Debug)]
enum Piece {
    Byte(u8),
    Text(String),
}

impl PieceTable {
    pub fn new(vocab: &HashMap<String, u32>) -> Self {
        let len = vocab.values().max().map_or(0, |&m| m as usize + 1);
        let mut pieces: Vec<Option<Piece>> = (0..len).map(|_| None).collect();
        for (piece, &id) in vocab {
            pieces[id as usize] = Some(match byte_fallback_value(piece) {
                Some(b) => Piece::Byte(b),
                None => Piece::Text(piece.clone()),
            });
        }
        Self { pieces }
    }

    fn get(&self, id: u32) -> Option<&Piece> {
        self.pieces.get(id as usize).and_then(Option::as_ref)
    }
}

/// `<0xNN>` -> `Some(0xNN)`, as mlx-vlm recognises byte pieces (prefix `<0x`, `>` at index 5).
fn byte_fallback_value(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Incremental text for a stream of generated ids. Feed ids with [`push`](Self::push), and call
/// [`finish`](Self::finish) once at the end; the concatenation of everything they return is
/// the generated text.
pub struct StreamingDetokenizer<'t, T: Decode> {
    tokenizer: &'t T,
    pieces: Arc<PieceTable>,
    kind: DetokenizerKind,
    /// Text known so far (SPM: complete words; naive: committed lines).
    text: String,
    /// Characters of `text` (plus pending text, for naive) already handed out.
    emitted_chars: usize,
    /// SPM: the current word, with `▁` not yet turned into spaces.
    unflushed: String,
    /// SPM: a run of byte pieces, decoded together when a non-byte piece arrives.
    byte_buffer: Vec<u8>,
    /// Naive: ids since the last commit, and their decoded text.
    pending_ids: Vec<u32>,
    pending_text: String,
    ids: Vec<u32>,
}

/// What a streaming detokenizer needs of its tokenizer.
pub trait Decode {
    type Error;
    /// The text of `ids`, as the tokenizer decodes them.
    fn decode_ids(&self, ids: &[u32]) -> Result<String, Self::Error>;
    /// The error for an id outside the vocabulary.
    fn unknown_id(&self, id: u32) -> Self::Error;
}

impl<'t, T: Decode> StreamingDetokenizer<'t, T> {
    pub(crate) fn new(tokenizer: &'t T, pieces: Arc<PieceTable>, kind: DetokenizerKind) -> Self {
        Self {
            tokenizer,
            pieces,
            kind,
            text: String::new(),
            emitted_chars: 0,
            unflushed: String::new(),
            byte_buffer: Vec::new(),
            pending_ids: Vec::new(),
            pending_text: String::new(),
            ids: Vec::new(),
        }
    }

    pub fn kind(&self) -> DetokenizerKind {
        self.kind
    }

    /// The ids fed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Adds one generated id and returns the text that became readable (often empty).
    pub fn push(&mut self, id: u32) -> Result<String, T::Error> {
        match self.kind {
            DetokenizerKind::Spm | DetokenizerKind::SpmTrimSpace => self.push_spm(id)?,
            DetokenizerKind::Naive => self.push_naive(id)?,
        }
        self.ids.push(id);
        Ok(self.take_segment())
    }

    /// Flushes what is still held back and returns it. Call once, after the last id.
    pub fn finish(&mut self) -> Result<String, T::Error> {
        match self.kind {
            DetokenizerKind::Spm | DetokenizerKind::SpmTrimSpace => {
                self.flush_bytes();
                let word = std::mem::take(&mut self.unflushed);
                self.commit_word(&word);
            }
            DetokenizerKind::Naive => {
                let ids = std::mem::take(&mut self.pending_ids);
                let decoded = self.tokenizer.decode_ids(&ids)?;
                self.text.push_str(&decoded);
                self.pending_text.clear();
            }
        }
        Ok(self.take_segment())
    }

    fn push_spm(&mut self, id: u32) -> Result<(), T::Error> {
        let piece = self
            .pieces
            .get(id)
            .ok_or_else(|| self.tokenizer.unknown_id(id))?;
        match piece {
            Piece::Byte(b) => self.byte_buffer.push(*b),
            Piece::Text(s) => {
                let s = s.clone();
                self.flush_bytes();
                if s.starts_with(SPM_SPACE) {
                    // A new word starts: the previous one is complete.
                    let word = std::mem::replace(&mut self.unflushed, s);
                    self.commit_word(&word);
                } else {
                    self.unflushed.push_str(&s);
                }
            }
        }
        Ok(())
    }

    /// Decodes the pending byte run as UTF-8 (invalid sequences become U+FFFD, as Python's
    /// `errors="replace"` does).
    fn flush_bytes(&mut self) {
        if !self.byte_buffer.is_empty() {
            let decoded = String::from_utf8_lossy(&self.byte_buffer).into_owned();
            self.unflushed.push_str(&decoded);
            self.byte_buffer.clear();
        }
    }

    fn commit_word(&mut self, word: &str) {
        let word = word.replace(SPM_SPACE, " ");
        if self.kind == DetokenizerKind::SpmTrimSpace && self.text.is_empty() {
            // mlx-vlm drops one leading space of the first text (the decoder's Strip).
            self.text = word.strip_prefix(' ').unwrap_or(&word).to_string();
        } else {
            self.text.push_str(&word);
        }
    }

    fn push_naive(&mut self, id: u32) -> Result<(), T::Error> {
        self.pending_ids.push(id);
        self.pending_text = self.tokenizer.decode_ids(&self.pending_ids)?;
        if self.pending_text.ends_with('\n') {
            self.text.push_str(&self.pending_text);
            self.pending_ids.clear();
            self.pending_text.clear();
        }
        Ok(())
    }

    /// mlx-vlm's `last_segment`: the unseen tail of the text, unless it ends mid-character.
    fn take_segment(&mut self) -> String {
        let full: String = if self.pending_text.is_empty() {
            self.text.clone()
        } else {
            format!("{}{}", self.text, self.pending_text)
        };
        match full.chars().last() {
            Some(c) if c != REPLACEMENT_CHAR => {
                let segment: String = full.chars().skip(self.emitted_chars).collect();
                self.emitted_chars = full.chars().count();
                segment
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_tokenizer::tiny_tokenizer;
    use crate::tokenizer::{Tokenizer, TokenizerError};
    use std::path::PathBuf;

    fn tiny() -> Tokenizer {
        Tokenizer::from_tokenizer(tiny_tokenizer(384).unwrap(), PathBuf::from("tiny"))
    }

    /// Streams `ids` and returns the pieces released after each id, then the final flush.
    fn stream(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
        let mut d = tok.streaming_detokenizer();
        let mut out: Vec<String> = ids.iter().map(|&id| d.push(id).unwrap()).collect();
        out.push(d.finish().unwrap());
        out
    }

    #[test]
    fn gemma_decoder_gets_spm_without_trim() {
        assert_eq!(tiny().streaming_detokenizer().kind(), DetokenizerKind::Spm);
        let with_strip = json!({"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]});
        assert_eq!(
            DetokenizerKind::for_decoder(Some(&with_strip)),
            DetokenizerKind::SpmTrimSpace
        );
        assert_eq!(
            DetokenizerKind::for_decoder(Some(&json!({"type": "ByteLevel"}))),
            DetokenizerKind::Naive
        );
        assert_eq!(DetokenizerKind::for_decoder(None), DetokenizerKind::Naive);
    }

    #[test]
    fn stream_concatenates_to_decode_for_mixed_text() {
        let tok = tiny();
        for text in [
            "Hello there, the cat",
            "héllo wörld €5 — 日本語 🙂!",
            "a\nb  c<channel|>x",
            " lead",
        ] {
            let ids = tok.encode(text).unwrap();
            let pieces = stream(&tok, &ids);
            assert_eq!(pieces.concat(), tok.decode(&ids).unwrap(), "{text:?}");
            assert_eq!(pieces.concat(), text);
        }
    }

    #[test]
    fn multibyte_chars_are_never_split() {
        let tok = tiny();
        // Each of these is made only of byte-fallback pieces in the tiny vocabulary.
        for text in ["é", "€", "日本", "🙂", "x🙂y", "a é b"] {
            let ids = tok.encode(text).unwrap();
            for piece in stream(&tok, &ids) {
                assert!(
                    !piece.contains(REPLACEMENT_CHAR),
                    "{text:?} gave a broken piece {piece:?}"
                );
            }
        }
        // 🙂 is four byte pieces: nothing is released until they are all in and a word ends.
        let ids = tok.encode("🙂 ok").unwrap();
        let emoji = tok.encode("🙂").unwrap();
        assert_eq!(emoji.len(), 4);
        let pieces = stream(&tok, &ids);
        assert!(pieces[..4].iter().all(String::is_empty), "{pieces:?}");
        assert_eq!(pieces.concat(), "🙂 ok");
    }

    #[test]
    fn words_are_released_when_the_next_word_starts() {
        let tok = tiny();
        let ids = tok.encode("ab cd").unwrap(); // a, b, ▁, c, d  (no merge applies)
        let pieces = stream(&tok, &ids);
        let first_nonempty = pieces.iter().position(|p| !p.is_empty()).unwrap();
        assert_eq!(pieces[first_nonempty], "ab");
        assert_eq!(*pieces.last().unwrap(), " cd");
    }

    #[test]
    fn invalid_byte_runs_become_replacement_chars() {
        let tok = tiny();
        let lone = tok.token_id("<0xE2>").unwrap(); // first byte of a 3-byte char, alone
        let x = tok.token_id("x").unwrap();
        let mut d = tok.streaming_detokenizer();
        let mut text = d.push(lone).unwrap();
        text += &d.push(x).unwrap();
        text += &d.finish().unwrap();
        assert_eq!(text, "\u{FFFD}x");
    }

    #[test]
    fn unknown_id_is_an_error() {
        let tok = tiny();
        let mut d = tok.streaming_detokenizer();
        assert!(matches!(
            d.push(10_000),
            Err(TokenizerError::UnknownId { id: 10_000, .. })
        ));
    }

    #[test]
    fn naive_detokenizer_commits_at_newlines() {
        // Same vocabulary with a non-SPM decoder: mlx-vlm would pick the naive detokenizer.
        let mut inner = tiny_tokenizer(384).unwrap();
        inner.with_decoder(Some(tokenizers::decoders::fuse::Fuse::new()));
        let tok = Tokenizer::from_tokenizer(inner, PathBuf::from("tiny-naive"));
        let ids = tok.encode("ab\ncd").unwrap();
        let mut d = tok.streaming_detokenizer();
        assert_eq!(d.kind(), DetokenizerKind::Naive);
        let pieces: Vec<String> = ids.iter().map(|&id| d.push(id).unwrap()).collect();
        let rest = d.finish().unwrap();
        assert_eq!(pieces.concat() + &rest, tok.decode(&ids).unwrap());
        assert_eq!(d.ids(), ids.as_slice());
    }
}
