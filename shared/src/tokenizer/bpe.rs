//! Byte-pair encoding from scratch (the book's bonus material to section 2.5).
//!
//! A byte-level BPE vocabulary is a list of byte strings: ids 0-255 are single bytes (or,
//! for GPT-2, the 256 bytes in GPT-2's own order), every later id is the merge of two
//! earlier tokens, and an id doubles as the merge's priority ("rank"). Encoding splits the
//! text into pre-tokens with GPT-2's regular expression, then, inside each pre-token,
//! repeatedly merges the adjacent pair whose concatenation has the lowest rank. With GPT-2's
//! ranks this yields exactly the ids of OpenAI's encoder (tested against `tiktoken-rs`).

use std::collections::HashMap;
use std::sync::LazyLock;

use super::{
    BoundedWhitespace, Gpt2Tokenizer, TokenId, Tokenizer, TokenizerSpec, END_OF_TEXT, END_OF_TEXT_ID, GPT2_VOCAB_SIZE,
};
use anyhow::{bail, ensure, Context, Result};
use fancy_regex::Regex;

/// GPT-2's pre-tokenizer: contractions, letters, numbers, other symbols (each with an
/// optional leading space), and runs of whitespace.
pub const GPT2_PRETOKENIZER: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

static PRETOKENIZER: LazyLock<Regex> = LazyLock::new(|| Regex::new(GPT2_PRETOKENIZER).expect("valid pattern"));

/// The pre-tokens of `text`, in order; together they cover `text` exactly. Whitespace runs
/// longer than [`super::MAX_WHITESPACE_RUN`] are cut first, as for [`Gpt2Tokenizer`].
pub fn pretokenize(text: &str) -> Result<Vec<&str>> {
    BoundedWhitespace::new(text)
        .flat_map(|chunk| PRETOKENIZER.find_iter(chunk))
        .map(|piece| piece.map(|m| m.as_str()).context("pre-tokenizer failed"))
        .collect()
}

/// A byte-level BPE vocabulary with its encoder and decoder.
#[derive(Debug, Clone)]
pub struct BytePairEncoder {
    /// id -> bytes
    tokens: Vec<Vec<u8>>,
    /// bytes -> id (the lowest id, should two merges spell the same bytes)
    ranks: HashMap<Vec<u8>, TokenId>,
    /// special tokens, matched in the text before pre-tokenizing
    special: Vec<(String, TokenId)>,
}

impl BytePairEncoder {
    /// A vocabulary from its tokens in id order, followed by special tokens.
    pub fn new(tokens: Vec<Vec<u8>>, special: Vec<(String, TokenId)>) -> Result<Self> {
        let mut ranks = HashMap::with_capacity(tokens.len());
        for (id, bytes) in tokens.iter().enumerate() {
            ranks.entry(bytes.clone()).or_insert(id as TokenId);
        }
        ensure!((0..=255u8).all(|b| ranks.contains_key(&[b][..])), "a byte-level vocabulary needs all 256 bytes");
        for (text, id) in &special {
            ensure!(!text.is_empty(), "special tokens cannot be empty");
            ensure!(*id as usize >= tokens.len(), "special token {text} reuses id {id} of an ordinary token");
        }
        Ok(Self { tokens, ranks, special })
    }

    /// GPT-2's vocabulary: the 50,256 byte strings and their ranks, read out of
    /// `tiktoken-rs`'s `r50k_base` encoding one id at a time, plus `<|endoftext|>`.
    pub fn gpt2() -> Result<Self> {
        let reference = Gpt2Tokenizer::new();
        let tokens = (0..END_OF_TEXT_ID).map(|id| reference.decode_bytes(&[id])).collect::<Result<Vec<_>>>()?;
        debug_assert_eq!(tokens.len() + 1, GPT2_VOCAB_SIZE);
        Self::new(tokens, vec![(END_OF_TEXT.to_string(), END_OF_TEXT_ID)])
    }

    /// The ordinary tokens in id order, and the special tokens: what [`BytePairEncoder::new`]
    /// takes back.
    pub fn parts(&self) -> (&[Vec<u8>], &[(String, TokenId)]) {
        (&self.tokens, &self.special)
    }

    /// Ordinary tokens plus special tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len() + self.special.len()
    }

    /// The bytes of one ordinary token.
    pub fn token_bytes(&self, id: TokenId) -> Option<&[u8]> {
        self.tokens.get(id as usize).map(Vec::as_slice)
    }

    /// The ids of `text`, special tokens included.
    pub fn encode(&self, text: &str) -> Result<Vec<TokenId>> {
        let mut ids = Vec::new();
        let mut rest = text;
        while let Some((start, text, id)) = self.next_special(rest) {
            self.encode_ordinary_into(&rest[..start], &mut ids)?;
            ids.push(id);
            rest = &rest[start + text.len()..];
        }
        self.encode_ordinary_into(rest, &mut ids)?;
        Ok(ids)
    }

    /// The ids of `text`, special tokens treated as plain text.
    pub fn encode_ordinary(&self, text: &str) -> Result<Vec<TokenId>> {
        let mut ids = Vec::new();
        self.encode_ordinary_into(text, &mut ids)?;
        Ok(ids)
    }

    /// The bytes of `ids`.
    pub fn decode_bytes(&self, ids: &[TokenId]) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        for &id in ids {
            if let Some(token) = self.token_bytes(id) {
                bytes.extend_from_slice(token);
            } else if let Some((text, _)) = self.special.iter().find(|(_, special)| *special == id) {
                bytes.extend_from_slice(text.as_bytes());
            } else {
                bail!("token id {id} is outside the vocabulary (0..{})", self.vocab_size());
            }
        }
        Ok(bytes)
    }

    /// The text of `ids` (invalid UTF-8, from a token cut inside a character, becomes U+FFFD).
    pub fn decode(&self, ids: &[TokenId]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    /// The earliest special token in `text`: (byte offset, its text, its id).
    fn next_special<'a>(&'a self, text: &str) -> Option<(usize, &'a str, TokenId)> {
        self.special
            .iter()
            .filter_map(|(special, id)| text.find(special.as_str()).map(|start| (start, special.as_str(), *id)))
            .min_by_key(|&(start, special, _)| (start, std::cmp::Reverse(special.len())))
    }

    fn encode_ordinary_into(&self, text: &str, ids: &mut Vec<TokenId>) -> Result<()> {
        for piece in pretokenize(text)? {
            self.encode_piece(piece.as_bytes(), ids);
        }
        Ok(())
    }

    /// Merges the bytes of one pre-token, lowest rank first.
    fn encode_piece(&self, piece: &[u8], ids: &mut Vec<TokenId>) {
        if let Some(&id) = self.ranks.get(piece) {
            ids.push(id);
            return;
        }
        // bounds[i]..bounds[i + 1] is part i; start with one part per byte.
        let mut bounds: Vec<usize> = (0..=piece.len()).collect();
        let rank_of = |bounds: &[usize], i: usize| self.ranks.get(&piece[bounds[i]..bounds[i + 2]]).copied();
        let mut pair_ranks: Vec<Option<TokenId>> = (0..bounds.len() - 2).map(|i| rank_of(&bounds, i)).collect();
        while let Some((best, _)) = pair_ranks
            .iter()
            .enumerate()
            .filter_map(|(i, rank)| rank.map(|rank| (i, rank)))
            .min_by_key(|&(i, rank)| (rank, i))
        {
            // Merge parts `best` and `best + 1`, then refresh the ranks of the pairs they touch.
            bounds.remove(best + 1);
            pair_ranks.remove(best);
            if best < pair_ranks.len() {
                pair_ranks[best] = rank_of(&bounds, best);
            }
            if best > 0 {
                pair_ranks[best - 1] = rank_of(&bounds, best - 1);
            }
        }
        ids.extend(bounds.windows(2).map(|w| self.ranks[&piece[w[0]..w[1]]]));
    }
}

impl Tokenizer for BytePairEncoder {
    fn encode(&self, text: &str) -> Result<Vec<TokenId>> {
        BytePairEncoder::encode(self, text)
    }

    fn encode_ordinary(&self, text: &str) -> Result<Vec<TokenId>> {
        BytePairEncoder::encode_ordinary(self, text)
    }

    fn decode(&self, ids: &[TokenId]) -> Result<String> {
        BytePairEncoder::decode(self, ids)
    }

    fn vocab_size(&self) -> usize {
        BytePairEncoder::vocab_size(self)
    }

    fn end_of_text(&self) -> Option<TokenId> {
        self.special.iter().find(|(text, _)| text == END_OF_TEXT).map(|(_, id)| *id)
    }

    fn spec(&self) -> TokenizerSpec {
        TokenizerSpec::Bpe { tokens: self.tokens.clone(), special: self.special.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretokens_cover_the_text() {
        let text = "Hello,  world! It's 2024.\n\n  Done";
        let pieces = pretokenize(text).unwrap();
        assert_eq!(pieces.concat(), text);
        assert_eq!(&pieces[..5], ["Hello", ",", " ", " world", "!"]);
        assert!(pieces.contains(&"'s"));
        // A million spaces, which the regex alone gives up on, are cut into bounded runs.
        let spaces = " ".repeat(1_000_000) + "x";
        let pieces = pretokenize(&spaces).unwrap();
        assert_eq!(pieces.concat(), spaces);
        assert!(pieces.iter().all(|piece| piece.len() <= super::super::MAX_WHITESPACE_RUN));
    }

    #[test]
    fn gpt2_encoder_matches_the_book_example() {
        let bpe = BytePairEncoder::gpt2().unwrap();
        assert_eq!(bpe.vocab_size(), GPT2_VOCAB_SIZE);
        let text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace.";
        let ids = bpe.encode(text).unwrap();
        assert_eq!(ids, Gpt2Tokenizer::new().encode(text));
        assert_eq!(bpe.decode(&ids).unwrap(), text);
        assert_eq!(bpe.encode("Akwirw ier").unwrap(), [33901, 86, 343, 86, 220, 959]);
    }

    #[test]
    fn rejects_bad_vocabularies_and_ids() {
        assert!(BytePairEncoder::new(vec![b"a".to_vec()], vec![]).is_err());
        let bytes: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        assert!(BytePairEncoder::new(bytes.clone(), vec![("<s>".into(), 3)]).is_err());
        let bpe = BytePairEncoder::new(bytes, vec![]).unwrap();
        assert!(bpe.decode(&[256]).is_err());
    }
}
