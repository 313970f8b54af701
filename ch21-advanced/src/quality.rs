//! How the decoding exercises (21.18-21.32) judge generated text: prompts cut from the
//! validation part of the corpus, the scorer model's perplexity of a continuation, and the
//! share of repeated word n-grams.

use std::collections::HashSet;
use std::fmt::Write;

use anyhow::{ensure, Result};
use serde::Serialize;
use shared::generate::{continue_text, Decoding};
use shared::model::GptModel;
use tch::{Kind, Tensor};

/// `count` prompts of `chars` characters from the validation part of `text` (after the first
/// `train_ratio`), each starting at the beginning of a line, spread evenly over the part.
pub fn validation_prompts(text: &str, train_ratio: f64, count: usize, chars: usize) -> Result<Vec<String>> {
    let chars_of: Vec<char> = text.chars().collect();
    let validation = &chars_of[(chars_of.len() as f64 * train_ratio) as usize..];
    let starts: Vec<usize> = (1..validation.len().saturating_sub(chars))
        .filter(|&i| validation[i - 1] == '\n' && !validation[i].is_whitespace())
        .collect();
    ensure!(starts.len() >= count, "the validation text has {} line starts, {count} prompts asked for", starts.len());
    Ok((0..count).map(|i| validation[starts[i * starts.len() / count]..][..chars].iter().collect()).collect())
}

/// The scorer's perplexity of `text` after its first `prompt_chars` characters: the
/// exponential of the mean negative log-probability of the continuation's tokens (see
/// [`token_log_probs`]). Works across tokenizers: the scorer tokenizes the text itself.
pub fn continuation_perplexity(scorer: &GptModel, text: &str, prompt_chars: usize) -> Result<f64> {
    let tokenizer = scorer.cfg.tokenizer.build()?;
    let prompt: String = text.chars().take(prompt_chars).collect();
    let from = tokenizer.encode(&prompt)?.len().max(1);
    let ids = tokenizer.encode(text)?;
    ensure!(ids.len() > from, "nothing after the prompt to score");
    Ok(perplexity_of(&token_log_probs(scorer, &ids)?[from - 1..]))
}

/// The perplexity of tokens with these log-probabilities: the exponential of their mean
/// negative log-probability.
pub fn perplexity_of(log_probs: &[f64]) -> f64 {
    (-log_probs.iter().sum::<f64>() / log_probs.len() as f64).exp()
}

/// The log-probability the model gives each token of `ids` after the first (element `i` is
/// token `i + 1`'s), each predicted from at least half a context of the tokens before it:
/// windows of the context length, half of one apart, the earliest window holding a position
/// scoring it.
pub fn token_log_probs(model: &GptModel, ids: &[u32]) -> Result<Vec<f64>> {
    ensure!(ids.len() >= 2, "scoring needs at least two tokens");
    let ids: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    let context = model.cfg.context_length as usize;
    let stride = (context / 2).max(1);
    let device = model.tok_emb.ws.device();
    let mut log_probs = Vec::with_capacity(ids.len() - 1);
    let _no_grad = tch::no_grad_guard();
    let mut start = 0;
    loop {
        let end = (start + context).min(ids.len());
        let window = Tensor::from_slice(&ids[start..end]).view([1, -1]).to_device(device);
        let scores = model.forward_t(&window, false).log_softmax(-1, Kind::Float).get(0);
        let targets = Tensor::from_slice(&ids[start + 1..end]).to_device(device).unsqueeze(1);
        let picked = Vec::<f64>::try_from(
            scores
                .narrow(0, 0, (end - start - 1) as i64)
                .gather(1, &targets, false)
                .view([-1])
                .to_kind(Kind::Double)
                .to_device(tch::Device::Cpu),
        )?;
        // Positions up to `start` were scored by earlier windows.
        let new = log_probs.len() + 1 - (start + 1);
        log_probs.extend(&picked[new..]);
        if end == ids.len() {
            break;
        }
        start += stride;
    }
    Ok(log_probs)
}

/// `model`'s continuation of each prompt by `new_tokens` tokens with `decoding` (prompt
/// included, as text).
pub fn continuations(
    model: &GptModel,
    prompts: &[String],
    new_tokens: i64,
    decoding: &mut Decoding,
) -> Result<Vec<String>> {
    prompts
        .iter()
        .map(|prompt| Ok(continue_text(model, prompt, |idx| decoding.generate(model, idx, new_tokens))?.text))
        .collect()
}

/// How a set of continuations reads: the scorer's perplexity of each (with their mean and
/// standard deviation), their mean shares of repeated word n-grams, and the first as a
/// one-line sample.
#[derive(Debug, Clone, Serialize)]
pub struct TextQuality {
    pub perplexities: Vec<f64>,
    pub mean_perplexity: f64,
    pub std_perplexity: f64,
    pub repetition: Repetition,
    pub sample: String,
}

impl TextQuality {
    /// Of `texts`, each a prompt of `prompt_chars` characters and its continuation.
    pub fn of(scorer: &GptModel, texts: &[String], prompt_chars: usize) -> Result<Self> {
        let perplexities =
            texts.iter().map(|text| continuation_perplexity(scorer, text, prompt_chars)).collect::<Result<Vec<_>>>()?;
        let (mean_perplexity, std_perplexity) = mean_std(&perplexities);
        Ok(Self {
            perplexities,
            mean_perplexity,
            std_perplexity,
            repetition: Repetition::mean(&texts.iter().map(|t| Repetition::of(t)).collect::<Vec<_>>()),
            sample: texts.first().map_or_else(String::new, |text| one_line(text, 90)),
        })
    }
}

/// The share of a text's word n-grams (n = 2, 3, 4) that repeat an earlier one:
/// `1 - distinct / total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Repetition {
    pub bigrams: f64,
    pub trigrams: f64,
    pub fourgrams: f64,
}

impl Repetition {
    /// Of the words (split at whitespace) of `text`.
    pub fn of(text: &str) -> Self {
        let words: Vec<&str> = text.split_whitespace().collect();
        Self { bigrams: repeated(&words, 2), trigrams: repeated(&words, 3), fourgrams: repeated(&words, 4) }
    }

    /// The mean of several texts' shares.
    pub fn mean(all: &[Repetition]) -> Self {
        let n = all.len().max(1) as f64;
        Self {
            bigrams: all.iter().map(|r| r.bigrams).sum::<f64>() / n,
            trigrams: all.iter().map(|r| r.trigrams).sum::<f64>() / n,
            fourgrams: all.iter().map(|r| r.fourgrams).sum::<f64>() / n,
        }
    }
}

/// `1 - distinct n-grams / n-grams` of `words` (0 when there are none).
pub fn repeated(words: &[&str], n: usize) -> f64 {
    let grams: Vec<&[&str]> = words.windows(n).collect();
    if grams.is_empty() {
        return 0.0;
    }
    let distinct: HashSet<&[&str]> = grams.iter().copied().collect();
    1.0 - distinct.len() as f64 / grams.len() as f64
}

/// Mean and (sample) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance =
        if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, variance.sqrt())
}

/// A sample for a table: its first `chars` characters on one line.
pub fn one_line(text: &str, chars: usize) -> String {
    let mut line = String::new();
    for c in text.chars().take(chars) {
        let _ = match c {
            '\n' => write!(line, "⏎"),
            c => write!(line, "{c}"),
        };
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ngrams_count_repeats_of_earlier_ones() {
        let words: Vec<&str> = "a b a b a b".split(' ').collect();
        // bigrams: ab ba ab ba ab -> 2 distinct of 5
        assert!((repeated(&words, 2) - 0.6).abs() < 1e-12);
        assert_eq!(repeated(&words, 7), 0.0);
        let r = Repetition::of("to be or not to be");
        assert!((r.bigrams - 0.2).abs() < 1e-12 && r.trigrams == 0.0 && r.fourgrams == 0.0);
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
    }

    #[test]
    fn prompts_start_at_line_starts_in_the_validation_part() {
        let text = "train line\n".repeat(9) + "ALPHA: one\nBETA: two\nGAMMA: three\n";
        let prompts = validation_prompts(&text, 0.7, 2, 5).unwrap();
        assert_eq!(prompts, ["ALPHA", "BETA:"]);
        assert!(validation_prompts(&text, 0.7, 9, 5).is_err());
    }
}
