//! What the analysis exercises (21.17-21.24) share: the held-out text they read and tokens
//! written for figure labels and tables.

use anyhow::Result;
use shared::cli::RunContext;
use shared::tokenizer::{TokenId, Tokenizer};

use crate::pretrained::Pretraining;

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
