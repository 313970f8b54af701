//! Exercise 21.19: the CTRL repetition penalty ([`shared::generate::RepetitionPenalty`]) at
//! 1.0 (none), 1.2, 1.5 and 2.0. The large model (the exercise's GPT-2) continues each
//! validation prompt greedily, where repetition loops are most common; the shares of repeated
//! word bigrams, trigrams and 4-grams measure the loops, and the same model's perplexity of
//! the text (without the penalty) what the penalty costs.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;

use crate::exercises::{Context, Exercise};
use shared::generate::{Decoding, Sampler, Sampling};

use crate::models::{self, Budget, Sizes};
use crate::quality::{continuations, TextQuality};

pub const EXERCISE: Exercise = Exercise {
    id: "21.19",
    summary: "the CTRL repetition penalty at 1.0, 1.2, 1.5 and 2.0: the large model continues 10 validation prompts by 200 tokens greedily; shares of repeated word 2-, 3- and 4-grams and the model's own perplexity",
    run: |context| Report::new(&run(context, &Budget::from_flags(&context.flags), Sizes::STANDARD)?),
};

pub const PENALTIES: [f64; 4] = [1.0, 1.2, 1.5, 2.0];

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub penalty: f64,
    #[serde(flatten)]
    pub quality: TextQuality,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_19 {
    pub model: String,
    pub sizes: Sizes,
    pub rows: Vec<Row>,
}

pub fn run(context: &Context, budget: &Budget, sizes: Sizes) -> Result<Ex21_19> {
    let large = models::large(context, &context.flags, budget)?;
    let prompts = sizes.prompts(context, budget)?;
    let mut rows = Vec::new();
    for penalty in PENALTIES {
        let mut decoding = Decoding::Sample(Sampler::with_options(&Sampling::GREEDY, None, Some(penalty))?);
        let texts = continuations(large.gpt(), &prompts, sizes.new_tokens, &mut decoding)?;
        rows.push(Row { penalty, quality: TextQuality::of(large.gpt(), &texts, sizes.prompt_chars)? });
    }
    Ok(Ex21_19 { model: large.name, sizes, rows })
}

impl fmt::Display for Ex21_19 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} prompts, {} greedy tokens each, by the {} (which also scores them)",
            self.sizes.prompts, self.sizes.new_tokens, self.model
        )?;
        writeln!(f, "| penalty | repeated bigrams | trigrams | 4-grams | perplexity | sample (first prompt) |")?;
        writeln!(f, "|---:|---:|---:|---:|---:|---|")?;
        for row in &self.rows {
            let r = row.quality.repetition;
            writeln!(
                f,
                "| {} | {:.3} | {:.3} | {:.3} | {:.2} | {} |",
                row.penalty, r.bigrams, r.trigrams, r.fourgrams, row.quality.mean_perplexity, row.quality.sample
            )?;
        }
        Ok(())
    }
}
