//! GPT-2's byte-pair encoding (book section 2.5), through `tiktoken-rs`'s `r50k_base`
//! (the `gpt2` encoding of OpenAI's `tiktoken`, which the book uses).
//!
//! Any text is encoded, in full: see [`BoundedWhitespace`] for the one place where the ids
//! can differ from `tiktoken`'s (which refuses such texts).

use anyhow::{bail, Result};
use tiktoken_rs::CoreBPE;

use super::{BoundedWhitespace, TokenId, Tokenizer, TokenizerSpec};

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
        let mut ids = Vec::new();
        for (i, part) in text.split(END_OF_TEXT).enumerate() {
            if i > 0 {
                ids.push(END_OF_TEXT_ID);
            }
            self.encode_ordinary_into(part, &mut ids);
        }
        ids
    }

    /// Token ids of `text` with `<|endoftext|>` treated as ordinary text: what user text
    /// inside a prompt template must be, so that it cannot end the document.
    pub fn encode_ordinary(&self, text: &str) -> Vec<TokenId> {
        let mut ids = Vec::new();
        self.encode_ordinary_into(text, &mut ids);
        ids
    }

    fn encode_ordinary_into(&self, text: &str, ids: &mut Vec<TokenId>) {
        for chunk in BoundedWhitespace::new(text) {
            // Every whitespace run in `chunk` is short enough for the regex.
            ids.extend(self.bpe.encode_ordinary(chunk));
        }
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

    fn encode_ordinary(&self, text: &str) -> Result<Vec<TokenId>> {
        Ok(Gpt2Tokenizer::encode_ordinary(self, text))
    }

    fn decode(&self, ids: &[TokenId]) -> Result<String> {
        Gpt2Tokenizer::decode(self, ids)
    }

    fn decode_lossy(&self, ids: &[TokenId]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    fn token_bytes(&self, id: TokenId) -> Result<Vec<u8>> {
        self.decode_bytes(&[id])
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
    use super::super::MAX_WHITESPACE_RUN;
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

    /// A text of random fragments: words, numbers, punctuation, emoji, newlines, the special
    /// token, and whitespace runs, some of them longer than [`MAX_WHITESPACE_RUN`] when `long`.
    fn random_text(rng: &mut crate::fuzz::Rng, long: bool) -> String {
        const FRAGMENTS: [&str; 12] =
            ["Hello", " world", "42", "!?", "🦀", "\n", "\t", " ", "  x", "'s", END_OF_TEXT, "Übung."];
        const SPACES: [&str; 5] = [" ", "\n", "\t", "\r\n", "\u{3000}"];
        let mut text = String::new();
        for _ in 0..rng.below(40) {
            if rng.below(4) == 0 {
                let limit = if long { 3 * MAX_WHITESPACE_RUN } else { MAX_WHITESPACE_RUN / 64 };
                let unit = SPACES[rng.below(SPACES.len())];
                text += &unit.repeat(1 + rng.below(limit / unit.chars().count()));
            } else {
                text += FRAGMENTS[rng.below(FRAGMENTS.len())];
            }
        }
        text
    }

    /// tiktoken's own encoding, which gives up on long whitespace runs.
    fn tiktoken_ids(text: &str) -> Option<Vec<TokenId>> {
        let allowed = std::collections::HashSet::from([END_OF_TEXT]);
        tiktoken_rs::r50k_base_singleton().encode(text, &allowed).ok().map(|(ids, _)| ids)
    }

    #[test]
    fn any_text_is_encoded_whole_and_ordinary_text_as_tiktoken_does() {
        let tokenizer = Gpt2Tokenizer::new();
        let mut rng = crate::fuzz::Rng::new(29);
        for case in 0..60 {
            let ordinary = random_text(&mut rng, false);
            assert_eq!(Some(tokenizer.encode(&ordinary)), tiktoken_ids(&ordinary), "case {case}");
            let long = random_text(&mut rng, true);
            let ids = tokenizer.encode(&long);
            assert_eq!(tokenizer.decode(&ids).unwrap(), long, "case {case}");
            assert_eq!(tokenizer.decode(&tokenizer.encode_ordinary(&long)).unwrap(), long, "case {case}");
        }
        // The hostile tester's input, which tiktoken refuses.
        let spaces = " ".repeat(1_000_000) + "x";
        assert!(tiktoken_ids(&spaces).is_none(), "tiktoken's regex gives up here");
        assert_eq!(tokenizer.decode(&tokenizer.encode(&spaces)).unwrap(), spaces);
        // Whitespace runs up to the bound are tiktoken's pieces, exactly.
        let at_bound = " ".repeat(MAX_WHITESPACE_RUN) + "x";
        assert_eq!(Some(tokenizer.encode(&at_bound)), tiktoken_ids(&at_bound));
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
