//! Exercise 2.1: byte-pair encoding of a made-up word, piece by piece.

use std::fmt;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::exercise::{Exercise, Report};
use shared::tokenizer::{Gpt2Tokenizer, TokenId};

pub const EXERCISE: Exercise = Exercise {
    id: "2.1",
    summary: "GPT-2's BPE on the unknown words \"Akwirw ier\": ids, the piece behind each id, decoding",
    run: |_| Report::new(&run()?),
};

pub const TEXT: &str = "Akwirw ier";

#[derive(Debug, Clone, Serialize)]
pub struct Ex2_1 {
    pub text: String,
    pub ids: Vec<TokenId>,
    /// Each id with the text it stands for; encoding that text alone gives the id back.
    pub pieces: Vec<(TokenId, String)>,
    pub decoded: String,
}

pub fn run() -> Result<Ex2_1> {
    let tokenizer = Gpt2Tokenizer::new();
    let ids = tokenizer.encode(TEXT);
    let mut pieces = Vec::with_capacity(ids.len());
    for &id in &ids {
        let piece = tokenizer.decode(&[id])?;
        ensure!(tokenizer.encode(&piece) == [id], "the piece {piece:?} does not encode back to {id}");
        pieces.push((id, piece));
    }
    Ok(Ex2_1 { text: TEXT.to_string(), decoded: tokenizer.decode(&ids)?, ids, pieces })
}

impl fmt::Display for Ex2_1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:?} encodes to {:?}", self.text, self.ids)?;
        for (id, piece) in &self.pieces {
            writeln!(f, "  {id:>6} -> {piece:?}")?;
        }
        write!(f, "decode({:?}) = {:?}", self.ids, self.decoded)
    }
}
