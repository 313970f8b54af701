//! GPT-2's byte-pair encoding (book section 2.5), through `tiktoken-rs`'s `r50k_base`
//! (the `gpt2` encoding of OpenAI's `tiktoken`, which the book uses).

use anyhow::{bail, Result};
use std::collections::HashSet;
use tiktoken_rs::CoreBPE;

use super::{TokenId, Tokenizer, TokenizerSpec};

/// The special token that separates documents.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// Its id, also the padding id of chapters 6 and 7.
pub const END_OF_TEXT_ID: TokenId = 50256;
/// 50,000 merges + 256 byte tokens + `<|endoftext|>`.
pub const GPT2_VOCAB_SIZE: usize = 50257;

/// The GPT-2 tokenizer: `tiktoken.get_encoding("gpt2")` with `<|endoftext|>` allowed.
#[derive(Clone, Copy)]
pub struct Gpt2Tokenizer {
    bpe: &'static CoreBPE,
}

impl Default for Gpt2Tokenizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Gpt2Tokenizer {
    pub fn new() -> Self {
        Self { bpe: tiktoken_rs::r50k_base_singleton() }
    }

    /// Token ids of `text`; `<|endoftext|>` becomes 50256, as with
    /// `tokenizer.encode(text, allowed_special={"<|endoftext|>"})`.
    pub fn encode(&self, text: &str) -> Vec<TokenId> {
        let allowed = HashSet::from([END_OF_TEXT]);
        self.bpe.encode(text, &allowed).expect("every special token is allowed").0
    }

    /// Token ids of `text` with `<|endoftext|>` treated as ordinary text.
    pub fn encode_ordinary(&self, text: &str) -> Vec<TokenId> {
        self.bpe.encode_ordinary(text)
    }

    /// The text of `ids`; bytes that are not valid UTF-8 on their own (a token can hold
    /// part of a character) become U+FFFD, as in `tiktoken`'s `decode`.
    pub fn decode(&self, ids: &[TokenId]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    /// The raw bytes of `ids`.
    pub fn decode_bytes(&self, ids: &[TokenId]) -> Result<Vec<u8>> {
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= GPT2_VOCAB_SIZE) {
            bail!("token id {bad} is outside the GPT-2 vocabulary (0..{GPT2_VOCAB_SIZE})");
        }
        Ok(self.bpe.decode_bytes(ids).expect("every id below the vocabulary size has bytes"))
    }

    pub fn vocab_size(&self) -> usize {
        GPT2_VOCAB_SIZE
    }
}

impl Tokenizer for Gpt2Tokenizer {
    fn encode(&self, text: &str) -> Result<Vec<TokenId>> {
        Ok(Gpt2Tokenizer::encode(self, text))
    }

    fn decode(&self, ids: &[TokenId]) -> Result<String> {
        Gpt2Tokenizer::decode(self, ids)
    }

    fn vocab_size(&self) -> usize {
        GPT2_VOCAB_SIZE
    }

    fn end_of_text(&self) -> Option<TokenId> {
        Some(END_OF_TEXT_ID)
    }

    fn spec(&self) -> TokenizerSpec {
        TokenizerSpec::Gpt2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_book() {
        // Book section 2.5.
        let tokenizer = Gpt2Tokenizer::new();
        let text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace.";
        let ids = tokenizer.encode(text);
        assert_eq!(
            ids,
            [
                15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114, 286, 617, 34680,
                27271, 13
            ]
        );
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
        assert!(!tokenizer.encode_ordinary(text).contains(&END_OF_TEXT_ID));
    }

    #[test]
    fn rejects_ids_outside_the_vocabulary() {
        let err = Gpt2Tokenizer::new().decode(&[1, 50257]).unwrap_err().to_string();
        assert!(err.contains("50257"), "{err}");
    }

    #[test]
    fn partial_characters_decode_lossily() {
        let tokenizer = Gpt2Tokenizer::new();
        let ids = tokenizer.encode("🦀");
        assert!(ids.len() > 1, "the crab emoji spans several byte tokens");
        assert_eq!(tokenizer.decode(&ids).unwrap(), "🦀");
        assert!(tokenizer.decode(&ids[..1]).unwrap().contains('\u{fffd}'));
    }
}
