//! Exercise 21.18: beam search against greedy decoding, top-k 50, nucleus (top-p 0.92) and
//! temperature 0.7 sampling. The small model generates from each validation prompt with every
//! strategy; the large model scores the continuations (the exercise's "perplexity under
//! GPT-2": the largest model available). Beam search is [`shared::generate::beam`].

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::cli::RunContext;
use shared::device::seed_everything;
use shared::exercise::{Exercise, Report};
use shared::generate::beam::BeamSearch;
use shared::generate::{continue_text, Decoding, Sampler, Sampling};

use crate::models::{self, Budget, Sizes, MODEL_FLAGS};
use crate::quality::{continuation_perplexity, mean_std, one_line, Repetition};

pub const EXERCISE: Exercise = Exercise {
    id: "21.18",
    summary: "beam search (widths 2, 4, 8) vs greedy, top-k 50, top-p 0.92 and temperature 0.7: the small model continues 10 validation prompts by 200 tokens with each, the large model scores them (mean and standard deviation of perplexity)",
    run: |context| Report::new(&run(context, &Budget::from_flags(&MODEL_FLAGS.get()), Sizes::STANDARD)?),
};

/// A decoding strategy of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Strategy {
    Greedy,
    Beam { width: i64, length_penalty: f64 },
    TopK { k: i64 },
    TopP { p: f64 },
    Temperature { temperature: f64 },
}

impl Strategy {
    pub const ALL: [Strategy; 7] = [
        Strategy::Greedy,
        Strategy::Beam { width: 2, length_penalty: 1.0 },
        Strategy::Beam { width: 4, length_penalty: 1.0 },
        Strategy::Beam { width: 8, length_penalty: 1.0 },
        Strategy::TopK { k: 50 },
        Strategy::TopP { p: 0.92 },
        Strategy::Temperature { temperature: 0.7 },
    ];

    /// The decoding this strategy names (sampling at temperature 1 unless it says otherwise).
    pub fn decoding(&self) -> Result<Decoding> {
        let t1 = Sampling { temperature: 1.0, ..Sampling::GREEDY };
        let sampler = |sampling: Sampling, top_p: Option<f64>| -> Result<Decoding> {
            Ok(Decoding::Sample(Sampler::with_options(&sampling, top_p, None)?))
        };
        match *self {
            Strategy::Greedy => sampler(Sampling::GREEDY, None),
            Strategy::Beam { width, length_penalty } => {
                Ok(Decoding::Beam(BeamSearch { width, length_penalty, eos_id: None }))
            }
            Strategy::TopK { k } => sampler(Sampling { top_k: Some(k), ..t1 }, None),
            Strategy::TopP { p } => sampler(t1, Some(p)),
            Strategy::Temperature { temperature } => sampler(Sampling { temperature, ..Sampling::GREEDY }, None),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Greedy => write!(f, "greedy"),
            Strategy::Beam { width, length_penalty } => write!(f, "beam {width} (length penalty {length_penalty})"),
            Strategy::TopK { k } => write!(f, "top-k {k}"),
            Strategy::TopP { p } => write!(f, "top-p {p}"),
            Strategy::Temperature { temperature } => write!(f, "temperature {temperature}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub strategy: Strategy,
    /// The scorer's perplexity of each continuation.
    pub perplexities: Vec<f64>,
    pub mean_perplexity: f64,
    pub std_perplexity: f64,
    pub repetition: Repetition,
    pub sample: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Result21_18 {
    pub generator: String,
    pub scorer: String,
    pub sizes: Sizes,
    pub rows: Vec<Row>,
}

pub fn run(context: &RunContext, budget: &Budget, sizes: Sizes) -> Result<Result21_18> {
    let flags = MODEL_FLAGS.get();
    let large = models::large(context, &flags, budget)?;
    let small = models::small(context, &flags, budget, &large, None)?;
    let prompts = sizes.prompts(context, budget)?;
    let mut rows = Vec::new();
    for strategy in Strategy::ALL {
        seed_everything(context.seed);
        let mut decoding = strategy.decoding()?;
        let model = small.gpt();
        let texts = prompts
            .iter()
            .map(|prompt| Ok(continue_text(model, prompt, |idx| decoding.generate(model, idx, sizes.new_tokens))?.text))
            .collect::<Result<Vec<_>>>()?;
        let perplexities = texts
            .iter()
            .map(|text| continuation_perplexity(large.gpt(), text, sizes.prompt_chars))
            .collect::<Result<Vec<_>>>()?;
        let (mean_perplexity, std_perplexity) = mean_std(&perplexities);
        let repetition = Repetition::mean(&texts.iter().map(|t| Repetition::of(t)).collect::<Vec<_>>());
        rows.push(Row {
            strategy,
            perplexities,
            mean_perplexity,
            std_perplexity,
            repetition,
            sample: one_line(&texts[0], 90),
        });
    }
    Ok(Result21_18 { generator: small.name, scorer: large.name, sizes, rows })
}

impl fmt::Display for Result21_18 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} prompts of {} characters, {} new tokens each, generated by the {}; perplexity under the {}",
            self.sizes.prompts, self.sizes.prompt_chars, self.sizes.new_tokens, self.generator, self.scorer
        )?;
        writeln!(f, "| strategy | perplexity (mean ± std) | repeated 4-grams | sample (first prompt) |")?;
        writeln!(f, "|---|---:|---:|---|")?;
        for row in &self.rows {
            writeln!(
                f,
                "| {} | {:.2} ± {:.2} | {:.3} | {} |",
                row.strategy, row.mean_perplexity, row.std_perplexity, row.repetition.fourgrams, row.sample
            )?;
        }
        let best = self.rows.iter().min_by(|a, b| a.mean_perplexity.total_cmp(&b.mean_perplexity));
        let loops = self.rows.iter().max_by(|a, b| a.repetition.fourgrams.total_cmp(&b.repetition.fourgrams));
        if let (Some(best), Some(loops)) = (best, loops) {
            write!(
                f,
                "Lowest perplexity: {}; most repeated 4-grams: {}. A low perplexity means text the scorer finds likely, which is not the same as good text.",
                best.strategy, loops.strategy
            )?;
        }
        Ok(())
    }
}
