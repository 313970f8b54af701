//! What the analysis exercises (21.17-21.24) share: the held-out text they read, the user's
//! `--data` text, tokens written for figure labels and tables, and samples that compare
//! models on the same draws.

use anyhow::{Context, Result};
use shared::app::cli::RunContext;
use shared::core::device::seed_everything;
use shared::generate::{generate_text_cached, Sampler, Sampling};
use shared::model::GptModel;
use shared::tokenizer::{TokenId, Tokenizer};

use crate::pretrained::Pretraining;
use crate::quality::one_line;

/// `--data FILE`'s path and text, when one is given (the exercises' own text instead of
/// their default).
pub fn data_file(context: &RunContext) -> Result<Option<(String, String)>> {
    let Some(path) = &context.data.explicit else { return Ok(None) };
    shared::data::check_explicit(path)?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {} (--data)", path.display()))?;
    Ok(Some((path.display().to_string(), text)))
}

/// `model`'s continuation of `prompt` by `new_tokens` tokens at temperature 0.8 with top-k 40,
/// seeded with `seed` (so that models are compared on the same draws), on one line of at most
/// `chars` characters.
pub fn seeded_sample(model: &GptModel, prompt: &str, new_tokens: i64, seed: u64, chars: usize) -> Result<String> {
    seed_everything(seed);
    let mut sampler = Sampler::new(&Sampling { temperature: 0.8, top_k: Some(40), eos_id: None })?;
    Ok(one_line(&generate_text_cached(model, prompt, new_tokens, &mut sampler)?.text, chars))
}

/// Text that none of the models trained here saw: the last 5 % of tiny Shakespeare (inside
/// the validation part of every model trained on it, whose training part is its first 90 %).
pub fn held_out_text(context: &RunContext) -> Result<String> {
    let text: Vec<char> = Pretraining::corpus_text(context)?.chars().collect();
    Ok(text[text.len() * 95 / 100..].iter().collect())
}

/// Each token of `ids` as text for a label: leading and trailing spaces dropped, line breaks
/// written `\n`, and a token that is only part of a character as `?`.
pub fn token_labels(tokenizer: &dyn Tokenizer, ids: &[TokenId]) -> Vec<String> {
    ids.iter()
        .map(|&id| {
            let text = tokenizer.decode(&[id]).unwrap_or_else(|_| "?".into());
            let shown = text.replace('\n', "\\n").replace('\u{FFFD}', "?");
            match shown.trim() {
                "" => format!("{:?}", text).trim_matches('"').to_string(),
                trimmed => trimmed.to_string(),
            }
        })
        .collect()
}
