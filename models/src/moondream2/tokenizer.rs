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
pub fn check_starmie(tok: &tokenizers::Tokenizer, path: &Path, eos_id: u32, vocab_size: i32) -> Result<()> {
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
        let e = check_starmie(&word_level(50256), Path::new("tokenizer.json"), 0, 51200).unwrap_err();
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
