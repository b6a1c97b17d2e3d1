//! The Moondream2 (2025-06-21) tokenizer is `moondream/starmie-v1` (51200 ids, `<|endoftext|>` =
//! 0 is BOS and EOS). The model repository also carries a stale GPT-2/CodeGen `tokenizer.json`
//! (`<|endoftext|>` = 50256) that these weights do not use; with it the model emits garbage, so
//! it is refused by name.

use std::path::Path;

use crate::error::{ModelError, Result};

const END_OF_TEXT: &str = "<|endoftext|>";
const STALE_GPT2_EOS: u32 = 50256;

/// Load `tokenizer.json` and check that it is the starmie tokenizer the weights expect:
/// `<|endoftext|>` must be id `eos_id` and the vocabulary must fit `vocab_size` ids.
pub fn load_starmie(path: &Path, eos_id: u32, vocab_size: i32) -> Result<tokenizers::Tokenizer> {
    let tok = tokenizers::Tokenizer::from_file(path).map_err(|e| ModelError::Json {
        path: path.to_path_buf(),
        reason: format!("not a tokenizers JSON file: {e}"),
    })?;
    check_starmie(&tok, path, eos_id, vocab_size)?;
    Ok(tok)
}

/// The checks of [`load_starmie`] on an already loaded tokenizer.
pub fn check_starmie(
    tok: &tokenizers::Tokenizer,
    path: &Path,
    eos_id: u32,
    vocab_size: i32,
) -> Result<()> {
    let bad = |reason: String| Err(ModelError::config(path, "tokenizer", reason));
    match tok.token_to_id(END_OF_TEXT) {
        Some(STALE_GPT2_EOS) => bad(format!(
            "this is the stale GPT-2/CodeGen tokenizer ({END_OF_TEXT} = {STALE_GPT2_EOS}) shipped in the moondream2 repo; \
             these weights need moondream/starmie-v1 ({END_OF_TEXT} = {eos_id}); pass its tokenizer.json"
        )),
        Some(id) if id == eos_id => {
            let n = tok.get_vocab_size(true);
            if n > vocab_size as usize {
                return bad(format!("{n} ids do not fit the model's vocabulary of {vocab_size}"));
            }
            Ok(())
        }
        Some(id) => bad(format!("{END_OF_TEXT} is id {id}, expected {eos_id} (moondream/starmie-v1)")),
        None => bad(format!("has no {END_OF_TEXT} token; expected moondream/starmie-v1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word_level(eos_id: u32) -> tokenizers::Tokenizer {
        let json = format!(
            r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":{{"type":"Whitespace"}},"post_processor":null,"decoder":null,
            "model":{{"type":"WordLevel","vocab":{{"{END_OF_TEXT}":{eos_id},"a":1,"b":2}},"unk_token":"a"}}}}"#
        );
        json.parse().unwrap()
    }

    #[test]
    fn stale_gpt2_tokenizer_is_rejected_by_name() {
        let e =
            check_starmie(&word_level(50256), Path::new("tokenizer.json"), 0, 51200).unwrap_err();
        assert!(e.to_string().contains("stale GPT-2"), "{e}");
    }

    #[test]
    fn starmie_like_tokenizer_passes() {
        check_starmie(&word_level(0), Path::new("tokenizer.json"), 0, 51200).unwrap();
    }

    #[test]
    fn other_eos_ids_are_rejected() {
        let e = check_starmie(&word_level(7), Path::new("tokenizer.json"), 0, 51200).unwrap_err();
        assert!(e.to_string().contains("is id 7"), "{e}");
    }
}

/// A stand-in for the starmie tokenizer, for the tiny random checkpoint (the real one is not
/// reachable offline): byte-level BPE over the 256 bytes (ids 1..=256) with `<|endoftext|>` = 0,
/// so it passes [`check_starmie`] for a vocabulary of at least 257 ids. Written to `path`.
pub fn write_tiny_starmie(path: &Path) -> Result<()> {
    use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::AddedToken;

    let build = |e: tokenizers::Error| {
        ModelError::Input(format!("cannot build the tiny starmie tokenizer: {e}"))
    };
    let mut vocab: tokenizers::models::bpe::Vocab = ByteLevel::alphabet()
        .into_iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, piece)| (piece, i as u32 + 1))
        .collect();
    vocab.insert(END_OF_TEXT.to_string(), 0);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .map_err(build)?;
    let mut tok = tokenizers::Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    tok.add_special_tokens(&[AddedToken::from(END_OF_TEXT, true)]);
    tok.save(path, true).map_err(|e| {
        ModelError::Input(format!(
            "{}: cannot write the tokenizer: {e}",
            path.display()
        ))
    })?;
    Ok(())
}

#[cfg(test)]
mod tiny_tests {
    use super::*;

    #[test]
    fn the_tiny_starmie_tokenizer_passes_the_starmie_check_and_round_trips_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        write_tiny_starmie(&path).unwrap();
        let tok = load_starmie(&path, 0, 1024).unwrap();
        let ids = tok.encode(" a red ball", false).unwrap().get_ids().to_vec();
        assert!(ids.iter().all(|&i| (1..=256).contains(&i)), "{ids:?}");
        assert_eq!(tok.decode(&ids, true).unwrap(), " a red ball");
        // Too small a vocabulary for it is refused by the same check as the real one.
        assert!(load_starmie(&path, 0, 200).is_err());
    }
}
