//! Exercise 21.32: a soft watermark (Kirchenbauer et al. 2023) with
//! [`shared::generate::watermark`]. The large model samples (temperature 1) 200 tokens after
//! each validation prompt with the watermark's bias `delta` on a green list of a quarter of
//! the vocabulary, seeded by the previous token and the key. Detection reads only the text,
//! the tokenizer and the key; the same model without the watermark scores the text's
//! perplexity, the cost of the mark.

use std::fmt;

use anyhow::Result;
use serde::Serialize;
use shared::app::exercise::Report;
use shared::core::device::seed_everything;

use crate::exercises::{Context, Exercise};
use shared::generate::watermark::{detect_text, expected_green_share, Watermark, WatermarkKey, Z_THRESHOLD};
use shared::generate::{Decoding, Sampler, Sampling};

use crate::models::{self, Budget, Sizes};
use crate::quality::{continuations, mean_std, TextQuality};

pub const EXERCISE: Exercise = Exercise {
    id: "21.32",
    summary: "a green-list watermark (gamma 0.25) at delta 0, 0.5, 1, 2 and 5 on the large model's samples of 200 tokens after 10 prompts: z-scores, detection rate at z > 4, green share and perplexity",
    run: |context| Report::new(&run(context, &Budget::from_flags(&context.flags), Sizes::STANDARD)?),
};

pub const DELTAS: [f64; 5] = [0.0, 0.5, 1.0, 2.0, 5.0];
/// The paper's green share.
pub const GAMMA: f64 = 0.25;
/// The secret key (any number; the paper's code hashes with the prime 15485863).
pub const KEY: u64 = 15_485_863;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub delta: f64,
    pub z_scores: Vec<f64>,
    pub mean_z: f64,
    pub min_z: f64,
    /// Share of the texts with z above the threshold.
    pub detected: f64,
    pub green_share: f64,
    /// The share a bias of delta gives text spread evenly over the vocabulary.
    pub uniform_green_share: f64,
    #[serde(flatten)]
    pub quality: TextQuality,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ex21_32 {
    pub model: String,
    pub sizes: Sizes,
    pub key: WatermarkKey,
    pub rows: Vec<Row>,
}

pub fn run(context: &Context, budget: &Budget, sizes: Sizes) -> Result<Ex21_32> {
    let large = models::large(context, &context.flags, budget)?;
    let tokenizer = large.gpt().cfg.tokenizer.build()?;
    let key = WatermarkKey::new(KEY, GAMMA, large.gpt().cfg.vocab_size)?;
    let prompts = sizes.prompts(context, budget)?;
    let mut rows = Vec::new();
    for delta in DELTAS {
        seed_everything(context.seed);
        let sampling = Sampling { temperature: 1.0, ..Sampling::GREEDY };
        let sampler = Sampler::new(&sampling)?.with_hook(Box::new(Watermark::new(key, delta)?));
        let texts = continuations(large.gpt(), &prompts, sizes.new_tokens, &mut Decoding::Sample(sampler))?;
        // Only the text, the tokenizer and the key: the generated part after the prompt.
        let detections = texts
            .iter()
            .map(|text| {
                detect_text(&text.chars().skip(sizes.prompt_chars).collect::<String>(), tokenizer.as_ref(), &key)
            })
            .collect::<Result<Vec<_>>>()?;
        let z_scores: Vec<f64> = detections.iter().map(|d| d.z).collect();
        let green: usize = detections.iter().map(|d| d.green).sum();
        let scored: usize = detections.iter().map(|d| d.scored).sum();
        rows.push(Row {
            delta,
            mean_z: mean_std(&z_scores).0,
            min_z: z_scores.iter().copied().fold(f64::INFINITY, f64::min),
            detected: detections.iter().filter(|d| d.flagged).count() as f64 / detections.len() as f64,
            green_share: green as f64 / scored.max(1) as f64,
            uniform_green_share: expected_green_share(key.green_share(), delta),
            quality: TextQuality::of(large.gpt(), &texts, sizes.prompt_chars)?,
            z_scores,
        });
    }
    Ok(Ex21_32 { model: large.name, sizes, key, rows })
}

impl fmt::Display for Ex21_32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} prompts, {} sampled tokens each; green lists of {} of {} ids (gamma {}), key {}; detected at z > {Z_THRESHOLD}",
            self.model,
            self.sizes.prompts,
            self.sizes.new_tokens,
            self.key.green_count(),
            self.key.vocab_size,
            self.key.gamma,
            self.key.key
        )?;
        writeln!(
            f,
            "| delta | mean z | lowest z | detected | green share (even spread) | perplexity | sample (first prompt) |"
        )?;
        writeln!(f, "|---:|---:|---:|---:|---:|---:|---|")?;
        for row in &self.rows {
            writeln!(
                f,
                "| {} | {:.2} | {:.2} | {:.0} % | {:.3} ({:.3}) | {:.2} | {} |",
                row.delta,
                row.mean_z,
                row.min_z,
                100.0 * row.detected,
                row.green_share,
                row.uniform_green_share,
                row.quality.mean_perplexity,
                row.quality.sample
            )?;
        }
        Ok(())
    }
}
