//! Exercise 21.9: perplexity is `exp(loss)`, so a perplexity of 25 means a cross-entropy of
//! ln 25 nats per token; a uniform model over V tokens has perplexity V, computed here with the
//! training code's loss on uniform logits.

use std::fmt;

use serde::Serialize;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::train::{cross_entropy, perplexity};
use tch::{Device, Kind, Tensor};

pub const EXERCISE: Exercise = Exercise {
    id: "21.9",
    summary: "perplexity 25 as a loss (ln 25 nats), and a uniform model over 50,000 tokens (perplexity 50,000)",
    run: |_| Report::new(&run()),
};

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_9 {
    pub perplexity: f64,
    /// `ln(perplexity)`, nats per token.
    pub loss_nats: f64,
    /// The same in bits per token.
    pub loss_bits: f64,
    pub uniform_vocab: i64,
    /// The loss of uniform logits on random targets.
    pub uniform_loss: f64,
    pub uniform_perplexity: f64,
}

pub fn run() -> Ex21_9 {
    let perplexity_25: f64 = 25.0;
    let loss_nats = perplexity_25.ln();
    let uniform_vocab = 50_000;
    let logits = Tensor::zeros([1, 8, uniform_vocab], (Kind::Float, Device::Cpu));
    let targets = Tensor::from_slice(&[0i64, 7, 123, 4_999, 25_000, 31_337, 42, 49_999]).view([1, 8]);
    let uniform_loss = cross_entropy(&logits, &targets).double_value(&[]);
    Ex21_9 {
        perplexity: perplexity_25,
        loss_nats,
        loss_bits: loss_nats / std::f64::consts::LN_2,
        uniform_vocab,
        uniform_loss,
        uniform_perplexity: perplexity(uniform_loss),
    }
}

impl fmt::Display for Ex21_9 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "(a) perplexity = exp(loss), so perplexity {} is a loss of ln {} = {:.3} nats ({:.3} bits) per token.",
            self.perplexity, self.perplexity, self.loss_nats, self.loss_bits
        )?;
        writeln!(
            f,
            "(b) uniform logits over {} tokens: cross-entropy {:.4} = ln {}, perplexity {:.0}: the model hesitates \
             between every token.",
            self.uniform_vocab, self.uniform_loss, self.uniform_vocab, self.uniform_perplexity
        )?;
        writeln!(
            f,
            "(c) perplexity 50 is only meaningful against the same tokenizer and test text: it is relative to the \
             vocabulary (a character model and a 50k-token model count different events) and to how predictable \
             the text is."
        )?;
        write!(
            f,
            "(d) 15 on English and 45 on Python do not rank the model's skill: the two texts differ in how much \
             is predictable at all and in how the tokenizer splits them (code spends many tokens on whitespace and \
             rare identifiers); compare against other models on the same data instead."
        )
    }
}
