//! Exercise 21.31: contrastive decoding (Li et al. 2022) with
//! [`shared::generate::contrastive`]: the large model is the expert, the small one the
//! amateur, and each token maximises `log p_large - alpha log p_small` over the large model's
//! plausible set (tokens with at least 0.1 of its largest probability). Alpha 0 is the large
//! model's greedy decoding; plain sampling from the large model (temperature 1) is the other
//! baseline. Quality is the large model's perplexity of the text and its repeated n-grams.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;
use shared::core::device::seed_everything;

use crate::exercises::{Context, Exercise};
use shared::generate::contrastive::{generate_contrastive, Contrastive};
use shared::generate::{continue_text, Decoding, Sampler, Sampling};

use crate::models::{self, Budget, Sizes};
use crate::quality::{continuations, TextQuality};

pub const EXERCISE: Exercise = Exercise {
    id: "21.31",
    summary: "contrastive decoding (large 6-layer expert, small 2-layer amateur, plausibility 0.1) at alpha 0, 0.25, 0.5, 1 and 1.5 against sampling from the large model: its perplexity and repeated n-grams over 10 prompts of 200 tokens",
    run: |context| Report::new(&run(context, &Budget::from_flags(&context.flags), Sizes::STANDARD)?),
};

pub const ALPHAS: [f64; 5] = [0.0, 0.25, 0.5, 1.0, 1.5];

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub method: String,
    #[serde(flatten)]
    pub quality: TextQuality,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_31 {
    pub expert: String,
    pub amateur: String,
    pub sizes: Sizes,
    pub rows: Vec<Row>,
}

pub fn run(context: &Context, budget: &Budget, sizes: Sizes) -> Result<Ex21_31> {
    let large = models::large(context, &context.flags, budget)?;
    let small = models::small(context, &context.flags, budget, &large, None)?;
    let prompts = sizes.prompts(context, budget)?;
    let row = |method: String, texts: Vec<String>| -> Result<Row> {
        Ok(Row { method, quality: TextQuality::of(large.gpt(), &texts, sizes.prompt_chars)? })
    };
    seed_everything(context.seed);
    let mut sampling = Decoding::Sample(Sampler::new(&Sampling { temperature: 1.0, ..Sampling::GREEDY })?);
    let sampled = continuations(large.gpt(), &prompts, sizes.new_tokens, &mut sampling)?;
    let mut rows = vec![row("sampling from the large model (temperature 1)".into(), sampled)?];
    for alpha in ALPHAS {
        let settings = Contrastive { alpha, ..Contrastive::default() };
        let texts = prompts
            .iter()
            .map(|p| {
                let generated = continue_text(large.gpt(), p, |idx| {
                    generate_contrastive(large.gpt(), small.gpt(), idx, sizes.new_tokens, &settings, None)
                })?;
                Ok(generated.text)
            })
            .collect::<Result<Vec<_>>>()?;
        let method = if alpha == 0.0 {
            "alpha 0 (the large model's greedy decoding)".to_string()
        } else {
            format!("contrastive, alpha {alpha}")
        };
        rows.push(row(method, texts)?);
    }
    Ok(Ex21_31 { expert: large.name, amateur: small.name, sizes, rows })
}

impl fmt::Display for Ex21_31 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Expert (and scorer): {}; amateur: {}; {} prompts, {} new tokens each",
            self.expert, self.amateur, self.sizes.prompts, self.sizes.new_tokens
        )?;
        writeln!(f, "| method | perplexity (mean ± std) | repeated bigrams | 4-grams | sample (first prompt) |")?;
        writeln!(f, "|---|---:|---:|---:|---|")?;
        for row in &self.rows {
            writeln!(
                f,
                "| {} | {:.2} ± {:.2} | {:.3} | {:.3} | {} |",
                row.method,
                row.quality.mean_perplexity,
                row.quality.std_perplexity,
                row.quality.repetition.bigrams,
                row.quality.repetition.fourgrams,
                row.quality.sample
            )?;
        }
        Ok(())
    }
}
