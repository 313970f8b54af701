//! A character-level tokenizer: one id per distinct character of a training text, in sorted
//! order (the tokenizer of Karpathy's tiny-Shakespeare GPT and of chapter 21's mini-GPT).

use std::collections::BTreeSet;

use anyhow::{bail, ensure, Result};

use super::{TokenId, Tokenizer, TokenizerSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharTokenizer {
    chars: Vec<char>,
}

impl CharTokenizer {
    /// The distinct characters of `text`, sorted.
    pub fn from_text(text: &str) -> Self {
        Self { chars: text.chars().collect::<BTreeSet<_>>().into_iter().collect() }
    }

    /// A vocabulary whose id `i` is the `i`-th character of `chars` (each at most once).
    pub fn new(chars: &str) -> Result<Self> {
        let list: Vec<char> = chars.chars().collect();
        let distinct: BTreeSet<char> = list.iter().copied().collect();
        ensure!(!list.is_empty(), "a character tokenizer needs at least one character");
        ensure!(distinct.len() == list.len(), "the characters of a character tokenizer must be distinct");
        Ok(Self { chars: list })
    }
}

impl Tokenizer for CharTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<TokenId>> {
        text.chars()
            .map(|c| match self.chars.binary_search(&c).ok().or_else(|| self.chars.iter().position(|&x| x == c)) {
                Some(id) => Ok(id as TokenId),
                None => bail!("the character {c:?} is not in the tokenizer's vocabulary"),
            })
            .collect()
    }

    fn decode(&self, ids: &[TokenId]) -> Result<String> {
        ids.iter()
            .map(|&id| match self.chars.get(id as usize) {
                Some(&c) => Ok(c),
                None => bail!("token id {id} is outside the vocabulary (0..{})", self.chars.len()),
            })
            .collect()
    }

    fn vocab_size(&self) -> usize {
        self.chars.len()
    }

    fn end_of_text(&self) -> Option<TokenId> {
        None
    }

    fn spec(&self) -> TokenizerSpec {
        TokenizerSpec::Char { chars: self.chars.iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sorted_characters() {
        let tokenizer = CharTokenizer::from_text("hello\n");
        assert_eq!(tokenizer.vocab_size(), 5);
        assert_eq!(tokenizer.encode("hole").unwrap(), [2, 4, 3, 1]);
        assert!(tokenizer.encode("help!").unwrap_err().to_string().contains("'p'"));
        assert!(CharTokenizer::new("aba").is_err());
    }
}
