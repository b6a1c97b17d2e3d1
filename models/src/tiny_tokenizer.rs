//! The tokenizer of the tiny random Gemma 4 test checkpoint, with the same ids as
//! `shared/design/reference-scripts/build_tiny_gemma4.py` (transformers' `GemmaTokenizer`):
//! the 24 Gemma 4 special tokens at ids 0..23, the 256 byte-fallback pieces `<0x00>`..`<0xFF>`,
//! `▁` and the printable ASCII characters, eight merges, then `<unusedN>` up to the vocab size.
//!
//! The tokenizer is built from the `tokenizers` crate's own components, configured like
//! transformers 5 writes a Gemma tokenizer: BPE with byte fallback, normalizer `Replace(" "→"▁")`,
//! a `Split(" ")` pre-tokenizer (a no-op after the normalizer, kept so the files agree), an empty
//! template post-processor (no `<bos>`: the chat template writes it), and the decoder
//! `Replace("▁"→" ") + ByteFallback + Fuse`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior};

use crate::chat_template::CHAT_TEMPLATE_FILE;
use crate::tokenizer::TOKENIZER_FILE;
use crate::tokenizer_config::TOKENIZER_CONFIG_FILE;

/// Special tokens at ids 0..23 (real Gemma 4 ids in the comments).
pub const TINY_SPECIAL_TOKENS: [&str; 24] = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>", // 0..4 (same as real Gemma)
    "<|turn>",
    "<turn|>", // 5, 6 (real 105, 106)
    "<|image>",
    "<image|>",
    "<|image|>", // 7, 8, 9 (real 255999, 258882, 258880)
    "<|audio>",
    "<audio|>",
    "<|audio|>", // 10, 11, 12 (real 256000, 258883, 258881)
    "<|video|>", // 13 (real 258884)
    "<|channel>",
    "<channel|>",
    "<|think|>", // 14, 15, 16 (real 100, 101, 98)
    "<|tool>",
    "<tool|>",
    "<|tool_call>",
    "<tool_call|>", // 17..20
    "<|tool_response>",
    "<tool_response|>",
    "<|\"|>", // 21..23 (real <|tool_response> 50)
];

/// The merges of the Python build, in priority order.
pub const TINY_MERGES: [(&str, &str); 8] = [
    ("\u{2581}", "t"),
    ("h", "e"),
    ("\u{2581}t", "he"),
    ("i", "n"),
    ("\u{2581}", "a"),
    ("e", "r"),
    ("o", "n"),
    ("a", "t"),
];

/// The named special-token attributes of the tokenizer config (what the processor reads).
pub const TINY_NAMED_TOKENS: [(&str, &str); 23] = [
    ("pad_token", "<pad>"),
    ("eos_token", "<eos>"),
    ("bos_token", "<bos>"),
    ("unk_token", "<unk>"),
    ("mask_token", "<mask>"),
    ("image_token", "<|image|>"),
    ("boi_token", "<|image>"),
    ("eoi_token", "<image|>"),
    ("audio_token", "<|audio|>"),
    ("boa_token", "<|audio>"),
    ("eoa_token", "<audio|>"),
    ("sot_token", "<|turn>"),
    ("eot_token", "<turn|>"),
    ("soc_token", "<|channel>"),
    ("eoc_token", "<channel|>"),
    ("think_token", "<|think|>"),
    ("escape_token", "<|\"|>"),
    ("str_token", "<|tool_response>"),
    ("etr_token", "<tool_response|>"),
    ("stc_token", "<|tool_call>"),
    ("etc_token", "<tool_call|>"),
    ("std_token", "<|tool>"),
    ("etd_token", "<tool|>"),
];

/// Chat template written as `chat_template.jinja` (Gemma 4 large-model semantics).
pub const TINY_CHAT_TEMPLATE: &str = include_str!("tiny_chat_template.jinja");

#[derive(Debug, thiserror::Error)]
pub enum TinyTokenizerError {
    #[error("tiny tokenizer vocab_size {requested} is below the {minimum} entries it needs")]
    VocabTooSmall { requested: usize, minimum: usize },
    #[error("cannot build the tiny tokenizer: {0}")]
    Build(String),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

/// The vocabulary in id order, padded with `<unusedN>` to `vocab_size`.
pub fn tiny_vocab(vocab_size: usize) -> Result<Vec<String>, TinyTokenizerError> {
    let mut vocab: Vec<String> = TINY_SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    vocab.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    vocab.push("\u{2581}".to_string());
    vocab.extend((33u8..127).map(|c| char::from(c).to_string()));
    vocab.extend(TINY_MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    let minimum = vocab.len();
    if vocab_size < minimum {
        return Err(TinyTokenizerError::VocabTooSmall {
            requested: vocab_size,
            minimum,
        });
    }
    let pad = vocab_size - minimum;
    vocab.extend((0..pad).map(|i| format!("<unused{i}>")));
    Ok(vocab)
}

/// The id of a special token of the tiny tokenizer (e.g. for the tiny `config.json`'s
/// `image_token_id`), or `None` if it is not one of [`TINY_SPECIAL_TOKENS`].
pub fn tiny_special_id(token: &str) -> Option<u32> {
    TINY_SPECIAL_TOKENS
        .iter()
        .position(|t| *t == token)
        .map(|i| i as u32)
}

/// Builds the tiny tokenizer in memory.
pub fn tiny_tokenizer(vocab_size: usize) -> Result<tokenizers::Tokenizer, TinyTokenizerError> {
    let build = |e: tokenizers::Error| TinyTokenizerError::Build(e.to_string());
    let vocab: Vocab = tiny_vocab(vocab_size)?
        .into_iter()
        .enumerate()
        .map(|(id, piece)| (piece, id as u32))
        .collect();
    let merges = TINY_MERGES
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token("<unk>".to_string())
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(build)?;

    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_normalizer(Some(Replace::new(" ", "\u{2581}").map_err(build)?));
    tokenizer.with_pre_tokenizer(Some(
        Split::new(" ", SplitDelimiterBehavior::MergedWithPrevious, false).map_err(build)?,
    ));
    // Defaults: single "$A:0", pair "$A:0 $B:1", no special tokens.
    let post = TemplateProcessing::builder()
        .build()
        .map_err(|e| TinyTokenizerError::Build(e.to_string()))?;
    tokenizer.with_post_processor(Some(post));
    tokenizer.with_decoder(Some(Sequence::new(vec![
        DecoderWrapper::Replace(Replace::new("\u{2581}", " ").map_err(build)?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ])));
    // The specials are already in the BPE vocabulary; registering them makes them match whole
    // in the input (never split by the BPE) and marks them special, as transformers does.
    let specials: Vec<AddedToken> = TINY_SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}

/// The `tokenizer_config.json` transformers 5 writes for the Python build (minus
/// `model_max_length`, whose default is the same huge number).
pub fn tiny_tokenizer_config() -> Value {
    let mut config = serde_json::Map::new();
    for (name, token) in TINY_NAMED_TOKENS {
        config.insert(name.to_string(), json!(token));
    }
    config.insert("backend".into(), json!("tokenizers"));
    config.insert("extra_special_tokens".into(), json!(["<|video|>"]));
    config.insert("padding_side".into(), json!("left"));
    config.insert("tokenizer_class".into(), json!("GemmaTokenizer"));
    Value::Object(config)
}

/// Writes `tokenizer.json`, `tokenizer_config.json` and `chat_template.jinja` into `dir`
/// (which must exist).
pub fn write_tiny_tokenizer(dir: &Path, vocab_size: usize) -> Result<(), TinyTokenizerError> {
    let tokenizer = tiny_tokenizer(vocab_size)?;
    let path = dir.join(TOKENIZER_FILE);
    tokenizer
        .save(&path, true)
        .map_err(|e| TinyTokenizerError::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;

    let config = serde_json::to_string_pretty(&tiny_tokenizer_config())
        .map_err(|e| TinyTokenizerError::Build(e.to_string()))?;
    write_file(&dir.join(TOKENIZER_CONFIG_FILE), &config)?;
    write_file(&dir.join(CHAT_TEMPLATE_FILE), TINY_CHAT_TEMPLATE)
}

fn write_file(path: &Path, contents: &str) -> Result<(), TinyTokenizerError> {
    std::fs::write(path, contents).map_err(|e| TinyTokenizerError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::ChatTemplate;
    use crate::tokenizer::Tokenizer;
    use crate::tokenizer_config::TokenizerConfig;

    #[test]
    fn layout_matches_the_python_build() {
        let vocab = tiny_vocab(384).unwrap();
        assert_eq!(vocab.len(), 384);
        assert_eq!(vocab[24], "<0x00>");
        assert_eq!(vocab[24 + 0x0A], "<0x0A>");
        assert_eq!(vocab[279], "<0xFF>");
        assert_eq!(vocab[280], "\u{2581}");
        assert_eq!(vocab[281], "!");
        assert_eq!(vocab[374], "~");
        assert_eq!(
            &vocab[375..383],
            [
                "\u{2581}t",
                "he",
                "\u{2581}the",
                "in",
                "\u{2581}a",
                "er",
                "on",
                "at"
            ]
        );
        assert_eq!(vocab[383], "<unused0>");
        assert!(matches!(
            tiny_vocab(382),
            Err(TinyTokenizerError::VocabTooSmall {
                requested: 382,
                minimum: 383
            })
        ));
    }

    #[test]
    fn written_files_load_back_with_the_documented_ids() {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_tokenizer(dir.path(), 400).unwrap();
        let tok = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.vocab_size(), 400);
        let documented = [
            ("<pad>", 0),
            ("<eos>", 1),
            ("<bos>", 2),
            ("<unk>", 3),
            ("<mask>", 4),
            ("<|turn>", 5),
            ("<turn|>", 6),
            ("<|image>", 7),
            ("<image|>", 8),
            ("<|image|>", 9),
            ("<|audio>", 10),
            ("<audio|>", 11),
            ("<|audio|>", 12),
            ("<|video|>", 13),
            ("<|channel>", 14),
            ("<channel|>", 15),
            ("<|think|>", 16),
            ("<|tool_response>", 21),
            ("<|\"|>", 23),
            ("<unused16>", 399),
        ];
        for (token, id) in documented {
            assert_eq!(tok.token_id(token).unwrap(), id, "{token}");
            if !token.starts_with("<unused") {
                assert_eq!(tiny_special_id(token), Some(id), "{token}");
            }
        }
        assert_eq!(tiny_special_id("<unused0>"), None);
        // Round trips, ASCII and not (non-ASCII goes through byte fallback).
        for text in [
            "Hello there, what is the capital of France?",
            "naïve café ☕ 日本",
            "tab\there\n",
        ] {
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), text);
        }
        // Merges apply: "▁the" is one piece (id 377); "é" is its two UTF-8 bytes.
        assert_eq!(tok.encode(" the").unwrap(), vec![377]);
        assert_eq!(tok.encode("é").unwrap(), vec![24 + 0xC3, 24 + 0xA9]);

        let cfg = TokenizerConfig::load(dir.path()).unwrap();
        assert_eq!(cfg.token("image_token"), Some("<|image|>"));
        assert_eq!(cfg.token("boi_token"), Some("<|image>"));
        assert_eq!(cfg.token("eoi_token"), Some("<image|>"));
        assert_eq!(cfg.eos_token(), Some("<eos>"));
        assert_eq!(cfg.extra_special_tokens, ["<|video|>"]);
        let template = ChatTemplate::load(dir.path(), &cfg).unwrap();
        assert_eq!(
            template.map(|t| t.source().to_string()).as_deref(),
            Some(TINY_CHAT_TEMPLATE)
        );
    }

    #[test]
    fn write_into_missing_dir_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_tiny_tokenizer(&dir.path().join("nope"), 384).unwrap_err();
        assert!(matches!(err, TinyTokenizerError::Write { .. }));
        assert!(err.to_string().contains(TOKENIZER_FILE));
    }
}
