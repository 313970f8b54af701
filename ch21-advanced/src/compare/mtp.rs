//! Exercise 21.33: multi-token prediction (Gloeckle et al. 2024) with 1, 2, 4 and 8 output
//! heads on one trunk, head `k` trained on the token `k` places ahead: the next-token head's
//! validation loss at an equal budget, samples, and self-speculative decoding with the extra
//! heads as drafters (tokens kept per forward pass, speedup over greedy decoding in the same
//! loop, and the check that the output is greedy decoding's).

use std::time::Instant;

use anyhow::Result;
use shared::app::cli::RunContext;
use shared::generate::generate_greedy_cached;
use shared::generate::speculative::generate_self_speculative;
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
        // Greedy decoding (one head drafting) and speculation over every prompt, timed in
        // alternation (so both see the same machine), the best of 5 rounds each.
        let run_all = |draft_heads: i64| -> Result<(f64, Vec<Tensor>, i64)> {
            let start = Instant::now();
            let (mut outputs, mut steps) = (Vec::new(), 0);
            for prompt in &prompts {
                let speculation = generate_self_speculative(model, prompt, new_tokens, draft_heads)?;
                steps += speculation.steps;
                outputs.push(speculation.tokens);
            }
            Ok((start.elapsed().as_secs_f64(), outputs, steps))
        };
        let _warm_up = run_all(heads)?;
        let (mut greedy_seconds, mut seconds) = (f64::INFINITY, f64::INFINITY);
        let (mut outputs, mut steps) = (Vec::new(), 0);
        for _ in 0..5 {
            greedy_seconds = greedy_seconds.min(run_all(1)?.0);
            let (elapsed, these, these_steps) = run_all(heads)?;
            (seconds, outputs, steps) = (seconds.min(elapsed), these, these_steps);
        }
        let mut identical = 0;
        for (prompt, output) in prompts.iter().zip(&outputs) {
            identical += i32::from(generate_greedy_cached(model, prompt, new_tokens, None)?.equal(output));
        }
        let tokenizer = model.cfg.tokenizer.build()?;
        let sample = token_ids(&outputs[0])?;
        let generated = new_tokens * prompts.len() as i64;
        self.notes.push(format!(
            "{}: a pass over a draft takes {:.2} ms, a single-token pass {:.2} ms; the speculative output equals \
             `generate_greedy_cached`'s for {identical} of {} prompts; greedy sample {:?}",
            trained.variant,
            1e3 * seconds / steps as f64,
            1e3 * greedy_seconds / generated as f64,
            prompts.len(),
            tokenizer.decode(&sample)?
        ));
        let tokens_per_pass = generated as f64 / steps as f64;
        Ok(vec![Some(tokens_per_pass), Some(greedy_seconds / seconds)])
    }

    fn findings(&mut self, _: &RunContext, base: &MiniGptOptions) -> Result<Findings> {
        let mut notes = vec![format!(
            "\"val loss\" is the next-token head's. Decoding: {PROMPTS} validation prompts of {PROMPT_TOKENS} tokens, \
             {} new tokens each, batch 1; \"tokens per pass\" counts the tokens each forward pass over a draft \
             keeps, \"speedup\" is the time of greedy decoding in the same loop over that of drafting with every \
             head (timed in alternation, best of 5).",
            base.block_size - PROMPT_TOKENS
        )];
        notes.append(&mut self.notes);
        Ok(Findings { notes, charts: Vec::new() })
    }
}
