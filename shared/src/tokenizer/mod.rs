//! Tokenizers (book chapter 2) behind one [`Tokenizer`] trait, so that data loaders, training
//! samples and generation work with any of them:
//!
//! | tokenizer | book | module |
//! |---|---|---|
//! | [`Gpt2Tokenizer`]: GPT-2's byte-pair encoding via `tiktoken-rs` | 2.5 | [`gpt2`] |
//! | [`bpe::BytePairEncoder`]: byte-pair encoding written from scratch | 2.5 (bonus) | [`bpe`] |
//! | [`word::SimpleTokenizerV2`]: the word-level tokenizer of listing 2.4 | 2.2-2.4 | [`word`] |
//! | [`CharTokenizer`]: one id per character of a text (chapter 21's mini-GPT) | 21 | [`char`] |
//! | [`HfTokenizer`]: a Hugging Face `tokenizer.json` (Llama 3, Qwen3, Gemma 3) and its [`ChatTemplate`] | 21 | [`huggingface`], [`chat`] |
//!
//! [`TextStream`] turns generated ids into text as they arrive, for any of them.
//!
//! A model's config names its tokenizer with a [`TokenizerSpec`], which holds the whole
//! vocabulary of the ones built from a text, so a checkpoint carries what it needs.

pub mod bpe;
pub mod char;
pub mod chat;
pub mod gpt2;
pub mod huggingface;
pub mod stream;
pub mod word;

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

pub use self::char::CharTokenizer;
pub use chat::{ChatMessage, ChatTemplate};
pub use gpt2::{Gpt2Tokenizer, END_OF_TEXT, END_OF_TEXT_ID, GPT2_VOCAB_SIZE};
pub use huggingface::HfTokenizer;
pub use stream::TextStream;

/// The longest run of whitespace GPT-2's pre-tokenizer regex sees at once (see
/// [`BoundedWhitespace`]).
pub const MAX_WHITESPACE_RUN: usize = 1 << 16;

/// `text` in consecutive pieces, cut only inside whitespace runs longer than
/// [`MAX_WHITESPACE_RUN`] characters (after every `MAX_WHITESPACE_RUN` of them), for GPT-2's
/// pre-tokenizer regex: its backtracking engine gives up near a million steps, which a run
/// of about a million whitespace characters takes. Cutting a run cuts the regex's
/// whitespace piece in two and changes no other piece, so the ids equal `tiktoken`'s for
/// every text whose whitespace runs are at most [`MAX_WHITESPACE_RUN`] long.
pub(crate) struct BoundedWhitespace<'a> {
    rest: &'a str,
}

impl<'a> BoundedWhitespace<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { rest: text }
    }
}

impl<'a> Iterator for BoundedWhitespace<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let mut run = 0;
        let mut cut = self.rest.len();
        for (at, c) in self.rest.char_indices() {
            if !c.is_whitespace() {
                run = 0;
            } else if run == MAX_WHITESPACE_RUN {
                cut = at;
                break;
            } else {
                run += 1;
            }
        }
        let (chunk, rest) = self.rest.split_at(cut);
        self.rest = rest;
        Some(chunk)
    }
}

/// A token id.
pub type TokenId = u32;

/// Text to token ids and back. Tokenizers are shared between threads (a server encodes
/// requests on its HTTP threads and decodes on the model's).
pub trait Tokenizer: Send + Sync {
    /// The ids of `text` (special tokens such as `<|endoftext|>` included where the
    /// tokenizer has them), with the tokens a tokenizer adds to a whole text (Llama's and
    /// Gemma's BOS) when it adds any.
    fn encode(&self, text: &str) -> Result<Vec<TokenId>>;
    /// The ids of `text` as a piece of a longer text: without the tokens that
    /// [`Tokenizer::encode`] adds around a whole text (the same ids for every tokenizer but
    /// the Hugging Face ones).
    fn encode_fragment(&self, text: &str) -> Result<Vec<TokenId>> {
        self.encode(text)
    }
    /// [`Tokenizer::encode_fragment`] for text a user wrote, where a special token's name is
    /// plain text (`<|endoftext|>` typed in a message is those 13 characters). GPT-2's
    /// tokenizers tell them apart; a Hugging Face tokenizer reads special tokens in any text,
    /// as `transformers` does.
    fn encode_ordinary(&self, text: &str) -> Result<Vec<TokenId>> {
        self.encode_fragment(text)
    }
    /// The text of `ids`; an id outside the vocabulary is an error.
    fn decode(&self, ids: &[TokenId]) -> Result<String>;
    /// [`Tokenizer::decode`] for generated ids shown as text: they may stop inside a
    /// character, so bytes that are no UTF-8 become U+FFFD (as `tiktoken` decodes with
    /// `errors="replace"`); the Hugging Face tokenizers also leave out special tokens (the
    /// BOS they add), as `transformers` decodes with `skip_special_tokens=True`.
    fn decode_lossy(&self, ids: &[TokenId]) -> Result<String> {
        self.decode(ids)
    }
    /// The bytes of one token, which may hold part of a character (a server's
    /// log-probabilities show them). By default the token's decoded text: exact for
    /// tokenizers whose tokens are whole characters; GPT-2's gives its raw bytes.
    fn token_bytes(&self, id: TokenId) -> Result<Vec<u8>> {
        Ok(self.decode(&[id])?.into_bytes())
    }
    /// The number of ids.
    fn vocab_size(&self) -> usize;
    /// The id that ends a text (generation stops at it), if the tokenizer has one.
    fn end_of_text(&self) -> Option<TokenId>;
    /// Every id that ends a generation, [`Tokenizer::end_of_text`] first (an instruction
    /// model also ends its turn with another token: Llama's `<|eot_id|>`).
    fn stop_ids(&self) -> Vec<TokenId> {
        self.end_of_text().into_iter().collect()
    }
    /// What a checkpoint records to rebuild this tokenizer.
    fn spec(&self) -> TokenizerSpec;
    /// The chat template that comes with the tokenizer (an instruction model's), if any.
    fn chat_template(&self) -> Result<Option<ChatTemplate>> {
        Ok(None)
    }
}

/// Which tokenizer a model reads, with its vocabulary where it was built from a text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerSpec {
    /// GPT-2's byte-pair encoding (`tiktoken`'s `gpt2`).
    #[default]
    Gpt2,
    /// A byte-pair encoding of our own: its tokens' bytes in id order, then special tokens.
    Bpe { tokens: Vec<Vec<u8>>, special: Vec<(String, TokenId)> },
    /// A character-level tokenizer: id `i` is the `i`-th character of `chars`.
    Char { chars: String },
    /// Chapter 2's word-level tokenizer: id `i` is `tokens[i]` (which holds `<|unk|>`).
    Word { tokens: Vec<String> },
    /// A Hugging Face `tokenizer.json` in this folder (with its `tokenizer_config.json`).
    HuggingFace { dir: std::path::PathBuf },
}

impl TokenizerSpec {
    /// The tokenizer this names.
    pub fn build(&self) -> Result<Box<dyn Tokenizer>> {
        Ok(match self {
            Self::Gpt2 => Box::new(Gpt2Tokenizer::new()),
            Self::Bpe { tokens, special } => Box::new(bpe::BytePairEncoder::new(tokens.clone(), special.clone())?),
            Self::Char { chars } => Box::new(CharTokenizer::new(chars)?),
            Self::Word { tokens } => {
                Box::new(word::SimpleTokenizerV2::new(word::Vocabulary::from_tokens(tokens.clone()))?)
            }
            Self::HuggingFace { dir } => Box::new(HfTokenizer::open(dir)?),
        })
    }

    /// Checks what can be checked without building the tokenizer.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Gpt2 => {}
            Self::Bpe { tokens, .. } => ensure!(tokens.len() >= 256, "a byte-level BPE needs all 256 bytes"),
            Self::Char { chars } => ensure!(!chars.is_empty(), "a character tokenizer needs characters"),
            Self::Word { tokens } => {
                ensure!(tokens.iter().any(|t| t == word::UNKNOWN), "a word tokenizer needs {}", word::UNKNOWN)
            }
            // Whether the folder still holds it shows when the tokenizer is built.
            Self::HuggingFace { dir } => {
                ensure!(!dir.as_os_str().is_empty(), "a Hugging Face tokenizer needs a folder")
            }
        }
        Ok(())
    }

    /// A short name for messages: `gpt2`, `bpe`, `char`, `word`, `huggingface`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Gpt2 => "gpt2",
            Self::Bpe { .. } => "bpe",
            Self::Char { .. } => "char",
            Self::Word { .. } => "word",
            Self::HuggingFace { .. } => "huggingface",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tokenizer round-trips a text it covers, and its spec rebuilds the same one.
    #[test]
    fn every_tokenizer_round_trips_through_its_spec() {
        let text = "It was the best of times, it was the worst of times.";
        let bytes: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).chain([b"th".to_vec(), b" the".to_vec()]).collect();
        let tokenizers: Vec<Box<dyn Tokenizer>> = vec![
            Box::new(Gpt2Tokenizer::new()),
            Box::new(bpe::BytePairEncoder::new(bytes, vec![(END_OF_TEXT.to_string(), 258)]).unwrap()),
            Box::new(CharTokenizer::from_text(text)),
            Box::new(word::SimpleTokenizerV2::from_text(text)),
        ];
        for tokenizer in tokenizers {
            let spec = tokenizer.spec();
            let ids = tokenizer.encode(text).unwrap();
            assert!(ids.iter().all(|&id| (id as usize) < tokenizer.vocab_size()), "{}", spec.name());
            assert_eq!(tokenizer.decode(&ids).unwrap(), text, "{}", spec.name());
            let json = serde_json::to_string(&spec).unwrap();
            let rebuilt = serde_json::from_str::<TokenizerSpec>(&json).unwrap().build().unwrap();
            assert_eq!(rebuilt.encode(text).unwrap(), ids, "{}", spec.name());
            assert_eq!(rebuilt.vocab_size(), tokenizer.vocab_size());
            assert_eq!(rebuilt.end_of_text(), tokenizer.end_of_text());
            let outside = tokenizer.vocab_size() as TokenId;
            assert!(tokenizer.decode(&[outside]).is_err(), "{}", spec.name());
        }
        assert_eq!(serde_json::to_string(&TokenizerSpec::Gpt2).unwrap(), "\"gpt2\"");
        assert!(TokenizerSpec::Word { tokens: vec!["a".into()] }.validate().is_err());
    }
}
