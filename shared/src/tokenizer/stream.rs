//! Generated text as it streams, token by token, for any [`Tokenizer`]: a token's text
//! depends on its neighbours (a byte-level token may hold half a character, a SentencePiece
//! token's leading space shows only after another token), so each new token is decoded with
//! the tokens before it and only the text it adds goes out, once it ends on a whole
//! character. This is the incremental detokenization of Hugging Face's
//! text-generation-inference (`decode_token` with a prefix and a read offset).

use anyhow::Result;

use super::{TokenId, Tokenizer};

/// Turns generated ids into text pieces whose concatenation is the text
/// [`Tokenizer::decode_lossy`] gives for all of them.
pub struct TextStream<'a> {
    tokenizer: &'a dyn Tokenizer,
    ids: Vec<TokenId>,
    /// Where the tokens decoded as context for the next piece start.
    prefix: usize,
    /// Where the tokens not yet sent start.
    read: usize,
}

impl<'a> TextStream<'a> {
    pub fn new(tokenizer: &'a dyn Tokenizer) -> Self {
        Self { tokenizer, ids: Vec::new(), prefix: 0, read: 0 }
    }

    /// Adds a generated id; returns the text it completes (often empty while a character is
    /// unfinished).
    pub fn push(&mut self, id: TokenId) -> Result<String> {
        self.ids.push(id);
        let before = self.tokenizer.decode_lossy(&self.ids[self.prefix..self.read])?;
        let now = self.tokenizer.decode_lossy(&self.ids[self.prefix..])?;
        // An unfinished character decodes to U+FFFD until its last byte arrives.
        if now.len() <= before.len()
            || now.ends_with(char::REPLACEMENT_CHARACTER)
            || !now.is_char_boundary(before.len())
        {
            return Ok(String::new());
        }
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(now[before.len()..].to_string())
    }

    /// The text held back at the end (an unfinished character is U+FFFD).
    pub fn finish(&mut self) -> Result<String> {
        let before = self.tokenizer.decode_lossy(&self.ids[self.prefix..self.read])?;
        let now = self.tokenizer.decode_lossy(&self.ids[self.prefix..])?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(now.get(before.len()..).unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::Gpt2Tokenizer;

    #[test]
    fn pieces_join_to_the_whole_decoding() {
        let tokenizer = Gpt2Tokenizer::new();
        let mut ids = tokenizer.encode("héllo wörld ✓ 日本語 🦀 done");
        // Ids 0-255 are single bytes: some that are no UTF-8 in the middle, and the start of
        // a character the text never finishes at the end.
        ids.splice(4..4, [94, 187, 255]);
        ids.push(225);
        let whole = Tokenizer::decode_lossy(&tokenizer, &ids).unwrap();
        let mut stream = TextStream::new(&tokenizer);
        let mut text = String::new();
        for &id in &ids {
            text += &stream.push(id).unwrap();
        }
        text += &stream.finish().unwrap();
        assert_eq!(text, whole);
        assert!(whole.contains(char::REPLACEMENT_CHARACTER));
    }
}
