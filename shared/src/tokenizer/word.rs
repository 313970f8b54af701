//! The simple regex tokenizers of book sections 2.2-2.4 (listings 2.3 and 2.4).
//!
//! Text is split on punctuation, double dashes and whitespace; the vocabulary is every
//! distinct token of a training text in sorted order. V1 rejects words it has not seen;
//! V2 maps them to `<|unk|>` and knows `<|endoftext|>`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use anyhow::{bail, Result};
use regex::Regex;

use super::{TokenId, Tokenizer, TokenizerSpec};

/// The token for words missing from the vocabulary (V2).
pub const UNKNOWN: &str = "<|unk|>";
/// The token placed between independent texts (V2).
pub const END_OF_TEXT: &str = "<|endoftext|>";

static SPLIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"([,.:;?_!"()']|--|\s)"#).unwrap());
static SPACE_BEFORE_PUNCT_V1: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"\s+([,.?!"()'])"#).unwrap());
static SPACE_BEFORE_PUNCT_V2: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"\s+([,.:;?!"()'])"#).unwrap());

/// Python's `re.split(r'([,.:;?_!"()\']|--|\s)', text)` keeping the delimiters, each piece
/// stripped, empty pieces dropped (section 2.2).
pub fn split_text(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut last = 0;
    for delimiter in SPLIT.find_iter(text) {
        pieces.push(&text[last..delimiter.start()]);
        pieces.push(delimiter.as_str());
        last = delimiter.end();
    }
    pieces.push(&text[last..]);
    pieces.into_iter().map(str::trim).filter(|piece| !piece.is_empty()).collect()
}

/// A token <-> id mapping, ids in sorted token order (section 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    tokens: Vec<String>,
    ids: BTreeMap<String, usize>,
}

impl Vocabulary {
    /// Every distinct token of `text`, sorted, then `extra` tokens appended in order.
    pub fn from_text(text: &str, extra: &[&str]) -> Self {
        let distinct: BTreeSet<&str> = split_text(text).into_iter().collect();
        Self::from_tokens(distinct.into_iter().chain(extra.iter().copied()).map(String::from).collect())
    }

    /// The vocabulary whose id `i` is `tokens[i]` (a repeated token keeps its first id).
    pub fn from_tokens(tokens: Vec<String>) -> Self {
        let mut ids = BTreeMap::new();
        for (id, token) in tokens.iter().enumerate() {
            ids.entry(token.clone()).or_insert(id);
        }
        Self { tokens, ids }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn id(&self, token: &str) -> Option<usize> {
        self.ids.get(token).copied()
    }

    pub fn token(&self, id: usize) -> Option<&str> {
        self.tokens.get(id).map(String::as_str)
    }

    /// `(token, id)` pairs in id order.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = (&str, usize)> + ExactSizeIterator {
        self.tokens.iter().enumerate().map(|(id, token)| (token.as_str(), id))
    }

    fn decode_with(&self, ids: &[usize], cleanup: &Regex) -> Result<String> {
        let words = ids
            .iter()
            .map(|&id| match self.token(id) {
                Some(token) => Ok(token),
                None => bail!("token id {id} is outside the vocabulary (0..{})", self.len()),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(cleanup.replace_all(&words.join(" "), "$1").into_owned())
    }
}

/// Listing 2.3: encodes known words only.
#[derive(Debug, Clone)]
pub struct SimpleTokenizerV1 {
    pub vocab: Vocabulary,
}

impl SimpleTokenizerV1 {
    pub fn new(vocab: Vocabulary) -> Self {
        Self { vocab }
    }

    /// The ids of `text`; a word outside the vocabulary is an error that names it.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>> {
        split_text(text)
            .into_iter()
            .map(|token| match self.vocab.id(token) {
                Some(id) => Ok(id),
                None => bail!("'{token}' is not in the vocabulary (SimpleTokenizerV1 has no <|unk|> token)"),
            })
            .collect()
    }

    /// The text of `ids`, with the spaces before punctuation removed.
    pub fn decode(&self, ids: &[usize]) -> Result<String> {
        self.vocab.decode_with(ids, &SPACE_BEFORE_PUNCT_V1)
    }
}

/// Listing 2.4: unknown words become `<|unk|>`.
#[derive(Debug, Clone)]
pub struct SimpleTokenizerV2 {
    pub vocab: Vocabulary,
    unknown_id: usize,
}

impl SimpleTokenizerV2 {
    /// Needs a vocabulary that holds `<|unk|>` (see [`SimpleTokenizerV2::from_text`]).
    pub fn new(vocab: Vocabulary) -> Result<Self> {
        let Some(unknown_id) = vocab.id(UNKNOWN) else { bail!("the vocabulary has no {UNKNOWN} token") };
        Ok(Self { vocab, unknown_id })
    }

    /// The vocabulary of `text` extended with `<|endoftext|>` and `<|unk|>`.
    pub fn from_text(text: &str) -> Self {
        Self::new(Vocabulary::from_text(text, &[END_OF_TEXT, UNKNOWN])).expect("the vocabulary holds <|unk|>")
    }

    pub fn encode(&self, text: &str) -> Vec<usize> {
        split_text(text).into_iter().map(|token| self.vocab.id(token).unwrap_or(self.unknown_id)).collect()
    }

    pub fn decode(&self, ids: &[usize]) -> Result<String> {
        self.vocab.decode_with(ids, &SPACE_BEFORE_PUNCT_V2)
    }
}

/// Chapter 2's word-level tokenizer as a model's tokenizer (unknown words become `<|unk|>`).
impl Tokenizer for SimpleTokenizerV2 {
    fn encode(&self, text: &str) -> Result<Vec<TokenId>> {
        Ok(SimpleTokenizerV2::encode(self, text).into_iter().map(|id| id as TokenId).collect())
    }

    fn decode(&self, ids: &[TokenId]) -> Result<String> {
        SimpleTokenizerV2::decode(self, &ids.iter().map(|&id| id as usize).collect::<Vec<_>>())
    }

    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    fn end_of_text(&self) -> Option<TokenId> {
        self.vocab.id(END_OF_TEXT).map(|id| id as TokenId)
    }

    fn spec(&self) -> TokenizerSpec {
        TokenizerSpec::Word { tokens: self.vocab.entries().map(|(token, _)| token.to_string()).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_python_re_split() {
        assert_eq!(
            split_text("Hello, world. Is this-- a test?"),
            ["Hello", ",", "world", ".", "Is", "this", "--", "a", "test", "?"]
        );
        assert!(split_text("  \n ").is_empty());
    }

    #[test]
    fn v1_round_trips_and_names_unknown_words() {
        let tokenizer = SimpleTokenizerV1::new(Vocabulary::from_text("the cat sat, the end.", &[]));
        let ids = tokenizer.encode("the cat, the end.").unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), "the cat, the end.");
        let err = tokenizer.encode("the dog").unwrap_err().to_string();
        assert!(err.contains("'dog'"), "{err}");
        assert!(tokenizer.decode(&[99]).is_err());
    }

    #[test]
    fn v2_maps_unknown_words() {
        let tokenizer = SimpleTokenizerV2::from_text("the cat sat.");
        assert_eq!(tokenizer.vocab.len(), 6);
        let ids = tokenizer.encode("the dog sat. <|endoftext|> cat");
        assert_eq!(tokenizer.decode(&ids).unwrap(), "the <|unk|> sat. <|endoftext|> cat");
        assert!(SimpleTokenizerV2::new(Vocabulary::from_text("a b", &[])).is_err());
    }
}
