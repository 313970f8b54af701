//! Training a byte-level BPE vocabulary (the book's bonus material to section 2.5).
//!
//! Start from the 256 single bytes; count every adjacent pair of tokens inside the text's
//! pre-tokens (weighted by how often each pre-token occurs); merge the most frequent pair
//! into a new token; repeat until the vocabulary has the requested size. Ties go to the
//! pair with the smaller ids, so training is deterministic.

use std::collections::HashMap;

use anyhow::{ensure, Result};
use shared::tokenizer::{TokenId, END_OF_TEXT};

use crate::bpe::{pretokenize, BytePairEncoder};

/// The smallest vocabulary: 256 bytes and `<|endoftext|>`.
pub const MIN_VOCAB_SIZE: usize = 257;

/// One learned merge: `left` and `right` became `merged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Merge {
    pub left: TokenId,
    pub right: TokenId,
    pub merged: TokenId,
    /// How often the pair occurred when it was merged.
    pub count: usize,
}

/// A trained vocabulary and the merges that built it.
#[derive(Debug, Clone)]
pub struct TrainedBpe {
    pub encoder: BytePairEncoder,
    pub merges: Vec<Merge>,
}

/// Learns merges from `text` until the vocabulary (including `<|endoftext|>`) has
/// `vocab_size` entries, or no pair is left to merge.
pub fn train(text: &str, vocab_size: usize) -> Result<TrainedBpe> {
    ensure!(vocab_size >= MIN_VOCAB_SIZE, "vocab_size must be at least {MIN_VOCAB_SIZE} (256 bytes + <|endoftext|>)");
    let mut word_counts: HashMap<&str, usize> = HashMap::new();
    for piece in pretokenize(text)? {
        *word_counts.entry(piece).or_default() += 1;
    }
    // Sorted so that the run does not depend on hash order.
    let mut words: Vec<(Vec<TokenId>, usize)> =
        word_counts.into_iter().map(|(word, count)| (word.bytes().map(TokenId::from).collect(), count)).collect();
    words.sort_unstable();

    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let mut merges = Vec::new();
    while tokens.len() + 1 < vocab_size {
        let Some(((left, right), count)) = most_frequent_pair(&words) else { break };
        let merged = tokens.len() as TokenId;
        tokens.push([tokens[left as usize].as_slice(), tokens[right as usize].as_slice()].concat());
        for (word, _) in &mut words {
            merge_pair(word, (left, right), merged);
        }
        merges.push(Merge { left, right, merged, count });
    }
    let end_of_text = tokens.len() as TokenId;
    let encoder = BytePairEncoder::new(tokens, vec![(END_OF_TEXT.to_string(), end_of_text)])?;
    Ok(TrainedBpe { encoder, merges })
}

fn most_frequent_pair(words: &[(Vec<TokenId>, usize)]) -> Option<((TokenId, TokenId), usize)> {
    let mut counts: HashMap<(TokenId, TokenId), usize> = HashMap::new();
    for (word, count) in words {
        for pair in word.windows(2) {
            *counts.entry((pair[0], pair[1])).or_default() += count;
        }
    }
    counts.into_iter().max_by_key(|&(pair, count)| (count, std::cmp::Reverse(pair)))
}

/// Replaces every non-overlapping occurrence of `pair` in `word`, left to right.
fn merge_pair(word: &mut Vec<TokenId>, pair: (TokenId, TokenId), merged: TokenId) {
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        if i + 1 < word.len() && (word[i], word[i + 1]) == pair {
            out.push(merged);
            i += 2;
        } else {
            out.push(word[i]);
            i += 1;
        }
    }
    *word = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_most_frequent_pairs_first() {
        let trained = train("aaab aaab aaab", 260).unwrap();
        // Pre-tokens: "aaab" once, " aaab" twice. (a, a) occurs 6 times, more than any other.
        assert_eq!(trained.merges[0], Merge { left: 97, right: 97, merged: 256, count: 6 });
        assert_eq!(trained.encoder.vocab_size(), 260);
        assert_eq!(trained.encoder.token_bytes(256), Some(&b"aa"[..]));
    }

    #[test]
    fn merge_pair_is_left_to_right_and_non_overlapping() {
        let mut word = vec![1, 1, 1, 2];
        merge_pair(&mut word, (1, 1), 9);
        assert_eq!(word, [9, 1, 2]);
    }

    #[test]
    fn stops_when_nothing_is_left_to_merge() {
        let trained = train("ab", 1000).unwrap();
        assert_eq!(trained.merges.len(), 1);
        assert_eq!(trained.encoder.encode("ab").unwrap(), [256]);
        assert!(train("ab", 256).is_err());
    }
}
