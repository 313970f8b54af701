//! Exercise 21.23: one paragraph (the opening of The Verdict, or `--data FILE`) under three
//! tokenizers: characters and chapter 2's words (split at whitespace and punctuation), both
//! with the vocabulary of the training part of tiny Shakespeare (what a model trained there
//! would know), and the model's BPE (GPT-2's). For each: the paragraph's length in tokens,
//! characters per token, how much of the paragraph one context window of the model holds,
//! the units it cannot represent (out of vocabulary), the tokens one epoch of the training
//! text takes, and the output layer's work per epoch (tokens x vocabulary). Rare words show
//! how BPE copes: they become several known pieces.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::app::cli::RunContext;
use shared::app::exercise::Report;
use shared::data::THE_VERDICT;

use crate::exercises::Exercise;
use shared::tokenizer::word::{split_text, Vocabulary, END_OF_TEXT, UNKNOWN};

use crate::analysis::{data_file, token_labels};
use crate::models::Model;
use crate::pretrained::{subject, Pretraining};

pub const EXERCISE: Exercise = Exercise {
    id: "21.23",
    summary: "one paragraph under character, GPT-2 BPE and word tokenizers: lengths, characters per token, what a context window holds, out-of-vocabulary units, tokens and output-layer work per epoch",
    run: |context| Report::new(&run(context, &subject(context, &context.flags, &Pretraining::standard())?)?),
};

/// Pieces from which a word counts as split into many.
const MANY_PIECES: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub tokenizer: String,
    pub vocabulary: usize,
    pub paragraph_tokens: usize,
    pub chars_per_token: f64,
    /// Characters of this kind of text one context window holds.
    pub window_chars: f64,
    /// The units of the paragraph outside the vocabulary, each once.
    pub out_of_vocabulary: Vec<String>,
    pub epoch_tokens: usize,
    /// `epoch_tokens * vocabulary` over the BPE's.
    pub relative_output_work: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_23 {
    pub model: String,
    pub context_length: i64,
    pub paragraph: String,
    pub rows: Vec<Row>,
    /// Words the BPE splits into at least three pieces, with the pieces.
    pub split_words: Vec<(String, Vec<String>)>,
}

/// The paragraph: `--data FILE`, or the first two paragraphs of The Verdict.
pub fn paragraph(context: &RunContext) -> Result<String> {
    let text = match data_file(context)? {
        Some((_, text)) => text,
        None => context.data.read_to_string(&THE_VERDICT)?.split("\n\n").take(2).collect::<Vec<_>>().join("\n\n"),
    };
    ensure!(!text.trim().is_empty(), "the paragraph is empty");
    Ok(text.trim().to_string())
}

/// Tokenizes the paragraph three ways; `model` gives the BPE and the context window.
pub fn run(context: &RunContext, model: &Model) -> Result<Ex21_23> {
    let text = paragraph(context)?;
    let corpus = Pretraining::corpus_text(context)?;
    let training: String = corpus.chars().take(corpus.chars().count() * 9 / 10).collect();
    let bpe = model.gpt().cfg.tokenizer.build()?;
    let window = model.gpt().cfg.context_length as f64;
    let chars = text.chars().count() as f64;

    let known_chars: BTreeSet<char> = training.chars().collect();
    let words = Vocabulary::from_text(&training, &[END_OF_TEXT, UNKNOWN]);
    let unique = |units: Vec<String>| units.into_iter().collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>();
    let bpe_ids = bpe.encode_fragment(&text)?;
    let units = [
        (
            "characters".to_string(),
            known_chars.len(),
            text.chars().count(),
            unique(text.chars().filter(|c| !known_chars.contains(c)).map(|c| format!("{c:?}")).collect()),
            training.chars().count(),
        ),
        (
            format!("BPE ({})", model.gpt().cfg.tokenizer.name()),
            bpe.vocab_size(),
            bpe_ids.len(),
            Vec::new(),
            bpe.encode_fragment(&training)?.len(),
        ),
        (
            "words".to_string(),
            words.len(),
            split_text(&text).len(),
            unique(split_text(&text).into_iter().filter(|w| words.id(w).is_none()).map(String::from).collect()),
            split_text(&training).len(),
        ),
    ];
    let bpe_work = (units[1].4 * units[1].1) as f64;
    let rows = units
        .into_iter()
        .map(|(tokenizer, vocabulary, paragraph_tokens, out_of_vocabulary, epoch_tokens)| Row {
            chars_per_token: chars / paragraph_tokens as f64,
            window_chars: window * chars / paragraph_tokens as f64,
            relative_output_work: (epoch_tokens * vocabulary) as f64 / bpe_work,
            tokenizer,
            vocabulary,
            paragraph_tokens,
            out_of_vocabulary,
            epoch_tokens,
        })
        .collect();
    let mut split_words = Vec::new();
    for word in split_text(&text).into_iter().filter(|w| w.chars().all(char::is_alphabetic)) {
        let pieces = token_labels(bpe.as_ref(), &bpe.encode_fragment(&format!(" {word}"))?);
        if pieces.len() >= MANY_PIECES && !split_words.iter().any(|(w, _)| w == word) {
            split_words.push((word.to_string(), pieces));
        }
    }
    Ok(Ex21_23 {
        model: model.name.clone(),
        context_length: model.gpt().cfg.context_length,
        paragraph: text,
        rows,
        split_words,
    })
}

impl fmt::Display for Ex21_23 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Model: {} (context {} tokens)", self.model, self.context_length)?;
        writeln!(
            f,
            "Paragraph ({} characters): {}",
            self.paragraph.chars().count(),
            crate::quality::one_line(&self.paragraph, 120)
        )?;
        writeln!(
            f,
            "\n| tokenizer | vocabulary | paragraph tokens | characters per token | a {}-token window holds | out of vocabulary | tokens per epoch of tiny Shakespeare | output-layer work per epoch |",
            self.context_length
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---|---:|---:|")?;
        for r in &self.rows {
            let oov = if r.out_of_vocabulary.is_empty() {
                "none".to_string()
            } else {
                format!("{}: {}", r.out_of_vocabulary.len(), r.out_of_vocabulary.join(", "))
            };
            writeln!(
                f,
                "| {} | {} | {} | {:.2} | {:.0} characters | {} | {} | {:.3}x |",
                r.tokenizer,
                r.vocabulary,
                r.paragraph_tokens,
                r.chars_per_token,
                r.window_chars,
                oov,
                r.epoch_tokens,
                r.relative_output_work
            )?;
        }
        let split: Vec<String> = self.split_words.iter().map(|(w, p)| format!("{w} = {}", p.join(" + "))).collect();
        write!(f, "\nWords the BPE cuts into {MANY_PIECES} or more pieces: {}", split.join("; "))
    }
}
