//! Exercise 21.33: multi-token prediction (Gloeckle et al. 2024) with 1, 2, 4 and 8 output
//! heads on one trunk, head `k` trained on the token `k` places ahead: the next-token head's
//! validation loss at an equal budget, samples, and self-speculative decoding with the extra
//! heads as drafters (tokens kept per forward pass, speedup over greedy decoding in the same
//! loop, and the check that the output is greedy decoding's).

use std::time::Instant;

use anyhow::Result;
use shared::cli::RunContext;
use shared::generate::generate_greedy_cached;
use shared::speculative::generate_self_speculative;
use tch::Tensor;

use super::{token_ids, validation_prompts, Findings, Plan, Trained};
use crate::minigpt::MiniGptOptions;

/// Validation prompts each decoding runs on.
const PROMPTS: usize = 8;
/// Tokens in each prompt.
const PROMPT_TOKENS: i64 = 8;

#[derive(Default)]
pub struct Mtp {
    notes: Vec<String>,
}

impl Plan for Mtp {
    fn variants(&self, base: &MiniGptOptions) -> Vec<(String, MiniGptOptions)> {
        [1, 2, 4, 8]
            .into_iter()
            .map(|heads| {
                let name = if heads == 1 { "1 head (next token)".to_string() } else { format!("{heads} heads") };
                (name, MiniGptOptions { n_future_heads: heads, ..base.clone() })
            })
            .collect()
    }

    fn columns(&self) -> Vec<String> {
        vec!["tokens per pass".to_string(), "speedup".to_string()]
    }

    fn measure(&mut self, trained: &Trained) -> Result<Vec<Option<f64>>> {
        let model = trained.model;
        let prompts = validation_prompts(trained, PROMPTS, PROMPT_TOKENS)?;
        let new_tokens = model.cfg.context_length - PROMPT_TOKENS;
        let heads = model.cfg.n_future_heads;
        // Greedy decoding (one head drafting) and speculation, timed alike: best of 3.
        let timed = |draft_heads: i64| -> Result<(f64, Vec<Tensor>, i64)> {
            let mut best = f64::INFINITY;
            let (mut outputs, mut steps) = (Vec::new(), 0);
            for _ in 0..3 {
                let start = Instant::now();
                (outputs, steps) = (Vec::new(), 0);
                for prompt in &prompts {
                    let speculation = generate_self_speculative(model, prompt, new_tokens, draft_heads)?;
                    steps += speculation.steps;
                    outputs.push(speculation.tokens);
                }
                best = best.min(start.elapsed().as_secs_f64());
            }
            Ok((best, outputs, steps))
        };
        let (greedy_seconds, _, _) = timed(1)?;
        let (seconds, outputs, steps) = timed(heads)?;
        let mut identical = 0;
        for (prompt, output) in prompts.iter().zip(&outputs) {
            identical += i32::from(generate_greedy_cached(model, prompt, new_tokens, None)?.equal(output));
        }
        let tokenizer = model.cfg.tokenizer.build()?;
        let sample = token_ids(&outputs[0])?;
        self.notes.push(format!(
            "{}: the speculative output equals `generate_greedy_cached`'s for {identical} of {} prompts; greedy \
             sample {:?}",
            trained.variant,
            prompts.len(),
            tokenizer.decode(&sample)?
        ));
        let tokens_per_pass = (new_tokens * prompts.len() as i64) as f64 / steps as f64;
        Ok(vec![Some(tokens_per_pass), Some(greedy_seconds / seconds)])
    }

    fn findings(&mut self, _: &RunContext, _: &str, base: &MiniGptOptions) -> Result<Findings> {
        let mut notes = vec![format!(
            "\"val loss\" is the next-token head's. Decoding: {PROMPTS} validation prompts of {PROMPT_TOKENS} tokens, \
             {} new tokens each, batch 1; \"tokens per pass\" counts the tokens each forward pass over a draft \
             keeps, \"speedup\" is the time of greedy decoding in the same loop over that of drafting with every \
             head (best of 3).",
            base.block_size - PROMPT_TOKENS
        )];
        notes.append(&mut self.notes);
        Ok(Findings { notes, charts: Vec::new() })
    }
}
