//! Exercise 21.1: the autoregressive factorisation of "The cat sat on the mat". Word by word
//! it is a product of 6 conditionals; a character-level mini-GPT (trained here on tiny
//! Shakespeare) evaluates the same sentence as one conditional per character, and its joint
//! log-probability is the sum of those terms, grouped below by word: each word's group is
//! the model's probability of that word (with its leading space) given the words before it.

use std::fmt;

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;

use crate::exercises::Exercise;
use shared::model::GptModel;
use tch::{Kind, Tensor};

use crate::minigpt::{self, MiniGptOptions};

pub const EXERCISE: Exercise = Exercise {
    id: "21.1",
    summary:
        "the factorisation of \"The cat sat on the mat\" (6 conditionals) and its log-probability under a char model",
    run: |context| Report::new(&run(context, 600)?),
};

pub const SENTENCE: &str = "The cat sat on the mat";

/// One word's share of the joint log-probability.
#[derive(Debug, Clone, Serialize)]
pub struct WordTerm {
    /// The conditional it stands for, e.g. `P(cat | The)`.
    pub conditional: String,
    /// The characters the model predicts for it (a leading space after the first word).
    pub characters: String,
    /// ln P of each character given everything before it.
    pub char_log_probs: Vec<f64>,
    /// Their sum: ln P(word | previous words) under the model.
    pub log_prob: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_1 {
    pub sentence: String,
    /// 6: one conditional per word.
    pub word_conditionals: usize,
    pub terms: Vec<WordTerm>,
    /// The conditionals the character model evaluates (one per character).
    pub char_conditionals: usize,
    /// The sum of every character's ln P.
    pub joint_log_prob: f64,
    /// The same, computed as the training loss (mean cross-entropy) times the length.
    pub joint_from_loss: f64,
    pub steps: usize,
    pub final_val_loss: f64,
}

/// `P(w_i | w_1 .. w_{i-1})` for each word.
pub fn conditionals(sentence: &str) -> Vec<String> {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    (0..words.len())
        .map(
            |i| if i == 0 { format!("P({})", words[0]) } else { format!("P({} | {})", words[i], words[..i].join(" ")) },
        )
        .collect()
}

/// The ln-probability of each id of `ids[1..]` given the ids before it (`ids[0]` is the
/// start context), in one forward pass.
pub fn next_token_log_probs(model: &GptModel, ids: &[i64]) -> Result<Vec<f64>> {
    ensure!(ids.len() >= 2, "need a start token and at least one token to score");
    ensure!(ids.len() as i64 <= model.cfg.context_length, "the text is longer than the model's context");
    let _no_grad = tch::no_grad_guard();
    let device = model.tok_emb.ws.device();
    let input = Tensor::from_slice(&ids[..ids.len() - 1]).view([1, -1]).to_device(device);
    let targets = Tensor::from_slice(&ids[1..]).view([-1, 1]).to_device(device);
    let log_probs = model.forward_t(&input, false).squeeze_dim(0).log_softmax(-1, Kind::Double);
    Ok(Vec::<f64>::try_from(log_probs.gather(1, &targets, false).view([-1]).to_device(tch::Device::Cpu))?)
}

pub fn run(context: &RunContext, steps: usize) -> Result<Ex21_1> {
    let text = minigpt::small_corpus(context)?;
    let (report, loaded) = minigpt::train_and_load(context, "ex21_1", &text, &MiniGptOptions::small(steps))?;
    let tokenizer = loaded.model.cfg.tokenizer.build()?;
    // The model has no start-of-text token: a newline (lines of the plays begin after one)
    // is the context of the first character.
    let ids: Vec<i64> = tokenizer
        .encode(&format!("\n{SENTENCE}"))
        .context("encoding the sentence")?
        .into_iter()
        .map(i64::from)
        .collect();
    let log_probs = next_token_log_probs(&loaded.model, &ids)?;
    let mut terms = Vec::new();
    let mut offset = 0;
    for (i, (word, conditional)) in SENTENCE.split(' ').zip(conditionals(SENTENCE)).enumerate() {
        let characters = if i == 0 { word.to_string() } else { format!(" {word}") };
        let n = characters.chars().count();
        let char_log_probs = log_probs[offset..offset + n].to_vec();
        offset += n;
        terms.push(WordTerm { conditional, characters, log_prob: char_log_probs.iter().sum(), char_log_probs });
    }
    // The joint, once more, as the training code computes a loss: mean cross-entropy x length.
    let device = context.device;
    let input = Tensor::from_slice(&ids[..ids.len() - 1]).view([1, -1]).to_device(device);
    let targets = Tensor::from_slice(&ids[1..]).view([1, -1]).to_device(device);
    let loss = tch::no_grad(|| shared::train::cross_entropy(&loaded.model.forward_t(&input, false), &targets));
    Ok(Ex21_1 {
        sentence: SENTENCE.to_string(),
        word_conditionals: terms.len(),
        joint_log_prob: terms.iter().map(|t| t.log_prob).sum(),
        joint_from_loss: -loss.double_value(&[]) * log_probs.len() as f64,
        char_conditionals: log_probs.len(),
        terms,
        steps,
        final_val_loss: report.final_val_loss,
    })
}

impl fmt::Display for Ex21_1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let product: Vec<&str> = self.terms.iter().map(|t| t.conditional.as_str()).collect();
        writeln!(f, "P({}) = {}", self.sentence, product.join(" x "))?;
        writeln!(f, "{} conditional distributions, one per token.", self.word_conditionals)?;
        writeln!(
            f,
            "A character-level mini-GPT ({} steps on tiny Shakespeare, validation loss {:.3}) evaluates {} \
             conditionals, one per character; grouped by word:",
            self.steps, self.final_val_loss, self.char_conditionals
        )?;
        for t in &self.terms {
            let chars: Vec<String> = t.char_log_probs.iter().map(|l| format!("{l:.2}")).collect();
            writeln!(
                f,
                "  ln {:<32} = {:>7.3}  ({:?}: {})",
                t.conditional,
                t.log_prob,
                t.characters,
                chars.join(" + ")
            )?;
        }
        write!(
            f,
            "ln P(sentence) = {:.3} (P = {:.2e}); as the training loss times the length: {:.3}.",
            self.joint_log_prob,
            self.joint_log_prob.exp(),
            self.joint_from_loss
        )
    }
}
