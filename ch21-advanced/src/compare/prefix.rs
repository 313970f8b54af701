//! Exercise 21.30: a prefix LM (bidirectional attention over a prompt, causal after it, as T5's
//! and UniLM's prefix LMs) against causal models, on windows whose first half is a prompt and
//! whose second half is the completion to predict. All are scored on the completion alone;
//! the causal model is trained both on the completion only (the prefix LM's objective) and
//! on every token (the standard objective, twice the training signal per window).

use anyhow::Result;
use shared::app::cli::RunContext;
use shared::generate::generate_greedy_cached;
use shared::model::attention::AttentionMask;

use super::{token_ids, validation_prompts, Findings, Plan, Trained};
use crate::minigpt::{self, MiniGptOptions};

/// Greedy continuations of this many validation prompts in the notes.
const SAMPLES: usize = 2;

#[derive(Default)]
pub struct Prefix {
    /// The prompts shown, and each variant's completions of them.
    prompts: Vec<String>,
    completions: Vec<(String, Vec<String>)>,
}

impl Plan for Prefix {
    fn variants(&self, base: &MiniGptOptions) -> Vec<(String, MiniGptOptions)> {
        let prompt = base.block_size / 2;
        vec![
            ("causal, loss on every token".to_string(), base.clone()),
            ("causal, loss on the completion".to_string(), MiniGptOptions { prompt_tokens: prompt, ..base.clone() }),
            (
                "prefix LM, loss on the completion".to_string(),
                MiniGptOptions { prompt_tokens: prompt, attention_mask: AttentionMask::Prefix(prompt), ..base.clone() },
            ),
        ]
    }

    fn columns(&self) -> Vec<String> {
        vec!["completion loss".to_string()]
    }

    fn measure(&mut self, trained: &Trained) -> Result<Vec<Option<f64>>> {
        let model = trained.model;
        let block = model.cfg.context_length;
        let prompt = block / 2;
        let (text, ratio, seed) = (trained.text, trained.options.train_ratio, trained.context.seed);
        let batches = trained.options.final_eval_batches;
        let loss = minigpt::completion_loss(model, text, ratio, prompt, batches, seed)?;

        let tokenizer = model.cfg.tokenizer.build()?;
        let mut completions = Vec::new();
        self.prompts.clear();
        for prompt_ids in validation_prompts(trained, SAMPLES, prompt)? {
            let out = generate_greedy_cached(model, &prompt_ids, block - prompt, None)?;
            self.prompts.push(tokenizer.decode(&token_ids(&prompt_ids)?)?);
            completions.push(tokenizer.decode(&token_ids(&out.narrow(1, prompt, block - prompt))?)?);
        }
        self.completions.push((trained.variant.to_string(), completions));
        Ok(vec![Some(loss)])
    }

    fn findings(&mut self, _: &RunContext, base: &MiniGptOptions) -> Result<Findings> {
        let mut notes = vec![format!(
            "Each window: a {}-token prompt, then {} tokens to predict; \"completion loss\" scores all three on the \
             same validation windows. Greedy completions of validation prompts:",
            base.block_size / 2,
            base.block_size - base.block_size / 2
        )];
        for (i, prompt) in self.prompts.iter().enumerate() {
            notes.push(format!("- prompt {:?}", prompt));
            for (variant, completions) in &self.completions {
                notes.push(format!("  - {variant}: {:?}", completions[i]));
            }
        }
        Ok(Findings { notes, charts: Vec::new() })
    }
}
